"""Pure planning core: one activated Salesforce Order (with its OrderItems) -> the Stripe objects it
needs, or a refusal listing *every* reason it cannot be billed correctly.

No I/O and no imports from the rest of the connector: the pipeline fetches the Order, calls
`plan_order`, and either writes the refusal to Salesforce or hands the plan to the sink.

Decisions (see also the report in the Orders issue):
- Salesforce `EndDate` is inclusive (an order 2026-01-01..2026-12-31 covers all of Dec 31), so the
  Stripe end is midnight UTC of EndDate + 1 day: exactly one year, no proration.
- Dates are calendar dates; Stripe timestamps use midnight UTC of that date.
- Past start: `backdate_start_date` = midnight UTC of EffectiveDate and `billing_cycle_anchor` = the
  next period boundary counted from EffectiveDate, so invoices keep the Order's calendar and every
  elapsed period is billed on the first invoice (billing mode flexible: a line per item per period;
  refused past Stripe's 250 lines). The mapping's per-Order `skip_elapsed_periods`
  (`bill_backdated_period=False`) sends `proration_behavior: none`: billing starts at the boundary.
- Future start: a Subscription Schedule with one phase. Termed -> phase `end_date` = the Stripe
  end and `end_behavior: cancel`. Evergreen -> no `end_date` (Stripe makes the last phase one
  billing period long) and `end_behavior: release`, which leaves the subscription running with
  the same items and no end.
- Trial (the mapping's `trial_end`, a date: the day billing starts): refused unless after the
  start and before the end. Still ahead -> `trial_end` on the subscription (started today) or on
  a future schedule's first phase; already over -> billing starts on that day, backdated as above.
- Only one-time lines: one Stripe invoice (`invoice_plan.py`), issued when the Order is synced
  whatever its start date, with an invoice item per line; finalized unless the mapping says draft.
"""

from connector.sync.order_rules.config import OrderRulesConfig
from connector.sync.order_rules.dates import add_months, midnight_utc
from connector.sync.order_rules.fingerprint import order_fingerprint
from connector.sync.order_rules.planning import plan_order
from connector.sync.order_rules.refusals import OrderRefusal, Reason
from connector.sync.order_rules.specs import (
    Collection,
    InvoiceSpec,
    ItemSpec,
    LinePrice,
    OrderPlan,
    PriceSpec,
    ProductSpec,
    Recurrence,
    ScheduleSpec,
    SubscriptionSpec,
)

__all__ = [
    "Collection",
    "InvoiceSpec",
    "ItemSpec",
    "LinePrice",
    "OrderPlan",
    "OrderRefusal",
    "OrderRulesConfig",
    "PriceSpec",
    "ProductSpec",
    "Reason",
    "Recurrence",
    "ScheduleSpec",
    "SubscriptionSpec",
    "add_months",
    "midnight_utc",
    "order_fingerprint",
    "plan_order",
]
