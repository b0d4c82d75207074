"""`scripts/bench [--quick]`: the backfill against real-world limits, next to a naive loop.

The sandbox runs as its own process (`python -m connector.sandbox`); each scenario resets and
reseeds it through the admin APIs, sets the latency (Stripe ~250 ms per request, Salesforce
~100 ms per call; both fakes serve requests concurrently, so latency is per request, not a
queue) and the Stripe rps limit, and gives the connector a fresh state store. The connector runs
in a child process (`connector.bench.child`) so its peak RSS is its own.

Figures printed: records/s and its ratio to the rate-limit bound (records/s ÷ rps), Salesforce
API calls per 1,000 Accounts (from the fake org's own counters; auth and Bulk job polling shown
apart), Stripe calls per new and per unchanged Account (fake Stripe's counters), peak RSS, the
connector ÷ baseline throughput, and the connector process's CPU time (user + sys, every thread,
start-up included; the fakes run in another process and are not counted) per new Account and per
unchanged Account. On 2 cores the connector's CPU decides whether the rate bound can be reached
at all, so CPU per record is the figure to watch. The load average is printed at the start and
the end: figures taken on a busy machine are indicative only. The baseline is the loop a user
would write: read the Accounts, then for each one create a Customer and update the Account, one
call after the other.

`scripts/bench --stripe-accounts N [--quick] [--orders M] [--rps R]` measures several Stripe
accounts instead (connector/bench/accounts.py): the sandbox is started with N extra fake accounts
(`--stripe-accounts a:g,b:g,c,…`: a and b in one sharing group), and one seeded org (2,000 Accounts
with --quick, else 5,000, plus M Orders) is backfilled twice, through the one account of the plain
setup, then through the N accounts routed by BillingCountry (a routing.yaml in a temp copy of
mappings/), each account at R rps (`POST /_sandbox/config?account=acct_…`). Printed: each run's
records/s and connector CPU per record, each account's outcomes, Stripe calls and 429 answers
(from the fake's request log of that account), the N-account ÷ 1-account ratio, and the ratio the
rps budgets alone would allow with this spread (all calls ÷ the busiest account's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import requests

if TYPE_CHECKING:
    from stripe.params import CustomerCreateParams

SF_LATENCY_MS = 100
STRIPE_LATENCY_MS = 250


@dataclass
class Sandbox:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    ca: str

    @property
    def sf_url(self) -> str:
        return self.env["CPQ2STRIPE_SALESFORCE_LOGIN_URL"]

    @property
    def stripe_url(self) -> str:
        return self.env["CPQ2STRIPE_STRIPE_API_BASE"]

    def _session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        return s

    def sf(self, method: str, path: str, body: Any = None) -> Any:
        r = self._session().request(method, self.sf_url + path, json=body, verify=self.ca, timeout=600)
        r.raise_for_status()
        return r.json()

    def stripe(self, method: str, path: str, body: Any = None) -> Any:
        r = self._session().request(method, self.stripe_url + path, json=body, timeout=600)
        r.raise_for_status()
        return r.json()

    def prepare(
        self, accounts: int, *, rps: float, latency: bool, orders: int = 0, contracts: int = 0
    ) -> None:
        self.sf("POST", "/_sandbox/reset")
        seed = {"accounts": accounts, "orders": orders, "contracts": contracts, "seed": 7}
        self.sf("POST", "/_sandbox/seed", seed)
        self.stripe("POST", "/_sandbox/reset")
        self.limits(rps=rps, latency=latency)

    def limits(self, *, rps: float, latency: bool) -> None:
        self.sf("POST", "/_sandbox/latency", {"ms": SF_LATENCY_MS if latency else 0})
        self.sf("POST", "/_sandbox/counters/reset")
        self.stripe(
            "POST", "/_sandbox/config", {"rps": rps, "latency_ms": STRIPE_LATENCY_MS if latency else 0}
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start(directory: Path, extra: Sequence[str] = ()) -> Sandbox:
    """The sandbox process; `extra`: more of its flags (`--stripe-accounts …`)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.sandbox", "--dir", str(directory), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env_file = directory / "env"
    deadline = time.monotonic() + 60
    while not env_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the sandbox did not start")
        time.sleep(0.1)
    env = {}
    for line in env_file.read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    return Sandbox(proc, env, env["CPQ2STRIPE_SALESFORCE_CA_BUNDLE"])


def sf_calls(sb: Sandbox) -> dict[str, int]:
    counts = sb.sf("GET", "/_sandbox/counters")["counts"]
    auth = sum(n for k, n in counts.items() if "oauth2/token" in k)
    polls = sum(n for k, n in counts.items() if k == "GET /services/data/{version}/jobs/query/{job_id}")
    total = sum(counts.values())
    return {"total": total, "auth": auth, "polls": polls, "other": total - auth - polls}


def stripe_calls(sb: Sandbox, account: str | None = None) -> tuple[int, int]:
    """(API requests, 429 answers) from the fake Stripe's request log (of `account`, an acct_ id;
    default: the primary account)."""
    log = sb.stripe("GET", "/_sandbox/requests" + (f"?account={account}" if account else ""))
    items = log if isinstance(log, list) else log.get("requests", log.get("data", []))
    return len(items), sum(1 for r in items if r.get("status") == 429)


def children_cpu_seconds() -> float:
    """User + sys CPU of this process's finished, waited-for children.

    The sandbox is a child too, but it is only waited for at the very end, so the difference
    around one `subprocess.run` is exactly that connector process's CPU, every thread included.
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + sys CPU so far of a running process (the sandbox) from /proc; 0 where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} CPUs)"


def run_connector(
    sb: Sandbox,
    work: Path,
    *,
    rps: float,
    tag: str,
    workers: int | None = None,
    objects: str = "accounts",
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One backfill in a child process; its JSON line plus `cpu_s`, the whole process's CPU time.
    `env`: the connector's CPQ2STRIPE_ variables (default: the sandbox's)."""
    env = {**os.environ, **(sb.env if env is None else env), "CPQ2STRIPE_STRIPE_RPS": str(rps)}
    env["CPQ2STRIPE_DATABASE_URL"] = f"sqlite:///{work / (tag + '.db')}"
    cmd = [sys.executable, "-m", "connector.bench.child", "--failures-csv", str(work / f"{tag}.csv")]
    cmd += ["--objects", objects]
    if workers:
        cmd += ["--workers", str(workers)]
    cpu_before = children_cpu_seconds()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    cpu = children_cpu_seconds() - cpu_before
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"connector run failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["cpu_s"] = cpu
    return result


def run_baseline(sb: Sandbox, limit: int) -> dict[str, Any]:
    """The naive loop, written plainly: one Customer create, then one Account update, per Account."""
    env_backup = dict(os.environ)
    os.environ.update(sb.env)
    try:
        import stripe

        from connector.mapping import load_mappings, map_record, soql_fields
        from connector.salesforce.client import SalesforceClient
        from connector.settings import load_settings

        settings = load_settings()
        mapping = load_mappings(settings.mappings_dir).customer
        sf = SalesforceClient(settings)
        client = stripe.StripeClient(
            settings.stripe_key.get_secret_value(),
            base_addresses={"api": str(settings.stripe_api_base).rstrip("/")},
            max_network_retries=3,
        )
        started = time.monotonic()
        soql = (
            f"SELECT {', '.join(soql_fields(mapping))} FROM Account WHERE {mapping.condition} LIMIT {limit}"
        )
        done = 0
        for row in sf.query_all(soql):
            mapped = map_record(mapping, dict(row))
            if mapped.errors:
                continue
            customer = client.v1.customers.create(params=cast("CustomerCreateParams", mapped.params))
            account, customer_id = row["Id"], customer.id

            def write_back(s: Any, i: str = account, c: str = customer_id) -> Any:
                return s.Account.update(i, {"Stripe_Customer_ID__c": c})

            sf._call(write_back)
            done += 1
        seconds = time.monotonic() - started
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    return {"records": done, "seconds": seconds, "rate": done / seconds}


@dataclass
class OrdersRun:
    """One Orders backfill at the real limit: the child's result and the Stripe calls it made."""

    result: dict[str, Any]
    calls: int
    limited: int

    @property
    def done(self) -> int:
        return sum(self.result["counts"].values())

    @property
    def seconds(self) -> float:
        return float(self.result["seconds"])

    def shown(self) -> str:
        return ", ".join(f"{n} {status}" for status, n in sorted(self.result["counts"].items()))


def orders_at_limit(sb: Sandbox, work: Path, *, rps: float, tag: str) -> OrdersRun:
    """The seeded Accounts loaded first without latency (setup), then the activated Orders
    backfilled with Stripe and Salesforce latency on."""
    run_connector(sb, work, rps=1000, tag=tag, workers=16)
    sb.limits(rps=rps, latency=True)
    before = stripe_calls(sb)[0]
    result = run_connector(sb, work, rps=rps, tag=tag, objects="orders")
    calls, limited = stripe_calls(sb)
    return OrdersRun(result, calls - before, limited)


def run_orders(sb: Sandbox, work: Path, *, rps: float, orders: int) -> str:
    sb.prepare(orders // 2, rps=0, latency=False, orders=orders)
    run = orders_at_limit(sb, work, rps=rps, tag="orders")
    return (
        f"  Orders phase: {run.done} activated Orders ({run.shown()}) in {run.seconds:.1f}s = "
        f"{run.done / run.seconds:.1f} Orders/s; {run.calls} Stripe calls = {run.calls / run.seconds:.1f}/s "
        f"of {rps:g}; 429 answers: {run.limited}"
    )


def run_contracts(sb: Sandbox, work: Path, *, rps: float, contracts: int) -> str:
    """Every Order of `contracts` contract histories (first Orders, amendments, renewals,
    terminations), each contract with its own Account."""
    sb.prepare(0, rps=0, latency=False, contracts=contracts)
    run = orders_at_limit(sb, work, rps=rps, tag="contracts")
    changed = run.result["counts"].get("updated", 0)
    return (
        f"  Contracts: {contracts} histories, {run.done} Orders ({run.shown()}; 'updated' = amendments, "
        f"renewals and terminations applied) in {run.seconds:.1f}s = {run.done / run.seconds:.1f} Orders/s, "
        f"{changed / run.seconds:.2f} contract changes/s; {run.calls} Stripe calls = "
        f"{run.calls / max(run.done, 1):.2f} per Order, {run.calls / run.seconds:.1f}/s of {rps:g}; "
        f"429 answers: {run.limited}; connector CPU per Order: {cpu_ms(run.result, max(run.done, 1))}"
    )


def account_ids(sb: Sandbox) -> dict[str, str]:
    """Name -> acct_ id of the accounts in CPQ2STRIPE_STRIPE_ACCOUNTS, each asked with its own key."""
    keys: dict[str, str] = json.loads(sb.env["CPQ2STRIPE_STRIPE_ACCOUNTS"])
    ids = {}
    for name, key in keys.items():
        r = sb._session().get(sb.stripe_url + "/v1/account", auth=(key, ""), timeout=60)
        r.raise_for_status()
        ids[name] = str(r.json()["id"])
    return ids


def run_stripe_accounts(args: argparse.Namespace, work: Path) -> None:
    """The same seeded org backfilled through 1 Stripe account, then through N (see accounts.py)."""
    from connector.bench.accounts import (
        AccountsRun,
        account_names,
        report_lines,
        sandbox_flag,
        spread_line,
        write_mappings,
    )

    names = account_names(args.stripe_accounts)
    size = 2000 if args.quick else 5000
    rps, objects = args.rps, "accounts,orders" if args.orders else "accounts"
    mappings = write_mappings(Path(__file__).resolve().parents[2] / "mappings", work / "mappings", names)
    sb = start(work / "sandbox", ["--stripe-accounts", sandbox_flag(names)])
    try:
        ids = account_ids(sb)
        # 1 account: the plain setup (the primary key, no routing.yaml).
        single = {k: v for k, v in sb.env.items() if k != "CPQ2STRIPE_STRIPE_ACCOUNTS"}
        sb.prepare(size, rps=rps, latency=True, orders=args.orders)
        fake_cpu = process_cpu_seconds(sb.proc.pid)
        result = run_connector(sb, work, rps=rps, tag="one", objects=objects, env=single)
        result["fake_cpu_s"] = process_cpu_seconds(sb.proc.pid) - fake_cpu
        one = AccountsRun("1 account", result, {"primary": stripe_calls(sb)})
        # N accounts: the same org again, each account with its own rps budget.
        sb.prepare(size, rps=rps, latency=True, orders=args.orders)
        for ident in ids.values():
            sb.stripe("POST", f"/_sandbox/config?account={ident}", {"rps": rps})
        routed = {**sb.env, "CPQ2STRIPE_MAPPINGS_DIR": str(mappings)}
        fake_cpu = process_cpu_seconds(sb.proc.pid)
        result = run_connector(sb, work, rps=rps, tag="many", objects=objects, env=routed)
        result["fake_cpu_s"] = process_cpu_seconds(sb.proc.pid) - fake_cpu
        calls = {name: stripe_calls(sb, ident) for name, ident in ids.items()}
        primary = stripe_calls(sb)
        if primary[0]:
            calls["primary"] = primary  # nothing should go there: shown if something did
        many = AccountsRun(f"{len(names)} accounts", result, calls)
    finally:
        sb.stop()
    print(
        f"cpq2stripe several Stripe accounts benchmark{' (quick)' if args.quick else ''}: Stripe "
        f"{STRIPE_LATENCY_MS} ms/request, Salesforce {SF_LATENCY_MS} ms/call, Stripe limit {rps:g} rps "
        "per account"
    )
    print(
        f"  org: {size} Accounts seeded{f' + {args.orders} Orders' if args.orders else ''}; routed by "
        f"BillingCountry: {spread_line(names)} (a and b share customers; unknown countries to "
        f"{names[-1]})"
    )
    for line in report_lines(
        one, many, rps=rps, cpu=cpu_ms(one.result, one.records), cpu_many=cpu_ms(many.result, many.records)
    ):
        print(line)


def cpu_ms(run: dict[str, Any], records: int) -> str:
    """The process's CPU per record, and how much of it was the backfill itself (not start-up)."""
    total, backfill = run["cpu_s"], run["backfill_cpu_s"]
    return (
        f"{1000 * total / records:.2f} ms ({1000 * backfill / records:.2f} ms in the backfill, "
        f"{total - backfill:.2f}s start-up)"
    )


def fmt_mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench")
    parser.add_argument("--quick", action="store_true", help="small sizes; finishes in under a minute")
    parser.add_argument(
        "--rps",
        type=float,
        default=90,
        help="Stripe rate limit: 90, the connector's default for live keys (a first load runs live); "
        "25 for test mode",
    )
    parser.add_argument(
        "--orders",
        type=int,
        default=0,
        metavar="N",
        help="also measure the Orders phase: N seeded Orders (N/2 Accounts loaded first)",
    )
    parser.add_argument(
        "--contracts",
        type=int,
        default=0,
        metavar="N",
        help="also measure contract histories: N seeded contracts (amendments, renewals, terminations)",
    )
    parser.add_argument(
        "--stripe-accounts",
        type=int,
        default=0,
        metavar="N",
        help="instead of the scenarios above: the same org backfilled through 1 Stripe account, then "
        "through N (2 to 26) routed by BillingCountry; --orders M adds M Orders to that org",
    )
    args = parser.parse_args(argv)
    if args.stripe_accounts:
        if args.contracts:
            parser.error("--contracts is not measured with --stripe-accounts: run them apart")
        if not 2 <= args.stripe_accounts <= 26:
            parser.error("--stripe-accounts: N must be 2 to 26")
        return stripe_accounts_main(args)
    q = args.quick
    n_rate = 1000 if q else 5000  # Accounts for the throughput run at the real limit
    n_base = 20 if q else 100  # Accounts for the naive loop
    rss_sizes = (400, 3000) if q else (5000, 50000)
    rps = args.rps

    work = Path(tempfile.mkdtemp(prefix="cpq2stripe-bench-"))
    t0 = time.monotonic()
    load_at_start = load_average()
    print(f"load average at start: {load_at_start}", flush=True)
    sb = start(work / "sandbox")
    results: dict[str, Any] = {}
    try:
        # 1. Throughput, Salesforce calls and Stripe calls per Account, at real latency and limit.
        sb.prepare(n_rate, rps=rps, latency=True)
        first = run_connector(sb, work, rps=rps, tag="rate")
        calls_first = sf_calls(sb)
        stripe_first, limited_first = stripe_calls(sb)
        sb.sf("POST", "/_sandbox/counters/reset")
        sb.stripe("POST", "/_sandbox/counters/reset")
        before_second = stripe_calls(sb)[0]
        second = run_connector(sb, work, rps=rps, tag="rate")  # same state: everything unchanged
        stripe_second = stripe_calls(sb)[0] - before_second
        results["rate"] = (first, calls_first, stripe_first, limited_first, second, stripe_second)

        # 2. The naive baseline, same latency and limit.
        sb.prepare(n_base, rps=rps, latency=True)
        results["baseline"] = run_baseline(sb, n_base)

        # 3. Peak RSS: latency off and no rate limit (memory does not depend on speed).
        rss = {}
        for n in rss_sizes:
            sb.prepare(n, rps=0, latency=False)
            rss[n] = run_connector(sb, work, rps=1000, tag=f"rss{n}", workers=16)
            rss[n]["sf_calls"] = sf_calls(sb)
        results["rss"] = rss
        if args.orders:
            results["orders"] = run_orders(sb, work, rps=rps, orders=args.orders)
        if args.contracts:
            results["contracts"] = run_contracts(sb, work, rps=rps, contracts=args.contracts)
    finally:
        sb.stop()

    first, calls, stripe_first, limited, second, stripe_second = results["rate"]
    created = first["counts"].get("created", 0)
    failed = first["counts"].get("failed", 0) + first["counts"].get("refused", 0)
    processed: int = sum(first["counts"].values())
    rate = processed / first["seconds"]
    base = results["baseline"]

    def per_k(n: int) -> float:
        return 1000 * n / processed

    print(
        f"cpq2stripe backfill benchmark{' (quick)' if q else ''}: Stripe {STRIPE_LATENCY_MS} ms/request, "
        f"Salesforce {SF_LATENCY_MS} ms/call, Stripe limit {rps:g} rps"
    )
    print(
        f"  Accounts selected: {processed} ({created} created, {failed} failed on bad data), "
        f"read with {first['source']}"
    )
    print(
        f"  connector  throughput: {rate:6.1f} records/s = {rate / rps:5.1%} of the rate-limit bound "
        f"({rps:g}/s); rate-limited (429) answers: {limited}"
    )
    print(
        f"  connector CPU per new Account: {cpu_ms(first, max(created, 1))}; "
        f"user+sys {first['cpu_s']:.1f}s for {created} created"
    )
    print(
        f"  baseline   throughput: {base['rate']:6.2f} records/s = {base['rate'] / rps:5.1%} of the bound "
        f"({base['records']} Accounts)"
    )
    print(
        f"  connector / baseline : {rate / base['rate']:5.1f}x  (at most {rps / base['rate']:.1f}x possible "
        f"at {rps:g} rps)"
    )
    print(
        f"  Salesforce API calls per 1,000 Accounts: {per_k(calls['other']):.2f} "
        f"(+ auth {calls['auth']}, + Bulk job polling {calls['polls']} per run)"
    )
    print(
        f"  Stripe calls per new Account: {(stripe_first - 1) / max(created, 1):.3f} "
        f"(+1 per run: the account lookup); per unchanged Account: {(stripe_second - 1) / processed:.3f} "
        f"(second run: {stripe_second} call(s) in all)"
    )
    small, big = rss_sizes
    rs, rb = results["rss"][small]["maxrss_kb"], results["rss"][big]["maxrss_kb"]
    print(f"  peak RSS: {fmt_mb(rs)} for {small:,} Accounts, {fmt_mb(rb)} for {big:,} ({rb / rs:.2f}x)")
    for n, r in results["rss"].items():
        c = r["counts"]
        done = max(1, sum(c.values()))
        print(
            f"    {n:>6,} Accounts: {sum(c.values())} processed ({c.get('created', 0)} created) in "
            f"{r['seconds']:.0f}s, read with {r['source']}; Salesforce calls per 1,000: "
            f"{1000 * r['sf_calls']['other'] / done:.2f} (+ auth {r['sf_calls']['auth']}, "
            f"+ polling {r['sf_calls']['polls']})"
        )
    unchanged = sum(second["counts"].values())
    print(
        f"  unchanged second pass: {unchanged} Accounts in {second['seconds']:.1f}s; "
        f"connector CPU {cpu_ms(second, max(unchanged, 1))} per Account"
    )
    if "orders" in results:
        print(results["orders"])
    if "contracts" in results:
        print(results["contracts"])
    print(f"  total benchmark time {time.monotonic() - t0:.0f}s")
    print(f"  load average at start: {load_at_start}; at the end: {load_average()}")
    return 0


def stripe_accounts_main(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    load_at_start = load_average()
    print(f"load average at start: {load_at_start}", flush=True)
    run_stripe_accounts(args, Path(tempfile.mkdtemp(prefix="cpq2stripe-bench-")))
    print(f"  total benchmark time {time.monotonic() - t0:.0f}s")
    print(f"  load average at start: {load_at_start}; at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
