"""A restricted Stripe key holding only the permissions docs/PRODUCTION.md lists runs the connector.

Stripe lets no restricted key read `GET /v1/account`, so the connector takes the account from
`CPQ2STRIPE_STRIPE_ACCOUNT_ID`; without it the run stops with a message naming the setting and the
account Stripe's refusal named. The fake enforces each key's permissions as Stripe does.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from connector.stripe_sink import permissions

from .conftest import settings_for
from .test_orders import SYNC_ALL, TODAY, USAGE, Org, record, stripe_objects

REPO = Path(__file__).resolve().parents[2]
KEY = "rk_test_connectorOnly0001"


def restricted_settings(sandbox, connector_settings, granted, **overrides):
    sandbox.servers.stripe.configure(restricted_keys={KEY: granted})
    return settings_for(sandbox, connector_settings.database_url, stripe_secret_key=KEY, **overrides)


def test_the_documented_permissions_are_enough_for_accounts_and_every_kind_of_order(
    sandbox, run_sync, connector_settings
):
    account_id = sandbox.servers.stripe.state.store.account_id
    settings = restricted_settings(
        sandbox, connector_settings, permissions.required(), stripe_account_id=account_id
    )
    org = Org(sandbox)
    account = org.account()
    monthly, _ = org.order(account, [{"product": "Platform", "price": 49.0, "quantity": 3}])
    future, _ = org.order(account, [{"product": "Suite", "price": 100.0}], start=TODAY + timedelta(days=20))
    metered, _ = org.order(
        account,
        [{"product": "Platform", "price": 49.0}, {"product": "API Calls", "price": 0.5, "kind": USAGE}],
    )

    result = run_sync(SYNC_ALL, settings=settings)

    for order_id in (monthly, future, metered):
        assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    assert len(stripe_objects(sandbox, "subscription")) == 2
    assert len(stripe_objects(sandbox, "subscription_schedule")) == 1
    assert record(sandbox, "Account", account)["Stripe_Sync_Status__c"] == "Synced"
    assert not [r for r in sandbox.stripe_admin.requests() if r["path"] == "/v1/account"]
    assert not [r for r in sandbox.stripe_admin.requests() if r["status"] == 403]
    # A second run reads what it made (retrieve, list) with the same key and writes nothing.
    again = run_sync(SYNC_ALL, settings=settings)
    assert again.report.fatal is None


def test_without_the_account_setting_the_run_stops_and_names_the_setting_and_the_account(
    sandbox, run_sync, connector_settings
):
    account_id = sandbox.servers.stripe.state.store.account_id
    settings = restricted_settings(sandbox, connector_settings, permissions.required())
    Org(sandbox).account()

    result = run_sync(("accounts",), settings=settings)

    assert result.report.fatal is not None
    assert f"CPQ2STRIPE_STRIPE_ACCOUNT_ID={account_id}" in result.report.fatal
    assert stripe_objects(sandbox, "customer") == []


def test_a_missing_permission_stops_the_run_naming_the_permission(sandbox, run_sync, connector_settings):
    account_id = sandbox.servers.stripe.state.store.account_id
    short = [p for p in permissions.required() if p != "rak_subscription_schedule_write"]
    settings = restricted_settings(sandbox, connector_settings, short, stripe_account_id=account_id)
    org = Org(sandbox)
    org.order(org.account(), [{"product": "Suite", "price": 100.0}], start=TODAY + timedelta(days=20))

    result = run_sync(SYNC_ALL, settings=settings)

    fatal = " ".join(r.fatal or "" for r in result.reports)
    assert "rak_subscription_schedule_write" in fatal and "docs/PRODUCTION.md" in fatal


def test_a_secret_key_of_another_account_than_the_setting_is_refused(sandbox, run_sync, connector_settings):
    settings = settings_for(sandbox, connector_settings.database_url, stripe_account_id="acct_someoneElse123")
    Org(sandbox).account()

    result = run_sync(("accounts",), settings=settings)

    assert result.report.fatal is not None and "acct_someoneElse123" in result.report.fatal
    assert stripe_objects(sandbox, "customer") == []


def test_every_stripe_call_in_the_code_has_its_permission_and_the_docs_list_them_all():
    source = "\n".join(p.read_text() for p in (REPO / "connector").rglob("*.py") if "sandbox" not in p.parts)
    operation = r'"((?:[a-z_]+\.)+(?:create|update|retrieve|list|search|cancel|delete))"'
    called = set(re.findall(operation, source))
    called -= {"stripe.create"}  # not an operation name
    known = set(permissions.OPERATION_PERMISSIONS) | permissions.NO_RESTRICTED_PERMISSION
    assert called and called <= known, called - known
    docs = (REPO / "docs" / "PRODUCTION.md").read_text()
    for name, access, permission in permissions.dashboard_rows():
        assert re.search(rf"\|\s*{name}\s*\|\s*{access}\s*\|\s*`{permission}`", docs), (name, permission)
