"""`scripts/bench-events [--quick] [--rps R]`: the event path under a mass update.

The daemon (`cpq2stripe run`) runs against the sandbox with the poll interval at an hour, so only
Pub/Sub events can carry the edits, at real-world latencies (Stripe 250 ms a request, Salesforce
100 ms a call) and the Stripe rps budget. Edits are made as the Admin User through sObject
Collections (up to 200 records a call, as a data-loader or a list-view mass edit does), each
Account's Description set to a value naming the burst. A record's latency runs from the moment
the call that edited it returned to the moment the fake Stripe finished the Customer update that
carries the new value (its request log: start time plus duration).

Scenarios: single edits one after the other (p50, p95, max), then bursts of 200 and (full run)
2,000 edits: time until all reached Stripe, p50 and p95, records/s, the share of the rps budget
the window used, 429 answers, and the daemon process's CPU per edited record (user + sys from
/proc, every thread). Figures on a busy machine are indicative only: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from connector.bench.__main__ import Sandbox, load_average, start
from connector.state import StateStore

ADMIN_CLIENT = ("sandbox-admin", "sandbox-admin-secret")  # the fake org's Admin User (a human)
API = "/services/data/v61.0"
TOPIC = "/data/AccountChangeEvent"
TARGETS = (
    "targets: single edit p95 <= 0.5 s; 200 edits all in <= 3.5 s; 2,000 edits all in <= 25 s "
    "at >= 0.9 of the rps budget; no 429"
)


@dataclass
class Burst:
    name: str
    edits: int
    all_in: float  # seconds from the first edit call to the last Customer update
    latencies: list[float]
    stripe_requests: int
    limited: int  # 429 answers in the window
    cpu_s: float

    def row(self, rps: float) -> str:
        p50, p95 = _pct(self.latencies, 50), _pct(self.latencies, 95)
        rate = self.edits / self.all_in if self.all_in else 0.0
        budget = self.stripe_requests / self.all_in / rps if self.all_in else 0.0
        return (
            f"  {self.name:18} all in {self.all_in:6.2f} s   p50 {p50:5.2f} s   p95 {p95:5.2f} s   "
            f"{rate:6.1f} records/s   {budget:5.1%} of the rps budget   429s: {self.limited}   "
            f"CPU {1000 * self.cpu_s / max(1, self.edits):.2f} ms/record"
        )


def _pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class Admin:
    """The Admin User's REST session on the fake org (edits made by a human raise events)."""

    def __init__(self, sb: Sandbox) -> None:
        self.base = sb.sf_url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = sb.ca
        token = self.session.post(
            f"{self.base}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": ADMIN_CLIENT[0],
                "client_secret": ADMIN_CLIENT[1],
            },
            timeout=60,
        )
        token.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def describe(self, ids: list[str], text: str) -> dict[str, float]:
        """Set each Account's Description to `text <id>`; returns id -> when its call returned."""
        done: dict[str, float] = {}
        for start_at in range(0, len(ids), 200):
            chunk = ids[start_at : start_at + 200]
            body = {
                "allOrNone": False,
                "records": [
                    {"attributes": {"type": "Account"}, "id": i, "Description": f"{text} {i}"} for i in chunk
                ],
            }
            resp = self.session.patch(f"{self.base}{API}/composite/sobjects", json=body, timeout=120)
            resp.raise_for_status()
            failed = [r for r in resp.json() if not r.get("success")]
            if failed:
                raise RuntimeError(f"the burst's edits failed: {failed[:3]}")
            returned = time.time()
            done.update(dict.fromkeys(chunk, returned))
        return done


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _customer_updates(sb: Sandbox, since: float) -> list[dict[str, Any]]:
    log = sb.stripe("GET", f"/_sandbox/requests?since={since}")
    items: list[dict[str, Any]] = log if isinstance(log, list) else log.get("requests", log.get("data", []))
    return [r for r in items if r.get("time", 0) >= since]


def _arrivals(requests_seen: list[dict[str, Any]], text: str) -> dict[str, float]:
    """Account id -> when the Customer update carrying `text <id>` finished."""
    out: dict[str, float] = {}
    prefix = text + " "
    for r in requests_seen:
        description = (r.get("params") or {}).get("description")
        if r.get("status") == 200 and isinstance(description, str) and description.startswith(prefix):
            out[description[len(prefix) :]] = r["time"] + r.get("duration_ms", 0) / 1000
    return out


def _measure(
    sb: Sandbox, admin: Admin, daemon: subprocess.Popen[bytes], name: str, ids: list[str], timeout: float
) -> Burst:
    text = f"{name} {time.time():.0f}"
    cpu_before = _cpu_seconds(daemon.pid)
    first_call = time.time()
    edited = admin.describe(ids, text)
    deadline = time.monotonic() + timeout
    while True:
        seen = _customer_updates(sb, first_call)
        arrived = _arrivals(seen, text)
        if len(arrived) >= len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    cpu = _cpu_seconds(daemon.pid) - cpu_before
    if len(arrived) < len(ids):
        print(f"  {name}: only {len(arrived)} of {len(ids)} edits reached Stripe within {timeout:.0f} s")
    last = max(arrived.values(), default=first_call)
    window = [r for r in seen if r["time"] <= last]
    return Burst(
        name,
        len(ids),
        last - first_call,
        [arrived[i] - edited[i] for i in arrived],
        len(window),
        sum(1 for r in window if r.get("status") == 429),
        cpu,
    )


def _listening(url: str) -> bool:
    with StateStore.open(url) as store:
        beats = store.instances.list_heartbeats()
        return any(TOPIC in (b.info.get("listener_connected") or []) for b in beats) and bool(
            store.cursors.replay_id(TOPIC)
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-events")
    parser.add_argument("--quick", action="store_true", help="300 Accounts, no 2,000-edit burst")
    parser.add_argument("--rps", type=float, default=90, help="Stripe rate limit (live default 90)")
    args = parser.parse_args(argv)
    seeded = 700 if args.quick else 4400  # about half the seeded Accounts are billing entities
    bursts = (200,) if args.quick else (200, 2000)
    singles = 10 if args.quick else 20

    work = Path(tempfile.mkdtemp(prefix="cpq2stripe-bench-events-"))
    print(f"load average at start: {load_average()}", flush=True)
    sb = start(work / "sandbox")
    url = f"sqlite:///{work / 'state.db'}"
    env = {
        **os.environ,
        **sb.env,
        "CPQ2STRIPE_DATABASE_URL": url,
        "CPQ2STRIPE_STRIPE_RPS": str(args.rps),
        "CPQ2STRIPE_POLL_INTERVAL_SECONDS": "3600",
        "CPQ2STRIPE_HEARTBEAT_INTERVAL_SECONDS": "1",
    }
    daemon: subprocess.Popen[bytes] | None = None
    results: list[Burst] = []
    try:
        sb.prepare(seeded, rps=0, latency=False)
        subprocess.run([sys.executable, "-m", "connector", "sync"], env=env, capture_output=True, check=False)
        with StateStore.open(url) as store:
            synced = [
                link.sf_id for link in store.links.all(status="linked") if link.object_type == "customer"
            ]
        print(f"{len(synced)} Accounts synced; the daemon starts (poll every hour: events only)", flush=True)
        sb.sf("POST", "/_sandbox/pubsub/config", {"keepalive_seconds": 1})
        daemon = subprocess.Popen(
            [sys.executable, "-m", "connector", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(work / "daemon.log").open("wb"),
        )
        deadline = time.monotonic() + 120
        while not _listening(url):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon is not listening; see {work / 'daemon.log'}")
            time.sleep(0.2)
        sb.limits(rps=args.rps, latency=True)
        sb.stripe("POST", "/_sandbox/counters/reset")
        admin = Admin(sb)

        single: list[float] = []
        cpu_single = 0.0
        for n in range(singles):
            one = _measure(sb, admin, daemon, f"single{n}", [synced[n]], timeout=30)
            single += one.latencies
            cpu_single += one.cpu_s
            time.sleep(0.3)
        results.append(Burst("single edits", singles, 0.0, single, 0, 0, cpu_single))
        for size in bursts:
            if size > len(synced):
                print(f"  burst of {size}: only {len(synced)} synced Accounts; skipped")
                continue
            time.sleep(2)
            results.append(_measure(sb, admin, daemon, f"burst{size}", synced[:size], timeout=180))
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
        sb.stop()

    print(
        f"cpq2stripe event-path benchmark{' (quick)' if args.quick else ''}: Stripe 250 ms/request, "
        f"Salesforce 100 ms/call, Stripe limit {args.rps:g} rps, poll interval 1 h"
    )
    lone = results[0]
    worst = max(lone.latencies, default=float("nan"))
    print(
        f"  single edits ({lone.edits}): p50 {_pct(lone.latencies, 50):.2f} s, "
        f"p95 {_pct(lone.latencies, 95):.2f} s, max {worst:.2f} s, "
        f"CPU {1000 * lone.cpu_s / max(1, lone.edits):.1f} ms/edit"
    )
    for burst in results[1:]:
        print(burst.row(args.rps))
    print(f"  {TARGETS}")
    print(f"load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
