"""State database URLs: the forms an operator writes, turned into the one SQLAlchemy can open.

Settings validate `CPQ2STRIPE_DATABASE_URL` with :func:`normalise_database_url` (so a bad URL is a
settings message, not a traceback) and the engine uses the same function, so both agree.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

POSTGRES_DRIVER = "postgresql+psycopg"
FORMS = "sqlite:///path/to/connector.db or postgresql+psycopg://user@host:5432/dbname"


def normalise_database_url(url: str) -> str:
    """The URL to open; `postgres://` and `postgresql://` (any driver) become psycopg 3's form.

    Raises ValueError naming the accepted forms. The message never repeats the URL: it may hold a
    password.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"is not a database URL; use {FORMS}") from None
    backend = parsed.drivername.partition("+")[0]
    if backend == "sqlite":
        return url
    if backend not in ("postgres", "postgresql"):
        raise ValueError(f"unsupported state database '{backend}': use {FORMS}")
    if importlib.util.find_spec("psycopg") is None:
        raise ValueError(
            "is a PostgreSQL URL but psycopg is not installed: pip install 'cpq2stripe[postgres]'"
        )
    return parsed.set(drivername=POSTGRES_DRIVER).render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, or None (PostgreSQL, in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.drivername.partition("+")[0] != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database))
