"""Counters for operators: Prometheus `/metrics` through prometheus_client, and a snapshot of them
for the heartbeat (`status` shows it).

Each daemon has its own registry, not prometheus_client's global one, so several daemons (tests)
in one process never share or collide on a metric. Values that live elsewhere (the clients' API
call counts, the event listener's counters) are read at scrape time from `sources`. Off unless a
port is set (`CPQ2STRIPE_METRICS_PORT` or `cpq2stripe run --metrics-port`), bound to 127.0.0.1 by
default and served by prometheus_client's own HTTP server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from connector.sync.report import RunReport

log = logging.getLogger(__name__)

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]  # what a source yields: (metric name, labels, value)

RECORDS = "cpq2stripe_records_total"
API_CALLS = "cpq2stripe_api_calls_total"
EVENT_LAG = "cpq2stripe_event_lag_seconds"
LAST_POLL = "cpq2stripe_last_poll_success_timestamp_seconds"


@dataclass(frozen=True)
class _Scraped:
    """A metric whose value is read from a source when scraped."""

    family: type[CounterMetricFamily] | type[GaugeMetricFamily]
    help: str
    labels: tuple[str, ...] = ()


SCRAPED: dict[str, _Scraped] = {
    API_CALLS: _Scraped(
        CounterMetricFamily,
        "HTTP requests sent per service and kind (retries included); Stripe's per account when there "
        "are several (stripe_account, empty with one).",
        ("service", "kind", "stripe_account"),
    ),
    "cpq2stripe_listener_events_total": _Scraped(
        CounterMetricFamily, "Events received by the listener, by kind.", ("kind",)
    ),
    EVENT_LAG: _Scraped(
        GaugeMetricFamily,
        "Last event lag: from the change committed in Salesforce to its event reaching the listener.",
    ),
}


class _SourcesCollector:
    """Turns the sources' samples into metric families at scrape time; a failing source is skipped
    (a scrape must never take the daemon down)."""

    def __init__(self, sources: list[Callable[[], Iterable[Sample]]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        families = {
            name: spec.family(name, spec.help, labels=list(spec.labels)) for name, spec in SCRAPED.items()
        }
        for source in list(self._sources):
            try:
                samples = list(source())
            except Exception as exc:
                log.warning("metrics source failed: %s", exc)
                continue
            for name, labels, value in samples:
                spec, values = SCRAPED[name], dict(labels)
                families[name].add_metric([values.get(label, "") for label in spec.labels], value)
        yield from families.values()


class Metrics:
    """The daemon's counters and gauges on its own registry (thread-safe: prometheus_client's)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._own: dict[str, Counter | Gauge] = {
            RECORDS: Counter(
                RECORDS,
                "Record outcomes by object type, status and trigger.",
                ("object", "status", "trigger"),
                registry=r,
            ),
            "cpq2stripe_jobs_total": Counter(
                "cpq2stripe_jobs_total", "Daemon job runs by job and result.", ("job", "result"), registry=r
            ),
            "cpq2stripe_event_ids_total": Counter(
                "cpq2stripe_event_ids_total",
                "Record ids received from the event listener, per object.",
                ("object",),
                registry=r,
            ),
            "cpq2stripe_mapping_reloads_total": Counter(
                "cpq2stripe_mapping_reloads_total",
                "Mapping reloads by result (ok, failed).",
                ("result",),
                registry=r,
            ),
            "cpq2stripe_event_handle_seconds": Gauge(
                "cpq2stripe_event_handle_seconds",
                "Last event batch: from its ids reaching the daemon to its records applied "
                "(lock wait included).",
                registry=r,
            ),
            "cpq2stripe_leader": Gauge(
                "cpq2stripe_leader", "1 while this instance holds the leader lease and works.", registry=r
            ),
            LAST_POLL: Gauge(LAST_POLL, "Unix time of the last complete poll.", registry=r),
        }
        self.sources: list[Callable[[], Iterable[Sample]]] = []
        r.register(_SourcesCollector(self.sources))

    def _child(self, name: str, labels: dict[str, str] | None) -> Any:
        metric = self._own[name]
        return metric.labels(**labels) if labels else metric

    def inc(self, name: str, labels: dict[str, str] | None = None, by: float = 1) -> None:
        self._child(name, labels).inc(by)

    def set(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self._child(name, labels).set(value)

    def get(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    def record_report(self, report: RunReport, trigger: str) -> None:
        for outcome in report.outcomes:
            self.inc(RECORDS, {"object": outcome.object_type, "status": outcome.status, "trigger": trigger})

    def _samples(self, name: str) -> Iterator[tuple[dict[str, str], float]]:
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == name:
                    yield sample.labels, sample.value

    def totals_by_status(self) -> dict[str, int]:
        """synced / unchanged / failed / refused totals, for the heartbeat and `status`."""
        totals = {"synced": 0, "unchanged": 0, "failed": 0, "refused": 0}
        for labels, value in self._samples(RECORDS):
            status = labels.get("status", "")
            key = "synced" if status in ("created", "updated") else status
            if key in totals:
                totals[key] += int(value)
        return totals

    def snapshot(self) -> dict[str, Any]:
        """A small JSON-able summary for the heartbeat row's `info`."""
        api: dict[str, int] = {}
        for labels, value in self._samples(API_CALLS):
            service = labels.get("service", "?")
            api[service] = api.get(service, 0) + int(value)
        lag = next((round(value, 3) for _, value in self._samples(EVENT_LAG)), None)
        return {
            **self.totals_by_status(),
            "api_calls": api,
            "event_lag_seconds": lag,
            "last_poll_at": self.get(LAST_POLL) or None,
        }

    def render(self) -> str:
        """What `/metrics` serves (Prometheus text format)."""
        return generate_latest(self.registry).decode()


class MetricsServer:
    """prometheus_client's HTTP server for this registry on host:port, in a daemon thread (port 0
    picks a free port: see `.port`). Raises OSError when the address cannot be bound."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        server, thread = start_http_server(port, host, registry=metrics.registry)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.host = host
        self.port = int(server.server_port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
