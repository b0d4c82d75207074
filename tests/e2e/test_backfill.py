"""The backfill against the sandbox: resume after a kill, dry run, the rps budget, the failures CSV,
the Bulk API path. No timed assertions: the budget is checked on the fake Stripe's request log."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from connector.backfill.command import BackfillOptions, run_backfill
from connector.mapping import load_mappings
from tests.e2e.conftest import MAPPINGS, REPO, settings_for

SELECTED = "SELECT Id, Stripe_Customer_ID__c FROM Account WHERE Billing_Entity__c = true"


def _backfill(settings: Any, tmp_path: Path, **options: Any) -> tuple[int, list[str], Any]:
    lines: list[str] = []
    reports: list[Any] = []
    opts = BackfillOptions(
        objects=options.pop("objects", ["accounts"]),
        failures_csv=tmp_path / "failures.csv",
        progress_stream=io.StringIO(),
        progress_tty=False,
        **options,
    )
    code = run_backfill(settings, load_mappings(MAPPINGS), opts, out=lines.append, on_report=reports.append)
    return code, lines, reports[0]


def _customers_by_account(sandbox: Any) -> Counter[str]:
    return Counter(
        c["metadata"].get("salesforce_account_id") for c in sandbox.stripe_admin.objects("customer")
    )


def _bulk_calls(sandbox: Any) -> int:
    return sum(n for k, n in sandbox.sf_admin.counters()["counts"].items() if "/jobs/query" in k)


def test_backfill_syncs_every_selected_account_through_bulk_and_lists_failures(sandbox, tmp_path):
    sandbox.sf_admin.seed(accounts=300, orders=0, seed=3)
    settings = settings_for(sandbox, f"sqlite:///{tmp_path / 'state.db'}")
    sandbox.sf_admin.reset_counters()
    code, lines, report = _backfill(settings, tmp_path, bulk_threshold=50, max_records=40)
    totals = report.objects[0]
    counts = sandbox.sf_admin.counters()["counts"]
    selected = sandbox.sf_admin.query(SELECTED)
    assert len(selected) > 200
    # The first REST page (200 records: the smallest page Salesforce serves) counts the records
    # and is applied; a Bulk job reads the rest in result sets of 40. No COUNT() call.
    assert totals.source == "REST query, then Bulk API 2.0"
    assert totals.selected == len(selected)
    assert counts["GET /services/data/{version}/query"] == 1
    assert "GET /services/data/{version}/query/{locator}" not in counts
    assert counts["POST /services/data/{version}/jobs/query"] == 1
    assert counts["GET /services/data/{version}/jobs/query/{job_id}/results"] == -(
        -(len(selected) - 200) // 40
    )
    customers = _customers_by_account(sandbox)
    assert max(customers.values()) == 1
    failed = {f.record_id for f in totals.failures}
    assert failed, "the seeded org has bad rows"
    assert code == 1
    for row in selected:
        if row["Id"] in failed:
            assert row["Id"] not in customers
        else:
            assert customers[row["Id"]] == 1
            assert row["Stripe_Customer_ID__c"]
    rows = list(csv.DictReader((tmp_path / "failures.csv").open(encoding="utf-8")))
    assert {r["record_id"] for r in rows} == failed
    assert all(r["object"] == "Account" and r["error_code"] and r["message"] for r in rows)
    assert any("failed" in line for line in lines)


def test_dry_run_changes_nothing(sandbox, tmp_path):
    sandbox.sf_admin.seed(accounts=40, orders=0, seed=4)
    settings = settings_for(sandbox, f"sqlite:///{tmp_path / 'state.db'}")
    changes_before = len(sandbox.sf_admin.changes())
    _code, _lines, report = _backfill(settings, tmp_path, dry_run=True)
    assert report.objects[0].planned["create"] > 0
    assert sandbox.stripe_admin.objects("customer") == []
    assert [r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"] == []
    assert len(sandbox.sf_admin.changes()) == changes_before
    assert not (tmp_path / "failures.csv").exists()
    from connector.state.store import StateStore

    with StateStore.open(settings.database_url) as store:
        assert store.cursors.all() == []
        assert store.links.counts() == {}


def test_rps_budget_is_never_exceeded(tmp_path):
    from connector.bench.__main__ import start

    rps = 10
    # The fakes in a process of their own (as in production, Stripe is elsewhere): sharing this
    # one's GIL with the test would delay their request stamps and bunch them up.
    sandbox = start(tmp_path / "sandbox")
    try:
        sandbox.stripe("POST", "/_sandbox/config", {"rps": rps})
        sandbox.sf("POST", "/_sandbox/seed", {"accounts": 70, "orders": 0, "seed": 5})
        env = {
            **sandbox.env,
            "CPQ2STRIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
            "CPQ2STRIPE_MAPPINGS_DIR": str(MAPPINGS),
            "CPQ2STRIPE_STRIPE_RPS": str(rps),
        }
        done = _run_cli(env, tmp_path, extra=["--workers", "16"])
        assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
        requests = sandbox.stripe("GET", "/_sandbox/requests")
    finally:
        sandbox.stop()
    log = sorted(r["time"] for r in requests)
    assert len(log) > 3 * rps
    assert [r for r in requests if r["status"] == 429] == []
    # Every rolling one-second window, starting at each request, holds at most `rps` requests, give
    # or take two: the stamps are the fake's arrival times, and on a loaded machine a request sent on
    # budget can arrive bunched with the next. Without the budget, 16 workers send several times more.
    worst = max(sum(1 for t in log[i:] if t < start + 1.0) for i, start in enumerate(log))
    assert worst <= rps + 2


def _run_cli(
    env: dict[str, str], tmp_path: Path, crash_at: str | None = None, extra: list[str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, **env}
    env.pop("CPQ2STRIPE_TEST_CRASH_AT", None)
    if crash_at:
        env["CPQ2STRIPE_TEST_CRASH_AT"] = crash_at
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "connector",
            "backfill",
            "--objects",
            "accounts",
            "--failures-csv",
            str(tmp_path / "failures.csv"),
            "--bulk-threshold",
            "30",
            *(extra or []),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_resume_after_kill_creates_no_duplicates(sandbox, tmp_path):
    sandbox.sf_admin.seed(accounts=90, orders=0, seed=6)
    env = {
        **sandbox.env,
        "CPQ2STRIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "CPQ2STRIPE_MAPPINGS_DIR": str(MAPPINGS),
    }
    # 1. Killed right after its first Customer create: intent recorded, Customer made, no link.
    first = _run_cli(env, tmp_path, crash_at="customer.after_create")
    assert first.returncode == 86, first.stderr[-2000:]
    assert len(sandbox.stripe_admin.objects("customer")) >= 1
    # 2. SIGKILLed mid-run, once some Customers exist.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connector",
            "backfill",
            "--objects",
            "accounts",
            "--failures-csv",
            str(tmp_path / "failures.csv"),
            "--bulk-threshold",
            "30",
        ],
        env={**os.environ, **env},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while proc.poll() is None and len(sandbox.stripe_admin.objects("customer")) < 30:
            pass
        proc.kill()
    finally:
        proc.wait(timeout=30)
    # 3. Run again: it continues and finishes.
    third = _run_cli(env, tmp_path)
    assert third.returncode in (0, 1), third.stdout[-2000:] + third.stderr[-2000:]
    customers = _customers_by_account(sandbox)
    assert max(customers.values()) == 1, "a Salesforce Account got two Customers"
    failed = {r["record_id"] for r in csv.DictReader((tmp_path / "failures.csv").open(encoding="utf-8"))}
    for row in sandbox.sf_admin.query(SELECTED):
        if row["Id"] not in failed:
            assert customers[row["Id"]] == 1
            assert row["Stripe_Customer_ID__c"] == next(
                c["id"]
                for c in sandbox.stripe_admin.objects("customer")
                if c["metadata"].get("salesforce_account_id") == row["Id"]
            )
    # Creates that reached Stripe: one per Customer (replays of an intent's key are not new creates).
    creates = [
        r
        for r in sandbox.stripe_admin.requests()
        if r["method"] == "POST" and r["path"] == "/v1/customers" and r["status"] == 200
    ]
    assert len({r["idempotency_key"] for r in creates}) == len(customers)


@pytest.mark.parametrize("objects", [["accounts", "orders"]])
def test_backfill_runs_orders_after_accounts(sandbox, tmp_path, objects):
    sandbox.sf_admin.seed(accounts=30, orders=12, seed=8)
    settings = settings_for(sandbox, f"sqlite:///{tmp_path / 'state.db'}")
    _code, _lines, report = _backfill(settings, tmp_path, objects=objects)
    assert [t.sobject for t in report.objects] == ["Account", "Order"]
    orders = report.objects[1]
    assert orders.counts["created"] > 0
    assert (
        len(sandbox.stripe_admin.objects("subscription"))
        + len(sandbox.stripe_admin.objects("subscription_schedule"))
        == orders.counts["created"]
    )
    # A second run changes nothing in Stripe.
    posts = len([r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"])
    _backfill(settings, tmp_path, objects=objects)
    assert len([r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"]) == posts


def test_bulk_reads_without_order_by_so_a_large_org_does_not_time_out_and_a_rerun_stays_exact(
    sandbox, tmp_path
):
    # An org where a sorted Bulk job over Account times out, and chunks come last range first.
    sandbox.sf_admin.profile(bulk_sorted_limit_rows=100, bulk_chunk_rows=70)
    sandbox.sf_admin.seed(accounts=300, orders=0, seed=3)
    settings = settings_for(sandbox, f"sqlite:///{tmp_path / 'state.db'}")

    _, _, report = _backfill(settings, tmp_path, bulk_threshold=50, max_records=40)

    totals = report.objects[0]
    assert totals.fatal is None, totals.fatal
    assert totals.source == "REST query, then Bulk API 2.0"
    customers = _customers_by_account(sandbox)
    failed = {f.record_id for f in totals.failures}
    selected = sandbox.sf_admin.query(SELECTED)
    assert {r["Id"] for r in selected} - failed == set(customers)
    assert max(customers.values()) == 1
    # The Bulk rows came out of Id order: the resume cursor stayed at the end of the REST page.
    creates = len(sandbox.stripe_admin.objects("customer"))
    _, _, again = _backfill(settings, tmp_path, bulk_threshold=50, max_records=40)
    assert again.objects[0].counts.get("created", 0) == 0
    assert len(sandbox.stripe_admin.objects("customer")) == creates


def test_contract_changes_that_waited_for_the_batch_in_flight_are_applied_before_the_backfill_ends(
    sandbox, tmp_path
):
    """Small batches, two in flight: an Amendment often reaches Stripe's lane while its contract's
    first Order is still being billed in the other. It waits, and is applied once every batch is in:
    what still waits at the end waits only for an Order that is itself refused."""
    sandbox.sf_admin.seed(accounts=0, orders=0, seed=5, contracts=24)
    settings = settings_for(sandbox, f"sqlite:///{tmp_path / 'state.db'}")
    _backfill(settings, tmp_path, objects=["accounts"])
    sandbox.stripe_admin.config(latency_ms=150)  # a first Order's creates outlast the next batch's planning
    _code, _lines, report = _backfill(settings, tmp_path, objects=["orders"], batch_size=4)
    sandbox.stripe_admin.config(latency_ms=0)
    [orders] = report.objects
    assert orders.counts["updated"] >= 10, "amendments, renewals and terminations were applied"
    with open(tmp_path / "failures.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["object"] == "Order"]
    not_billed = {r["name"] for r in rows}
    for row in rows:
        if row["error_code"].startswith("waits_for"):
            named = re.search(
                r"waits for (?:the contract's first Order|Order\(s\)) ([\w, ]+?)(?:,| of)", row["message"]
            )
            assert named, row["message"]
            blockers = {n.strip() for n in named.group(1).split(",")}
            assert blockers <= not_billed, (row["name"], blockers, row["message"])
    assert orders.counts["updated"] + orders.counts["created"] + len(rows) == sum(orders.counts.values())
    # A second run applies nothing new and creates nothing.
    posts = len([r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"])
    _backfill(settings, tmp_path, objects=["accounts", "orders"], batch_size=4)
    assert len([r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"]) == posts
