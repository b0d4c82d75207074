"""Hostile Order data, from the catalogue: each bad Order is refused alone — nothing created in
Stripe for it, status Refused with a message naming the record, the field and the fix — while a
good Order in the same run syncs. What the org itself refuses (a currency outside its restricted
picklist, a product name over 255 characters) is the Salesforce-side guard and is checked too."""

from __future__ import annotations

from datetime import date

import pytest

from tests.e2e.test_orders import ONE_TIME, Org

from .catalogue import ORDER_CASES, ORG_GUARD_CASES
from .conftest import run_cli


def _line(case_line: dict) -> dict:
    line = {"product": "Hostile Plan", "price": 100.0, **case_line}
    if line.pop("one_time", False):
        line["kind"] = ONE_TIME
    return line


def test_hostile_orders_are_refused_alone_and_a_good_order_syncs(sandbox, sqlite_url):
    org = Org(sandbox)
    account = org.account()
    ids: dict[str, tuple[str, list[str]]] = {}
    for case in ORDER_CASES:
        order_fields = dict(case.order)
        start = date.fromisoformat(order_fields.pop("start")) if "start" in order_fields else date.today()
        end = order_fields.pop("end", "term")
        if isinstance(end, str) and end != "term":
            end = date.fromisoformat(end)
        ids[case.name] = org.order(account, [_line(case.line)], start=start, end=end, **order_fields)
    good, _ = org.order(account, [{"product": "Good Plan", "price": 49.0}])

    done = run_cli(sandbox, sqlite_url, "sync")
    output = done.stdout + done.stderr
    assert done.returncode in (0, 1) and "Traceback" not in output, output[-3000:]

    billed = {
        s["metadata"]["salesforce_order_id"]: s
        for kind in ("subscription", "subscription_schedule")
        for s in sandbox.stripe_admin.objects(kind)
    }
    good_record = sandbox.sf_admin.get_record("Order", good)
    assert good_record["Stripe_Sync_Status__c"] == "Synced", good_record.get("Stripe_Sync_Message__c")
    assert good in billed

    for case in ORDER_CASES:
        order_id, item_ids = ids[case.name]
        record = sandbox.sf_admin.get_record("Order", order_id)
        message = record["Stripe_Sync_Message__c"] or ""
        if not case.expect:
            assert record["Stripe_Sync_Status__c"] == "Synced", (case.name, message)
            continue
        assert record["Stripe_Sync_Status__c"] == "Refused", (case.name, record)
        assert order_id not in billed, case.name
        assert record["Stripe_Subscription_ID__c"] is None, case.name
        named = item_ids[0] if case.names_line else order_id
        assert named in message, (case.name, message)  # the record…
        for fragment in case.expect:  # …the field and the problem…
            assert fragment in message, (case.name, fragment, message)
        assert "Fix:" in message, (case.name, message)  # …and the fix
        assert order_id in output, case.name  # the run's report names the Order

    # nothing for a refused Order reached Stripe: every product there belongs to a synced Order
    products = {p["name"] for p in sandbox.stripe_admin.objects("product")}
    assert "Hostile Plan" not in products or any(
        not c.expect and c.line.get("product", "Hostile Plan") == "Hostile Plan" for c in ORDER_CASES
    )
    print(f"\n[hostile] {len(ORDER_CASES)} order cases, {len(ORG_GUARD_CASES)} org-guard cases")


@pytest.mark.parametrize("case", ORG_GUARD_CASES, ids=lambda c: c.name)
def test_the_org_refuses_what_its_schema_forbids(sandbox, case):
    org = Org(sandbox)
    account = org.account()
    with pytest.raises(AssertionError) as info:  # the admin client's "-> 400: body"
        if case.sobject == "Order":
            org.order(account, [{"product": "Guarded Plan", "price": 10.0}], **case.fields)
        else:
            sandbox.sf_admin.create_record(case.sobject, case.fields)
    assert case.error_code in str(info.value), str(info.value)
