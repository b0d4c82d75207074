"""Ctrl-C during `backfill`, `reconcile` and `retry --all` (slow tier: each runs a command long
enough to be interrupted, then again to finish). The helpers and `sync`'s case are in
test_progress_and_ctrl_c.py."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from connector.mapping import load_mappings
from connector.sync.runner import open_context, run_pass
from tests.e2e.conftest import MAPPINGS, run_cli, settings_for
from tests.e2e.test_progress_and_ctrl_c import (
    BACKFILL_COUNTS,
    LEFT,
    SELECTED,
    _assert_no_duplicates_and_all_written_back,
    _customers,
    _interrupt_after,
    _spawn,
    _status,
)


def _failed_in(csv: Path) -> set[str]:
    return {line.split(",")[0] for line in csv.read_text(encoding="utf-8").splitlines()[1:]}


def test_ctrl_c_during_backfill_keeps_the_cursor_before_what_was_not_done(sandbox, tmp_path):
    # Batches of 400, two in flight: which one a stop cuts short depends on which was queued
    # first; either way the resume cursor must not pass a record that was not done.
    sandbox.sf_admin.seed(accounts=1000, orders=0, seed=6)
    db = f"sqlite:///{tmp_path / 'state.db'}"
    selected = {r["Id"] for r in sandbox.sf_admin.query(SELECTED)}
    assert len(selected) > 600
    first_csv, second_csv = tmp_path / "first.csv", tmp_path / "second.csv"

    args = ("backfill", "--objects", "accounts", "--failures-csv")
    proc = _spawn(sandbox, db, tmp_path, *args, str(first_csv), rps=80)
    _interrupt_after(sandbox, proc, 450)
    stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 130, stdout + stderr
    created = int(BACKFILL_COUNTS.search(stdout).group(1))  # type: ignore[union-attr]
    assert created == sum(_customers(sandbox).values())
    left = int(LEFT.search(stdout).group(1))  # type: ignore[union-attr]
    assert 0 < left < len(selected)
    _assert_no_duplicates_and_all_written_back(sandbox)
    run = _status(sandbox, db)["last_runs"]["backfill"]
    assert run["status"] == "interrupted"
    assert run["counts"]["customer created"] == created
    done_first = set(_customers(sandbox)) | _failed_in(first_csv)

    rerun = run_cli(sandbox, db, *args, str(second_csv))
    assert rerun.returncode in (0, 1), rerun.stdout + rerun.stderr
    resumed = re.search(r"; resumed after (\w+)", rerun.stdout)
    if resumed:  # every record up to the cursor was done by the interrupted run
        assert {i for i in selected if i <= resumed.group(1)} <= done_first
    _assert_no_duplicates_and_all_written_back(sandbox)
    # Every selected Account but the bad rows has its one Customer: none was skipped.
    assert selected <= set(_customers(sandbox)) | _failed_in(second_csv) | _failed_in(first_csv)
    assert _status(sandbox, db)["last_runs"]["backfill"]["status"] == "succeeded"


def test_ctrl_c_during_reconcile_reports_what_was_put_back_and_the_rerun_does_the_rest(sandbox, tmp_path):
    import stripe

    sandbox.sf_admin.seed(accounts=150, orders=0, seed=9)
    db = f"sqlite:///{tmp_path / 'state.db'}"
    assert run_cli(sandbox, db, "sync", "--objects", "accounts").returncode in (0, 1)
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": sandbox.stripe_url})
    names = {c["id"]: c["name"] for c in sandbox.stripe_admin.objects("customer")}
    for cus in names:
        client.v1.customers.update(cus, params={"name": f"DRIFT {cus}"})

    def put_back() -> int:
        return sum(1 for c in sandbox.stripe_admin.objects("customer") if c["name"] == names[c["id"]])

    proc = _spawn(sandbox, db, tmp_path, "reconcile", rps=20)
    deadline = time.monotonic() + 60
    while put_back() < 10:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 130, stdout + stderr
    fixed = int(re.search(r"(\d+) put back to the Salesforce values", stdout).group(1))  # type: ignore[union-attr]
    assert fixed == put_back() < len(names)
    left = int(LEFT.search(stdout).group(1))  # type: ignore[union-attr]
    assert left == len(names) - fixed
    run = _status(sandbox, db)["last_runs"]["reconcile"]
    assert run["status"] == "interrupted" and run["counts"]["updated"] == fixed

    rerun = run_cli(sandbox, db, "reconcile")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{len(names) - fixed} put back to the Salesforce values" in rerun.stdout
    assert put_back() == len(names)


def test_ctrl_c_during_retry_all_reports_what_was_retried_and_the_rerun_does_the_rest(sandbox, tmp_path):
    sandbox.sf_admin.seed(accounts=150, orders=0, seed=10)
    db = f"sqlite:///{tmp_path / 'state.db'}"
    settings = settings_for(sandbox, db, stripe_max_network_retries=0)
    with open_context(settings, load_mappings(MAPPINGS)) as ctx:
        assert ctx.stripe_account  # looked up before the outage
        sandbox.stripe_admin.config(error_rate=1.0, error_kinds=["500"])  # then Stripe fails every call
        try:
            report = run_pass(ctx, dry_run=False, objects=["accounts"])[0]
        finally:
            sandbox.stripe_admin.config(error_rate=0)
    assert report.counts()["failed"] > 100 and sum(_customers(sandbox).values()) == 0
    failed = len(_status(sandbox, db)["failures"])
    assert failed > 100

    proc = _spawn(sandbox, db, tmp_path, "retry", "--all", rps=20)
    _interrupt_after(sandbox, proc, 10)
    stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 130, stdout + stderr
    created = int(re.search(r"^Retry: (\d+) created", stdout, re.M).group(1))  # type: ignore[union-attr]
    assert created == sum(_customers(sandbox).values()) > 0
    left = int(LEFT.search(stdout).group(1))  # type: ignore[union-attr]
    assert 0 < left < failed
    _assert_no_duplicates_and_all_written_back(sandbox)
    status = _status(sandbox, db)
    assert status["last_runs"]["retry"]["status"] == "interrupted"
    assert status["last_runs"]["retry"]["counts"]["customer created"] == created

    rerun = run_cli(sandbox, db, "retry", "--all")
    assert rerun.returncode in (0, 1), rerun.stdout + rerun.stderr
    _assert_no_duplicates_and_all_written_back(sandbox)
    assert sum(_customers(sandbox).values()) == created + int(
        re.search(r"^Retry: (\d+) created", rerun.stdout, re.M).group(1)  # type: ignore[union-attr]
    )
    assert len(_status(sandbox, db)["failures"]) == failed - sum(_customers(sandbox).values())
