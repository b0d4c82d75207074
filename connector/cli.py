"""The `cpq2stripe` command line. Thin: parses options and calls into the packages.

Exit codes: 0 success, 1 some records failed, 2 configuration problem (settings or mapping),
3 a fatal error stopped the run.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from connector.mapping import Mappings
    from connector.settings import Settings

app = typer.Typer(
    help="Keeps Stripe Billing in step with Salesforce CPQ.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
mappings_app = typer.Typer(help="Work with the admin-edited YAML mappings.", no_args_is_help=True)
app.add_typer(mappings_app, name="mappings")

EXIT_RECORD_FAILURES = 1
EXIT_CONFIG = 2
EXIT_FATAL = 3


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    from connector.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None


def _mappings(directory: Path) -> Mappings:
    from connector.mapping import MappingError, load_mappings

    try:
        return load_mappings(directory)
    except MappingError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every record action.")] = False,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log one JSON object per line.")] = False,
) -> None:
    from connector.logs import configure_logging

    configure_logging(verbose=verbose, json_lines=json_logs)


@app.command()
def sync(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; change nothing anywhere.")
    ] = False,
    objects: Annotated[str, typer.Option(help="Comma-separated: accounts,orders")] = "accounts,orders",
) -> None:
    """One pass: poll Salesforce for changed records, apply them to Stripe, exit (`run` keeps going)."""
    from connector.sync.runner import run_sync_once

    settings = _settings()
    mappings = _mappings(settings.mappings_dir)
    code = run_sync_once(settings, mappings, dry_run=dry_run, objects=objects.split(","), out=typer.echo)
    raise typer.Exit(code)


@app.command()
def run(
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus counters on this port at /metrics (overrides the setting)."),
    ] = None,
) -> None:
    """Run the sync daemon: poll, retry, follow events; one active instance; SIGTERM stops cleanly."""
    from connector.daemon import run_daemon

    settings = _settings()
    raise typer.Exit(run_daemon(settings, out=typer.echo, metrics_port=metrics_port))


@app.command()
def status(
    failed: Annotated[bool, typer.Option("--failed", help="Only what needs attention.")] = False,
) -> None:
    """Links, cursors, failures with reasons, and the last run."""
    from connector.status import print_status

    settings = _settings()
    print_status(settings, failed_only=failed, out=typer.echo)


@app.command("log")
def log_(
    record: Annotated[
        str | None, typer.Option("--record", help="A Salesforce id (001…, 801…) or a Stripe id (cus_…).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="30m, 2h, 3d, 1w, or an ISO date or time.")
    ] = None,
    object_: Annotated[
        str | None,
        typer.Option("--object", help="accounts, orders, or a Stripe kind: customer, product, price, …"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest entries shown.")] = 50,
) -> None:
    """What the connector did, record by record: the sync log (kept 90 days), from the state store."""
    from connector.state.store import StateStore
    from connector.sync.streams import STREAMS
    from connector.synclog import parse_since, print_log

    settings = _settings()
    try:
        since_at = parse_since(since, datetime.now(UTC)) if since else None
    except ValueError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    object_type = next((s.object_type for s in STREAMS if s.key == object_), object_)
    with StateStore.open(settings.database_url) as store:
        print_log(store, record=record, since=since_at, object_type=object_type, limit=limit, out=typer.echo)


@app.command()
def retry(
    record_id: Annotated[str | None, typer.Argument(help="Salesforce id of a failed record.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every failed record now.")] = False,
) -> None:
    """Re-run failed records now instead of waiting for their backoff."""
    from connector.sync.runner import run_retry

    if not record_id and not all_:
        raise _fail("Give a Salesforce record id or --all.", EXIT_CONFIG)
    settings = _settings()
    mappings = _mappings(settings.mappings_dir)
    raise typer.Exit(run_retry(settings, mappings, record_id=record_id, out=typer.echo))


@app.command()
def reconcile(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report drift; change nothing.")] = False,
) -> None:
    """Put mapped Stripe fields edited in Stripe back to the Salesforce values; report each drift."""
    from connector.sync.reconcile import run_reconcile

    settings = _settings()
    mappings = _mappings(settings.mappings_dir)
    raise typer.Exit(run_reconcile(settings, mappings, dry_run=dry_run, out=typer.echo))


@mappings_app.command("check")
def mappings_check(
    directory: Annotated[Path | None, typer.Option("--dir", help="Mappings directory.")] = None,
    against_org: Annotated[
        bool,
        typer.Option(
            "--against-org", help="Also check fields and the integration user's permissions in the org."
        ),
    ] = False,
) -> None:
    """Report every problem in the mappings at once, with file, line and the fix."""
    from connector.mapping import MappingError, load_mappings

    directory = directory or Path(os.environ.get("CPQ2STRIPE_MAPPINGS_DIR", "mappings"))
    try:
        mappings = load_mappings(directory)
    except MappingError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    if against_org:
        from connector.mapping import check_against_describe, check_user_permissions
        from connector.salesforce.client import SalesforceClient

        client = SalesforceClient(_settings())
        problems = check_against_describe(mappings, client.describe)
        problems += check_user_permissions(mappings, client.holds_permission)
        if problems:
            typer.echo("\n".join(str(p) for p in problems), err=True)
            raise typer.Exit(EXIT_CONFIG)
    typer.echo(f"Mappings in {directory} are valid.")


@app.command()
def backfill(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan every record and count the actions; change nothing.")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="At most N records of each object in this run.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only records modified at or after this ISO 8601 instant.")
    ] = None,
    objects: Annotated[str, typer.Option(help="Comma-separated: accounts,orders")] = "accounts,orders",
    failures_csv: Annotated[
        Path, typer.Option("--failures-csv", help="Where to write the failed and refused records.")
    ] = Path("backfill-failures.csv"),
    bulk_threshold: Annotated[
        int, typer.Option(help="Read with a Bulk API 2.0 query job above this many records.")
    ] = 10_000,
    workers: Annotated[
        int | None, typer.Option(help="Concurrent Stripe requests (default: from rps).")
    ] = None,
) -> None:
    """Sync everything once, as fast as Stripe's rate limit allows; resumable after an interruption."""
    from connector.backfill.command import BackfillOptions, parse_since, run_backfill

    try:
        since_at = parse_since(since) if since else None
    except ValueError as exc:
        raise _fail(f"--since: {exc}", EXIT_CONFIG) from None
    settings = _settings()
    mappings = _mappings(settings.mappings_dir)
    options = BackfillOptions(
        dry_run=dry_run,
        limit=limit,
        since=since_at,
        objects=[o.strip() for o in objects.split(",") if o.strip()],
        failures_csv=failures_csv,
        bulk_threshold=bulk_threshold,
        workers=workers,
    )
    raise typer.Exit(run_backfill(settings, mappings, options, out=typer.echo))


SANDBOX_PACKAGES = ("trustme",)  # the [sandbox] extra: what the fakes need beyond the connector


def _require_sandbox() -> None:
    """The fakes' own dependencies are an extra, left out of a production install."""
    missing = [name for name in SANDBOX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise _fail(
            f"The bundled sandbox needs {', '.join(missing)}, which a production install leaves out. "
            "Install it with: pip install 'cpq2stripe[sandbox]' (or run ./scripts/demo, which does).",
            EXIT_CONFIG,
        )


@app.command()
def demo() -> None:
    """Start the bundled sandbox, sync it twice, print what happened, stop."""
    _require_sandbox()
    from connector.demo import run_demo

    raise typer.Exit(run_demo(out=typer.echo))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
)
def sandbox(ctx: typer.Context) -> None:
    """Run the local fake Salesforce org and fake Stripe (see `cpq2stripe sandbox --help`)."""
    _require_sandbox()
    from connector.sandbox.runner import main as sandbox_main

    raise typer.Exit(sandbox_main(list(ctx.args)))


def main() -> None:
    from connector.errors import FatalError

    try:
        app()
    except FatalError as exc:  # e.g. the state database cannot be opened: a message, not a traceback
        typer.echo(f"Stopped: {exc}", err=True)
        sys.exit(EXIT_FATAL)
    except KeyboardInterrupt:
        logging.getLogger(__name__).warning("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
