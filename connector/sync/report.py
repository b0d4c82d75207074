"""What one run did, per record and in total, printable for an operator."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# The record is in step with Stripe: its Stripe id and "Synced" are written back.
OK_STATUSES = frozenset({"created", "updated", "unchanged"})


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


@dataclass
class RunReport:
    kind: str
    dry_run: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    fatal: str | None = None

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def counts(self) -> Counter[str]:
        return Counter(o.status for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ("failed", "refused")]

    def summary_lines(self, *, limit_failures: int = 50) -> list[str]:
        counts = self.counts()
        if self.dry_run:
            planned = Counter(o.action for o in self.outcomes)
            head = ", ".join(f"{n} {a}" for a, n in sorted(planned.items())) or "nothing to do"
            return [f"{self.kind} (dry run, nothing changed): {head}"]
        order = ["created", "updated", "unchanged", "failed", "refused"]
        head = ", ".join(f"{counts.get(k, 0)} {k}" for k in order)
        if counts.get("incomplete"):
            head += f", {counts['incomplete']} incomplete (first payment failed)"
        lines = [f"{self.kind}: {head}"]
        shown = [o for o in self.outcomes if o.status in ("failed", "refused", "incomplete")]
        for o in shown[:limit_failures]:
            lines.append(f"  {o.status.upper():8} {o.sf_id} {o.label!r}: {o.message}")
        if len(shown) > limit_failures:
            lines.append(f"  … and {len(shown) - limit_failures} more (cpq2stripe status --failed)")
        left = [o for o in self.outcomes if o.action == "unselected"]
        if left:
            lines.append(f"  {len(left)} linked but no longer selected (left as they are in Stripe):")
            lines.extend(f"    {o.sf_id}: {o.message}" for o in left[:limit_failures])
        if self.fatal:
            lines.append(f"  STOPPED: {self.fatal}")
        return lines
