"""Pure planning: what to do with one Salesforce record, given what the state store links it to.

No I/O here. The pipeline feeds it the mapped Stripe params and the link; it answers with one of
create / recover / adopt / update / noop / error / refuse and a human reason, which is also what
`sync --dry-run` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from connector.errors import RecordError
from connector.sync.fieldhash import changed_params, field_hashes, payload_hash
from connector.sync.report import Outcome


class Action(StrEnum):
    CREATE = "create"  # no Stripe object yet
    RECOVER = "recover"  # an intent was recorded but the run stopped before linking: reuse its key
    ADOPT = "adopt"  # Salesforce holds a Stripe id the state store does not know (e.g. state rebuilt)
    UPDATE = "update"  # linked; some mapped fields changed
    NOOP = "noop"  # linked; nothing changed
    ERROR = "error"  # the record's data cannot be sent; recorded against the record
    REFUSE = "refuse"  # the connector will not act (authority rules); recorded and visible


@dataclass(frozen=True)
class LinkView:
    """What the planner needs to know of a state-store link."""

    stripe_id: str | None
    status: str  # pending | linked | merged_away | deleted
    field_hashes: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Plan:
    action: Action
    salesforce_id: str
    stripe_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # the full desired Stripe params
    changes: dict[str, Any] = field(default_factory=dict)  # what an update sends
    hashes: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    error_code: str = ""
    retryable: bool = False  # a refusal that clears by itself (waits for another record)

    @property
    def payload_hash(self) -> str:
        return payload_hash(self.hashes)


def plan_record(
    salesforce_id: str,
    params: dict[str, Any],
    mapping_errors: list[str],
    link: LinkView | None,
    salesforce_stripe_id: str | None,
) -> Plan:
    """Decide the action for one record. `salesforce_stripe_id` is the value of the record's
    Stripe ID field in Salesforce (what an admin or an earlier write-back left there)."""
    if mapping_errors:
        return Plan(
            Action.ERROR,
            salesforce_id,
            link.stripe_id if link else None,
            reason="; ".join(mapping_errors),
            error_code="invalid_data",
        )
    hashes = field_hashes(params)
    if link is None or (link.status == "pending" and not link.stripe_id):
        if link is not None:
            return Plan(
                Action.RECOVER,
                salesforce_id,
                None,
                params,
                params,
                hashes,
                reason="finishing a create that was interrupted",
            )
        if salesforce_stripe_id:
            return Plan(
                Action.ADOPT,
                salesforce_id,
                salesforce_stripe_id,
                params,
                params,
                hashes,
                reason=f"Salesforce already holds {salesforce_stripe_id}; linking it and "
                "putting every mapped field back to the Salesforce value",
            )
        return Plan(Action.CREATE, salesforce_id, None, params, params, hashes, reason="new record")
    if link.status in ("merged_away", "deleted"):
        return Plan(
            Action.REFUSE,
            salesforce_id,
            link.stripe_id,
            reason=f"link is {link.status}",
            error_code=link.status,
        )
    if salesforce_stripe_id and salesforce_stripe_id != link.stripe_id:
        return Plan(
            Action.REFUSE,
            salesforce_id,
            link.stripe_id,
            error_code="stripe_id_mismatch",
            reason=(
                f"the Stripe ID field holds {salesforce_stripe_id} but this record is linked to "
                f"{link.stripe_id}; the connector never re-points billing. Put {link.stripe_id} "
                "back in the field (or clear it) and run the sync again"
            ),
        )
    changes = changed_params(link.field_hashes, params)
    if not changes:
        return Plan(Action.NOOP, salesforce_id, link.stripe_id, params, {}, hashes, reason="unchanged")
    return Plan(
        Action.UPDATE,
        salesforce_id,
        link.stripe_id,
        params,
        changes,
        hashes,
        reason="changed: " + ", ".join(sorted(changes)),
    )


def refusal(plan: Plan, object_type: str, label: str) -> Outcome | None:
    """A plan that ends without a Stripe call: an error is raised (its record's outcome, through
    errors.classify), a refusal returned; None for every other action."""
    if plan.action is Action.ERROR:
        raise RecordError(plan.error_code, plan.reason)
    if plan.action is Action.REFUSE:
        return Outcome(
            object_type, plan.salesforce_id, label, "refuse", "refused", plan.stripe_id, plan.reason,
            code=plan.error_code, retryable=plan.retryable,
        )  # fmt: skip
    return None
