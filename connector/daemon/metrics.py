"""Counters for operators: a Prometheus text endpoint (`/metrics`) and a snapshot for the heartbeat.

Stdlib only (http.server): one more dependency is not worth six counters. Off unless a port is set
(`CPQ2STRIPE_METRICS_PORT` or `cpq2stripe run --metrics-port`), bound to 127.0.0.1 by default.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from connector.sync.report import RunReport

log = logging.getLogger(__name__)

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]

# name -> (type, help)
METRICS: dict[str, tuple[str, str]] = {
    "cpq2stripe_records_total": ("counter", "Record outcomes by object type, status and trigger."),
    "cpq2stripe_api_calls_total": ("counter", "HTTP requests sent per service and kind (retries included)."),
    "cpq2stripe_jobs_total": ("counter", "Daemon job runs by job and result."),
    "cpq2stripe_event_ids_total": ("counter", "Record ids received from the event listener, per object."),
    "cpq2stripe_event_lag_seconds": (
        "gauge",
        "Last event lag: from the change committed in Salesforce to its event reaching the listener.",
    ),
    "cpq2stripe_event_handle_seconds": (
        "gauge",
        "Last event batch: from its ids reaching the daemon to its records applied (lock wait included).",
    ),
    "cpq2stripe_listener_events_total": ("counter", "Events received by the listener, by kind."),
    "cpq2stripe_mapping_reloads_total": ("counter", "Mapping reloads by result (ok, failed)."),
    "cpq2stripe_leader": ("gauge", "1 while this instance holds the leader lease and works."),
    "cpq2stripe_last_poll_success_timestamp_seconds": ("gauge", "Unix time of the last complete poll."),
}


def _labels(labels: dict[str, str] | None) -> Labels:
    return tuple(sorted((labels or {}).items()))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Thread-safe counters and gauges; `collectors` add samples read at scrape time (API calls)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, Labels], float] = {}
        self.collectors: list[Callable[[], Iterable[Sample]]] = []

    def inc(self, name: str, labels: dict[str, str] | None = None, by: float = 1) -> None:
        key = (name, _labels(labels))
        with self._lock:
            self._values[key] = self._values.get(key, 0) + by

    def set(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        with self._lock:
            self._values[(name, _labels(labels))] = value

    def get(self, name: str, labels: dict[str, str] | None = None) -> float:
        with self._lock:
            return self._values.get((name, _labels(labels)), 0)

    def record_report(self, report: RunReport, trigger: str) -> None:
        for outcome in report.outcomes:
            self.inc(
                "cpq2stripe_records_total",
                {"object": outcome.object_type, "status": outcome.status, "trigger": trigger},
            )

    def samples(self) -> list[Sample]:
        with self._lock:
            out = [(name, labels, value) for (name, labels), value in self._values.items()]
        for collect in self.collectors:
            try:
                out.extend(collect())
            except Exception as exc:  # a scrape must never take the daemon down
                log.warning("metrics collector failed: %s", exc)
        return out

    def totals_by_status(self) -> dict[str, int]:
        """synced / failed / refused totals, for the heartbeat and `status`."""
        totals = {"synced": 0, "unchanged": 0, "failed": 0, "refused": 0}
        for name, labels, value in self.samples():
            if name != "cpq2stripe_records_total":
                continue
            status = dict(labels).get("status", "")
            key = "synced" if status in ("created", "updated") else status
            if key in totals:
                totals[key] += int(value)
        return totals

    def snapshot(self) -> dict[str, Any]:
        """A small JSON-able summary for the heartbeat row's `info`."""
        api: dict[str, int] = {}
        lag = None
        for name, labels, value in self.samples():
            if name == "cpq2stripe_api_calls_total":
                service = dict(labels).get("service", "?")
                api[service] = api.get(service, 0) + int(value)
            elif name == "cpq2stripe_event_lag_seconds":
                lag = round(value, 3)
        last_poll = self.get("cpq2stripe_last_poll_success_timestamp_seconds")
        return {
            **self.totals_by_status(),
            "api_calls": api,
            "event_lag_seconds": lag,
            "last_poll_at": last_poll or None,
        }

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        by_name: dict[str, list[tuple[Labels, float]]] = {}
        for name, labels, value in self.samples():
            by_name.setdefault(name, []).append((labels, value))
        lines: list[str] = []
        for name in sorted(set(by_name) | set(METRICS)):
            kind, help_text = METRICS.get(name, ("untyped", name))
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(by_name.get(name, [])):
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                shown = _number(value)
                lines.append(f"{name}{{{text}}} {shown}" if text else f"{name} {shown}")
        return "\n".join(lines) + "\n"


class MetricsServer:
    """`GET /metrics` on host:port in a daemon thread (port 0 picks a free port: see `.port`)."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "try /metrics")
                    return
                body = metrics.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:  # scrapes are not worth a log line each
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
