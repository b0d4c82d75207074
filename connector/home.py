"""The connector's home: the directory holding its `.env`, `mappings/` and `state/`.

Found from configuration: the `--home` option, else `CPQ2STRIPE_HOME`, else the working directory
only when it looks like a home (holds one of MARKERS). A command run from the wrong directory
then says so instead of reading another directory's `.env` or creating an empty database there.
Relative paths in the settings (a SQLite database, the mappings directory, key files) resolve
against the home. `cpq2stripe init` makes a home (see :func:`init_home`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from sqlalchemy.engine import make_url

HOME_ENV = "CPQ2STRIPE_HOME"
MARKERS = (".env", "mappings", "state")
ENV_FILE = ".env"
ENV_EXAMPLE = ".env.example"
MAPPINGS = "mappings"
STATE = "state"
DEFAULT_MAPPING_FILES = ("customer.yaml", "subscription.yaml", "usage.yaml")


class HomeError(Exception):
    """The home named by the option or the variable is not a directory."""


def looks_like_home(directory: Path) -> bool:
    return any((directory / marker).exists() for marker in MARKERS)


def find_home(
    option: Path | None = None, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Path | None:
    """The home (absolute), or None when nothing names one and the working directory is no home.

    Raises HomeError for a named directory that does not exist: a typo must not fall back silently."""
    env = os.environ if environ is None else environ
    for given, where in ((option, "--home"), (env.get(HOME_ENV) or None, HOME_ENV)):
        if given is None:
            continue
        path = Path(given).expanduser()
        if not path.is_dir():
            raise HomeError(
                f"{where} is {given}, which is not a directory. "
                f"Fix: create it with `cpq2stripe init {given}`, or name the connector's directory."
            )
        return path.resolve()
    here = (cwd or Path.cwd()).resolve()
    return here if looks_like_home(here) else None


def no_home_message(cwd: Path | None = None) -> str:
    """Why relative settings cannot be resolved, and the fix (no '; ': settings split problems on it)."""
    here = (cwd or Path.cwd()).resolve()
    return (
        f"No connector home: {HOME_ENV} is not set and the working directory {here} has none of "
        f"{', '.join(MARKERS)}, so no .env was read and relative paths (the state database, the "
        f"mappings) have nowhere to start. Fix: run `cpq2stripe init DIR` once and set {HOME_ENV}=DIR "
        "(or pass --home DIR, or run from DIR)"
    )


def resolve_path(path: Path, home: Path | None) -> Path | None:
    """`path` made absolute against the home; None when it is relative and there is no home."""
    if path.expanduser().is_absolute():
        return path.expanduser()
    return home / path if home is not None else None


def resolve_database_url(url: str, home: Path | None) -> str | None:
    """A SQLite URL naming a relative file, made absolute against the home; other URLs unchanged.
    None when it is relative and there is no home."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.drivername.partition("+")[0] != "sqlite" or database in (None, "", ":memory:"):
        return url
    absolute = resolve_path(Path(str(database)), home)
    if absolute is None:
        return None
    return parsed.set(database=str(absolute)).render_as_string(hide_password=False)


# ---------------------------------------------------------------- the shipped default mappings


def default_mapping(name: str) -> bytes:
    """A default mapping as shipped in the package (connector/mapping/defaults/), the one source of
    the defaults: `init` copies them, the demo falls back to them, the repo's mappings/ equals them."""
    return (resources.files("connector.mapping") / "defaults" / name).read_bytes()


# ---------------------------------------------------------------- cpq2stripe init


@dataclass
class InitResult:
    written: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)  # refused (no --force)


def init_home(directory: Path, env_example: str, *, force: bool = False) -> InitResult:
    """Write editable copies of the default mappings, `state/` and `.env.example` into `directory`.

    Refuses (writing nothing) when a file it would write exists, unless `force`: an admin's edited
    mappings are never overwritten by accident."""
    directory = directory.expanduser().resolve()
    files = {directory / MAPPINGS / name: default_mapping(name) for name in DEFAULT_MAPPING_FILES}
    files[directory / ENV_EXAMPLE] = env_example.encode("utf-8")
    result = InitResult(existing=[path for path in files if path.exists()])
    if result.existing and not force:
        return result
    (directory / MAPPINGS).mkdir(parents=True, exist_ok=True)
    (directory / STATE).mkdir(exist_ok=True)
    for path, content in files.items():
        path.write_bytes(content)
        result.written.append(path)
    return result
