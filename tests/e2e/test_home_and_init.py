"""The connector home as an operator meets it: `cpq2stripe init` makes one from the packaged default
mappings, commands find it through --home or CPQ2STRIPE_HOME from any directory, and a run that is
about to create a new state database says where."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from connector.home import DEFAULT_MAPPING_FILES, default_mapping

from .conftest import MAPPINGS, REPO
from .test_cli import cli

CREDENTIALS = {
    "CPQ2STRIPE_SALESFORCE_CONSUMER_KEY": "key",
    "CPQ2STRIPE_SALESFORCE_CONSUMER_SECRET": "secret",
    "CPQ2STRIPE_SALESFORCE_LOGIN_URL": "https://127.0.0.1:9",
    "CPQ2STRIPE_STRIPE_SECRET_KEY": "sk_test_x",
}


def test_the_repositorys_mappings_are_exactly_what_init_writes():
    shipped = sorted(p.name for p in MAPPINGS.glob("*.yaml"))
    assert shipped == sorted(DEFAULT_MAPPING_FILES)
    for name in DEFAULT_MAPPING_FILES:
        assert (MAPPINGS / name).read_bytes() == default_mapping(name), (
            f"mappings/{name} differs from connector/mapping/defaults/{name}, the packaged default that "
            "`cpq2stripe init` writes: make the change in both (cp one over the other)"
        )


def test_init_writes_the_default_mappings_a_state_directory_and_an_env_example(tmp_path):
    home = tmp_path / "cpq-home"

    done = cli("init", str(home), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    for name in DEFAULT_MAPPING_FILES:
        assert (home / "mappings" / name).read_bytes() == default_mapping(name)
    assert (home / "state").is_dir()
    example = (home / ".env.example").read_text()
    assert "\nCPQ2STRIPE_STRIPE_SECRET_KEY=\n" in example
    assert not (home / ".env").exists()
    assert f"export CPQ2STRIPE_HOME={home}" in done.stdout
    assert "cpq2stripe mappings check --against-org" in done.stdout


def test_init_never_overwrites_an_admins_edits_unless_forced(tmp_path):
    home = tmp_path / "cpq-home"
    assert cli("init", str(home)).returncode == 0
    customer = home / "mappings" / "customer.yaml"
    customer.write_text(customer.read_text() + "# my edit\n")

    refused = cli("init", str(home))

    assert refused.returncode == 2
    assert str(customer) in refused.stderr and "--force" in refused.stderr
    assert customer.read_text().endswith("# my edit\n")

    forced = cli("init", str(home), "--force")

    assert forced.returncode == 0, forced.stderr
    assert customer.read_bytes() == default_mapping("customer.yaml")


def test_init_with_home_option_or_variable_and_no_directory_argument(tmp_path):
    assert cli("--home", str(tmp_path / "a"), "init", cwd=tmp_path).returncode == 0
    assert (tmp_path / "a" / "mappings" / "customer.yaml").is_file()
    done = cli("init", cwd=tmp_path, env={"CPQ2STRIPE_HOME": str(tmp_path / "b")})
    # a named home must exist for every other command; init is the one that makes it
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "b" / ".env.example").is_file()


@pytest.mark.parametrize("where", ["option-before", "option-after", "variable"])
def test_commands_find_the_home_and_its_env_file_from_any_directory(tmp_path, where):
    home = tmp_path / "cpq-home"
    assert cli("init", str(home)).returncode == 0
    (home / ".env").write_text("".join(f"{k}={v}\n" for k, v in CREDENTIALS.items()))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"CPQ2STRIPE_HOME": str(home)} if where == "variable" else {}

    def run(*command: str) -> subprocess.CompletedProcess:
        if where == "option-before":
            return cli("--home", str(home), *command, env=env, cwd=elsewhere)
        if where == "option-after":
            return cli(*command, "--home", str(home), env=env, cwd=elsewhere)
        return cli(*command, env=env, cwd=elsewhere)

    done = run("status")

    # the credentials came from the home's .env; the database is looked for in the home, not created
    assert done.returncode == 2
    assert f"No state database at {home}/state/connector.db" in done.stderr, done.stderr
    assert list((home / "state").iterdir()) == [] and list(elsewhere.iterdir()) == []
    checked = run("mappings", "check")
    assert checked.returncode == 0, checked.stderr
    assert f"Mappings in {home}/mappings are valid." in checked.stdout


def test_a_misspelt_variable_in_the_homes_env_file_is_named(tmp_path):
    home = tmp_path / "cpq-home"
    assert cli("init", str(home)).returncode == 0
    (home / ".env").write_text("CPQ2STRIPE_POLL_INTERVAL_SECOND=5\n")

    done = cli("--home", str(home), "mappings", "check", cwd=tmp_path)

    assert "CPQ2STRIPE_POLL_INTERVAL_SECOND is not a setting" in done.stderr


def test_a_run_that_creates_the_state_database_says_where_once(sandbox, tmp_path):
    home = tmp_path / "cpq-home"
    assert cli("init", str(home)).returncode == 0
    env = {**sandbox.env, "CPQ2STRIPE_HOME": str(home)}

    first = cli("sync", "--objects", "accounts", env=env, cwd=tmp_path)
    second = cli("sync", "--objects", "accounts", env=env, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    database = home / "state" / "connector.db"
    assert (
        f"no state database at {database} yet: this run creates it (connector home: {home})" in first.stderr
    )
    assert database.is_file()
    assert "this run creates it" not in second.stderr


@pytest.mark.slow
def test_a_built_wheel_carries_the_default_mappings(tmp_path):
    out = Path("/tmp/cpq-s25/config-wheel") if Path("/tmp/cpq-s25").is_dir() else tmp_path
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = out.glob("cpq2stripe-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in DEFAULT_MAPPING_FILES:
            assert archive.read(f"connector/mapping/defaults/{name}") == default_mapping(name)
