"""Helpers for the Orders end-to-end tests: build a small CPQ catalog and Orders in the fake org."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from connector.faults import ENV as CRASH_ENV
from connector.sync.order_rules import add_months

from .conftest import MAPPINGS, REPO

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
    products: dict[str, str] = field(default_factory=dict)
    entries: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pricebook = self.sandbox.sf_admin.create_record(
            "Pricebook2", {"Name": "Standard", "IsActive": True}
        )

    def account(self, **fields: Any) -> str:
        return self.sandbox.sf_admin.create_record("Account", {**BILLING_ACCOUNT, **fields})

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
                {
                    "Pricebook2Id": self.pricebook,
                    "Product2Id": self.product(name),
                    "UnitPrice": price,
                    "CurrencyIsoCode": currency,
                    "IsActive": True,
                },
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
            },
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
        if status == "Activated":
            self.sandbox.sf_admin.patch_record("Order", order_id, {"Status": "Activated"})
        return order_id, item_ids


def stripe_objects(sandbox: Any, kind: str) -> list[dict[str, Any]]:
    return [o for o in sandbox.stripe_admin.objects(kind) if not o.get("deleted")]


def stripe_posts(sandbox: Any) -> list[dict[str, Any]]:
    return [r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"]


def record(sandbox: Any, sobject: str, record_id: str) -> dict[str, Any]:
    return sandbox.sf_admin.get_record(sobject, record_id)


def cli(
    sandbox: Any, database_url: str, *args: str, crash_at: str | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPQ2STRIPE_")}
    env.update(sandbox.env)
    env["CPQ2STRIPE_DATABASE_URL"] = database_url
    env["CPQ2STRIPE_MAPPINGS_DIR"] = str(MAPPINGS)
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --------------------------------------------------------------------------------------------------
# Tests


def test_smoke_one_monthly_order(sandbox, run_sync):
    org = Org(sandbox)
    account = org.account()
    order_id, [_item] = org.order(account, [{"product": "Platform", "price": 49.0, "quantity": 3}])

    result = run_sync(("accounts", "orders"))

    outcome = result.outcome(order_id)
    assert outcome.status == "created", outcome.message
    [sub] = stripe_objects(sandbox, "subscription")
    assert sub["id"] == outcome.stripe_id
