"""`cpq2stripe status` on a real state store: failures grouped by reason and filtered, the same
facts as JSON, and a leader whose lease ran out no longer shown as the leader."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from connector.state.store import StateStore
from connector.status import FailureFilter, print_status

NOW = datetime.now(UTC)


def _store(tmp_path) -> tuple[SimpleNamespace, StateStore]:
    url = f"sqlite:///{tmp_path}/state.db"
    store = StateStore.open(url)
    for n in range(3):
        store.failures.record(
            "customer", "Account", f"001{n:015d}", "invalid_data", "bad country", False, NOW
        )
    store.failures.record(
        "subscription", "Order", "801000000000000001", "order_type", "Amendment", False, NOW
    )
    old = NOW - timedelta(days=3)
    store.failures.record("subscription", "Order", "801000000000000002", "rate_limited", "429", True, old)
    return SimpleNamespace(database_url=url, heartbeat_interval_seconds=5.0), store


def _lines(settings, **kw) -> list[str]:
    out: list[str] = []
    print_status(settings, out=out.append, **kw)  # type: ignore[arg-type]
    return out


def test_failures_are_grouped_by_reason_most_first_and_can_be_filtered(tmp_path):
    settings, store = _store(tmp_path)
    store.close()

    text = _lines(settings, failed_only=True)
    assert text[0] == "Needing attention: 5"
    groups = [line.strip() for line in text[2:5]]
    assert groups[0] == "3  Account [invalid_data]"
    assert {g.split("  ", 1)[1] for g in groups[1:]} == {"Order [order_type]", "Order [rate_limited]"}

    orders = _lines(settings, failed_only=True, only=FailureFilter(object="orders"))
    assert orders[0] == "Needing attention: 2"
    reason = _lines(settings, failed_only=True, only=FailureFilter(reason="invalid_data"))
    assert reason[0] == "Needing attention: 3" and all("801" not in line for line in reason)
    recent = _lines(settings, failed_only=True, only=FailureFilter(since=NOW - timedelta(days=1)))
    assert recent[0] == "Needing attention: 4" and not any("rate_limited" in line for line in recent)


def test_status_as_json_carries_the_same_facts(tmp_path):
    settings, store = _store(tmp_path)
    store.close()

    [doc] = _lines(settings, failed_only=False, as_json=True)
    data = json.loads(doc)
    assert len(data["failures"]) == 5
    assert data["failures_by_reason"][0] == {"sf_object": "Account", "reason": "invalid_data", "count": 3}
    assert data["links"] == [] and data["instances"] == []


def test_a_leader_whose_lease_expired_is_not_shown_as_the_leader(tmp_path):
    settings, store = _store(tmp_path)
    store.instances.acquire_lease("daemon", "dead-1", timedelta(seconds=-1))  # ran out already
    store.instances.heartbeat("dead-1", "leader", "host-a", 4242, {})
    store.close()

    text = "\n".join(_lines(settings, failed_only=False))
    assert "former leader, lease expired at " in text and "holds the lease" not in text


def test_an_interrupted_backfill_shows_what_it_did_and_how_to_continue(tmp_path):
    settings, store = _store(tmp_path)
    run = store.runs.start("backfill")
    store.runs.finish(run, {"customer created": 440}, "interrupted", "interrupted (Ctrl-C) before the end")
    store.close()

    text = _lines(settings, failed_only=False)
    [line] = [t for t in text if t.startswith("Last backfill run:")]
    assert line.startswith("Last backfill run: interrupted at ") and line.endswith(": 440 customer created")
    assert text[text.index(line) + 1] == (
        "  interrupted (Ctrl-C) before the end; run `cpq2stripe backfill` again to continue"
    )
    [doc] = _lines(settings, failed_only=False, as_json=True)
    backfill = json.loads(doc)["last_runs"]["backfill"]
    assert backfill["status"] == "interrupted" and backfill["counts"] == {"customer created": 440}
