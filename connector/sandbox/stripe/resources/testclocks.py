"""Test clocks (`/v1/test_helpers/test_clocks`): simulated time for a few customers.

Implements: create (`frozen_time`, `name`, `customer` to attach an existing customer), retrieve,
list, delete (which deletes the clock's customers and everything they own), and advance.
Everything belonging to a clock's customer takes the clock's `frozen_time` as "now" (`clock_time`);
other objects keep real time. Advancing is asynchronous as in Stripe: the advance call answers
`status: advancing` with `status_details.advancing.target_frozen_time` and changes nothing else;
the work (renewals, phase transitions, cancellations: `timeline.run_until`) is done when the clock
is next read (retrieve or list), which then shows `ready` and the new `frozen_time`. A client must
poll, as with Stripe; until then the clock's objects are as they were and writes to them are
refused. A failure inside the work leaves the clock `internal_failure` and refuses later advances.

Left out: Dashboard-only features, the automatic deletion at `deletes_after` (the field is set, 7
days after creation as in Stripe's example object, but nothing expires), quotes and other non-Billing
objects on a clock, and the per-customer subscription limit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..common import Ctx, Endpoint, paginate
from ..errors import StripeError, invalid
from ..validation import EXPAND, LIST, RETRIEVE, Str, Ts

KIND = "test_helpers.test_clock"
MAX_CUSTOMERS = 3  # Stripe: a test clock holds at most three customers
DELETES_AFTER_SECONDS = 7 * 86400  # Stripe's example clock: deletes_after = created + 604800
TWO_YEARS_MONTHS = 24


def clock_of(ctx: Ctx, customer_id: str | None) -> dict[str, Any] | None:
    """The test clock a customer belongs to, if any."""
    cust = ctx.store.find("customer", customer_id) if customer_id else None
    if cust is None or not cust.get("test_clock"):
        return None
    return ctx.store.find(KIND, cust["test_clock"])


@contextmanager
def clock_time(ctx: Ctx, customer_id: str | None, *, write: bool = False) -> Iterator[dict[str, Any] | None]:
    """Run a block at the customer's clock time (real time without a clock). A write to the objects
    of a clock that is still advancing is refused: Stripe is busy moving them."""
    clock = clock_of(ctx, customer_id)
    if clock is not None and write and clock["status"] != "ready":
        raise StripeError(
            f"The test clock {clock['id']} is {clock['status'].replace('_', ' ')}: objects on it cannot be "
            "changed until it is ready. Retrieve the test clock until its status is `ready`.",
            param="test_clock",
            saved=False,
        )
    with ctx.store.frozen_at(clock["frozen_time"] if clock else None):
        yield clock


def on_clock_time(
    owner: Callable[[Ctx, dict[str, Any]], str | None], *, write: bool = True
) -> Callable[
    [Callable[[Ctx, dict[str, Any]], dict[str, Any]]], Callable[[Ctx, dict[str, Any]], dict[str, Any]]
]:
    """Decorate a handler so it runs at the clock time of the customer `owner` names."""

    def wrap(
        fn: Callable[[Ctx, dict[str, Any]], dict[str, Any]],
    ) -> Callable[[Ctx, dict[str, Any]], dict[str, Any]]:
        def handler(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
            with clock_time(ctx, owner(ctx, p), write=write):
                return fn(ctx, p)

        handler.__name__ = fn.__name__
        handler.__doc__ = fn.__doc__
        return handler

    return wrap


def customers_of(ctx: Ctx, clock_id: str) -> list[dict[str, Any]]:
    return [c for c in ctx.store.all("customer") if c.get("test_clock") == clock_id]


# endpoints -----------------------------------------------------------------------------------
def create(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    now = store.now()
    attach = None
    if p.get("customer"):
        attach = store.get("customer", p["customer"], "customer")
        if attach.get("test_clock"):
            raise invalid(
                f"The customer {attach['id']} already belongs to the test clock {attach['test_clock']}; "
                "a customer cannot be moved to another test clock.",
                "customer",
            )
    clock = {
        "id": store.new_id("clock", 24),
        "object": KIND,
        "created": now,
        "deletes_after": now + DELETES_AFTER_SECONDS,
        "frozen_time": p["frozen_time"],
        "livemode": False,
        "name": p.get("name"),
        "status": "ready",
        "status_details": {},
    }
    store.put(clock)
    if attach is not None:
        attach["test_clock"] = clock["id"]
        store.put(attach)
    ctx.emit("test_helpers.test_clock.created", clock)
    return clock


def settle(ctx: Ctx, clock: dict[str, Any]) -> dict[str, Any]:
    """Finish a pending advance: the first read after `advance` does the work and shows `ready`."""
    if clock["status"] != "advancing":
        return clock
    from .timeline import run_until

    target = clock["status_details"]["advancing"]["target_frozen_time"]
    try:
        run_until(ctx, clock, target)
    except Exception:
        clock["status"], clock["status_details"] = "internal_failure", {}
        ctx.store.put(clock)
        ctx.emit("test_helpers.test_clock.internal_failure", clock)
        return clock
    clock["frozen_time"], clock["status"], clock["status_details"] = target, "ready", {}
    ctx.store.put(clock)
    ctx.emit("test_helpers.test_clock.ready", clock)
    return clock


def retrieve(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    return settle(ctx, ctx.store.get(KIND, ctx.path["id"]))


def list_(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    rows = [settle(ctx, c) for c in ctx.store.newest_first(KIND)]
    return paginate(ctx, KIND, rows, p, "/v1/test_helpers/test_clocks")


def delete(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Deleting a clock deletes its customers and the objects they own (subscriptions, schedules,
    invoices, pending invoice items); their payment methods are detached."""
    store = ctx.store
    clock = store.get(KIND, ctx.path["id"])
    for cust in customers_of(ctx, clock["id"]):
        for kind in ("subscription", "subscription_schedule", "invoice", "invoiceitem"):
            for obj in list(store.all(kind)):
                if obj.get("customer") == cust["id"]:
                    store.delete(kind, obj["id"])
        for pm in store.all("payment_method"):
            if pm.get("customer") == cust["id"]:
                pm["customer"] = None
                store.put(pm)
        store.delete("customer", cust["id"])
    store.delete(KIND, clock["id"])
    ctx.emit("test_helpers.test_clock.deleted", clock)
    return {"id": clock["id"], "object": KIND, "deleted": True}


def advance_limit(ctx: Ctx, clock: dict[str, Any]) -> tuple[int, str]:
    """Stripe: at most two intervals of the shortest subscription on the clock past its current
    frozen time; two years when it has no subscriptions or schedules."""
    from .billing import add_interval

    now = clock["frozen_time"]
    ids = {c["id"] for c in customers_of(ctx, clock["id"])}
    cycles: set[tuple[str, int]] = set()
    for sub in ctx.store.all("subscription"):
        if sub["customer"] in ids and sub["status"] not in ("canceled", "incomplete_expired"):
            cycles |= {
                (i["price"]["recurring"]["interval"], i["price"]["recurring"]["interval_count"])
                for i in sub["items"]["data"]
            }
    for sched in ctx.store.all("subscription_schedule"):
        if sched["customer"] in ids and sched["status"] == "not_started":
            for phase in sched["phases"]:
                for item in phase["items"]:
                    rec = ctx.store.get("price", item["price"])["recurring"]
                    cycles.add((rec["interval"], rec["interval_count"]))
    if not cycles:
        return add_interval(now, "month", TWO_YEARS_MONTHS), "two years (no subscriptions on the clock)"
    limits = [(add_interval(now, iv, 2 * n), f"{n} {iv}" if n > 1 else iv) for iv, n in cycles]
    when, cycle = min(limits)
    return when, f"two intervals of its shortest subscription interval ({cycle})"


def advance(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    clock = store.get(KIND, ctx.path["id"])
    if clock["status"] == "internal_failure":
        raise invalid(
            f"The test clock {clock['id']} failed to advance (status `internal_failure`) and cannot be "
            "advanced again. Delete it and create a new test clock.",
        )
    if clock["status"] == "advancing":
        raise invalid(
            f"The test clock {clock['id']} is already advancing to "
            f"{clock['status_details']['advancing']['target_frozen_time']}. Retrieve it until its status "
            "is `ready`, then advance again.",
            "frozen_time",
        )
    target = p["frozen_time"]
    if target <= clock["frozen_time"]:
        raise invalid(
            f"The frozen_time {target} must be after the test clock's current frozen time "
            f"({clock['frozen_time']}): a test clock only moves forward.",
            "frozen_time",
        )
    limit, why = advance_limit(ctx, clock)
    if target > limit:
        raise invalid(
            f"Cannot advance the test clock {clock['id']} to {target}: one advance can go at most {why} "
            f"past its frozen time, to {limit}. Advance in several steps.",
            "frozen_time",
        )
    clock["status"] = "advancing"
    clock["status_details"] = {"advancing": {"target_frozen_time": target}}
    store.put(clock)
    ctx.emit("test_helpers.test_clock.advancing", clock)
    return clock


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/test_helpers/test_clocks",
        {"frozen_time": Ts(required=True), "name": Str(max_len=300), "customer": Str(), "expand": EXPAND},
        create,
    ),
    Endpoint("GET", "/v1/test_helpers/test_clocks", LIST, list_),
    Endpoint("GET", "/v1/test_helpers/test_clocks/{id}", RETRIEVE, retrieve),
    Endpoint("DELETE", "/v1/test_helpers/test_clocks/{id}", {}, delete),
    Endpoint(
        "POST",
        "/v1/test_helpers/test_clocks/{id}/advance",
        {"frozen_time": Ts(required=True), "expand": EXPAND},
        advance,
    ),
]
