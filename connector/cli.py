"""The `cpq2stripe` command line. Thin: parses options and calls into the packages.

Exit codes: 0 success, 1 some records failed, 2 configuration problem (settings or mapping),
3 a fatal error stopped the run.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from connector.mapping import Mappings
    from connector.settings import Settings

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    help="Keeps Stripe Billing in step with Salesforce CPQ.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=HELP_OPTIONS,
)
mappings_app = typer.Typer(
    help="Work with the admin-edited YAML mappings.", no_args_is_help=True, context_settings=HELP_OPTIONS
)
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
        settings = load_settings(home=_home_option())
    except SettingsError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    _note_new_state_database(settings)
    return settings


# The connector home (connector/home.py): the global --home option, before or after the command.
Home = Annotated[
    Path | None,
    typer.Option(
        "--home",
        file_okay=False,
        help="The connector's directory (.env, mappings/, state/); overrides CPQ2STRIPE_HOME.",
    ),
]
# The commands that write the state database (read-only ones refuse a missing one instead).
STATE_WRITING_COMMANDS = frozenset({"sync", "run", "backfill", "retry", "reconcile", "billing-status"})


@dataclass
class _Invocation:
    """What the command line said beyond a command's own options (set by the callback and
    _with_logging_options for the command being run)."""

    home: Path | None = None
    command: str | None = None


_invocation = _Invocation()


def _home_option() -> Path | None:
    return _invocation.home


def _note_new_state_database(settings: Settings) -> None:
    """A run that is about to create its SQLite database says where: a wrong home shows at once."""
    from connector.state.urls import sqlite_file

    if _invocation.command not in STATE_WRITING_COMMANDS:
        return
    path = sqlite_file(settings.database_url)
    if path is not None and not path.exists():
        logging.getLogger("connector.settings").info(
            "no state database at %s yet: this run creates it (connector home: %s)",
            path.absolute(),
            settings.home or "none, the path is absolute",
        )


def _mappings(directory: Path) -> Mappings:
    from connector.mapping import MappingError, load_mappings

    try:
        return load_mappings(directory)
    except MappingError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


# Logging options, accepted before the command and after it (see _with_logging_options).
LOG_LEVEL_ENV = "CPQ2STRIPE_LOG_LEVEL"
JSON_LOGS_ENV = "CPQ2STRIPE_JSON_LOGS"
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Log every record action (the same as --log-level DEBUG).")
]
Level = Annotated[
    LogLevel | None,
    typer.Option("--log-level", case_sensitive=False, envvar=LOG_LEVEL_ENV, help="The connector's log level"),
]
JsonLogs = Annotated[
    bool, typer.Option("--json-logs", envvar=JSON_LOGS_ENV, help="Log one JSON object per line.")
]


def _configure_logging(verbose: bool, log_level: LogLevel | None, json_logs: bool) -> None:
    from connector.logs import configure_logging

    level = log_level or (LogLevel.DEBUG if verbose else LogLevel.INFO)
    configure_logging(level=level.value, json_lines=json_logs)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cpq2stripe {importlib.metadata.version('cpq2stripe')}")
        raise typer.Exit()


@app.callback()
def _main(
    home: Home = None,
    verbose: Verbose = False,
    log_level: Level = None,
    json_logs: JsonLogs = False,
    _version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    _configure_logging(verbose, log_level, json_logs)  # each command reconfigures with its own options
    _invocation.home, _invocation.command = home, None


def _warn_unknown_variables() -> None:
    """Name each CPQ2STRIPE_ variable no setting reads, in the environment or the home's `.env` (a typo)."""
    from dotenv import dotenv_values

    from connector.home import ENV_FILE, HomeError, find_home
    from connector.settings import unknown_variables

    try:
        home = find_home(_home_option())
    except HomeError:
        home = None  # the command that loads settings reports it
    env_file = home / ENV_FILE if home is not None else None
    names = [*os.environ, *(dotenv_values(env_file) if env_file is not None and env_file.is_file() else ())]
    for warning in unknown_variables(names, also_known=(LOG_LEVEL_ENV, JSON_LOGS_ENV)):
        logging.getLogger("connector.settings").warning(warning)


def _with_logging_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` plus -v, --log-level and --json-logs, so they work after the command name too;
    it configures logging from both places, then warns about misspelt variables, once.

    Typer reads a command's options from its signature: the wrapper's signature is the command's
    plus these, and a value given here adds to the one given before the command.
    """
    signature = inspect.signature(command, eval_str=True)
    extra = [
        inspect.Parameter("log_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
        inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Verbose),
        inspect.Parameter("log_level", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Level),
        inspect.Parameter("json_logs", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonLogs),
        inspect.Parameter("home", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Home),
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.pop("log_ctx")
        before = ctx.find_root().params
        _invocation.home = kwargs.pop("home") or before.get("home")
        _invocation.command = ctx.info_name
        verbose, json_logs = kwargs.pop("verbose"), kwargs.pop("json_logs")
        log_level = kwargs.pop("log_level")
        _configure_logging(
            verbose or before.get("verbose", False),
            log_level or before.get("log_level"),
            json_logs or before.get("json_logs", False),
        )
        _warn_unknown_variables()
        return command(*args, **kwargs)

    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *extra]
    )
    return wrapper


def _check_objects(value: str) -> str:
    """Refuse an unknown name in --objects: a typo would otherwise sync nothing and exit 0."""
    from connector.sync.streams import KEYS

    for name in (n.strip() for n in value.split(",")):
        if name not in KEYS:
            close = difflib.get_close_matches(name, KEYS, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise typer.BadParameter(f"unknown object '{name}'; {hint}Choose from: {', '.join(KEYS)}")
    return value


Objects = Annotated[
    str, typer.Option(help="Comma-separated: accounts,products,orders,usage", callback=_check_objects)
]
Force = Annotated[
    bool,
    typer.Option("--force", help="Run even while a daemon (`cpq2stripe run`) leads here."),
]


def _refuse_beside_live_leader(settings: Settings, command: str, force: bool, dry_run: bool = False) -> None:
    """Exit 2 naming the live daemon and the fixes, unless --force (see connector.daemon.leader)."""
    from connector.daemon.leader import LeaderIsLive, refuse_beside_live_leader

    try:
        refuse_beside_live_leader(settings.database_url, command, force=force, dry_run=dry_run)
    except LeaderIsLive as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None


@app.command()
def sync(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; change nothing anywhere.")
    ] = False,
    objects: Objects = "accounts,products,orders,usage",
    force: Force = False,
) -> None:
    """One pass: poll Salesforce for changed records, apply them to Stripe, exit (`run` keeps going)."""
    from connector.sync.runner import run_sync_once

    settings = _settings()
    mappings = _mappings(settings.mappings_dir)
    _refuse_beside_live_leader(settings, "sync", force, dry_run)
    names = [o.strip() for o in objects.split(",")]
    code = run_sync_once(settings, mappings, dry_run=dry_run, objects=names, out=typer.echo)
    raise typer.Exit(code)


@app.command()
def run(
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve Prometheus counters on this port at /metrics (overrides the setting).",
        ),
    ] = None,
) -> None:
    """Run the sync daemon: poll, retry, follow events; one active instance; SIGTERM stops cleanly."""
    from connector.daemon import run_daemon

    settings = _settings()
    raise typer.Exit(run_daemon(settings, out=typer.echo, metrics_port=metrics_port))


@app.command()
def status(
    failed: Annotated[bool, typer.Option("--failed", help="Only what needs attention.")] = False,
    object_: Annotated[
        str | None, typer.Option("--object", help="Failures of accounts, orders, customer, subscription…")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Failures with this error code.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Failures since: 30m, 2h, 3d, 1w, or an ISO date or time.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Links, cursors, failures grouped by reason, the last run, and the daemon instances."""
    from connector.status import FailureFilter, print_status
    from connector.synclog import parse_since

    try:
        since_at = parse_since(since, datetime.now(UTC)) if since else None
    except ValueError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    settings = _settings()
    _require_state_database(settings)
    only = FailureFilter(object_, reason, since_at)
    print_status(settings, failed_only=failed, out=typer.echo, only=only, as_json=as_json)


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
    _require_state_database(settings)
    with StateStore.open(settings.database_url) as store:
        print_log(store, record=record, since=since_at, object_type=object_type, limit=limit, out=typer.echo)


@app.command()
def retry(
    record_id: Annotated[str | None, typer.Argument(help="Salesforce id of a failed record.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every failed record now.")] = False,
    force: Force = False,
) -> None:
    """Re-run failed records now instead of waiting for their backoff."""
    from connector.sync.runner import run_retry

    if not record_id and not all_:
        raise _fail("Give a Salesforce record id or --all.", EXIT_CONFIG)
    settings = _settings()
    mappings = _mappings(settings.mappings_dir)
    _refuse_beside_live_leader(settings, "retry", force)
    raise typer.Exit(run_retry(settings, mappings, record_id=record_id, out=typer.echo))


@app.command()
def reconcile(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report drift; change nothing.")] = False,
    force: Force = False,
) -> None:
    """Put mapped Stripe fields edited in Stripe back to the Salesforce values; report each drift."""
    from connector.sync.reconcile import run_reconcile

    settings = _settings()
    mappings = _mappings(settings.mappings_dir)
    _refuse_beside_live_leader(settings, "reconcile", force, dry_run)
    raise typer.Exit(run_reconcile(settings, mappings, dry_run=dry_run, out=typer.echo))


@app.command("billing-status")
def billing_status_command(
    replay: Annotated[
        bool,
        typer.Option("--replay", help="Apply every event Stripe still lists (30 days), oldest first."),
    ] = False,
    force: Force = False,
) -> None:
    """Write Stripe's billing status (subscription status, latest invoice, delinquency, balance) to
    the Orders and Accounts, from Stripe's events since the last pass."""
    from connector.sync.billing_events import run_billing_status

    settings = _settings()
    mappings = _mappings(settings.mappings_dir)
    _refuse_beside_live_leader(settings, "billing-status", force)
    raise typer.Exit(run_billing_status(settings, mappings, replay=replay, out=typer.echo))


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

    if directory is None:
        from connector.settings import SettingsError, find_mappings_dir

        try:
            directory = find_mappings_dir(_home_option())
        except SettingsError as exc:
            raise _fail(str(exc), EXIT_CONFIG) from None
    try:
        mappings = load_mappings(directory)
    except MappingError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    if against_org:
        from connector.mapping import check_against_describe, check_user_permissions
        from connector.mapping.checks import check_conditions_in_org
        from connector.mapping.schema import Problem
        from connector.salesforce.client import SalesforceClient
        from connector.sync.context import account_problems

        settings = _settings()
        client = SalesforceClient(settings)
        problems = check_against_describe(mappings, client.describe)
        routing_file = mappings.files.get("routing", str(directory / "routing.yaml"))
        problems += [Problem(routing_file, 0, 0, p) for p in account_problems(settings, mappings)]
        # each condition runs once for real; one already reported is not run again
        flagged = frozenset((p.file, p.line) for p in problems)
        problems += check_conditions_in_org(mappings, client.query_all, skip=flagged)
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
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most N records of each object in this run.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only records modified at or after this ISO 8601 instant.")
    ] = None,
    objects: Objects = "accounts,products,orders,usage",
    failures_csv: Annotated[
        Path, typer.Option("--failures-csv", help="Where to write the failed and refused records.")
    ] = Path("backfill-failures.csv"),
    bulk_threshold: Annotated[
        int, typer.Option(help="Read with a Bulk API 2.0 query job above this many records.")
    ] = 10_000,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="Concurrent Stripe requests (default: from rps).")
    ] = None,
    force: Force = False,
) -> None:
    """Sync everything once, as fast as Stripe's rate limit allows; resumable after an interruption."""
    from connector.backfill.command import BackfillOptions, parse_since, run_backfill

    try:
        since_at = parse_since(since) if since else None
    except ValueError as exc:
        raise _fail(f"--since: {exc}", EXIT_CONFIG) from None
    settings = _settings()
    mappings = _mappings(settings.mappings_dir)
    _refuse_beside_live_leader(settings, "backfill", force, dry_run)
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


@app.command()
def init(
    directory: Annotated[
        Path | None,
        typer.Argument(
            file_okay=False, help="The new home (default: --home, CPQ2STRIPE_HOME or the working directory)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite existing files (edited mappings are lost).")
    ] = False,
) -> None:
    """Make a connector home: editable copies of the default mappings, state/ and a commented .env.example."""
    from connector.home import HOME_ENV, init_home
    from connector.settings import env_example

    target = directory or _home_option() or Path(os.environ.get(HOME_ENV) or ".")
    result = init_home(target, env_example(), force=force)
    if not result.written:
        existing = "\n".join(f"  {path}" for path in result.existing)
        raise _fail(
            f"Not overwriting what is there:\n{existing}\n"
            "Fix: choose another directory, or add --force to replace them (edits to the mappings are lost).",
            EXIT_CONFIG,
        )
    home = target.expanduser().resolve()
    for path in result.written:
        typer.echo(f"wrote {path}")
    typer.echo(
        f"Connector home ready: {home}\n"
        "Next steps:\n"
        f"  1. cp {home}/.env.example {home}/.env; fill in the Salesforce and Stripe settings; "
        f"chmod 600 {home}/.env\n"
        f"  2. export {HOME_ENV}={home}   (or pass --home {home}, or run from {home})\n"
        f"  3. edit {home}/mappings/*.yaml to fit your org, then: cpq2stripe mappings check --against-org\n"
        "  4. cpq2stripe sync --dry-run; then cpq2stripe sync (one pass) or cpq2stripe run (the daemon)"
    )


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


def _require_state_database(settings: Settings) -> None:
    """A read-only command never creates the state database: a missing file means the wrong place."""
    from connector.state.urls import sqlite_file

    path = sqlite_file(settings.database_url)
    if path is not None and not path.exists():
        raise _fail(
            f"No state database at {path.absolute()}: nothing has run with it. CPQ2STRIPE_DATABASE_URL is "
            f"{settings.database_url}"
            + (
                f" (a relative path starts in the connector home, {settings.home}). "
                if settings.home
                else ". "
            )
            + "Fix: name the connector's directory with --home or CPQ2STRIPE_HOME (or run from it), "
            "or set CPQ2STRIPE_DATABASE_URL to its database.",
            EXIT_CONFIG,
        )


for _typer in (app, mappings_app):
    for _info in _typer.registered_commands:
        if _info.callback is not None and _info.callback is not sandbox:
            _info.callback = _with_logging_options(_info.callback)


def main() -> None:
    from connector.errors import FatalError

    try:
        app()
    except FatalError as exc:  # e.g. the state database cannot be opened: a message, not a traceback
        typer.echo(f"Stopped: {exc}", err=True)
        sys.exit(EXIT_FATAL)
    except KeyboardInterrupt:  # before a long command took Ctrl-C over (connector.interrupt)
        typer.echo("Interrupted (Ctrl-C).", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
