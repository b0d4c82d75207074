"""Usage -> meter events under kills: whatever point a run dies at, each usage record reaches the
meter once and ends Synced (marked slow in tests/conftest.py: it kills processes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.conftest import run_cli
from tests.e2e.test_orders import USAGE, Org
from tests.e2e.test_usage import _record, _usage


@pytest.mark.parametrize("crash_at", ["usage.after_intent", "usage.after_create", "usage.after_link"])
def test_a_kill_anywhere_still_sends_each_usage_once(sandbox, store_url, crash_at: str) -> None:
    org = Org(sandbox)
    _order, (line,) = org.order(org.account(), [{"product": "API", "price": 0.5, "kind": USAGE}])
    assert run_cli(sandbox, store_url, "sync", "--objects", "accounts,orders").returncode == 0
    now = datetime.now(UTC)
    records = [_usage(sandbox, line, n, now - timedelta(seconds=n)) for n in (1, 2, 3)]

    killed = run_cli(sandbox, store_url, "sync", "--objects", "usage", crash_at=crash_at)
    assert killed.returncode != 0
    for _ in range(2):  # the rerun finishes; one more changes nothing
        done = run_cli(sandbox, store_url, "sync", "--objects", "usage")
        assert done.returncode == 0, done.stderr

    events = sandbox.stripe_admin.objects("billing.meter_event")
    assert sorted(e["identifier"] for e in events) == sorted(records)
    for usage_id in records:
        assert _record(sandbox, usage_id)["Stripe_Sync_Status__c"] == "Synced"
