"""`scripts/bench --stripe-accounts N`: one seeded org backfilled through 1 Stripe account, then through N.

Both runs load the same org (reset and reseeded with the same seed) at the bench's latency with
the same rps budget per account (Stripe limits each account on its own). The single-account run is
the plain setup (CPQ2STRIPE_STRIPE_SECRET_KEY, no routing.yaml); the N-account run names the fake's
extra accounts in CPQ2STRIPE_STRIPE_ACCOUNTS and routes by BillingCountry through a routing.yaml
written into a temp copy of mappings/. The seed's ten countries are dealt round-robin over the
accounts (code and name alike: the seed writes both), the first two accounts share customers (one
Organization sharing group) and the unknown countries of spoilt records go to the `default:`.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import ascii_lowercase
from typing import Any

import yaml

from connector.sandbox.salesforce.seed import COUNTRIES, Country

ACCOUNT_FIELD = "BillingCountry"
SHARING_GROUP = "g"
MAX_ACCOUNTS = len(ascii_lowercase)


def account_names(n: int) -> list[str]:
    """`a`, `b`, `c`, …: the N accounts' names (in CPQ2STRIPE_STRIPE_ACCOUNTS and routing.yaml)."""
    if not 2 <= n <= MAX_ACCOUNTS:
        raise ValueError(f"--stripe-accounts: N must be 2 to {MAX_ACCOUNTS}, not {n}")
    return list(ascii_lowercase[:n])


def sandbox_flag(names: Sequence[str]) -> str:
    """The fake's `--stripe-accounts` value: the first two in one sharing group, the rest independent."""
    return ",".join(f"{name}:{SHARING_GROUP}" if i < 2 else name for i, name in enumerate(names))


def country_routes(names: Sequence[str], countries: Sequence[Country] = COUNTRIES) -> dict[str, str]:
    """BillingCountry value -> account: country i goes to account i mod N, by its code and by its name."""
    routes: dict[str, str] = {}
    for i, country in enumerate(countries):
        routes[country.code] = routes[country.name] = names[i % len(names)]
    return routes


def routing_yaml(names: Sequence[str]) -> str:
    """mappings/routing.yaml for the N-account run."""
    document = {
        "version": 1,
        "accounts": {
            name: ({"sharing_group": SHARING_GROUP} if i < 2 else {}) for i, name in enumerate(names)
        },
        "account_field": ACCOUNT_FIELD,
        "routes": country_routes(names),
        "default": names[-1],
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def write_mappings(source: Path, target: Path, names: Sequence[str]) -> Path:
    """A copy of `source` (mappings/) with routing.yaml added; returns the copy."""
    shutil.copytree(source, target)
    (target / "routing.yaml").write_text(routing_yaml(names), encoding="utf-8")
    return target


@dataclass
class AccountsRun:
    """One backfill of the seeded org: the child's result and each Stripe account's calls and 429s."""

    label: str
    result: dict[str, Any]
    calls: dict[str, tuple[int, int]] = field(default_factory=dict)  # account name -> (calls, 429s)

    @property
    def records(self) -> int:
        return sum(sum(counts.values()) for counts in self.result["objects"].values())

    @property
    def seconds(self) -> float:
        return float(self.result["seconds"])

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    def cores(self) -> str:
        """How busy the 2 shared cores were: the connector's backfill and the fakes' process, each in
        cores (CPU seconds over the backfill's wall time; the fakes' from /proc, 0 without it)."""
        connector = self.result["backfill_cpu_s"] / self.seconds
        fakes = self.result.get("fake_cpu_s", 0.0) / self.seconds
        return f"CPU in use: connector {connector:.2f} cores, the fakes {fakes:.2f} cores (sandbox process)"

    def beyond_rps(self, rps: float) -> float:
        """Wall time not explained by the rps budget: the run's seconds less the busiest account's
        calls at `rps` (the fixed part a bigger org spreads over more records)."""
        return self.seconds - max((n for n, _ in self.calls.values()), default=0) / rps

    def outcomes(self) -> str:
        """What happened to the records, all objects together (created, unchanged, failed, …)."""
        total: Counter[str] = Counter()
        for counts in self.result["objects"].values():
            total.update(counts)
        return ", ".join(f"{n} {status}" for status, n in sorted(total.items()))

    def per_object(self) -> str:
        return ", ".join(f"{sum(c.values())} {sobject}s" for sobject, c in self.result["objects"].items())


def spread_line(names: Sequence[str]) -> str:
    """Which countries each account bills (codes), for the printout."""
    routes = country_routes(names)
    dealt = {name: [c.code for c in COUNTRIES if routes[c.code] == name] for name in names}
    return "; ".join(f"{name}: {', '.join(codes)}" for name, codes in dealt.items())


def report_lines(one: AccountsRun, many: AccountsRun, *, rps: float, cpu: str, cpu_many: str) -> list[str]:
    """The comparison: each run's records/s and CPU per record, each account's calls and 429s, the ratio.
    `cpu` / `cpu_many`: each run's CPU per record, already formatted by the bench."""
    lines = []
    for run, cpu_text in ((one, cpu), (many, cpu_many)):
        lines.append(
            f"  {run.label:>10}: {run.records} records ({run.per_object()}: {run.outcomes()}) in "
            f"{run.seconds:.1f}s = {run.rate:6.1f} records/s; connector CPU per record: {cpu_text}"
        )
        lines.append(
            f"    {'':>8}  {run.cores()}; time beyond the busiest account's calls at {rps:g} rps: "
            f"{run.beyond_rps(rps):.1f}s (Salesforce reads and write-backs; calls made one after another)"
        )
        for name, (calls, limited) in run.calls.items():
            done = run.result["accounts"].get(name, {})
            shown = ", ".join(f"{n} {status}" for status, n in sorted(done.items()))
            lines.append(
                f"    {name:>8}: {shown + '; ' if shown else ''}{calls} Stripe calls = "
                f"{calls / run.seconds:.1f}/s of {rps:g}; 429 answers: {limited}"
            )
    lines.append(
        f"  {many.label} / {one.label}: {many.rate / one.rate:.2f}x (the rps budgets allow "
        f"{spread_bound(many):.2f}x with this spread: the busiest account makes the most calls at the "
        "same rps; the Salesforce side, the connector's CPU and the machine's cores are shared)"
    )
    total_one, total_many = (sum(n for n, _ in run.calls.values()) for run in (one, many))
    lines.append(
        f"  Stripe calls in all: {total_one} through 1 account, {total_many} through {len(many.calls)} "
        "(Orders: each account makes its own Products and Prices)"
    )
    return lines


def spread_bound(run: AccountsRun) -> float:
    """How much faster than one account the rps budgets alone would allow: all the calls over the
    busiest account's (each account sends its own at the same rps, side by side)."""
    calls = [n for n, _ in run.calls.values()]
    return sum(calls) / max(max(calls), 1)
