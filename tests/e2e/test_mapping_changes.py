"""A mapping edit reaches the records already synced: the next run re-evaluates every linked
record of that object once, sends exactly what changed (a dry run shows it first), and lists the
records a narrower condition no longer selects without touching them in Stripe."""

from __future__ import annotations

import dataclasses

from connector.mapping import load_mappings
from connector.mapping.schema import FieldMapping

from .test_orders import BILLING_ACCOUNT, SYNC_ALL, Org, stripe_objects, stripe_posts


def _changed(result) -> list:
    return [o for r in result.reports for o in r.outcomes if o.status not in ("unchanged",)]


def _with_customer_field(mappings, entry: FieldMapping):
    customer = mappings.customer.model_copy(update={"fields": [*mappings.customer.fields, entry]})
    return dataclasses.replace(mappings, customer=customer)


def test_a_new_metadata_key_reaches_every_synced_customer_once_and_the_dry_run_shows_it_first(
    sandbox, run_sync, connector_settings
):
    ids = [
        sandbox.sf_admin.create_record("Account", {**BILLING_ACCOUNT, "Name": f"Acme {n}"}) for n in range(3)
    ]
    first = run_sync()
    assert sorted(o.status for o in first.report.outcomes) == ["created"] * 3
    assert _changed(run_sync()) == []  # nothing changed in Salesforce: nothing sent

    edited = _with_customer_field(
        load_mappings(connector_settings.mappings_dir), FieldMapping(target="metadata.tier", default="gold")
    )
    preview = run_sync(mappings=edited, dry_run=True)
    planned = {o.sf_id: o for o in preview.report.outcomes}
    assert set(planned) == set(ids)
    assert all(
        o.action == "update" and "metadata" in o.message and "gold" in o.message for o in planned.values()
    )
    assert all(c["metadata"].get("tier") is None for c in stripe_objects(sandbox, "customer"))

    sandbox.stripe_admin.reset_counters()
    applied = run_sync(mappings=edited)

    assert sorted(o.status for o in applied.report.outcomes) == ["updated"] * 3
    assert all(c["metadata"]["tier"] == "gold" for c in stripe_objects(sandbox, "customer"))
    updates = [p for p in stripe_posts(sandbox) if p["path"].startswith("/v1/customers/")]
    assert len(updates) == 3 and all(set(p["params"]) == {"metadata"} for p in updates)
    assert _changed(run_sync(mappings=edited)) == []  # re-evaluated once, not every run


def test_a_narrower_condition_lists_the_customers_it_drops_and_leaves_them_in_stripe(
    sandbox, run_sync, connector_settings
):
    keep = sandbox.sf_admin.create_record(
        "Account", {**BILLING_ACCOUNT, "Name": "Keep", "BillingCountry": "US"}
    )
    drop = sandbox.sf_admin.create_record(
        "Account", {**BILLING_ACCOUNT, "Name": "Drop", "BillingCountry": "DE"}
    )
    run_sync()
    mappings = load_mappings(connector_settings.mappings_dir)
    narrower = dataclasses.replace(
        mappings,
        customer=mappings.customer.model_copy(
            update={"condition": f"{mappings.customer.condition} AND BillingCountry = 'US'"}
        ),
    )

    result = run_sync(mappings=narrower)

    outcome = result.outcome(drop)
    assert outcome.action == "unselected" and "condition" in outcome.message
    assert any(drop in line for line in result.report.summary_lines())
    assert result.outcome(keep).status == "unchanged"
    assert len(stripe_objects(sandbox, "customer")) == 2  # never deleted


def test_a_subscription_mapping_change_reaches_synced_subscriptions(sandbox, run_sync, connector_settings):
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), [{"product": "Suite", "price": 100.0}], Description="Annual plan")
    run_sync(SYNC_ALL)
    [sub] = stripe_objects(sandbox, "subscription")
    assert sub["description"] == "Annual plan" and "region" not in sub["metadata"]

    mappings = load_mappings(connector_settings.mappings_dir)
    subscription = mappings.subscription.model_copy(
        update={
            "fields": [*mappings.subscription.fields, FieldMapping(target="metadata.region", default="EMEA")]
        }
    )
    edited = dataclasses.replace(mappings, subscription=subscription)

    preview = run_sync(SYNC_ALL, mappings=edited, dry_run=True)
    assert "metadata.region" in preview.outcome(order_id).message
    result = run_sync(SYNC_ALL, mappings=edited)

    assert result.outcome(order_id).status == "updated", result.outcome(order_id).message
    [sub] = stripe_objects(sandbox, "subscription")
    assert sub["metadata"]["region"] == "EMEA" and sub["description"] == "Annual plan"
    assert sub["metadata"]["salesforce_order_id"] == order_id  # the connector's own keys kept
    assert len(stripe_objects(sandbox, "subscription")) == 1
    assert _changed(run_sync(SYNC_ALL, mappings=edited)) == []
