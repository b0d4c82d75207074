"""Where the connector finds its configuration: the home from --home, CPQ2STRIPE_HOME or a working
directory that looks like one (never any other directory), its .env, and relative paths in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.home import HomeError, find_home, init_home, looks_like_home
from connector.settings import SettingsError, env_example, find_mappings_dir, load_settings, unknown_variables

CREDENTIALS = {
    "CPQ2STRIPE_SALESFORCE_CONSUMER_KEY": "key-from-env-file",
    "CPQ2STRIPE_SALESFORCE_CONSUMER_SECRET": "secret",
    "CPQ2STRIPE_SALESFORCE_LOGIN_URL": "https://example.my.salesforce.com",
    "CPQ2STRIPE_STRIPE_SECRET_KEY": "sk_test_x",
}


def _write_env(directory: Path, **values: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))


@pytest.fixture
def no_ambient(monkeypatch, tmp_path):
    """No home or path variables from the test session or the shell; an empty working directory."""
    for name in ("CPQ2STRIPE_HOME", "CPQ2STRIPE_DATABASE_URL", "CPQ2STRIPE_MAPPINGS_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "somewhere-else"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_the_option_wins_over_the_variable_which_wins_over_the_working_directory(tmp_path):
    option, variable, cwd = (tmp_path / n for n in ("option", "variable", "cwd"))
    for d in (option, variable, cwd):
        (d / "state").mkdir(parents=True)

    assert find_home(option, {"CPQ2STRIPE_HOME": str(variable)}, cwd) == option
    assert find_home(None, {"CPQ2STRIPE_HOME": str(variable)}, cwd) == variable
    assert find_home(None, {}, cwd) == cwd


def test_a_working_directory_is_a_home_only_when_it_looks_like_one(tmp_path):
    assert find_home(None, {}, tmp_path) is None
    for marker in (".env", "mappings", "state"):
        other = tmp_path / marker.strip(".")
        other.mkdir()
        (other / marker).mkdir()
        assert looks_like_home(other) and find_home(None, {}, other) == other


def test_a_named_home_that_does_not_exist_is_an_error_not_a_fallback(tmp_path):
    (tmp_path / "mappings").mkdir()  # the working directory is a home, but the named one wins
    with pytest.raises(HomeError, match="CPQ2STRIPE_HOME is /no/such/dir, which is not a directory"):
        find_home(None, {"CPQ2STRIPE_HOME": "/no/such/dir"}, tmp_path)
    with pytest.raises(HomeError, match="--home"):
        find_home(tmp_path / "missing", {}, tmp_path)


def test_relative_paths_and_the_env_file_come_from_the_home_not_the_working_directory(no_ambient, tmp_path):
    home = tmp_path / "home"
    _write_env(home, **CREDENTIALS, CPQ2STRIPE_SALESFORCE_CA_BUNDLE="keys/ca.pem")
    (home / "keys").mkdir()
    (home / "keys" / "ca.pem").write_text("x")
    _write_env(no_ambient, **{**CREDENTIALS, "CPQ2STRIPE_SALESFORCE_CONSUMER_KEY": "key-from-cwd"})

    settings = load_settings(home)

    assert settings.home == home
    assert settings.salesforce_consumer_key == "key-from-env-file"
    assert settings.database_url == f"sqlite:///{home}/state/connector.db"
    assert settings.mappings_dir == home / "mappings"
    assert settings.salesforce_ca_bundle == home / "keys" / "ca.pem"


def test_precedence_is_option_then_environment_then_the_homes_env_file_then_the_default(
    no_ambient, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    _write_env(home, **CREDENTIALS, CPQ2STRIPE_MAPPINGS_DIR="from-env-file")

    assert load_settings(home).mappings_dir == home / "from-env-file"
    assert load_settings(home).poll_interval_seconds == 60  # the default
    monkeypatch.setenv("CPQ2STRIPE_MAPPINGS_DIR", "/abs/from-environment")
    assert load_settings(home).mappings_dir == Path("/abs/from-environment")
    assert load_settings(home, mappings_dir="from-option").mappings_dir == home / "from-option"


def test_absolute_paths_and_postgres_need_no_home(no_ambient):
    settings = load_settings(
        database_url="sqlite:////var/lib/cpq2stripe/state.db",
        mappings_dir="/etc/cpq2stripe/mappings",
        **{k.removeprefix("CPQ2STRIPE_").lower(): v for k, v in CREDENTIALS.items()},
    )
    assert settings.home is None and settings.database_url == "sqlite:////var/lib/cpq2stripe/state.db"


def test_without_a_home_relative_paths_are_refused_naming_what_was_looked_for(no_ambient):
    credentials = {k.removeprefix("CPQ2STRIPE_").lower(): v for k, v in CREDENTIALS.items()}
    with pytest.raises(SettingsError) as caught:
        load_settings(**credentials)

    (problem,) = caught.value.problems
    assert f"the working directory {no_ambient} has none of .env, mappings, state" in problem
    assert "cpq2stripe init DIR" in problem and "CPQ2STRIPE_HOME=DIR" in problem
    assert "CPQ2STRIPE_DATABASE_URL is sqlite:///state/connector.db" in problem


def test_missing_credentials_without_a_home_say_that_no_env_file_was_read(no_ambient):
    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert caught.value.problems[0].startswith("No connector home")
    assert "CPQ2STRIPE_STRIPE_SECRET_KEY is required but not set" in caught.value.problems


def test_mappings_check_finds_the_mappings_without_credentials(no_ambient, tmp_path):
    home = tmp_path / "home"
    (home / "mappings").mkdir(parents=True)
    assert find_mappings_dir(home) == home / "mappings"
    with pytest.raises(SettingsError, match="CPQ2STRIPE_MAPPINGS_DIR is mappings"):
        find_mappings_dir()


def test_the_env_example_names_only_real_settings_and_holds_no_values_for_secrets():
    text = env_example()
    names = [line.lstrip("# ").split("=", 1)[0] for line in text.splitlines() if "=" in line]

    assert unknown_variables(names) == []
    for required in CREDENTIALS:
        assert f"\n{required}=" in text  # uncommented: the admin fills these in
    for secret in ("CPQ2STRIPE_SALESFORCE_CONSUMER_SECRET", "CPQ2STRIPE_STRIPE_SECRET_KEY"):
        assert f"\n{secret}=\n" in text
    assert "# CPQ2STRIPE_POLL_INTERVAL_SECONDS=60" in text


def test_a_home_made_by_init_with_its_env_example_filled_in_loads(no_ambient, tmp_path):
    home = tmp_path / "new-home"
    init_home(home, env_example())
    filled = env_example()
    for name, value in CREDENTIALS.items():
        filled = filled.replace(f"\n{name}=\n", f"\n{name}={value}\n")
    filled = filled.replace("https://MYDOMAIN.my.salesforce.com", "https://acme.my.salesforce.com")
    (home / ".env").write_text(filled)

    settings = load_settings(home)

    assert settings.stripe_secret_key.get_secret_value() == "sk_test_x"
    assert settings.database_url == f"sqlite:///{home}/state/connector.db"
    assert (home / "state").is_dir() and (settings.mappings_dir / "customer.yaml").is_file()
