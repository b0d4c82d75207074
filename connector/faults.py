"""Crash points for the crash-recovery tests and the chaos suite.

`crash_point("customer.after_create")` kills the process on the spot (no cleanup, like
SIGKILL) when CPQ2STRIPE_TEST_CRASH_AT names that point. Production runs never set it.
"""

from __future__ import annotations

import os

ENV = "CPQ2STRIPE_TEST_CRASH_AT"
EXIT_CODE = 86
# Every crash point, so the chaos suite attacks each one (the exactly-once routine names them per
# object kind, not at a call site of its own).
CRASH_POINTS = frozenset(
    {
        "customer.after_intent",
        "customer.after_create",
        "customer.after_link",
        "order.after_product",
        "order.after_price",
        "order.after_subscription",
        "order.before_writeback",
        "contract.after_schedule",  # a subscription moved onto a schedule, not linked yet
        "contract.after_catch_up",  # a late change's catch-up items made, the phases not updated yet
        "contract.after_update",  # a contract's phases updated in Stripe, the Order not linked yet
        "invoice.after_create",  # a one-time Order's draft invoice made, no item on it yet
        "invoice.after_item",  # one invoice item made, not linked yet
        "invoice.after_items",  # every item on the draft, not finalized yet
        "invoice.after_finalize",  # finalized, the Order not linked yet
        "usage.after_intent",  # a usage batch's intents recorded, no meter event sent yet
        "usage.after_create",  # a meter event sent, its usage record not linked yet
        "usage.after_link",  # linked, the usage record's status not written back yet
        "payment_setup.after_intent",  # a setup link's intent recorded, no Checkout Session made yet
        "payment_setup.after_create",  # the Checkout Session made, not linked yet
        "payment_setup.after_link",  # linked, its URL not written to the Account yet
    }
)


def crash_point(name: str | None) -> None:
    if name is None:
        return
    assert name in CRASH_POINTS, f"undeclared crash point {name!r}"
    if os.environ.get(ENV) == name:
        os._exit(EXIT_CODE)
