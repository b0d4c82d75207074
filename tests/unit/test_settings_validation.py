"""Settings an operator gets subtly wrong: a postgres:// URL, a misspelt CPQ2STRIPE_ variable."""

from __future__ import annotations

import pytest

from connector.settings import SettingsError, load_settings, unknown_variables
from connector.state.db import engine_for
from connector.state.urls import sqlite_file

BASE = {
    "salesforce_consumer_key": "key",
    "salesforce_consumer_secret": "secret",
    "salesforce_login_url": "https://example.my.salesforce.com",
    "stripe_secret_key": "sk_test_x",
}


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("CPQ2STRIPE_HOME", str(tmp_path))  # an empty home: relative paths start there
    monkeypatch.delenv("CPQ2STRIPE_DATABASE_URL", raising=False)
    monkeypatch.delenv("CPQ2STRIPE_MAPPINGS_DIR", raising=False)


@pytest.mark.parametrize(
    "url", ["postgres://u:pw@db.example:5432/state", "postgresql://u:pw@db.example/state"]
)
def test_a_postgres_url_without_the_driver_is_given_the_installed_one(url):
    settings = load_settings(**BASE, database_url=url)

    assert settings.database_url.startswith("postgresql+psycopg://u:pw@db.example")
    assert engine_for(url).url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize("url", ["mysql://u:hunter2@db/state", "not a url hunter2"])
def test_an_unsupported_database_url_names_the_setting_and_the_forms_without_echoing_it(url):
    with pytest.raises(SettingsError) as caught:
        load_settings(**BASE, database_url=url)

    message = str(caught.value)
    assert "CPQ2STRIPE_DATABASE_URL" in message
    assert "sqlite:///" in message and "postgresql+psycopg://" in message
    assert "hunter2" not in message


def test_a_sqlite_url_names_its_file_and_postgres_none():
    assert str(sqlite_file("sqlite:///state/connector.db")) == "state/connector.db"
    assert sqlite_file("sqlite://") is None
    assert sqlite_file("postgresql+psycopg://u@h/db") is None


def test_a_misspelt_variable_is_named_with_the_setting_it_resembles():
    warnings = unknown_variables(["CPQ2STRIPE_STRIPE_SECRT_KEY", "cpq2stripe_databse_url", "PATH"])

    assert warnings == [
        "CPQ2STRIPE_DATABSE_URL is not a setting and is ignored; did you mean CPQ2STRIPE_DATABASE_URL?",
        "CPQ2STRIPE_STRIPE_SECRT_KEY is not a setting and is ignored; did you mean "
        "CPQ2STRIPE_STRIPE_SECRET_KEY?",
    ]


def test_settings_test_knobs_and_names_read_elsewhere_do_not_warn():
    names = [
        "CPQ2STRIPE_STRIPE_SECRET_KEY",
        "CPQ2STRIPE_TEST_POSTGRES_URL",
        "CPQ2STRIPE_TEST_CRASH_AT",
        "CPQ2STRIPE_RELIABILITY_SCALE",
        "CPQ2STRIPE_LOG_LEVEL",
    ]

    assert unknown_variables(names, also_known=["CPQ2STRIPE_LOG_LEVEL"]) == []
