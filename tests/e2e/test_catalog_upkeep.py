"""Catalog upkeep on the sandbox: a renamed or deactivated Product2 updates its Stripe Product
(only the fields that changed), and a changed PricebookEntry amount gets a new Price while the old
one is archived once nothing bills it."""

from __future__ import annotations

from typing import Any

import stripe

from .test_orders import Org, only, record, stripe_objects, sub_items

ALL = ("accounts", "orders", "products")


def product_posts(sandbox: Any, after: int = 0) -> dict[str, dict[str, Any]]:
    """Product updates sent (POST /v1/products/{id}) after the first `after` requests, by product
    id: the params of the last."""
    return {
        r["path"].rsplit("/", 1)[-1]: r["params"]
        for r in sandbox.stripe_admin.requests()[after:]
        if r["method"] == "POST" and r["pattern"] == "/v1/products/{id}"
    }


def logged(sandbox: Any) -> int:
    return len(sandbox.stripe_admin.requests())


def stripe_product(sandbox: Any, product_id: str) -> dict[str, Any]:
    return next(p for p in stripe_objects(sandbox, "product") if p["id"] == product_id)


def stripe_price(sandbox: Any, price_id: str) -> dict[str, Any]:
    return next(p for p in stripe_objects(sandbox, "price") if p["id"] == price_id)


def test_a_renamed_and_a_deactivated_product2_update_their_products_with_only_what_changed(sandbox, run_sync):
    org = Org(sandbox)
    order_id, _ = org.order(
        org.account(), [{"product": "Platform", "price": 49.0}, {"product": "Support", "price": 10.0}]
    )
    first = run_sync(ALL)
    assert first.outcome(order_id).status == "created", first.outcome(order_id).message
    platform, support = org.products["Platform"], org.products["Support"]
    platform_id = record(sandbox, "Product2", platform)["Stripe_Product_ID__c"]
    support_id = record(sandbox, "Product2", support)["Stripe_Product_ID__c"]
    assert platform_id and support_id
    assert product_posts(sandbox) == {}  # the Products the Orders just made are current

    sandbox.sf_admin.patch_record("Product2", platform, {"Name": "Platform Pro"})
    sandbox.sf_admin.patch_record("Product2", support, {"IsActive": False})
    before = logged(sandbox)
    result = run_sync(ALL)

    assert result.outcome(platform).status == "updated", result.outcome(platform).message
    assert result.outcome(support).status == "updated", result.outcome(support).message
    sent = product_posts(sandbox, before)
    assert sent == {platform_id: {"name": "Platform Pro"}, support_id: {"active": "false"}}
    renamed, archived = stripe_product(sandbox, platform_id), stripe_product(sandbox, support_id)
    assert (renamed["name"], renamed["description"], renamed["active"]) == (
        "Platform Pro",
        "Platform plan",
        True,
    )
    assert (archived["name"], archived["active"]) == ("Support", False)

    before = logged(sandbox)
    again = run_sync(ALL)
    assert product_posts(sandbox, before) == {}
    assert not [
        o for r in again.reports for o in r.outcomes if o.object_type == "product" and o.status != "unchanged"
    ]


def test_a_cleared_description_is_unset_and_a_product_without_stripe_id_is_left_to_its_orders(
    sandbox, run_sync
):
    org = Org(sandbox)
    org.order(org.account(), [{"product": "Platform", "price": 49.0}])
    unsold = org.product("Unsold")  # no Order bills it: no Stripe Product, nothing to keep current
    run_sync(ALL)
    platform = org.products["Platform"]
    platform_id = record(sandbox, "Product2", platform)["Stripe_Product_ID__c"]

    sandbox.sf_admin.patch_record("Product2", platform, {"Description": None})
    sandbox.sf_admin.patch_record("Product2", unsold, {"Name": "Still unsold"})
    before = logged(sandbox)
    result = run_sync(ALL)

    assert product_posts(sandbox, before) == {platform_id: {"description": ""}}
    assert stripe_product(sandbox, platform_id)["description"] is None
    assert not [o for r in result.reports for o in r.outcomes if o.sf_id == unsold]


def _client(sandbox: Any) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_x", base_addresses={"api": sandbox.stripe_url}, max_network_retries=0)


def test_a_changed_list_price_gets_a_new_price_and_the_old_one_is_archived_once_unused(sandbox, run_sync):
    org = Org(sandbox)
    account = org.account()
    first_order, _ = org.order(account, [{"product": "Platform", "price": 49.0}])
    run_sync(ALL)
    entry = org.entries[("Platform", "USD")]
    old_price = record(sandbox, "PricebookEntry", entry)["Stripe_Price_ID__c"]
    first_sub = record(sandbox, "Order", first_order)["Stripe_Subscription_ID__c"]
    _client(sandbox).v1.subscriptions.cancel(first_sub)  # nothing bills the 49.00 price any more

    sandbox.sf_admin.patch_record("PricebookEntry", entry, {"UnitPrice": 59.0})
    second_order, _ = org.order(account, [{"product": "Platform", "price": 59.0}])
    result = run_sync(ALL)

    assert result.outcome(second_order).status == "created", result.outcome(second_order).message
    new_price = record(sandbox, "PricebookEntry", entry)["Stripe_Price_ID__c"]
    assert new_price != old_price and stripe_price(sandbox, new_price)["unit_amount"] == 5900
    second_sub = next(
        s
        for s in stripe_objects(sandbox, "subscription")
        if s["metadata"]["salesforce_order_id"] == second_order
    )
    assert [i["price"]["id"] for i in sub_items(second_sub)] == [new_price]
    assert stripe_price(sandbox, old_price)["active"] is False
    assert stripe_price(sandbox, new_price)["active"] is True

    # Back to the old amount: the archived Price is reactivated and reused, not made a third time.
    sandbox.sf_admin.patch_record("PricebookEntry", entry, {"UnitPrice": 49.0})
    third_order, _ = org.order(account, [{"product": "Platform", "price": 49.0}])
    result = run_sync(ALL)

    assert result.outcome(third_order).status == "created", result.outcome(third_order).message
    third_sub = next(
        s
        for s in stripe_objects(sandbox, "subscription")
        if s["metadata"]["salesforce_order_id"] == third_order
    )
    assert [i["price"]["id"] for i in sub_items(third_sub)] == [old_price]
    assert stripe_price(sandbox, old_price)["active"] is True
    assert len(stripe_objects(sandbox, "price")) == 2
    assert stripe_price(sandbox, new_price)["active"] is True  # the second subscription bills it


def test_a_replaced_price_a_subscription_still_bills_is_kept_and_the_subscription_keeps_it(sandbox, run_sync):
    org = Org(sandbox)
    account = org.account()
    first_order, _ = org.order(account, [{"product": "Platform", "price": 49.0}])
    run_sync(ALL)
    entry = org.entries[("Platform", "USD")]
    old_price = record(sandbox, "PricebookEntry", entry)["Stripe_Price_ID__c"]

    sandbox.sf_admin.patch_record("PricebookEntry", entry, {"UnitPrice": 59.0})
    second_order, _ = org.order(account, [{"product": "Platform", "price": 59.0}])
    result = run_sync(ALL)

    assert result.outcome(second_order).status == "created", result.outcome(second_order).message
    assert record(sandbox, "PricebookEntry", entry)["Stripe_Price_ID__c"] != old_price
    assert stripe_price(sandbox, old_price)["active"] is True
    first_sub = next(
        s
        for s in stripe_objects(sandbox, "subscription")
        if s["metadata"]["salesforce_order_id"] == first_order
    )
    assert [i["price"]["id"] for i in sub_items(first_sub)] == [old_price]
    assert only([p for p in stripe_objects(sandbox, "product")])["active"] is True


def test_reconcile_puts_a_product_edited_in_stripe_back(sandbox, run_sync, connector_settings):
    from connector.mapping import load_mappings
    from connector.sync.reconcile import reconcile
    from connector.sync.runner import open_context

    org = Org(sandbox)
    org.order(org.account(), [{"product": "Platform", "price": 49.0}])
    run_sync(ALL)
    product_id = record(sandbox, "Product2", org.products["Platform"])["Stripe_Product_ID__c"]
    _client(sandbox).v1.products.update(product_id, params={"name": "Renamed by hand", "active": False})

    def run(dry_run: bool = False):
        with open_context(connector_settings, load_mappings(connector_settings.mappings_dir)) as ctx:
            return reconcile(ctx, dry_run=dry_run)

    planned = run(dry_run=True)
    assert sorted(d.field for d in planned.drifts if d.object_type == "product") == ["active", "name"]
    assert stripe_product(sandbox, product_id)["name"] == "Renamed by hand"

    before = logged(sandbox)
    report = run()
    assert product_posts(sandbox, before) == {product_id: {"name": "Platform", "active": "true"}}
    assert any(
        line.startswith("Reconcile: 1 Products checked, 1 drifted, 1 put back")
        for line in report.summary_lines()
    )
    restored = stripe_product(sandbox, product_id)
    assert (restored["name"], restored["active"]) == ("Platform", True)

    again = run()
    assert not [d for d in again.drifts if d.object_type == "product"]


LINE_FIELDS = """
  fields:
    - target: product.metadata.family
      source: Product2.Family
    - target: price.metadata.product_code
      source: Product2.ProductCode
"""


def test_product_and_price_metadata_through_the_mapping(sandbox, run_sync, tmp_path):
    from connector.mapping import load_mappings

    from .conftest import MAPPINGS

    (tmp_path / "customer.yaml").write_text((MAPPINGS / "customer.yaml").read_text())
    shipped = (MAPPINGS / "subscription.yaml").read_text()
    anchor = "  price_book_entry_write_back:\n    stripe_id: Stripe_Price_ID__c"
    end = shipped.index("\n", shipped.index(anchor) + len(anchor)) + 1  # the end of the lines block
    (tmp_path / "subscription.yaml").write_text(shipped[:end] + LINE_FIELDS + shipped[end:])
    mappings = load_mappings(tmp_path)
    org = Org(sandbox)
    platform = org.product("Platform")
    sandbox.sf_admin.patch_record("Product2", platform, {"Family": "Software", "ProductCode": "PLAT-1"})
    order_id, _ = org.order(org.account(), [{"product": "Platform", "price": 49.0}])

    result = run_sync(ALL, mappings=mappings)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    product_id = record(sandbox, "Product2", platform)["Stripe_Product_ID__c"]
    assert stripe_product(sandbox, product_id)["metadata"]["family"] == "Software"
    price = only(stripe_objects(sandbox, "price"))
    assert price["metadata"]["product_code"] == "PLAT-1"
    assert price["metadata"]["cpq2stripe_price_key"]  # the connector's own keys are kept

    sandbox.sf_admin.patch_record("Product2", platform, {"Family": "Hardware"})
    before = logged(sandbox)
    run_sync(ALL, mappings=mappings)
    assert product_posts(sandbox, before) == {product_id: {"metadata": {"family": "Hardware"}}}
    assert stripe_product(sandbox, product_id)["metadata"]["salesforce_product_id"] == platform

    before = logged(sandbox)
    run_sync(ALL, mappings=mappings)
    assert product_posts(sandbox, before) == {}
