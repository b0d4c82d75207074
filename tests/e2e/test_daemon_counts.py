"""The daemon's polls count per object as `sync` does: an Order whose Account had no Customer yet
creates that Customer, which counts under Accounts, and the subscription under Orders (in-process
SyncWorker on the real clients against the sandbox; the daemon subprocess is in test_daemon.py)."""

from __future__ import annotations

import json
from typing import Any

from connector.daemon.metrics import Metrics
from connector.daemon.worker import SyncWorker
from connector.mapping import load_mappings
from connector.status import print_status
from connector.sync.runner import open_context

from .conftest import settings_for
from .test_orders import Org


def _poll_orders(sandbox: Any, url: str) -> tuple[Metrics, dict[str, Any]]:
    """One daemon poll of Orders; its metrics and then `status --json`."""
    settings = settings_for(sandbox, url)
    mappings = load_mappings(settings.mappings_dir)
    metrics = Metrics()
    with open_context(settings, mappings) as ctx:
        worker = SyncWorker(ctx, metrics, may_work=lambda: True, mappings=lambda: mappings)
        assert worker.poll(("Order",)) is True  # the poll the event listener asks for (catch-up)
    out: list[str] = []
    print_status(settings, failed_only=False, out=out.append, as_json=True)
    return metrics, json.loads(out[0])


def test_a_daemon_poll_counts_the_customer_made_for_an_order_under_accounts(sandbox, sqlite_url):
    org = Org(sandbox)
    account = org.account()
    org.order(account, [{"product": "Pro", "price": 49.0}])

    metrics, status = _poll_orders(sandbox, sqlite_url)

    assert status["last_runs"]["sync"]["counts"] == {"customer created": 1, "subscription created": 1}
    assert status["last_runs"]["sync"]["status"] == "succeeded"
    for kind in ("customer", "subscription"):
        labels = {"object": kind, "status": "created", "trigger": "poll"}
        assert metrics.get("cpq2stripe_records_total", labels) == 1
    assert metrics.totals_by_status()["synced"] == 2
