"""One measured backfill in its own process: prints one JSON line (counts, calls, peak RSS, CPU).

Run by the benchmark as `python -m connector.bench.child [--workers N]` with the sandbox's
environment, so its `ru_maxrss` is the connector's own peak memory and nothing else's. The
parent takes the whole process's CPU time from `RUSAGE_CHILDREN`; `backfill_cpu_s` here is the
part spent inside the backfill, so start-up (imports) can be told apart.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import time
from pathlib import Path


def _cpu_seconds() -> float:
    """User + system CPU of this process, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--failures-csv", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--objects", default="accounts", help="accounts, orders or accounts,orders")
    parser.add_argument("--bulk-threshold", type=int, default=None, help="default: the backfill's own")
    args = parser.parse_args(argv)

    from connector.backfill.command import BackfillOptions, run_backfill
    from connector.backfill.report import BackfillReport
    from connector.mapping import load_mappings
    from connector.settings import load_settings

    settings = load_settings()
    mappings = load_mappings(settings.mappings_dir)
    lines: list[str] = []
    options = BackfillOptions(
        objects=args.objects.split(","),
        failures_csv=args.failures_csv,
        workers=args.workers,
        **({"bulk_threshold": args.bulk_threshold} if args.bulk_threshold is not None else {}),
        progress_stream=io.StringIO(),
        progress_tty=False,
        progress_interval=3600,
    )
    started, cpu_started = time.monotonic(), _cpu_seconds()
    reports: list[BackfillReport] = []
    code = run_backfill(settings, mappings, options, out=lines.append, on_report=reports.append)
    seconds, cpu = time.monotonic() - started, _cpu_seconds() - cpu_started
    print(
        json.dumps(
            {
                "exit": code,
                "seconds": seconds,
                "backfill_cpu_s": cpu,
                "report": lines,
                "counts": dict(reports[0].objects[-1].counts) if reports and reports[0].objects else {},
                "source": reports[0].objects[-1].source if reports and reports[0].objects else "",
                "stripe_calls": reports[0].stripe_calls if reports else 0,
                "stripe_writes": reports[0].stripe_writes if reports else 0,
                "rate_limited": reports[0].rate_limited if reports else 0,
                # every object's counts (`counts` above is the last object's) and, with several
                # Stripe accounts, each account's outcomes and Stripe calls
                "objects": {o.sobject: dict(o.counts) for o in reports[0].objects} if reports else {},
                "accounts": {k: dict(v) for k, v in reports[0].accounts.items()} if reports else {},
                "account_calls": dict(reports[0].account_calls) if reports else {},
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
