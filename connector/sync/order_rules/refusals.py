"""Why an Order cannot be billed: every reason, phrased for the admin who fixes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reason:
    """One thing wrong with the Order, phrased for the admin who has to fix it."""

    code: str
    object: str  # Salesforce object: Order, OrderItem, Account, Product2, PricebookEntry
    record_id: str | None
    record_number: str | None
    field: str | None
    value: Any
    problem: str
    fix: str

    def message(self) -> str:
        who = self.object + (f" {self.record_id}" if self.record_id else "")
        if self.record_number:
            who += f" ({self.record_number})"
        if self.field:
            shown = "empty" if self.value is None or self.value == "" else str(self.value)
            return f"{who} {self.field} is {shown}; {self.problem}. Fix: {self.fix}."
        return f"{who}: {self.problem}. Fix: {self.fix}."


@dataclass(frozen=True)
class OrderRefusal:
    order_id: str | None
    order_number: str | None
    reasons: tuple[Reason, ...]

    def message(self) -> str:
        """All reasons, one per line (what goes to Stripe_Sync_Message__c and the sync log)."""
        return "\n".join(r.message() for r in self.reasons)

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]
