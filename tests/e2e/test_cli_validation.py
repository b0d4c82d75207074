"""Command-line input an operator gets wrong is refused with a message naming it and the fix,
never a traceback and never a silent no-op (no sandbox needed: each stops before any request)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import MAPPINGS
from .test_cli import cli

SETTINGS = {
    "CPQ2STRIPE_SALESFORCE_CONSUMER_KEY": "key",
    "CPQ2STRIPE_SALESFORCE_CONSUMER_SECRET": "secret",
    "CPQ2STRIPE_SALESFORCE_LOGIN_URL": "https://127.0.0.1:9",
    "CPQ2STRIPE_STRIPE_SECRET_KEY": "sk_test_x",
    "CPQ2STRIPE_MAPPINGS_DIR": str(MAPPINGS),
}


def _text(stderr: str) -> str:
    """Usage errors come in a box wrapped to the terminal: the words, on one line."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", stderr).split())


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**SETTINGS, "CPQ2STRIPE_DATABASE_URL": f"sqlite:///{tmp_path}/state.db", **extra}


@pytest.mark.parametrize("command", ["sync", "backfill"])
def test_an_unknown_object_is_refused_with_the_valid_names_and_a_suggestion(tmp_path, command):
    done = cli(command, "--objects", "acounts", env=_env(tmp_path))

    assert done.returncode == 2
    assert "'acounts'" in _text(done.stderr) and "did you mean 'accounts'?" in _text(done.stderr)
    assert "Choose from: accounts, products, orders" in _text(done.stderr)
    assert not (tmp_path / "state.db").exists()


@pytest.mark.parametrize(
    ("args", "option"),
    [(("run", "--metrics-port", "99999"), "--metrics-port"), (("backfill", "--limit", "-5"), "--limit")],
)
def test_out_of_range_numbers_are_refused_naming_the_option(tmp_path, args, option):
    done = cli(*args, env=_env(tmp_path))

    assert done.returncode == 2
    assert option in done.stderr
    assert "Traceback" not in done.stderr and "OverflowError" not in done.stderr


def test_status_never_creates_a_missing_state_database_and_says_where_it_looked(tmp_path):
    env = {**SETTINGS, "CPQ2STRIPE_DATABASE_URL": "sqlite:///state/connector.db", "CPQ2STRIPE_HOME": "."}

    done = cli("status", env=env, cwd=tmp_path)

    assert done.returncode == 2
    assert str(tmp_path / "state" / "connector.db") in done.stderr
    assert "CPQ2STRIPE_DATABASE_URL" in done.stderr and "--home" in done.stderr
    assert not (tmp_path / "state").exists()


def test_a_relative_database_from_a_directory_that_is_no_home_is_refused_naming_the_fix(tmp_path):
    env = {**SETTINGS, "CPQ2STRIPE_DATABASE_URL": "sqlite:///state/connector.db"}

    done = cli("status", env=env, cwd=tmp_path)

    assert done.returncode == 2
    assert (
        f"No connector home: CPQ2STRIPE_HOME is not set and the working directory {tmp_path}" in done.stderr
    )
    assert "cpq2stripe init DIR" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_postgres_url_is_accepted_and_an_unreachable_one_is_a_message(tmp_path):
    env = _env(tmp_path, CPQ2STRIPE_DATABASE_URL="postgres://u:hunter2@127.0.0.1:1/state")

    done = cli("status", env=env)

    assert done.returncode == 3
    assert "cannot open the state database" in done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr


def test_a_misspelt_variable_is_warned_about_once_and_test_knobs_are_not(tmp_path):
    env = _env(
        tmp_path,
        CPQ2STRIPE_MAPPINGS_DIRR="elsewhere",
        CPQ2STRIPE_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1/test",
        CPQ2STRIPE_RELIABILITY_SCALE="ci",
        CPQ2STRIPE_LOG_LEVEL="info",
    )

    done = cli("mappings", "check", "--dir", str(MAPPINGS), env=env)

    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "is not a setting" in line]
    assert len(warnings) == 1
    assert "CPQ2STRIPE_MAPPINGS_DIRR" in warnings[0]
    assert "did you mean CPQ2STRIPE_MAPPINGS_DIR?" in warnings[0]


def test_logging_options_work_after_the_command_too(tmp_path):
    env = _env(tmp_path, CPQ2STRIPE_STRIPE_SECRT_KEY="x")

    after = cli("mappings", "check", "--dir", str(MAPPINGS), "--json-logs", "-v", env=env)
    level = cli("mappings", "check", "--dir", str(MAPPINGS), "--log-level", "error", env=env)
    wrong = cli("mappings", "check", "--log-level", "loud", env=env)

    assert after.returncode == 0, after.stderr
    assert json.loads(after.stderr.splitlines()[0])["logger"] == "connector.settings"
    assert level.returncode == 0 and "is not a setting" not in level.stderr
    assert wrong.returncode == 2 and "--log-level" in wrong.stderr


def test_version_and_short_help(tmp_path):
    version = cli("--version")
    helps = [cli(*args, "-h") for args in [(), ("sync",), ("mappings",), ("mappings", "check")]]

    assert version.returncode == 0 and version.stdout.startswith("cpq2stripe ")
    assert all(h.returncode == 0 and "Usage:" in h.stdout for h in helps)
