"""Measure the fake Stripe's throughput: `python -m connector.sandbox.stripe.bench [N] [THREADS]`.

Uses the real stripe-python client with the rate limit off, one keep-alive session per thread.
Prints requests per second for creates and retrieves."""

from __future__ import annotations

import sys
import threading
import time

import stripe

from .server import start_stripe


def _run(url: str, n: int, threads: int, kind: str) -> float:
    ids: list[str] = []
    if kind == "retrieve":
        seed = stripe.StripeClient("sk_test_bench", base_addresses={"api": url}, max_network_retries=0)
        ids.append(seed.v1.customers.create(params={"name": "seed"}).id)

    def worker(count: int) -> None:
        client = stripe.StripeClient("sk_test_bench", base_addresses={"api": url}, max_network_retries=0)
        for i in range(count):
            if kind == "create":
                client.v1.customers.create(params={"name": f"c{i}", "metadata": {"i": str(i)}})
            else:
                client.v1.customers.retrieve(ids[0])

    per = n // threads
    pool = [threading.Thread(target=worker, args=(per,)) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return per * threads / (time.perf_counter() - start)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    sb = start_stripe(rps=0)
    try:
        for kind in ("create", "retrieve"):
            print(f"{kind}: {_run(sb.url, n, threads, kind):.0f} req/s ({n} requests, {threads} thread(s))")
    finally:
        sb.stop()


if __name__ == "__main__":
    main()
