"""Fixtures for end-to-end tests: connector settings pointed at the sandbox, on each state store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.faults import ENV as CRASH_ENV
from connector.mapping import Mappings, load_mappings
from connector.settings import Settings, load_settings
from connector.sync.report import RunReport
from connector.sync.runner import open_context, run_pass
from tests.unit.conftest import postgres_schema_url, sqlite_url, store_url  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "mappings"


def cli_env(sandbox: Any, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a connector subprocess pointed at the sandbox: none of the developer's
    CPQ2STRIPE_ variables, the sandbox's, this state store and the repo's mappings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPQ2STRIPE_")}
    env.update(sandbox.env)
    env["CPQ2STRIPE_DATABASE_URL"] = database_url
    env["CPQ2STRIPE_MAPPINGS_DIR"] = str(MAPPINGS)
    env.update(extra)
    return env


def run_cli(
    sandbox: Any, database_url: str, *args: str, crash_at: str | None = None
) -> subprocess.CompletedProcess:
    """`python -m connector ARGS` against the sandbox, as an operator runs it (optionally crashing)."""
    env = cli_env(sandbox, database_url)
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_for(sandbox: Any, database_url: str, **overrides: Any) -> Settings:
    env = {k.removeprefix("CPQ2STRIPE_").lower(): v for k, v in sandbox.env.items()}
    env.update(database_url=database_url, mappings_dir=str(MAPPINGS))
    env.update(overrides)
    return load_settings(**env)


@dataclass
class SyncResult:
    reports: list[RunReport]
    stripe_calls: dict[str, int]
    salesforce_calls: dict[str, int]

    @property
    def report(self) -> RunReport:
        return self.reports[0]

    def outcome(self, sf_id: str):
        return next(o for r in self.reports for o in r.outcomes if o.sf_id == sf_id)


@pytest.fixture
def connector_settings(sandbox: Any, store_url: str) -> Settings:  # noqa: F811
    return settings_for(sandbox, store_url)


@pytest.fixture
def run_sync(connector_settings: Settings) -> Callable[..., SyncResult]:
    """Run one sync pass in-process with the connector's real clients."""

    def _run(
        objects: tuple[str, ...] = ("accounts",),
        *,
        dry_run: bool = False,
        settings: Settings | None = None,
        mappings: Mappings | None = None,
    ) -> SyncResult:
        s = settings or connector_settings
        m = mappings or load_mappings(s.mappings_dir)
        with open_context(s, m) as ctx:
            reports = run_pass(ctx, dry_run=dry_run, objects=list(objects))
            return SyncResult(reports, dict(ctx.gateway.calls), dict(ctx.sf.calls))

    return _run
