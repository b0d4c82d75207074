"""Long commands as an operator runs them: progress on stderr while they work, and Ctrl-C (here
`sync`; backfill, reconcile and retry --all in test_ctrl_c.py, slow tier).

SIGINT goes to a real `python -m connector sync` once the fake Stripe holds some of its
Customers. The command must finish the records in flight, report exactly what Stripe got, record
the run as interrupted with those counts, exit 130, and leave a state from which the same command
finishes the rest without a duplicate. Stripe is slowed down (its rps budget), never the clock.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from connector.mapping import load_mappings
from connector.progress import RunProgress
from connector.sync.runner import run_sync_once
from tests.e2e.conftest import MAPPINGS, REPO, cli_env, run_cli, settings_for

SELECTED = "SELECT Id, Stripe_Customer_ID__c FROM Account WHERE Billing_Entity__c = true"
SUMMARY = re.compile(r"^Accounts → Customers: (\d+) created", re.M)
BACKFILL_COUNTS = re.compile(r"^Accounts → Customers.*\n  (\d+) created", re.M)
LEFT = re.compile(
    r"^Interrupted: (\d+) records not processed.*run the same command again to continue\.$", re.M
)


def _customers(sandbox: Any) -> Counter[str]:
    return Counter(
        c["metadata"].get("salesforce_account_id") for c in sandbox.stripe_admin.objects("customer")
    )


def _interrupt_after(sandbox: Any, proc: subprocess.Popen[str], customers: int) -> None:
    """SIGINT once the fake Stripe holds `customers` Customers (the command still running)."""
    deadline = time.monotonic() + 60
    while sum(_customers(sandbox).values()) < customers:
        assert proc.poll() is None, "the command ended before it could be interrupted"
        assert time.monotonic() < deadline, "no Customers created"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)


def _spawn(sandbox: Any, database_url: str, tmp_path: Path, *args: str, rps: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "connector", *args],
        env=cli_env(sandbox, database_url, CPQ2STRIPE_STRIPE_RPS=str(rps)),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _status(sandbox: Any, database_url: str) -> dict[str, Any]:
    done = run_cli(sandbox, database_url, "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _assert_no_duplicates_and_all_written_back(sandbox: Any) -> None:
    customers = _customers(sandbox)
    assert max(customers.values()) == 1, [a for a, n in customers.items() if n > 1]
    by_account = {
        c["metadata"]["salesforce_account_id"]: c["id"] for c in sandbox.stripe_admin.objects("customer")
    }
    for row in sandbox.sf_admin.query(SELECTED):
        if row["Id"] in by_account:  # each Customer made is written back, interrupted or not
            assert row["Stripe_Customer_ID__c"] == by_account[row["Id"]], row["Id"]


def test_ctrl_c_during_sync_saves_and_reports_what_was_done_and_the_rerun_finishes(sandbox, tmp_path):
    sandbox.sf_admin.seed(accounts=300, orders=0, seed=5)
    db = f"sqlite:///{tmp_path / 'state.db'}"
    selected = {r["Id"] for r in sandbox.sf_admin.query(SELECTED)}

    proc = _spawn(sandbox, db, tmp_path, "sync", "--objects", "accounts", rps=25)
    _interrupt_after(sandbox, proc, 20)
    stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    created = int(SUMMARY.search(stdout).group(1))  # type: ignore[union-attr]
    stripe_now = _customers(sandbox)
    assert created == sum(stripe_now.values()) > 0
    left = int(LEFT.search(stdout).group(1))  # type: ignore[union-attr]
    assert 0 < left < len(selected)
    assert "Stopping after the records in flight" in stderr
    _assert_no_duplicates_and_all_written_back(sandbox)
    run = _status(sandbox, db)["last_runs"]["sync"]
    assert run["status"] == "interrupted"
    assert run["counts"]["customer created"] == created

    rerun = run_cli(sandbox, db, "sync", "--objects", "accounts")
    assert rerun.returncode in (0, 1), rerun.stdout + rerun.stderr
    assert "Interrupted" not in rerun.stdout
    _assert_no_duplicates_and_all_written_back(sandbox)
    customers = _customers(sandbox)
    again = int(SUMMARY.search(rerun.stdout).group(1))  # type: ignore[union-attr]
    assert sum(customers.values()) == created + again
    failed = {line.split()[1] for line in rerun.stdout.splitlines() if line.startswith("  FAILED")}
    assert set(customers) == selected - failed  # every selected Account but the bad rows
    assert _status(sandbox, db)["last_runs"]["sync"]["status"] == "succeeded"


def test_sync_prints_progress_lines_on_stderr_while_it_works(sandbox, tmp_path):
    sandbox.sf_admin.seed(accounts=120, orders=0, seed=7)
    settings = settings_for(sandbox, f"sqlite:///{tmp_path / 'state.db'}", stripe_rps=40)
    out = io.StringIO()
    lines: list[str] = []
    progress = RunProgress(out, tty=False, line_interval=0.5)

    code = run_sync_once(
        settings,
        load_mappings(MAPPINGS),
        dry_run=False,
        objects=["accounts"],
        out=lines.append,
        progress=progress,
    )

    assert code in (0, 1)
    shown = [line for line in out.getvalue().splitlines() if line.startswith("Accounts → Customers: ")]
    during, final = shown[:-1], shown[-1]
    assert len(during) >= 2, out.getvalue()  # ~3 s at 40 requests/s, a line every 0.5 s
    counts = [int(re.search(r": (\d+)/", line).group(1)) for line in shown]  # type: ignore[union-attr]
    assert counts == sorted(counts) and 0 < counts[0] < counts[-1]
    assert all(re.search(r"\d+\.\d rec/s, elapsed \d\d:\d\d, ETA ", line) for line in during)
    total = len(sandbox.sf_admin.query(SELECTED))
    assert final.startswith(f"Accounts → Customers: {total}/{total} (100%), ") and final.endswith(", done")
    assert "\x1b" not in out.getvalue()
    assert not any("rec/s" in line for line in lines)  # the summary (stdout) has no progress


def test_the_cli_keeps_progress_off_stdout(sandbox, tmp_path):
    sandbox.sf_admin.seed(accounts=30, orders=0, seed=8)
    db = f"sqlite:///{tmp_path / 'state.db'}"
    done = run_cli(sandbox, db, "sync", "--objects", "accounts")
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert "rec/s" not in done.stdout
    assert re.search(
        r"^Accounts → Customers: \d+/\d+ \(100%\), [\d.]+ rec/s, elapsed .*, done$", done.stderr, re.M
    )
    assert "\x1b" not in done.stderr


def test_a_backfill_dry_run_that_cannot_reach_salesforce_says_it_stopped_and_why(sandbox, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = cli_env(sandbox, f"sqlite:///{tmp_path / 'state.db'}")
    env["CPQ2STRIPE_SALESFORCE_LOGIN_URL"] = f"https://127.0.0.1:{port}"
    dry = subprocess.run(
        [sys.executable, "-m", "connector", "backfill", "--dry-run"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 3, dry.stdout + dry.stderr
    assert "nothing to do" not in dry.stdout
    assert "STOPPED: network error: ConnectionError reaching https://127.0.0.1:" in dry.stdout
    assert "connection refused" in dry.stdout
