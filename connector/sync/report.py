"""What one run did, per record and in total, printable for an operator."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

# The record is in step with Stripe: its Stripe id and "Synced" are written back.
OK_STATUSES = frozenset({"created", "updated", "unchanged"})
STATUS_ORDER = ("created", "updated", "unchanged", "failed", "refused")


@dataclass(frozen=True)
class Outcome:
    object_type: str  # customer, subscription, ...
    sf_id: str
    label: str  # the record's name, for people
    action: str  # create | update | noop | error | refuse | recover | adopt
    status: str  # created | updated | unchanged | failed | refused | planned
    stripe_id: str | None = None
    message: str = ""
    code: str = ""  # failed / refused: the error code recorded with the failure
    retryable: bool = False  # failed / refused: retried with backoff without a Salesforce edit
    notes: tuple[str, ...] = ()  # synced without some values (the mapping's on_invalid: omit), and why
    account: str = ""  # the Stripe account's name, with several (mappings/routing.yaml)

    def noted(self, notes: list[str]) -> Outcome:
        """This outcome with the mapping's notes, in the message too (Salesforce shows them); an
        outcome that did not sync the record says only why not."""
        if not notes or self.status not in (*OK_STATUSES, "planned"):
            return self
        message = "; ".join([self.message, *notes] if self.message else notes)
        return replace(self, message=message, notes=tuple(notes))


@dataclass
class RunReport:
    kind: str
    dry_run: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    fatal: str | None = None
    # The link type of the records this report counts ("" for a report of several kinds). Another
    # kind's outcomes in it (an Order batch's Accounts) are moved to that kind's report by `regroup`.
    object_type: str = ""
    # Records left for the next run because the run was asked to stop (Ctrl-C) before them.
    unprocessed: int = 0

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def counts(self) -> Counter[str]:
        return Counter(o.status for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        """What the run failed or refused, or, in a dry run, what it would."""
        return [o for o in self.outcomes if o.status in ("failed", "refused") or _planned_failure(o)]

    def summary_lines(self, *, limit_failures: int = 50) -> list[str]:
        counts = self.counts()
        if self.dry_run:
            planned = Counter(o.action for o in self.outcomes)
            head = ", ".join(f"{n} {a}" for a, n in sorted(planned.items())) or "nothing to do"
            # A dry run that stopped (Salesforce unreachable, ...) does not know there is nothing to do.
            if self.fatal:
                head = f"STOPPED: {self.fatal}"
            elif self.unprocessed and not planned:
                head = "stopped (Ctrl-C) before planning any record"
            return [f"{self.kind} (dry run, nothing changed): {head}"]
        head = ", ".join(f"{counts.get(k, 0)} {k}" for k in STATUS_ORDER)
        if counts.get("incomplete"):
            head += f", {counts['incomplete']} incomplete (first payment failed)"
        lines = [f"{self.kind}: {head}"]
        shown = [o for o in self.outcomes if o.status in ("failed", "refused", "incomplete")]
        for o in shown[:limit_failures]:
            lines.append(f"  {o.status.upper():8} {o.sf_id} {o.label!r}: {o.message}")
        if len(shown) > limit_failures:
            lines.append(f"  … and {len(shown) - limit_failures} more (cpq2stripe status --failed)")
        noted = [o for o in self.outcomes if o.notes]
        for o in noted[:limit_failures]:
            lines.extend(f"  LEFT OUT {o.sf_id} {o.label!r}: {note}" for note in o.notes)
        left = [o for o in self.outcomes if o.action == "unselected"]
        if left:
            lines.append(f"  {len(left)} linked but no longer selected (left as they are in Stripe):")
            lines.extend(f"    {o.sf_id}: {o.message}" for o in left[:limit_failures])
        if self.fatal:
            lines.append(f"  STOPPED: {self.fatal}")
        return lines


def _planned_failure(o: Outcome) -> bool:
    return o.status == "planned" and o.action in ("error", "refuse")


def regroup(reports: Iterable[RunReport], titles: Mapping[str, str]) -> list[RunReport]:
    """Each outcome in the report of its own object kind, each record once (its last outcome).

    An Order batch gives the Accounts it bills a Customer through the Accounts pipeline: those
    are Accounts, counted under Accounts, and an Account the Accounts pass already reported (a
    failure retried for its Orders, a dry run's planned create) is not counted twice. `titles`
    names the report of a kind no report was made for (in its order: dependency order)."""
    reports = list(reports)
    own = {r.object_type: r for r in reports if r.object_type}
    order = list(titles)
    for kind in order:
        if kind not in own and any(o.object_type == kind for r in own.values() for o in r.outcomes):
            dry = any(r.dry_run for r in reports)
            own[kind] = RunReport(titles[kind], dry_run=dry, object_type=kind)
    latest: dict[tuple[str, str], Outcome] = {}
    for r in reports:
        if r.object_type:
            for o in r.outcomes:
                key = (o.object_type, o.sf_id)
                latest[key] = o  # its last outcome, where it was first reported
    grouped = {kind: [o for (k, _), o in latest.items() if k == kind] for kind in own}
    out: list[RunReport] = []
    for kind in sorted(own, key=lambda k: order.index(k) if k in order else len(order)):
        r = own[kind]
        r.outcomes = grouped.get(kind, [])
        out.append(r)
    return out + [r for r in reports if not r.object_type]


def run_counts(reports: Iterable[RunReport]) -> dict[str, int]:
    """A run's counts for the state store, per kind of object: "customer created", ..."""
    counts: Counter[str] = Counter()
    for r in reports:
        for o in r.outcomes:
            counts[f"{o.object_type} {o.status}"] += 1
    return dict(counts)


def count_by_account(
    outcomes: Iterable[Outcome], into: dict[str, Counter[str]] | None = None
) -> dict[str, Counter[str]]:
    """Outcomes by Stripe account and status (several accounts: routing.yaml)."""
    counts = into if into is not None else {}
    for o in outcomes:
        if o.account:
            counts.setdefault(o.account, Counter())[o.status] += 1
    return counts


def account_lines(counts: Mapping[str, Counter[str]], calls: Mapping[str, int]) -> list[str]:
    """One line per Stripe account: what the run did there, and its own Stripe calls (each account
    has its own rate limit)."""
    lines = []
    for name in dict.fromkeys([*calls, *counts]):
        done = ", ".join(f"{n} {status}" for status, n in sorted(counts.get(name, Counter()).items()))
        lines.append(
            f"Stripe account {name}: {done or 'nothing to do'}; Stripe API calls: {calls.get(name, 0)}"
        )
    return lines
