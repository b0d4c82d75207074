"""The daemon's counters through prometheus_client: names and labels, the heartbeat snapshot, one
registry per daemon, and prometheus_client's HTTP server on an ephemeral port."""

from __future__ import annotations

import urllib.request

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connector.daemon.metrics import Metrics, MetricsServer
from connector.sync.report import Outcome, RunReport


def _report(*statuses: str) -> RunReport:
    report = RunReport("Accounts")
    for i, status in enumerate(statuses):
        report.add(Outcome("customer", f"001{i}", f"Acme {i}", "create", status))
    return report


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed by prometheus_client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_outcomes_become_labelled_counters_and_totals():
    m = Metrics()
    m.record_report(_report("created", "created", "updated", "failed", "refused", "unchanged"), "poll")
    m.record_report(_report("created"), "event")

    values = _values(m.render())
    key = (("object", "customer"), ("status", "created"))
    assert values[("cpq2stripe_records_total", (*key, ("trigger", "poll")))] == 2
    assert values[("cpq2stripe_records_total", (*key, ("trigger", "event")))] == 1
    assert m.totals_by_status() == {"synced": 4, "unchanged": 1, "failed": 1, "refused": 1}
    assert (
        m.get("cpq2stripe_records_total", {"object": "customer", "status": "failed", "trigger": "poll"}) == 1
    )


def test_every_documented_metric_has_help_and_type_even_before_it_has_a_value():
    text = Metrics().render()
    documented = {
        "cpq2stripe_records_total": "counter",
        "cpq2stripe_api_calls_total": "counter",
        "cpq2stripe_jobs_total": "counter",
        "cpq2stripe_event_ids_total": "counter",
        "cpq2stripe_listener_events_total": "counter",
        "cpq2stripe_mapping_reloads_total": "counter",
        "cpq2stripe_event_lag_seconds": "gauge",
        "cpq2stripe_event_handle_seconds": "gauge",
        "cpq2stripe_leader": "gauge",
        "cpq2stripe_last_poll_success_timestamp_seconds": "gauge",
    }
    for name, kind in documented.items():
        assert f"# HELP {name} " in text
        assert f"# TYPE {name} {kind}\n" in text


LABELS = (("service", "stripe"), ("kind", "customers.create"))


def test_sources_are_read_at_scrape_time_and_a_failing_one_is_skipped():
    m = Metrics()
    calls = {"n": 1}
    m.sources.append(
        lambda: [
            ("cpq2stripe_api_calls_total", (("service", "stripe"), ("kind", "customers.create")), calls["n"])
        ]
    )

    def broken():
        raise RuntimeError("boom")

    m.sources.append(broken)
    key = (
        "cpq2stripe_api_calls_total",
        (("kind", "customers.create"), ("service", "stripe"), ("stripe_account", "")),
    )
    assert _values(m.render())[key] == 1
    calls["n"] = 7
    assert _values(m.render())[key] == 7
    assert m.snapshot()["api_calls"] == {"stripe": 7}


def test_label_values_are_escaped_and_fractions_keep_their_precision():
    m = Metrics()
    m.inc("cpq2stripe_jobs_total", {"job": 'a"b\\c\nd', "result": "ok"})
    m.set("cpq2stripe_last_poll_success_timestamp_seconds", 1795320000.25)
    values = _values(m.render())
    assert values[("cpq2stripe_jobs_total", (("job", 'a"b\\c\nd'), ("result", "ok")))] == 1
    assert values[("cpq2stripe_last_poll_success_timestamp_seconds", ())] == 1795320000.25


def test_an_unknown_metric_name_is_an_error_not_a_new_series():
    with pytest.raises(KeyError):
        Metrics().inc("cpq2stripe_recrods_total", {"object": "customer"})


def test_snapshot_is_small_and_json_shaped():
    m = Metrics()
    m.record_report(_report("created", "failed"), "poll")
    m.sources.append(lambda: [("cpq2stripe_event_lag_seconds", (), 0.4567)])
    snap = m.snapshot()
    assert snap["synced"] == 1 and snap["failed"] == 1
    assert snap["event_lag_seconds"] == 0.457
    assert snap["last_poll_at"] is None


def test_each_daemon_has_its_own_registry_apart_from_the_global_one():
    a, b = Metrics(), Metrics()  # a second registry with the same names must not raise
    a.inc("cpq2stripe_jobs_total", {"job": "poll", "result": "ok"})
    assert b.get("cpq2stripe_jobs_total", {"job": "poll", "result": "ok"}) == 0
    assert (
        prometheus_client.REGISTRY.get_sample_value("cpq2stripe_jobs_total", {"job": "poll", "result": "ok"})
        is None
    )


def test_server_on_port_0_reports_its_port_and_serves_the_registry():
    m = Metrics()
    m.inc("cpq2stripe_jobs_total", {"job": "poll", "result": "ok"})
    server = MetricsServer(m, "127.0.0.1", 0)
    try:
        assert server.port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            values = _values(resp.read().decode())
        assert values[("cpq2stripe_jobs_total", (("job", "poll"), ("result", "ok")))] == 1
    finally:
        server.stop()


def test_a_port_in_use_is_an_oserror_the_daemon_reports():
    first = MetricsServer(Metrics(), "127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            MetricsServer(Metrics(), "127.0.0.1", first.port)
    finally:
        first.stop()
