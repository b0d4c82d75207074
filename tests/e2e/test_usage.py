"""Usage records (mappings/usage.yaml, Stripe_Usage__c) -> Billing Meter events, exactly once, billed
on the metered line's next invoice when the test clock advances; refusals on the usage records."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.sync.order_rules import add_months
from tests.e2e.conftest import MAPPINGS, run_cli
from tests.e2e.test_contract_lifecycle import TODAY, advance, clocked_account, stripe_client
from tests.e2e.test_orders import USAGE, Org

SEND = "billing.meter_events.create"


def _usage(sandbox: Any, order_item: str, quantity: float, when: datetime) -> str:
    return str(
        sandbox.sf_admin.create_record(
            "Stripe_Usage__c",
            {"Order_Product__c": order_item, "Quantity__c": quantity, "Usage_Time__c": when.isoformat()},
        )
    )


def _record(sandbox: Any, usage_id: str) -> dict[str, Any]:
    return dict(sandbox.sf_admin.get_record("Stripe_Usage__c", usage_id))


def test_usage_reaches_the_meter_once_and_is_billed_on_the_next_invoice(sandbox, run_sync) -> None:
    client = stripe_client(sandbox)
    org = Org(sandbox)
    account, clock = clocked_account(sandbox, client, TODAY)
    order, (platform, api_calls) = org.order(
        account,
        [
            {"product": "Platform", "price": 49.0},
            {"product": "API Calls", "price": 0.5, "kind": USAGE, "quantity": 1},
        ],
    )
    assert run_sync(("accounts", "orders")).outcome(order).status == "created"
    # An Order whose Account is not synced (not a billing entity): its usage waits.
    other_account = org.account(Name="Hooli", Billing_Entity__c=False)
    _other_order, (other_line,) = org.order(
        other_account, [{"product": "API Calls", "price": 0.5, "kind": USAGE, "quantity": 1}]
    )

    now = datetime.now(UTC).replace(microsecond=0)
    first = _usage(sandbox, api_calls, 100, now - timedelta(seconds=30))
    second = _usage(sandbox, api_calls, 20, now - timedelta(seconds=10))
    negative = _usage(sandbox, api_calls, -5, now)
    too_old = _usage(sandbox, api_calls, 1, now - timedelta(days=40))
    not_metered = _usage(sandbox, platform, 3, now)
    unsynced = _usage(sandbox, other_line, 7, now)

    result = run_sync(("usage",))
    assert result.stripe_calls.get(SEND) == 2
    for sent in (first, second):
        assert result.outcome(sent).status == "created", result.outcome(sent).message
        record = _record(sandbox, sent)
        assert record["Stripe_Sync_Status__c"] == "Synced"
        assert record["Stripe_Last_Synced__c"]
    events = sandbox.stripe_admin.objects("billing.meter_event")
    assert sorted((e["identifier"], e["payload"]["value"]) for e in events) == sorted(
        [(first, "100"), (second, "20")]
    )
    customer = client.v1.customers.list(params={"limit": 10}).data
    assert {e["payload"]["stripe_customer_id"] for e in events} <= {c.id for c in customer}

    expected = {
        negative: ("Refused", "negative"),
        too_old: ("Refused", "35 days"),
        not_metered: ("Refused", "not usage-priced"),
        unsynced: ("Failed", "not synced to Stripe yet"),
    }
    for usage_id, (status, words) in expected.items():
        record = _record(sandbox, usage_id)
        assert record["Stripe_Sync_Status__c"] == status, (usage_id, record)
        assert words in record["Stripe_Sync_Message__c"], record["Stripe_Sync_Message__c"]

    # A rerun, even of records changed since, sends nothing more.
    sandbox.sf_admin.patch_record("Stripe_Usage__c", first, {"Quantity__c": 100})
    again = run_sync(("usage",))
    assert SEND not in again.stripe_calls
    assert len(sandbox.stripe_admin.objects("billing.meter_event")) == 2

    # The clock reaches the end of the first period: the metered line bills 120 x 0.50 in arrears.
    advance(client, clock, add_months(TODAY, 1))
    customer_id = sandbox.sf_admin.get_record("Account", account)["Stripe_Customer_ID__c"]
    invoices = client.v1.invoices.list(params={"customer": customer_id, "limit": 10}).data
    [sub] = sandbox.stripe_admin.objects("subscription")
    metered = next(
        i["price"]["id"] for i in sub["items"]["data"] if i["price"]["recurring"]["usage_type"] == "metered"
    )
    usage_lines = [
        line
        for invoice in invoices
        for line in invoice.to_dict()["lines"]["data"]
        if line["pricing"] and line["pricing"]["price_details"]["price"] == metered and line["amount"]
    ]
    assert [(line["quantity"], line["amount"]) for line in usage_lines] == [(120, 6000)]


def test_refusals_show_in_status(sandbox, store_url) -> None:
    org = Org(sandbox)
    order, (line,) = org.order(org.account(), [{"product": "API", "price": 0.5, "kind": USAGE}])
    assert run_cli(sandbox, store_url, "sync", "--objects", "accounts,orders").returncode == 0
    negative = _usage(sandbox, line, -1, datetime.now(UTC))
    run_cli(sandbox, store_url, "sync", "--objects", "usage")
    status = run_cli(sandbox, store_url, "status")
    assert negative in status.stdout and "negative" in status.stdout, status.stdout
    assert order


def test_mappings_check_against_the_org_checks_the_usage_fields(sandbox, store_url, tmp_path) -> None:
    directory = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, directory)
    usage = directory / "usage.yaml"
    usage.write_text(usage.read_text().replace("quantity: Quantity__c", "quantity: Qty__c"))
    ok = run_cli(sandbox, store_url, "mappings", "check", "--dir", str(MAPPINGS), "--against-org")
    assert ok.returncode == 0, ok.stderr
    bad = run_cli(sandbox, store_url, "mappings", "check", "--dir", str(directory), "--against-org")
    assert bad.returncode != 0
    assert "usage.yaml:" in bad.stderr and "Qty__c" in bad.stderr, bad.stderr
