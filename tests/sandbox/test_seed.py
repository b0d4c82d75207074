"""The seed generator: deterministic, exact counts, varied, and valid for the fake org."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest

from connector.sandbox.salesforce.ids import is_valid_id
from connector.sandbox.salesforce.org import Org
from connector.sandbox.salesforce.seed import CATALOG, CURRENCIES, add_months, counts, generate

TODAY = date(2025, 3, 14)


@pytest.fixture(scope="module")
def big() -> list[tuple[str, dict]]:
    return generate(400, 600, seed=7, today=TODAY)


def _of(records: list[tuple[str, dict]], sobject: str) -> list[dict]:
    return [r for obj, r in records if obj == sobject]


def test_same_arguments_give_identical_output() -> None:
    assert generate(50, 80, seed=3, today=TODAY) == generate(50, 80, seed=3, today=TODAY)


def test_other_seed_gives_other_output() -> None:
    assert generate(50, 80, seed=3, today=TODAY) != generate(50, 80, seed=4, today=TODAY)


@pytest.mark.parametrize(("accounts", "orders"), [(0, 0), (1, 0), (1, 1), (5, 3), (37, 91)])
def test_exact_counts(accounts: int, orders: int) -> None:
    per_object = counts(generate(accounts, orders, seed=1, today=TODAY))
    assert per_object.get("Account", 0) == accounts
    assert per_object.get("Order", 0) == orders
    assert per_object["Product2"] == len(CATALOG)
    assert per_object["Pricebook2"] == 1
    assert per_object["PricebookEntry"] == len(CATALOG) * len(CURRENCIES)


def test_orders_without_accounts_are_refused() -> None:
    with pytest.raises(ValueError):
        generate(0, 1, seed=1)


def test_ids_unique_well_formed_and_parents_come_first(big: list[tuple[str, dict]]) -> None:
    seen: set[str] = set()
    for _, record in big:
        assert is_valid_id(record["Id"]) and len(record["Id"]) == 18
        for name, value in record.items():
            if name != "Id" and name.endswith("Id") and value is not None:
                assert value in seen, f"{name}={value} refers to a record not inserted before it"
        assert record["Id"] not in seen
        seen.add(record["Id"])


def test_every_record_passes_the_orgs_validation(big: list[tuple[str, dict]]) -> None:
    org = Org()
    assert org.load(big) == len(big)
    assert org.count("Account") == 400
    assert org.count("Order") == 600


@pytest.mark.parametrize("seed", range(5))
def test_other_seeds_load_too(seed: int) -> None:
    records = generate(120, 200, seed=seed, today=TODAY)
    assert Org().load(records) == len(records)


def test_account_variety(big: list[tuple[str, dict]]) -> None:
    accounts = _of(big, "Account")
    children = [a for a in accounts if a["ParentId"]]
    assert 0.08 < len(children) / len(accounts) < 0.25
    assert sum(not a["Billing_Entity__c"] for a in children) > len(children) / 2
    assert all(a["Billing_Entity__c"] for a in accounts if not a["ParentId"])
    assert any(not a["Name"].isascii() for a in accounts)
    assert any(
        any("\u3040" <= ch <= "\u9fff" or "\u30a0" <= ch <= "\u30ff" for ch in a["Name"]) for a in accounts
    )
    currencies = Counter(a["CurrencyIsoCode"] for a in accounts)
    assert {"USD", "EUR", "GBP", "JPY"} <= set(currencies)
    countries = {a["BillingCountry"] for a in accounts}
    assert {"Germany", "DE"} <= countries  # names and ISO codes both occur
    valid = [a for a in accounts if a["Billing_Email__c"] and a["Phone"] and a["BillingCountry"]]
    assert len(valid) / len(accounts) > 0.9


def test_invalid_rows_present(big: list[tuple[str, dict]]) -> None:
    accounts = _of(big, "Account")
    assert any(a["BillingCountry"] in {"Atlantis", "Narnia", "Wakanda", "Elbonia"} for a in accounts)
    assert any(a["Phone"] in {"call me", "ask for Jürgen", "n/a"} for a in accounts)
    assert any(a["Description"] and len(a["Description"]) > 350 for a in accounts)
    emails = [a["Billing_Email__c"] or "" for a in accounts]
    assert any(".." in e or e.startswith(".") or ".@" in e for e in emails)
    spoiled = sum(
        1
        for a in accounts
        if a["BillingCountry"] in {"Atlantis", "Narnia", "Wakanda", "Elbonia"}
        or a["Phone"] in {"call me", "ask for Jürgen", "n/a"}
        or (a["Description"] and len(a["Description"]) > 350)
        or a["Billing_Email__c"] is None
        or a["BillingCountry"] is None
        or ".." in (a["Billing_Email__c"] or "")
    )
    assert 0.02 < spoiled / len(accounts) < 0.12


def test_catalog_covers_cpq_charge_types() -> None:
    records = generate(0, 0, seed=0)
    products = _of(records, "Product2")
    frequencies = {
        p["SBQQ__BillingFrequency__c"] for p in products if p["SBQQ__ChargeType__c"] == "Recurring"
    }
    assert {"Monthly", "Quarterly", "Semiannual", "Annual", "Invoice Plan"} <= frequencies
    assert any(p["SBQQ__ChargeType__c"] == "One-Time" for p in products)
    assert any(
        p["SBQQ__ChargeType__c"] == "Usage" and p["SBQQ__BillingType__c"] == "Arrears" for p in products
    )
    sub_types = Counter(p["SBQQ__SubscriptionType__c"] for p in products)
    assert sub_types["Renewable"] > sub_types["Evergreen"] > 0
    (pricebook,) = _of(records, "Pricebook2")
    assert pricebook["IsStandard"] is True


def test_order_variety(big: list[tuple[str, dict]]) -> None:
    orders = _of(big, "Order")
    items = _of(big, "OrderItem")
    by_order: dict[str, list[dict]] = {}
    for item in items:
        by_order.setdefault(item["OrderId"], []).append(item)
    statuses = Counter(o["Status"] for o in orders)
    assert 0.6 < statuses["Activated"] / len(orders) < 0.8
    assert statuses["Draft"] + statuses["Activated"] == len(orders)
    assert any(o["CurrencyIsoCode"] == "JPY" for o in orders)
    starts = [date.fromisoformat(o["EffectiveDate"]) for o in orders]
    assert (
        any(d < TODAY for d in starts) and any(d == TODAY for d in starts) and any(d > TODAY for d in starts)
    )
    assert Counter(o["Payment_Term__c"] for o in orders).most_common(1)[0][0] == "Net 30"
    assert any(o["Id"] not in by_order for o in orders)  # an order with no lines

    def frequencies(order_id: str) -> set[str]:
        return {
            i["SBQQ__BillingFrequency__c"]
            for i in by_order.get(order_id, [])
            if i["SBQQ__ChargeType__c"] == "Recurring"
        }

    assert any(len(frequencies(o["Id"])) > 1 for o in orders)
    assert all(1 <= len(lines) <= 5 for lines in by_order.values())
    assert any(i["Quantity"] == 2.5 for i in items)
    assert sum(i["Quantity"].is_integer() for i in items) / len(items) > 0.95
    assert {i["SBQQ__ChargeType__c"] for i in items} == {"Recurring", "One-Time", "Usage"}
    evergreen = [o for o in orders if o["EndDate"] is None]
    assert evergreen
    for o in evergreen:
        assert all(
            i["SBQQ__SubscriptionType__c"] == "Evergreen"
            for i in by_order[o["Id"]]
            if i["SBQQ__ChargeType__c"] == "Recurring"
        )


def test_order_dates_and_prices_are_consistent(big: list[tuple[str, dict]]) -> None:
    accounts = {a["Id"]: a for a in _of(big, "Account")}
    products = {p["Id"]: p for p in _of(big, "Product2")}
    entries = {e["Id"]: e for e in _of(big, "PricebookEntry")}
    orders = {o["Id"]: o for o in _of(big, "Order")}
    for order in orders.values():
        assert order["CurrencyIsoCode"] == accounts[order["AccountId"]]["CurrencyIsoCode"]
        if order["EndDate"]:
            start = date.fromisoformat(order["EffectiveDate"])
            assert order["EndDate"] == (add_months(start, 12) - timedelta(days=1)).isoformat()
    discounted = 0
    for item in _of(big, "OrderItem"):
        order, entry, product = (
            orders[item["OrderId"]],
            entries[item["PricebookEntryId"]],
            products[item["Product2Id"]],
        )
        assert entry["Product2Id"] == item["Product2Id"]
        assert entry["CurrencyIsoCode"] == order["CurrencyIsoCode"]
        for cpq in (
            "SBQQ__ChargeType__c",
            "SBQQ__BillingType__c",
            "SBQQ__BillingFrequency__c",
            "SBQQ__SubscriptionType__c",
            "SBQQ__SubscriptionTerm__c",
        ):
            assert item[cpq] == product[cpq]
        assert item["UnitPrice"] <= entry["UnitPrice"]
        discounted += item["UnitPrice"] < entry["UnitPrice"]
        if order["CurrencyIsoCode"] == "JPY":
            assert float(item["UnitPrice"]).is_integer()
    assert 0 < discounted < len(_of(big, "OrderItem")) / 3
