"""The daemon's counters: Prometheus text format, heartbeat snapshot, the /metrics endpoint."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from connector.daemon.metrics import Metrics, MetricsServer
from connector.sync.report import Outcome, RunReport


def _report(*statuses: str) -> RunReport:
    report = RunReport("Accounts")
    for i, status in enumerate(statuses):
        report.add(Outcome("customer", f"001{i}", f"Acme {i}", "create", status))
    return report


def test_outcomes_become_labelled_counters_and_totals():
    m = Metrics()
    m.record_report(_report("created", "created", "updated", "failed", "refused", "unchanged"), "poll")
    m.record_report(_report("created"), "event")

    text = m.render()
    assert 'cpq2stripe_records_total{object="customer",status="created",trigger="poll"} 2' in text
    assert 'cpq2stripe_records_total{object="customer",status="created",trigger="event"} 1' in text
    assert m.totals_by_status() == {"synced": 4, "unchanged": 1, "failed": 1, "refused": 1}


def test_every_known_metric_has_help_and_type_even_before_it_has_a_value():
    text = Metrics().render()
    for name in ("cpq2stripe_records_total", "cpq2stripe_api_calls_total", "cpq2stripe_event_lag_seconds"):
        assert f"# HELP {name} " in text
        assert f"# TYPE {name} " in text


def test_collectors_are_read_at_scrape_time_and_a_failing_one_is_skipped():
    m = Metrics()
    calls = {"n": 1}
    m.collectors.append(lambda: [("cpq2stripe_api_calls_total", (("service", "stripe"),), float(calls["n"]))])

    def broken():
        raise RuntimeError("boom")

    m.collectors.append(broken)
    assert 'cpq2stripe_api_calls_total{service="stripe"} 1' in m.render()
    calls["n"] = 7
    assert 'cpq2stripe_api_calls_total{service="stripe"} 7' in m.render()
    assert m.snapshot()["api_calls"] == {"stripe": 7}


def test_label_values_are_escaped_and_fractions_keep_their_precision():
    m = Metrics()
    m.inc("cpq2stripe_jobs_total", {"job": 'a"b\\c\nd'})
    m.set("cpq2stripe_last_poll_success_timestamp_seconds", 1795320000.25)
    text = m.render()
    assert 'job="a\\"b\\\\c\\nd"' in text
    assert "cpq2stripe_last_poll_success_timestamp_seconds 1795320000.25" in text


def test_snapshot_is_small_and_json_shaped():
    m = Metrics()
    m.record_report(_report("created", "failed"), "poll")
    m.set("cpq2stripe_event_lag_seconds", 0.4567)
    snap = m.snapshot()
    assert snap["synced"] == 1 and snap["failed"] == 1
    assert snap["event_lag_seconds"] == 0.457
    assert snap["last_poll_at"] is None


def test_server_serves_metrics_and_404_elsewhere():
    m = Metrics()
    m.inc("cpq2stripe_jobs_total", {"job": "poll", "result": "ok"})
    server = MetricsServer(m, "127.0.0.1", 0).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert 'cpq2stripe_jobs_total{job="poll",result="ok"} 1' in resp.read().decode()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=10)
        assert err.value.code == 404
    finally:
        server.stop()
