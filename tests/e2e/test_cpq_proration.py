"""`amendment_proration: cpq_amounts` end to end: an Amendment reaches Stripe without proration,
and CPQ's own amount for the time before Stripe bills the new quantity is one invoice item, made
once. A test clock shows what Stripe bills month by month."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import stripe

from connector.faults import ENV as CRASH_ENV
from connector.faults import EXIT_CODE as CRASH_EXIT
from connector.mapping import Mappings, load_mappings
from connector.sandbox.salesforce.contracts import (
    ContractHistory,
    ContractOrder,
    Line,
    amend,
    create_contract,
)
from connector.sync.order_rules import add_months, midnight_utc
from tests.e2e.conftest import REPO, cli_env
from tests.e2e.test_cli import cli, sandbox_env
from tests.e2e.test_contract_lifecycle import TODAY, advance, billed_by_month, clocked_account, stripe_client

MAPPINGS = REPO / "mappings"


def cpq_mappings_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "cpq-mappings"
    folder.mkdir(exist_ok=True)
    for name in ("customer.yaml", "subscription.yaml"):
        shutil.copy(MAPPINGS / name, folder / name)
    path = folder / "subscription.yaml"
    text = path.read_text(encoding="utf-8")
    assert "\namendment_proration: create_prorations\n" in text
    path.write_text(
        text.replace("\namendment_proration: create_prorations\n", "\namendment_proration: cpq_amounts\n")
    )
    return folder


def cpq_mappings(tmp_path: Path) -> Mappings:
    return load_mappings(cpq_mappings_dir(tmp_path))


def cpq_items(sandbox: Any) -> list[dict[str, Any]]:
    return [
        i
        for i in sandbox.stripe_admin.objects("invoiceitem")
        if i["metadata"].get("cpq2stripe_proration") == "cpq_amounts"
    ]


def expected_stub(sandbox: Any, order: ContractOrder, contract: ContractHistory, billed_from: int) -> int:
    """CPQ's Net Total less what Stripe bills from `billed_from` (boundary index) to the end, at
    CPQ's own monthly rate: the figures read back from the amendment line's quote line."""
    [line] = order.lines
    item = sandbox.sf_admin.get_record("OrderItem", line.id)
    quote = sandbox.sf_admin.get_record("SBQQ__QuoteLine__c", item["SBQQ__QuoteLine__c"])
    total = Decimal(str(quote["SBQQ__NetTotal__c"]))
    term = Decimal(str(quote["SBQQ__ProrateMultiplier__c"])) * Decimal(
        str(quote["SBQQ__DefaultSubscriptionTerm__c"])
    )
    months_after = (contract.term_months or 0) - billed_from
    return int((total * (term - months_after) / term * 100).quantize(Decimal(1)))


def no_prorations(client: stripe.StripeClient, customer: str) -> bool:
    invoices = client.v1.invoices.list(params={"customer": customer, "limit": 100}).data
    return not any(line.get("proration") for inv in invoices for line in inv.to_dict()["lines"]["data"])


def test_an_amendment_mid_period_bills_cpqs_amount_for_the_stub_once_then_the_new_quantity(
    sandbox, run_sync, tmp_path
) -> None:
    """10 seats at 10.00 a month for a year; 5 more from the middle of month four. Stripe bills 10
    seats through month four and 15 from month five; the stub of month four is one item at CPQ's
    amount, on month five's invoice. The dry run shows it first."""
    client = stripe_client(sandbox)
    start = TODAY
    account, clock = clocked_account(sandbox, client, start)
    mappings = cpq_mappings(tmp_path)
    contract = create_contract(sandbox.org, account, start, [Line("Seats", 10, 10.0)], term_months=12)
    run_sync(("accounts", "orders"), mappings=mappings)
    for month in range(1, 4):
        advance(client, clock, add_months(start, month))
    advance(client, clock, add_months(start, 3) + timedelta(days=2))
    dated = add_months(start, 3) + timedelta(days=12)
    more = amend(sandbox.org, contract, dated, {"Seats": 5})
    stub = expected_stub(sandbox, more, contract, 4)
    assert 0 < stub < 5000

    preview = run_sync(("orders",), dry_run=True, mappings=mappings).outcome(more.id).message
    shown = f"{Decimal(stub) / 100:.2f} USD (Seats +5 from {dated} to {add_months(start, 4)})"
    assert f"CPQ's prorated amounts, one-time items (about): {shown}" in preview, preview
    assert cpq_items(sandbox) == []

    outcome = run_sync(("orders",), mappings=mappings).outcome(more.id)
    assert outcome.status == "updated", outcome.message
    [item] = cpq_items(sandbox)
    assert item["amount"] == stub
    assert item["period"] == {"start": midnight_utc(dated), "end": midnight_utc(add_months(start, 4))}
    assert "CPQ's prorated amount" in item["description"]
    [schedule] = sandbox.stripe_admin.objects("subscription_schedule")
    assert {p["proration_behavior"] for p in schedule["phases"]} == {"none"}

    for month in range(4, 13):
        advance(client, clock, add_months(start, month))
    [sub] = sandbox.stripe_admin.objects("subscription")
    billed = billed_by_month(client, sub["customer"], start, 12)
    assert billed == [10000] * 3 + [10000 + stub] + [15000] * 8
    assert no_prorations(client, sub["customer"])
    run_sync(("orders",), mappings=mappings)  # again: nothing more
    assert len(cpq_items(sandbox)) == 1


def test_an_amendment_dated_before_it_reaches_stripe_bills_cpqs_amount_from_its_date(
    sandbox, run_sync, tmp_path
) -> None:
    """Dated five days into month two, synced on day ten: Stripe bills 15 seats from month three,
    and CPQ's amount for the five days and the rest of month two is one item (no catch-up from
    Stripe's unit amounts on top)."""
    client = stripe_client(sandbox)
    start = TODAY
    account, clock = clocked_account(sandbox, client, start)
    mappings = cpq_mappings(tmp_path)
    contract = create_contract(sandbox.org, account, start, [Line("Seats", 10, 10.0)], term_months=12)
    run_sync(("accounts", "orders"), mappings=mappings)
    dated = add_months(start, 1) + timedelta(days=5)
    advance(client, clock, dated + timedelta(days=5))
    late = amend(sandbox.org, contract, dated, {"Seats": 5})
    stub = expected_stub(sandbox, late, contract, 2)

    outcome = run_sync(("orders",), mappings=mappings).outcome(late.id)
    assert outcome.status == "updated", outcome.message
    assert [i["amount"] for i in sandbox.stripe_admin.objects("invoiceitem")] == [stub]
    for month in range(2, 12):
        advance(client, clock, add_months(start, month))
    [sub] = sandbox.stripe_admin.objects("subscription")
    billed = billed_by_month(client, sub["customer"], start, 12)
    assert billed == [10000, 10000 + stub] + [15000] * 10
    assert no_prorations(client, sub["customer"])


def test_missing_cpq_figures_refuse_the_amendment_naming_the_line_and_field_and_write_nothing(
    sandbox, run_sync, tmp_path
) -> None:
    mappings = cpq_mappings(tmp_path)
    account = sandbox.sf_admin.create_record(
        "Account", {"Name": "Hooli", "Billing_Email__c": "ap@hooli.example", "Billing_Entity__c": True}
    )
    contract = create_contract(sandbox.org, account, TODAY, [Line("Seats", 10, 10.0)], term_months=12)
    run_sync(("accounts", "orders"), mappings=mappings)
    more = amend(sandbox.org, contract, add_months(TODAY, 2) + timedelta(days=3), {"Seats": 5})
    [line] = more.lines
    quote = sandbox.sf_admin.get_record("OrderItem", line.id)["SBQQ__QuoteLine__c"]
    sandbox.org.update("SBQQ__QuoteLine__c", quote, {"SBQQ__NetTotal__c": None})
    posts = len([r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"])

    outcome = run_sync(("orders",), mappings=mappings).outcome(more.id)

    assert (outcome.status, outcome.code) == ("refused", "cpq_amount_missing")
    assert f"OrderItem {line.id}" in outcome.message
    assert "SBQQ__QuoteLine__r.SBQQ__NetTotal__c is empty" in outcome.message
    assert len([r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"]) == posts
    order = sandbox.sf_admin.get_record("Order", more.id)
    assert "SBQQ__NetTotal__c" in order["Stripe_Sync_Message__c"]
    # the default (Stripe prorates) does not read CPQ's figures: the same Amendment applies
    assert run_sync(("orders",)).outcome(more.id).status == "updated"


def test_killed_after_the_cpq_item_the_rerun_makes_no_second_item(sandbox, store_url, tmp_path) -> None:
    client = stripe_client(sandbox)
    start = TODAY
    account, clock = clocked_account(sandbox, client, start)
    folder = cpq_mappings_dir(tmp_path)
    contract = create_contract(sandbox.org, account, start, [Line("Seats", 10, 10.0)], term_months=12)

    def sync(crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
        env = cli_env(sandbox, store_url, CPQ2STRIPE_MAPPINGS_DIR=str(folder))
        if crash_at:
            env[CRASH_ENV] = crash_at
        return subprocess.run(
            [sys.executable, "-m", "connector", "sync"], env=env, cwd=REPO, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip

    assert sync().returncode == 0
    dated = add_months(start, 1) + timedelta(days=9)
    more = amend(sandbox.org, contract, dated, {"Seats": 5})
    crashed = sync("contract.after_catch_up")
    assert crashed.returncode == CRASH_EXIT, crashed.stdout + crashed.stderr
    assert len(cpq_items(sandbox)) == 1
    finished = sync()
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert sync().returncode == 0

    [item] = cpq_items(sandbox)
    assert item["amount"] == expected_stub(sandbox, more, contract, 2)
    [schedule] = sandbox.stripe_admin.objects("subscription_schedule")
    assert [p["items"][0]["quantity"] for p in schedule["phases"]] == [10, 15]
    assert sandbox.sf_admin.get_record("Order", more.id)["Stripe_Sync_Status__c"] == "Synced"
    for month in range(1, 4):
        advance(client, clock, add_months(start, month))
    billed = billed_by_month(client, schedule["customer"], start, 4)
    assert billed == [10000, 10000 + item["amount"], 15000, 15000]


def test_mappings_check_names_a_cpq_figure_the_org_does_not_have(sandbox, tmp_path) -> None:
    """cpq_amounts reads CPQ's figures on every Amendment line: `mappings check --against-org`
    says before the first run which one the org lacks (an org without CPQ's quote line fields, or
    a typo), and only in that mode."""
    folder = cpq_mappings_dir(tmp_path)
    env = sandbox_env(sandbox, f"sqlite:///{tmp_path}/s.db", folder)
    check = ("mappings", "check", "--dir", str(folder), "--against-org")
    good = cli(*check, env=env)
    assert good.returncode == 0, good.stderr

    path = folder / "subscription.yaml"
    text = path.read_text().replace(
        "SBQQ__QuoteLine__r.SBQQ__NetTotal__c", "SBQQ__QuoteLine__r.SBQQ__NetTotl__c"
    )
    path.write_text(text)
    bad = cli(*check, env=env)
    assert bad.returncode == 2
    assert "subscription.yaml:" in bad.stderr and "SBQQ__NetTotl__c" in bad.stderr

    path.write_text(
        text.replace("amendment_proration: cpq_amounts", "amendment_proration: create_prorations")
    )
    assert cli(*check, env=env).returncode == 0, "the figures are read only in cpq_amounts mode"
