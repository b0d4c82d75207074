"""An Order whose lines are all one-time becomes one Stripe invoice, not a subscription (as
Stripe's own CPQ connector does): the checks only such an Order needs, and its `InvoiceSpec`.

The lines have passed `check_line` (product, money rules: minor units, zero-decimal currencies,
no negative prices), so what is left is Stripe's limit of invoice items per invoice. A zero
total is allowed: Stripe marks an invoice with nothing to pay `paid` when it is finalized, which
records a free service without asking anyone to pay.
"""

from __future__ import annotations

from datetime import date

from connector.sync.order_rules.config import OrderRulesConfig
from connector.sync.order_rules.specs import Collection, InvoiceSpec, ItemSpec
from connector.sync.order_rules.validation import Collector, Line


def check_invoice_lines(one_time: list[Line], config: OrderRulesConfig, out: Collector) -> None:
    if len(one_time) > config.max_items_per_invoice:
        out.order(
            "too_many_invoice_items",
            None,
            None,
            f"the Order has {len(one_time)} one-time lines; a Stripe invoice holds at most "
            f"{config.max_items_per_invoice} invoice items",
            "split the Order, or combine one-time lines",
        )


def check_no_trial(trial: date | None, config: OrderRulesConfig, out: Collector) -> None:
    """An invoice bills at once: a trial on an Order of one-time lines has nothing to delay."""
    if trial is None:
        return
    field = config.trial_end_field or "trial_end"
    out.order(
        "trial_on_invoice",
        field,
        trial.isoformat(),
        "the Order has only one-time lines, so it becomes one Stripe invoice billed at once; a trial "
        "has nothing to delay",
        f"clear {field}, or add the recurring line the trial is for",
    )


def plan_invoice(
    one_time: list[Line], collection: Collection, metadata: dict[str, str], config: OrderRulesConfig
) -> InvoiceSpec:
    items = tuple(ItemSpec(ln.id, ln.quantity) for ln in one_time)
    return InvoiceSpec(items, collection, config.finalize_invoices, metadata, config.automatic_tax)
