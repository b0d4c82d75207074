"""`cpq2stripe demo`: the whole connector against the bundled sandbox, in one command.

Starts the fake Salesforce org (seeded with a realistic CPQ org, bad rows included) and the fake
Stripe, syncs, prints what happened, syncs again to show that nothing changes, then follows one
CPQ contract through an amendment and a renewal (phases of one Stripe subscription) and a German
customer's VAT number and free trial, then stops.
Everything lives in a temporary directory; nothing outside it is touched.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.home import DEFAULT_MAPPING_FILES, default_mapping
from connector.mapping import Mappings, load_mappings
from connector.settings import Settings, load_settings
from connector.sync.context import SyncContext
from connector.sync.report import RunReport
from connector.sync.runner import open_context, run_pass

DEMO_ACCOUNTS = 40
DEMO_ORDERS = 25
DEMO_SEED = 7


def _mappings_dir(directory: Path) -> Path:
    """The working directory's mappings/ (the repository's, an admin's edits), else the package's
    defaults copied into the demo's temporary directory (an installed package has no mappings/)."""
    here = Path.cwd() / "mappings"
    if here.is_dir():
        return here
    copy = directory / "mappings"
    copy.mkdir()
    for name in DEFAULT_MAPPING_FILES:
        (copy / name).write_bytes(default_mapping(name))
    return copy


def run_demo(out: Callable[[str], None], *, accounts: int = DEMO_ACCOUNTS, orders: int = DEMO_ORDERS) -> int:
    from connector.sandbox.runner import start_sandbox

    with tempfile.TemporaryDirectory(prefix="cpq2stripe-demo-") as tmp:
        directory = Path(tmp)
        out(
            f"Starting the sandbox: a fake Salesforce org with {accounts} Accounts and {orders} Orders, "
            "and a fake Stripe …"
        )
        with start_sandbox(
            directory / "sandbox", accounts=accounts, orders=orders, seed=DEMO_SEED, stripe_rps=100
        ) as sandbox:
            out(f"  Salesforce: {sandbox.salesforce_url}   Stripe: {sandbox.stripe_url}")
            env = {k.removeprefix("CPQ2STRIPE_").lower(): v for k, v in sandbox.env.items()}
            settings = load_settings(
                None,
                **env,
                database_url=f"sqlite:///{directory / 'state' / 'connector.db'}",
                mappings_dir=_mappings_dir(directory),
            )
            mappings = load_mappings(settings.mappings_dir)
            code = 0
            for attempt, title in ((1, "First sync"), (2, "Second sync (nothing changed in Salesforce)")):
                out("")
                out(f"== {title} ==")
                with open_context(settings, mappings) as ctx:
                    reports = run_pass(ctx, dry_run=False, objects=["accounts", "orders"])
                    for report in reports:
                        for line in report.summary_lines(limit_failures=15):
                            out(line)
                    out(
                        f"Stripe API calls: {ctx.gateway.total_calls} (writes: {ctx.gateway.write_calls}); "
                        f"Salesforce API calls: {ctx.sf.total_calls}"
                    )
                    if attempt == 1:
                        _show_written_back(ctx, out)
                        _show_orders(ctx, reports, out)
                    if any(r.fatal for r in reports):
                        code = 3
            if code == 0:
                _show_contract(sandbox, settings, mappings, out)
                _show_trial_and_tax(sandbox, settings, mappings, out)
            out("")
            out(
                "Stopping the sandbox. Run it yourself with `cpq2stripe sandbox --dir .sandbox "
                "--accounts 40 --orders 25` and point the connector at it with `set -a; . .sandbox/env`."
            )
        return code


def _show_written_back(ctx: SyncContext, out: Callable[[str], None]) -> None:
    wb = ctx.mappings.customer.write_back
    fields = ", ".join(f for f in (wb.stripe_id, wb.status) if f)
    rows = ctx.sf.query_all(f"SELECT Name, {fields} FROM Account ORDER BY Name LIMIT 5")
    out("Written back to Salesforce (first 5 Accounts by name):")
    for row in rows:
        out(f"  {row['Name'][:40]:40} {row.get(wb.stripe_id) or '—':22} {row.get(wb.status) or ''}")


def _show_orders(ctx: SyncContext, reports: list[RunReport], out: Callable[[str], None]) -> None:
    calls = ctx.gateway.calls
    made = {
        "products": calls.get("products.create", 0),
        "prices": calls.get("prices.create", 0),
        "meters": calls.get("billing.meters.create", 0),
        "subscriptions": calls.get("subscriptions.create", 0),
        "schedules (future starts)": calls.get("subscription_schedules.create", 0),
    }
    out("Created in Stripe for the Orders: " + ", ".join(f"{n} {what}" for what, n in made.items()))
    rows = ctx.sf.query_all(
        "SELECT OrderNumber, Stripe_Subscription_ID__c, Stripe_Sync_Status__c FROM Order "
        "WHERE StatusCode = 'Activated' ORDER BY OrderNumber LIMIT 8"
    )
    out("Written back to Salesforce (first 8 activated Orders):")
    for row in rows:
        out(
            f"  Order {row['OrderNumber']}  {row.get('Stripe_Subscription_ID__c') or '—':36} "
            f"{row.get('Stripe_Sync_Status__c') or ''}"
        )


def _show_contract(sandbox: Any, settings: Settings, mappings: Mappings, out: Callable[[str], None]) -> None:
    """A CPQ contract's life in one subscription: sold, amended (+5 seats in two months), renewed
    at a new price, each Order a phase of the same Stripe schedule."""
    from connector.sandbox.salesforce.contracts import Line, amend, create_contract, renew
    from connector.sync.order_rules import add_months

    org, today = sandbox.salesforce.org, datetime.now(UTC).date()
    out("")
    out("== A contract's life: sold, amended, renewed (one Stripe subscription) ==")
    with open_context(settings, mappings) as ctx:
        [made] = ctx.sf.create_many(
            "Account",
            [{"Name": "Contoso (contract demo)", "Billing_Email__c": "ap@contoso.example",
              "BillingCountry": "US", "Billing_Entity__c": True}],
        )  # fmt: skip
        assert made.id is not None
        contract = create_contract(org, made.id, today, [Line("Seats", 10, 10.0)], term_months=12)
        run_pass(ctx, dry_run=False, objects=["accounts", "orders"])
        more = amend(org, contract, add_months(today, 2), {"Seats": 5})
        renewal = renew(org, contract, prices={"Seats": 12.0})
        reports = run_pass(ctx, dry_run=False, objects=["orders"])
        outcomes = {o.sf_id: o for r in reports for o in r.outcomes}
        for label, order_id in (
            ("Amendment (+5 seats)", more.id),
            ("Renewal (new price)", renewal.orders[0].id),
        ):
            o = outcomes.get(order_id)
            out(f"  {label}: {o.status if o else 'not seen'} — {o.message if o else ''}")


def _show_trial_and_tax(
    sandbox: Any, settings: Settings, mappings: Mappings, out: Callable[[str], None]
) -> None:
    """A German customer with a VAT number (a Stripe tax ID typed from it and the country) buying
    with a two-week free trial (the Order's Stripe_Trial_End_Date__c)."""
    from datetime import timedelta

    from connector.salesforce.soql import id_literal
    from connector.sandbox.salesforce.contracts import Line, create_contract

    org, today = sandbox.salesforce.org, datetime.now(UTC).date()
    trial_end = today + timedelta(days=14)
    out("")
    out("== A VAT number and a free trial ==")
    with open_context(settings, mappings) as ctx:
        [made] = ctx.sf.create_many(
            "Account",
            [{"Name": "Müller GmbH (tax demo)", "Billing_Email__c": "rechnung@mueller.example",
              "BillingStreet": "Hauptstraße 1", "BillingPostalCode": "10115", "BillingCity": "Berlin",
              "BillingCountry": "DE", "VAT_Number__c": "123456789", "Billing_Entity__c": True}],
        )  # fmt: skip
        assert made.id is not None
        contract = create_contract(
            org, made.id, today, [Line("Seats", 3, 10.0)], term_months=12,
            Stripe_Trial_End_Date__c=trial_end.isoformat(),
        )  # fmt: skip
        run_pass(ctx, dry_run=False, objects=["accounts", "orders"])
        stripe = ctx.gateway.client.v1
        account = ctx.sf.query_all(
            f"SELECT Stripe_Customer_ID__c FROM Account WHERE Id = {id_literal(made.id)}"
        )[0]
        customer = account["Stripe_Customer_ID__c"]
        tax_ids = [f"{t.type} {t.value}" for t in stripe.customers.tax_ids.list(customer).data]
        out(f"  Account VAT_Number__c 123456789, country DE -> {customer}, tax ID {', '.join(tax_ids)}")
        order = contract.orders[0].id
        row = ctx.sf.query_all(f"SELECT Stripe_Subscription_ID__c FROM Order WHERE Id = {id_literal(order)}")[
            0
        ]
        sub = stripe.subscriptions.retrieve(row["Stripe_Subscription_ID__c"])
        ends = datetime.fromtimestamp(sub.trial_end or 0, UTC).date()
        out(f"  Order with Stripe_Trial_End_Date__c {trial_end} -> {sub.id}, {sub.status} until {ends}")
