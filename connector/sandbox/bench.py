"""How many requests/s the fakes answer with no latency configured (`scripts/bench-sandbox`).

The sandbox runs in its own process (as `cpq2stripe sandbox` would), so the clients measured here
do not share a GIL with the servers. The clients are the real ones the connector uses:
simple-salesforce for the org, stripe-python's StripeClient on the gateway's PooledHTTPClient for
Stripe. Each operation runs for a
fixed time single-threaded, then with N threads (each thread with its own client and connection).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import requests
import stripe
from simple_salesforce.api import Salesforce, SFType

from connector.stripe_sink.gateway import PooledHTTPClient

Operation = Callable[[int], object]  # called with a running number; one API request per call


@dataclass
class Result:
    server: str
    operation: str
    single: float
    threaded: float
    errors: int


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = shlex.split(value)[0] if value else ""
    return env


def start_sandbox_process(
    directory: Path, accounts: int, orders: int
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    env_file = directory / "env"
    cmd = [
        sys.executable, "-m", "connector.sandbox", "--dir", str(directory),
        "--accounts", str(accounts), "--orders", str(orders), "--stripe-rps", "1000000",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not env_file.exists():
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"sandbox exited with {proc.returncode}: {err}")
        if time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError("sandbox did not write its env file within 120 s")
        time.sleep(0.05)
    return proc, read_env_file(env_file)


def salesforce_client(env: dict[str, str]) -> Salesforce:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override verify
    session.verify = env["CPQ2STRIPE_SALESFORCE_CA_BUNDLE"]
    resp = session.post(
        env["CPQ2STRIPE_SALESFORCE_LOGIN_URL"].rstrip("/") + "/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": env["CPQ2STRIPE_SALESFORCE_CONSUMER_KEY"],
            "client_secret": env["CPQ2STRIPE_SALESFORCE_CONSUMER_SECRET"],
        },
    )
    resp.raise_for_status()
    token = resp.json()
    return Salesforce(
        instance_url=token["instance_url"],
        session_id=token["access_token"],
        session=session,
        version=env["CPQ2STRIPE_SALESFORCE_API_VERSION"],
    )


def stripe_client(env: dict[str, str]) -> stripe.StripeClient:
    return stripe.StripeClient(
        env["CPQ2STRIPE_STRIPE_SECRET_KEY"],
        base_addresses={"api": env["CPQ2STRIPE_STRIPE_API_BASE"]},
        max_network_retries=0,
        http_client=PooledHTTPClient(),
    )


def measure(make_op: Callable[[], Operation], threads: int, seconds: float) -> tuple[float, int]:
    """Requests/s over `seconds` with `threads` threads, and the number of failed calls."""
    ops = [make_op() for _ in range(threads)]
    for op in ops:  # warm up: connect, TLS handshake
        op(0)
    done = [0] * threads
    errors = [0] * threads
    start_gate = threading.Barrier(threads + 1)
    stop = threading.Event()

    def worker(index: int) -> None:
        op = ops[index]
        n = 0
        start_gate.wait()
        while not stop.is_set():
            try:
                op(index * 10_000_000 + n)
                done[index] += 1
            except Exception:
                errors[index] += 1
            n += 1

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    start_gate.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    return sum(done) / elapsed, sum(errors)


def operations(env: dict[str, str]) -> list[tuple[str, str, Callable[[], Operation]]]:
    setup_sf = salesforce_client(env)
    account_ids = [r["Id"] for r in setup_sf.query("SELECT Id FROM Account ORDER BY Id LIMIT 200")["records"]]
    if not account_ids:
        raise RuntimeError("the sandbox has no accounts to read")
    setup_stripe = stripe_client(env)
    customer_id = setup_stripe.v1.customers.create(params={"name": "Bench Customer"}).id

    def accounts() -> SFType:
        return cast(SFType, salesforce_client(env).Account)

    def sf_get() -> Operation:
        account = accounts()
        return lambda n: account.get(account_ids[n % len(account_ids)])

    def sf_patch() -> Operation:
        account = accounts()
        return lambda n: account.update(account_ids[n % len(account_ids)], {"Description": f"bench {n}"})

    def sf_query() -> Operation:
        sf = salesforce_client(env)
        return lambda n: sf.query(
            f"SELECT Id, Name, CurrencyIsoCode FROM Account WHERE Id = '{account_ids[n % len(account_ids)]}'"
        )

    def stripe_retrieve() -> Operation:
        client = stripe_client(env)
        return lambda n: client.v1.customers.retrieve(customer_id)

    def stripe_create() -> Operation:
        client = stripe_client(env)
        return lambda n: client.v1.customers.create(
            params={"name": f"Bench {n}", "email": f"b{n}@example.com"}
        )

    return [
        ("fake org", "GET sobjects/Account/{id}", sf_get),
        ("fake org", "PATCH sobjects/Account/{id}", sf_patch),
        ("fake org", "GET query (1 row by Id)", sf_query),
        ("fake Stripe", "GET /v1/customers/{id}", stripe_retrieve),
        ("fake Stripe", "POST /v1/customers", stripe_create),
    ]


def run(seconds: float, threads: int, accounts: int) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="cpq2stripe-bench-") as tmp:
        proc, env = start_sandbox_process(Path(tmp), accounts, orders=accounts // 2)
        try:
            results = []
            for server, name, make_op in operations(env):
                single, errors_1 = measure(make_op, 1, seconds)
                threaded, errors_n = measure(make_op, threads, seconds)
                results.append(Result(server, name, single, threaded, errors_1 + errors_n))
            return results
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def format_table(results: list[Result], threads: int) -> str:
    head = ("server", "operation", "1 thread req/s", f"{threads} threads req/s", "errors")
    rows = [(r.server, r.operation, f"{r.single:,.0f}", f"{r.threaded:,.0f}", str(r.errors)) for r in results]
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)

    def fmt(row: tuple[str, ...]) -> str:
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells)

    return "\n".join([fmt(head), line, *(fmt(row) for row in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default 3)")
    parser.add_argument("--threads", type=int, default=4, help="threads of the concurrent run (default 4)")
    parser.add_argument("--accounts", type=int, default=200, help="Accounts seeded into the fake org")
    args = parser.parse_args(argv)
    print(
        f"sandbox in a separate process, no latency; {args.seconds:g} s per measurement; "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    results = run(args.seconds, args.threads, args.accounts)
    print(format_table(results, args.threads))
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
