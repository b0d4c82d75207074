"""Helpers for the Orders end-to-end tests: build a small CPQ catalog and Orders in the fake org."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest
import stripe

from connector.mapping import load_mappings
from connector.state import StateStore
from connector.sync import polling
from connector.sync.order_rules import add_months
from connector.sync.orders import OrderSync
from connector.sync.report import RunReport
from connector.sync.runner import open_context

from .conftest import run_cli

TODAY = date.today()  # the connector plans with the UTC date; tests avoid running across midnight UTC

BILLING_ACCOUNT = {
    "Name": "Globex Corporation",
    "Billing_Email__c": "ap@globex.example",
    "BillingCity": "Springfield",
    "BillingCountry": "US",
    "Billing_Entity__c": True,
}

RECURRING = {"SBQQ__ChargeType__c": "Recurring", "SBQQ__BillingType__c": "Advance"}
USAGE = {"SBQQ__ChargeType__c": "Usage", "SBQQ__BillingType__c": "Arrears"}
ONE_TIME = {"SBQQ__ChargeType__c": "One-Time"}


def one_year(start: date) -> date:
    """The inclusive end of a 12-month term starting on `start`."""
    return add_months(start, 12) - timedelta(days=1)


@dataclass
class Org:
    """A tiny catalog in the fake org: one price book, products and entries made on demand."""

    sandbox: Any
    pricebook: str = ""
    single_currency: str | None = None  # the org's one currency when multi-currency is off
    products: dict[str, str] = field(default_factory=dict)
    entries: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.single_currency = self.sandbox.sf_admin.profile()["single_currency"]
        self.pricebook = self.sandbox.sf_admin.create_record(
            "Pricebook2", {"Name": "Standard", "IsActive": True}
        )

    def account(self, **fields: Any) -> str:
        return self.sandbox.sf_admin.create_record("Account", self._currency({**BILLING_ACCOUNT, **fields}))

    def _currency(self, record: dict[str, Any]) -> dict[str, Any]:
        """A single-currency org has no CurrencyIsoCode field, and only its own currency."""
        if self.single_currency is None or "CurrencyIsoCode" not in record:
            return record
        if record["CurrencyIsoCode"] != self.single_currency:
            pytest.skip(
                f"needs {record['CurrencyIsoCode']}: a single-currency org has only {self.single_currency}"
            )
        return {k: v for k, v in record.items() if k != "CurrencyIsoCode"}

    def product(self, name: str) -> str:
        if name not in self.products:
            self.products[name] = self.sandbox.sf_admin.create_record(
                "Product2", {"Name": name, "Description": f"{name} plan", "IsActive": True}
            )
        return self.products[name]

    def entry(self, name: str, price: float, currency: str = "USD") -> str:
        key = (name, currency)
        if key not in self.entries:
            self.entries[key] = self.sandbox.sf_admin.create_record(
                "PricebookEntry",
                self._currency(
                    {
                        "Pricebook2Id": self.pricebook,
                        "Product2Id": self.product(name),
                        "UnitPrice": price,
                        "CurrencyIsoCode": currency,
                        "IsActive": True,
                    }
                ),
            )
        return self.entries[key]

    def order(
        self,
        account_id: str,
        lines: list[dict[str, Any]],
        *,
        start: date = TODAY,
        end: date | str | None = "term",
        currency: str = "USD",
        status: str = "Activated",
        **fields: Any,
    ) -> tuple[str, list[str]]:
        """An Order with lines; each line: product, price (list price), unit (sold price, default
        the list price), quantity, kind (fields dict), frequency, plus any OrderItem field."""
        end_date = one_year(start) if end == "term" else end
        order_id = self.sandbox.sf_admin.create_record(
            "Order",
            self._currency(
                {
                    "AccountId": account_id,
                    "Pricebook2Id": self.pricebook,
                    "Status": "Draft",
                    "EffectiveDate": start.isoformat(),
                    "EndDate": end_date.isoformat() if isinstance(end_date, date) else None,
                    "CurrencyIsoCode": currency,
                    "Type": "New",
                    "Payment_Term__c": "Net 30",
                    **fields,
                }
            ),
        )
        item_ids = []
        for line in lines:
            line = dict(line)
            name = line.pop("product")
            list_price = line.pop("price")
            kind = line.pop("kind", RECURRING)
            frequency = line.pop("frequency", "Monthly" if kind is not ONE_TIME else None)
            recurring = kind is not ONE_TIME
            record = {
                "OrderId": order_id,
                "Product2Id": self.product(name),
                "PricebookEntryId": self.entry(name, list_price, line.pop("entry_currency", currency)),
                "Quantity": line.pop("quantity", 1),
                "UnitPrice": line.pop("unit", list_price),
                "ServiceDate": start.isoformat(),
                "EndDate": end_date.isoformat() if recurring and isinstance(end_date, date) else None,
                "SBQQ__BillingFrequency__c": frequency,
                "SBQQ__SubscriptionType__c": "Renewable" if recurring else "One-time",
                **kind,
                **line,
            }
            item_ids.append(self.sandbox.sf_admin.create_record("OrderItem", record))
        if status in ("Activated", "Provisioned"):  # Provisioned: an added Activated-category value
            self.sandbox.sf_admin.patch_record("Order", order_id, {"Status": status})
        return order_id, item_ids


def stripe_objects(sandbox: Any, kind: str) -> list[dict[str, Any]]:
    return [o for o in sandbox.stripe_admin.objects(kind) if not o.get("deleted")]


def stripe_posts(sandbox: Any) -> list[dict[str, Any]]:
    return [r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"]


def record(sandbox: Any, sobject: str, record_id: str) -> dict[str, Any]:
    return sandbox.sf_admin.get_record(sobject, record_id)


cli = run_cli


# --------------------------------------------------------------------------------------------------
# Tests


@pytest.fixture(autouse=True, params=["multi-currency", "single-currency"])
def currency_mode(request: pytest.FixtureRequest, sandbox: Any) -> str:
    """Every Order test runs on a multi-currency org and on one without multi-currency (no
    CurrencyIsoCode field anywhere; USD is the org's currency). Tests needing another currency skip."""
    if request.param == "single-currency":
        sandbox.sf_admin.profile(single_currency="USD")
    return str(request.param)


SYNC_ALL = ("accounts", "orders")
DAY = 86400


def midnight(day: date) -> int:
    return calendar.timegm(day.timetuple())


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def sub_items(sub: dict[str, Any]) -> list[dict[str, Any]]:
    return sub["items"]["data"]


def test_monthly_order_becomes_a_subscription_and_every_id_is_written_back(sandbox, run_sync):
    org = Org(sandbox)
    account = org.account()
    order_id, [item] = org.order(
        account, [{"product": "Platform", "price": 49.0, "quantity": 3}], Description="Main platform order"
    )

    result = run_sync(SYNC_ALL)

    outcome = result.outcome(order_id)
    assert outcome.status == "created", outcome.message
    customer = only(stripe_objects(sandbox, "customer"))
    product = only(stripe_objects(sandbox, "product"))
    price = only(stripe_objects(sandbox, "price"))
    sub = only(stripe_objects(sandbox, "subscription"))
    assert product["name"] == "Platform"
    assert product["metadata"]["salesforce_product_id"] == org.products["Platform"]
    assert (price["product"], price["currency"], price["unit_amount"]) == (product["id"], "usd", 4900)
    assert price["recurring"]["interval"] == "month" and price["recurring"]["interval_count"] == 1
    assert sub["customer"] == customer["id"]
    [sub_item] = sub_items(sub)
    assert sub_item["price"]["id"] == price["id"] and sub_item["quantity"] == 3
    assert sub["metadata"]["salesforce_order_id"] == order_id
    assert sub["metadata"]["salesforce_account_id"] == account
    assert sub["collection_method"] == "send_invoice" and sub["days_until_due"] == 30
    assert sub["cancel_at"] == midnight(add_months(TODAY, 12))  # EndDate inclusive -> next midnight
    assert sub["description"] == "Main platform order"

    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Subscription_ID__c"] == sub["id"]
    assert order["Stripe_Sync_Status__c"] == "Synced"
    assert order["Stripe_Last_Synced__c"]
    assert record(sandbox, "Product2", org.products["Platform"])["Stripe_Product_ID__c"] == product["id"]
    entry = org.entries[("Platform", "USD")]
    assert record(sandbox, "PricebookEntry", entry)["Stripe_Price_ID__c"] == price["id"]
    assert record(sandbox, "OrderItem", item)["Stripe_Price_ID__c"] is None  # the list price is reused


@pytest.mark.parametrize(
    ("frequency", "interval", "count"),
    [("Monthly", "month", 1), ("Quarterly", "month", 3), ("Semiannual", "month", 6), ("Annual", "year", 1)],
)
def test_billing_frequency_sets_the_recurrence(sandbox, run_sync, frequency, interval, count):
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), [{"product": "Suite", "price": 100.0, "frequency": frequency}])

    result = run_sync(SYNC_ALL)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    recurring = only(stripe_objects(sandbox, "price"))["recurring"]
    assert (recurring["interval"], recurring["interval_count"], recurring["usage_type"]) == (
        interval,
        count,
        "licensed",
    )


def test_one_time_lines_go_to_the_first_invoice_and_quantities_are_kept(sandbox, run_sync):
    org = Org(sandbox)
    order_id, _ = org.order(
        org.account(),
        [
            {"product": "Seats", "price": 10.0, "quantity": 25},
            {"product": "Setup", "price": 500.0, "kind": ONE_TIME, "quantity": 2},
        ],
    )

    result = run_sync(SYNC_ALL)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    sub = only(stripe_objects(sandbox, "subscription"))
    [item] = sub_items(sub)
    assert item["quantity"] == 25 and item["price"]["unit_amount"] == 1000
    one_time = next(p for p in stripe_objects(sandbox, "price") if p["recurring"] is None)
    assert one_time["unit_amount"] == 50000 and one_time["type"] == "one_time"
    lines = [
        line
        for invoice in stripe_objects(sandbox, "invoice")
        if invoice.get("subscription") == sub["id"]
        or (invoice.get("parent") or {}).get("subscription_details", {}).get("subscription") == sub["id"]
        for line in invoice["lines"]["data"]
    ]
    setup_lines = [
        line
        for line in lines
        if (line.get("price") or line.get("pricing", {}).get("price_details", {}) or {})
        and one_time["id"] in str(line)
    ]
    assert setup_lines and setup_lines[0]["quantity"] == 2, lines


def test_a_discounted_line_gets_its_own_price_on_the_order_item(sandbox, run_sync):
    org = Org(sandbox)
    order_id, [item] = org.order(org.account(), [{"product": "Suite", "price": 100.0, "unit": 80.0}])

    result = run_sync(SYNC_ALL)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    price = only(stripe_objects(sandbox, "price"))
    assert price["unit_amount"] == 8000
    assert record(sandbox, "OrderItem", item)["Stripe_Price_ID__c"] == price["id"]
    assert record(sandbox, "PricebookEntry", org.entries[("Suite", "USD")])["Stripe_Price_ID__c"] is None


def test_jpy_amounts_have_no_minor_unit(sandbox, run_sync):
    org = Org(sandbox)
    account = org.account(CurrencyIsoCode="JPY")
    order_id, _ = org.order(account, [{"product": "Suite", "price": 5400, "quantity": 2}], currency="JPY")

    result = run_sync(SYNC_ALL)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    price = only(stripe_objects(sandbox, "price"))
    assert (price["currency"], price["unit_amount"]) == ("jpy", 5400)


@pytest.mark.parametrize(
    ("term", "days"),
    [("Net 15", 15), ("Net 30 days", 30), ("30 days", 30), ("Net 60", 60), ("Due on Receipt", 0), (None, 30)],
)
def test_payment_term_sets_days_until_due(sandbox, run_sync, term, days):
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), [{"product": "Suite", "price": 100.0}], Payment_Term__c=term)

    run_sync(SYNC_ALL)

    sub = only(stripe_objects(sandbox, "subscription"))
    assert (sub["collection_method"], sub["days_until_due"]) == ("send_invoice", days)
    assert record(sandbox, "Order", order_id)["Stripe_Subscription_ID__c"] == sub["id"]


def test_a_saved_payment_method_is_charged_automatically(sandbox, run_sync, connector_settings):
    org = Org(sandbox)
    account = org.account()
    run_sync(("accounts",))
    customer = only(stripe_objects(sandbox, "customer"))
    client = stripe.StripeClient(
        connector_settings.stripe_secret_key.get_secret_value(),
        base_addresses={"api": str(connector_settings.stripe_api_base).rstrip("/")},
    )
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    client.v1.payment_methods.attach(pm.id, params={"customer": customer["id"]})
    sandbox.sf_admin.patch_record("Account", account, {"Stripe_Payment_Method_ID__c": pm.id})
    order_id, _ = org.order(account, [{"product": "Suite", "price": 100.0}])

    result = run_sync(SYNC_ALL)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    sub = only(stripe_objects(sandbox, "subscription"))
    assert sub["collection_method"] == "charge_automatically"
    assert sub["default_payment_method"] == pm.id
    assert sub["days_until_due"] is None


def test_a_backdated_order_keeps_its_calendar(sandbox, run_sync):
    org = Org(sandbox)
    start = TODAY - timedelta(days=45)
    order_id, _ = org.order(org.account(), [{"product": "Suite", "price": 100.0}], start=start)

    result = run_sync(SYNC_ALL)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    sub = only(stripe_objects(sandbox, "subscription"))
    assert sub["start_date"] == midnight(start)
    k = 1
    while add_months(start, k) <= TODAY:
        k += 1
    assert sub["billing_cycle_anchor"] == midnight(add_months(start, k))
    assert sub["cancel_at"] == midnight(add_months(start, 12))


def test_a_future_order_becomes_a_schedule(sandbox, run_sync):
    org = Org(sandbox)
    start = TODAY + timedelta(days=20)
    order_id, _ = org.order(org.account(), [{"product": "Suite", "price": 100.0, "quantity": 2}], start=start)

    result = run_sync(SYNC_ALL)

    outcome = result.outcome(order_id)
    assert outcome.status == "created", outcome.message
    assert stripe_objects(sandbox, "subscription") == []
    schedule = only(stripe_objects(sandbox, "subscription_schedule"))
    assert schedule["id"].startswith("sub_sched_") and outcome.stripe_id == schedule["id"]
    assert schedule["end_behavior"] == "cancel"
    [phase] = schedule["phases"]
    assert phase["start_date"] == midnight(start) and phase["end_date"] == midnight(add_months(start, 12))
    assert phase["items"][0]["quantity"] == 2
    assert schedule["metadata"]["salesforce_order_id"] == order_id
    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Subscription_ID__c"] == schedule["id"] and order["Stripe_Sync_Status__c"] == "Synced"


def test_an_evergreen_order_has_no_end(sandbox, run_sync):
    org = Org(sandbox)
    order_id, _ = org.order(
        org.account(),
        [{"product": "Hosting", "price": 89.0, "SBQQ__SubscriptionType__c": "Evergreen"}],
        end=None,
    )
    future_id, _ = org.order(
        org.account(Name="Initech"),
        [{"product": "Hosting", "price": 89.0, "SBQQ__SubscriptionType__c": "Evergreen"}],
        end=None,
        start=TODAY + timedelta(days=10),
    )

    result = run_sync(SYNC_ALL)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    assert result.outcome(future_id).status == "created", result.outcome(future_id).message
    sub = only(stripe_objects(sandbox, "subscription"))
    assert sub["cancel_at"] is None
    schedule = only(stripe_objects(sandbox, "subscription_schedule"))
    assert schedule["end_behavior"] == "release"


def test_metered_lines_bill_usage_through_a_meter(sandbox, run_sync):
    org = Org(sandbox)
    order_id, _ = org.order(
        org.account(),
        [
            {"product": "Platform", "price": 49.0},
            {"product": "API Calls", "price": 0.5, "kind": USAGE, "quantity": 1},
        ],
    )

    result = run_sync(SYNC_ALL)

    outcome = result.outcome(order_id)
    if "billing/meters" in outcome.message or "meter" in outcome.message.lower():
        pytest.skip(f"the fake Stripe has no Billing Meters yet: {outcome.message}")
    assert outcome.status == "created", outcome.message
    sub = only(stripe_objects(sandbox, "subscription"))
    metered = next(i for i in sub_items(sub) if i["price"]["recurring"]["usage_type"] == "metered")
    assert metered.get("quantity") is None
    assert metered["price"]["recurring"]["meter"]


# --------------------------------------------------------------------------------------------------
# Refusals: status in Salesforce, nothing in Stripe


def _refusal_cases() -> list[tuple[str, dict[str, Any], str]]:
    return [
        ("decimal_quantity", {"lines": [{"product": "Suite", "price": 10.0, "quantity": 2.5}]}, "whole"),
        (
            "invoice_plan",
            {"lines": [{"product": "Retainer", "price": 5000.0, "frequency": "Invoice Plan"}]},
            "invoice plan",
        ),
        (
            "usage_frequency",
            {"lines": [{"product": "Retainer", "price": 50.0, "frequency": "Usage"}]},
            "Usage",
        ),
        (
            "mixed_intervals",
            {
                "lines": [
                    {"product": "Suite", "price": 10.0, "frequency": "Monthly"},
                    {"product": "Support", "price": 100.0, "frequency": "Annual"},
                ]
            },
            "different billing frequencies",
        ),
        (
            "mixed_currencies",
            {"lines": [{"product": "Suite", "price": 10.0, "entry_currency": "EUR"}]},
            "one Stripe subscription bills in one currency",
        ),
        ("no_lines", {"lines": []}, "no lines"),
        (
            "missing_product",
            {"lines": [{"product": "Suite", "price": 10.0, "Product2Id": None}]},
            "no product",
        ),
    ]


@pytest.mark.parametrize(("case", "spec", "text"), _refusal_cases(), ids=[c[0] for c in _refusal_cases()])
def test_an_order_stripe_cannot_bill_is_refused_with_its_reason(
    sandbox, run_sync, connector_settings, case, spec, text
):
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), spec["lines"])

    result = run_sync(SYNC_ALL)

    outcome = result.outcome(order_id)
    assert outcome.status == "refused", outcome
    assert text.lower() in outcome.message.lower()
    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Sync_Status__c"] == "Refused"
    assert text.lower() in order["Stripe_Sync_Message__c"].lower()
    assert "Fix:" in order["Stripe_Sync_Message__c"]
    assert order["Stripe_Subscription_ID__c"] is None
    for kind in ("product", "price", "subscription", "subscription_schedule"):
        assert stripe_objects(sandbox, kind) == [], kind
    with StateStore.open(connector_settings.database_url) as store:
        failure = store.failures.get("subscription", order_id)
        assert failure is not None and not failure.retryable
        assert [e.status for e in store.runs.list_log(sf_id=order_id)] == ["refused"]


def test_an_order_of_an_account_that_is_not_a_billing_entity_is_refused(
    sandbox, run_sync, connector_settings
):
    org = Org(sandbox)
    account = org.account(Billing_Entity__c=False)
    order_id, _ = org.order(account, [{"product": "Suite", "price": 10.0}])

    result = run_sync(SYNC_ALL)

    outcome = result.outcome(order_id)
    assert outcome.status == "refused"
    assert account in outcome.message and "no Stripe Customer" in outcome.message
    assert record(sandbox, "Order", order_id)["Stripe_Sync_Status__c"] == "Refused"
    for kind in ("customer", "product", "price", "subscription"):
        assert stripe_objects(sandbox, kind) == [], kind

    # Making the Account a billing entity does not touch the Order: the retry picks it up.
    sandbox.sf_admin.patch_record("Account", account, {"Billing_Entity__c": True})
    with StateStore.open(connector_settings.database_url) as store:
        failure = store.failures.get("subscription", order_id)
        assert failure is not None and failure.retryable
    with open_context(connector_settings, load_mappings(connector_settings.mappings_dir)) as ctx:
        report = RunReport("retry")
        polling.sync_ids(OrderSync(ctx), [order_id], report)
    assert next(o for o in report.outcomes if o.sf_id == order_id).status == "created"
    assert record(sandbox, "Order", order_id)["Stripe_Sync_Status__c"] == "Synced"


def test_draft_orders_are_left_alone(sandbox, run_sync):
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), [{"product": "Suite", "price": 10.0}], status="Draft")

    result = run_sync(SYNC_ALL)

    assert all(o.sf_id != order_id for r in result.reports for o in r.outcomes)
    assert stripe_objects(sandbox, "subscription") == []


# --------------------------------------------------------------------------------------------------
# Reuse, no double billing


def test_products_and_prices_are_reused_across_orders_and_runs(sandbox, run_sync):
    org = Org(sandbox)
    a1, a2 = org.account(), org.account(Name="Initech")
    first, _ = org.order(a1, [{"product": "Suite", "price": 100.0, "quantity": 2}])
    second, _ = org.order(a2, [{"product": "Suite", "price": 100.0, "quantity": 5}])

    result = run_sync(SYNC_ALL)

    assert {result.outcome(first).status, result.outcome(second).status} == {"created"}
    assert result.stripe_calls.get("products.create") == 1
    assert result.stripe_calls.get("prices.create") == 1
    assert result.stripe_calls.get("subscriptions.create") == 2
    price = only(stripe_objects(sandbox, "price"))
    assert {sub_items(s)[0]["price"]["id"] for s in stripe_objects(sandbox, "subscription")} == {price["id"]}

    # A later order for the same product, in another run: the price is checked once, not created.
    third, _ = org.order(org.account(Name="Umbrella"), [{"product": "Suite", "price": 100.0}])
    result = run_sync(SYNC_ALL)
    assert result.outcome(third).status == "created", result.outcome(third).message
    assert "products.create" not in result.stripe_calls and "prices.create" not in result.stripe_calls
    assert len(stripe_objects(sandbox, "price")) == 1 and len(stripe_objects(sandbox, "product")) == 1


def test_orders_sharing_products_run_side_by_side_and_create_each_shared_object_once(sandbox, run_sync):
    # Twelve Orders on the workers at once, all on the same two products (one metered) and price
    # book entries, each with a discounted line of its own. With 50 ms per Stripe request the
    # workers overlap; the shared Product, Meter and Prices must still exist exactly once.
    sandbox.stripe_admin.config(latency_ms=50)
    org = Org(sandbox)
    accounts = [org.account(Name=f"Customer {n}") for n in range(6)]
    orders = [
        org.order(
            accounts[n % 6],
            [
                {"product": "Suite", "price": 100.0, "quantity": 1 + n},
                {"product": "API Calls", "price": 0.5, "kind": USAGE, "quantity": 1},
                {"product": "Support", "price": 30.0, "unit": 30.0 - n - 1},
            ],
        )[0]
        for n in range(12)
    ]

    result = run_sync(SYNC_ALL)

    assert [result.outcome(o).status for o in orders] == ["created"] * 12, [
        result.outcome(o).message for o in orders
    ]
    products = stripe_objects(sandbox, "product")
    assert sorted(p["name"] for p in products) == ["API Calls", "Suite", "Support"]
    assert result.stripe_calls.get("products.create") == 3
    prices = stripe_objects(sandbox, "price")
    by_record = {}
    for price in prices:
        by_record.setdefault(price["metadata"]["salesforce_record_id"], []).append(price["id"])
    # Suite's and API Calls' entries: one price each; Support: one per discounted OrderItem.
    assert len(prices) == 2 + 12 and all(len(ids) == 1 for ids in by_record.values())
    assert len(stripe_objects(sandbox, "billing.meter")) == 1
    subs = stripe_objects(sandbox, "subscription")
    assert sorted(s["metadata"]["salesforce_order_id"] for s in subs) == sorted(orders)
    for order_id in orders:
        assert record(sandbox, "Order", order_id)["Stripe_Subscription_ID__c"]


def test_product_and_price_ids_lost_from_salesforce_are_written_back_again(
    sandbox, run_sync, connector_settings
):
    # A write-back of a Product2 or PricebookEntry that failed for good is not re-sent by the
    # Order's own write-back; the next time the synced Order is seen, its links fill them in.
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), [{"product": "Platform", "price": 49.0}])
    assert run_sync(SYNC_ALL).outcome(order_id).status == "created"
    product_id, entry_id = org.products["Platform"], org.entries[("Platform", "USD")]
    product = only(stripe_objects(sandbox, "product"))["id"]
    price = only(stripe_objects(sandbox, "price"))["id"]
    sandbox.sf_admin.patch_record("Product2", product_id, {"Stripe_Product_ID__c": None})
    sandbox.sf_admin.patch_record("PricebookEntry", entry_id, {"Stripe_Price_ID__c": None})
    posts_before = len(stripe_posts(sandbox))

    with open_context(connector_settings, load_mappings(connector_settings.mappings_dir)) as ctx:
        report = RunReport("retry")
        polling.sync_ids(OrderSync(ctx), [order_id], report)

    assert next(o for o in report.outcomes if o.sf_id == order_id).status == "unchanged"
    assert record(sandbox, "Product2", product_id)["Stripe_Product_ID__c"] == product
    assert record(sandbox, "PricebookEntry", entry_id)["Stripe_Price_ID__c"] == price
    assert len(stripe_posts(sandbox)) == posts_before


def test_a_second_sync_makes_no_stripe_writes(sandbox, run_sync):
    org = Org(sandbox)
    account = org.account()
    org.order(
        account, [{"product": "Suite", "price": 100.0}, {"product": "Setup", "price": 5.0, "kind": ONE_TIME}]
    )
    org.order(account, [{"product": "Suite", "price": 90.0}], start=TODAY + timedelta(days=3))
    run_sync(SYNC_ALL)
    before = len(stripe_posts(sandbox))

    again = run_sync(SYNC_ALL)

    assert len(stripe_posts(sandbox)) == before
    assert again.stripe_calls == {} or set(again.stripe_calls) <= {"account.retrieve"}
    assert all(o.status == "unchanged" for r in again.reports for o in r.outcomes)


def test_an_order_changed_after_activation_is_reported_not_rebilled(sandbox, run_sync):
    org = Org(sandbox)
    order_id, [item] = org.order(org.account(), [{"product": "Suite", "price": 100.0, "quantity": 2}])
    run_sync(SYNC_ALL)
    sub = only(stripe_objects(sandbox, "subscription"))
    before = len(stripe_posts(sandbox))

    sandbox.sf_admin.patch_record("OrderItem", item, {"Quantity": 7})
    sandbox.sf_admin.patch_record("Order", order_id, {"Description": "seats added"})
    result = run_sync(SYNC_ALL)

    outcome = result.outcome(order_id)
    assert outcome.status == "refused" and "changed after activation" in outcome.message
    assert len(stripe_posts(sandbox)) == before
    assert only(stripe_objects(sandbox, "subscription"))["id"] == sub["id"]
    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Subscription_ID__c"] == sub["id"]
    assert order["Stripe_Sync_Status__c"] == "Refused"
    assert "amend in Stripe by hand" in order["Stripe_Sync_Message__c"]


def test_an_order_whose_salesforce_field_names_its_subscription_is_linked_not_recreated(
    sandbox, run_sync, connector_settings, tmp_path
):
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), [{"product": "Suite", "price": 100.0}])
    run_sync(SYNC_ALL)
    sub = only(stripe_objects(sandbox, "subscription"))

    # A state store rebuilt with only the Customer links (the Accounts pipeline has its own tests).
    fresh = connector_settings.model_copy(update={"database_url": f"sqlite:///{tmp_path}/rebuilt.db"})
    with StateStore.open(connector_settings.database_url) as old, StateStore.open(fresh.database_url) as new:
        for link in old.links.all(object_type="customer"):
            new.links.record_intent(
                link.stripe_account, "customer", "Account", link.sf_id, link.idempotency_key
            )
            new.links.mark_linked(
                link.stripe_account,
                "customer",
                link.sf_id,
                stripe_id=link.stripe_id,
                payload_hash=link.payload_hash,
                sf_modstamp=link.sf_modstamp,
            )
    result = run_sync(("orders",), settings=fresh)

    assert result.outcome(order_id).action == "adopt", result.outcome(order_id)
    assert only(stripe_objects(sandbox, "subscription"))["id"] == sub["id"]
    assert "subscriptions.create" not in result.stripe_calls


def test_the_seeded_org_syncs_every_valid_order_and_refuses_the_others(sandbox, run_sync):
    sandbox.sf_admin.seed(accounts=12, orders=40, seed=7)

    result = run_sync(SYNC_ALL)

    assert not any(r.fatal for r in result.reports), [r.fatal for r in result.reports]
    activated = sandbox.sf_admin.query(
        "SELECT Id, Stripe_Subscription_ID__c, Stripe_Sync_Status__c, Stripe_Sync_Message__c "
        "FROM Order WHERE StatusCode = 'Activated'"
    )
    assert activated
    subs = {s["id"] for s in stripe_objects(sandbox, "subscription")}
    subs |= {s["id"] for s in stripe_objects(sandbox, "subscription_schedule")}
    metered_gap = 0
    for order in activated:
        status = order["Stripe_Sync_Status__c"]
        if status == "Failed" and "meter" in (order["Stripe_Sync_Message__c"] or "").lower():
            metered_gap += 1  # the fake Stripe has no Billing Meters yet
            continue
        assert status in ("Synced", "Refused"), order
        if status == "Synced":
            assert order["Stripe_Subscription_ID__c"] in subs
        else:
            assert order["Stripe_Subscription_ID__c"] is None and "Fix:" in order["Stripe_Sync_Message__c"]
    synced = [o for o in activated if o["Stripe_Sync_Status__c"] == "Synced"]
    assert len(synced) == len(subs)
    assert synced and metered_gap < len(activated)


def test_a_dry_run_plans_orders_without_writing_anything(sandbox, run_sync):
    org = Org(sandbox)
    good, _ = org.order(org.account(), [{"product": "Suite", "price": 100.0}])
    bad, _ = org.order(org.account(Name="Initech"), [{"product": "Suite", "price": 100.0, "quantity": 1.5}])

    result = run_sync(("orders",), dry_run=True)

    assert result.outcome(good).action == "create" and result.outcome(good).status == "planned"
    assert result.outcome(bad).action == "refuse" and "whole" in result.outcome(bad).message
    assert stripe_posts(sandbox) == []
    assert record(sandbox, "Order", bad)["Stripe_Sync_Status__c"] is None
