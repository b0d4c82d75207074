"""Exactly one Stripe object per Salesforce record: the one create routine every object uses.

1. An intent (a ``pending`` link carrying a deterministic idempotency key) is durable before the
   create is sent.
2. The create is sent with that key. A rerun after a crash sends the same key and Stripe replays
   the first answer (for about 24 hours).
3. Past that window, or when the key was used with other parameters (the record changed since),
   the object is found by the Salesforce id it carries: by a list where one exists (consistent
   right after a write), by search otherwise (search lags, so only past the window). A kind that
   cannot be found that way is refused with what an operator should check.
4. The link is marked.

A batch of records (Accounts, Orders) records all its intents in one transaction before its
creates go out and marks its links in one transaction after (`StateStore.write_batch`); an object
several records share (a Product2's Product) is ensured on its own, under a lock per key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import stripe

from connector.errors import RecordError, RetryLater
from connector.faults import crash_point
from connector.state.models import Intent, Link
from connector.state.store import StateStore

log = logging.getLogger(__name__)

# Stripe keeps idempotency keys for at least 24 hours; an hour's margin against clock skew.
IDEMPOTENCY_WINDOW = timedelta(hours=23)


@dataclass(frozen=True)
class Kind:
    """A kind of Stripe object the connector creates, as the state store links it."""

    object_type: str  # the link type: customer, product, meter, price, subscription
    noun: str  # Stripe's name for it, in messages
    # `find` reads a list (consistent right after a write), so a recovery may look before it
    # creates; a search-based find lags by up to a minute and is only trusted past the window.
    listable: bool = False
    after_intent: str | None = None  # crash points (connector.faults) around the create
    after_create: str | None = None
    after_link: str | None = None


CUSTOMER = Kind(
    "customer",
    "Customer",
    after_intent="customer.after_intent",
    after_create="customer.after_create",
    after_link="customer.after_link",
)
PRODUCT = Kind("product", "Product", after_create="order.after_product")
METER = Kind("meter", "Billing Meter")
PRICE = Kind("price", "Price", after_create="order.after_price")
# Found again by its content-derived custom id (retrieve: consistent at once), so listable. No crash
# point of its own: a second create of the same content cannot make a second coupon (Stripe refuses
# a taken id, and the sink then uses the one there), which tests/e2e/test_discounts.py shows.
COUPON = Kind("coupon", "Coupon", listable=True)
SUBSCRIPTION = Kind(
    "subscription",
    "subscription",
    listable=True,
    after_create="order.after_subscription",
    after_link="order.before_writeback",
)

# A Customer's tax id: no link of its own; the Customer's list of tax ids (consistent right after a
# write) is read before any create, so an interrupted run's create is seen and not repeated.
TAX_ID = Kind("tax_id", "tax ID", listable=True)

# An Order of one-time lines is billed by an invoice instead: the Order's billing link (type
# `subscription`, the Orders stream's) then holds the invoice id, and is marked only once the
# invoice has all its items (and is finalized), so a pending link means "resume": find the
# invoice, add the items it lacks, finalize it (connector.sync.invoices).
INVOICE = Kind("subscription", "invoice", listable=True, after_create="invoice.after_create")
# A usage record's Billing Meter event. Not findable (Stripe lists no meter events), but its
# `identifier` is the record's id, so a resend of an interrupted one is refused as a duplicate
# (connector.stripe_sink.meter_events), which means it is there.
METER_EVENT = Kind(
    "meter_event",
    "meter event",
    after_intent="usage.after_intent",
    after_create="usage.after_create",
    after_link="usage.after_link",
)
# An Account's payment setup link (a Checkout Session in setup mode): one link row per Account, made
# again (connector.state.links.restart_intent) for a new request once the last session has ended.
# Listable: the Customer's sessions carry the request's tag in their metadata.
PAYMENT_SETUP = Kind(
    "payment_setup",
    "Checkout Session",
    listable=True,
    after_intent="payment_setup.after_intent",
    after_create="payment_setup.after_create",
    after_link="payment_setup.after_link",
)
INVOICE_ITEM = Kind("invoice_item", "invoice item", listable=True, after_create="invoice.after_item")


@dataclass(frozen=True)
class Create:
    """One object to create exactly once, and how to send it and find it again."""

    kind: Kind
    sf_object: str  # the Salesforce object it belongs to (Account, Product2, OrderItem, ...)
    key_id: str  # the link's Salesforce-side key: a record id, or a record id and a spec hash
    idempotency_key: str  # from connector.stripe_sink.idempotency, the one place keys are made
    send: Callable[[str], Any]  # the create call, given the idempotency key to send
    find: Callable[[], Any | None] | None = None  # the object by the Salesforce id it carries
    refresh: Callable[[Any], Any] | None = None  # bring a found object up to the record's data
    expired_fix: str = "check Stripe for it and put its id in the record's Stripe ID field"

    def intent(self) -> Intent:
        return Intent(self.kind.object_type, self.sf_object, self.key_id, self.idempotency_key)


def obtain(create: Create, link: Link, *, recovering: bool, now: datetime) -> Any:
    """The Stripe object for a recorded intent: found (what an interrupted run made) or created
    with the intent's key. Stripe calls only; the caller marks the link."""
    kind = create.kind
    expired = now - link.created_at > IDEMPOTENCY_WINDOW
    found = None
    if recovering and create.find is not None and (kind.listable or expired):
        found = create.find()
    elif expired:
        raise RecordError(
            f"{kind.object_type}_intent_expired",
            f"creating the Stripe {kind.noun} for {create.sf_object} {create.key_id} was interrupted "
            f"more than a day ago, so its idempotency key has expired; {create.expired_fix}",
        )
    if found is None:
        try:
            obj = create.send(link.idempotency_key)
        except stripe.IdempotencyError:
            # The first create reached Stripe with other parameters (the record changed since).
            found = create.find() if create.find is not None else None
            if found is None:
                raise RetryLater(
                    f"an interrupted create of the Stripe {kind.noun} for {create.sf_object} "
                    f"{create.key_id} reached Stripe with other data, and what it made cannot be found "
                    "yet; a later run links it"
                ) from None
    if found is not None:
        log.info("found the %s an interrupted run made for %s", kind.noun, create.key_id)
        obj = create.refresh(found) if create.refresh is not None else found
    crash_point(kind.after_create)
    return obj


def create_listed(create: Create) -> Any:
    """An object that lives in a list of its parent (a Customer's tax ids) and has no link: found in
    that list (read by the caller in this run, so `find` is consistent) or created with the key."""
    found = create.find() if create.find is not None else None
    if found is not None:
        return found
    obj = create.send(create.idempotency_key)
    crash_point(create.kind.after_create)
    return obj


def record_intents(store: StateStore, stripe_account: str, creates: Sequence[Create]) -> dict[str, Link]:
    """A batch's intents in one transaction, before any of its creates is sent; by key id."""
    if not creates:
        return {}
    rows = store.links.record_intents(stripe_account, [c.intent() for c in creates])
    crash_point(creates[0].kind.after_intent)
    return {sf_id: link for (_type, sf_id), link in rows.items()}


def ensure(
    store: StateStore,
    stripe_account: str,
    create: Create,
    now: datetime,
    *,
    link: Link | None = None,
    payload_hash: str | None = None,
    field_hashes: dict[str, str] | None = None,
) -> str:
    """One object on its own (an object several records share): linked, or recovered, or created,
    and linked before this returns. Callers serialise on the key (connector.sync.keyed_locks)."""
    if link is None:
        link = store.links.get(stripe_account, create.kind.object_type, create.key_id)
    if link is not None and link.status == "linked" and link.stripe_id:
        return link.stripe_id
    recovering = link is not None
    if link is None:
        link = store.links.record_intent(
            stripe_account, create.kind.object_type, create.sf_object, create.key_id, create.idempotency_key
        )
    obj = obtain(create, link, recovering=recovering, now=now)
    link_existing(
        store, stripe_account, create, str(obj.id), payload_hash=payload_hash, field_hashes=field_hashes
    )
    return str(obj.id)


def link_existing(
    store: StateStore,
    stripe_account: str,
    create: Create,
    stripe_id: str,
    *,
    payload_hash: str | None = None,
    field_hashes: dict[str, str] | None = None,
) -> None:
    """Link an object that exists already (created above, or named in Salesforce and verified);
    `field_hashes`: what was sent, per field, for a pipeline that later updates it."""
    with store.transaction():
        store.links.record_intent(
            stripe_account, create.kind.object_type, create.sf_object, create.key_id, create.idempotency_key
        )
        store.links.mark_linked(
            stripe_account,
            create.kind.object_type,
            create.key_id,
            stripe_id=stripe_id,
            payload_hash=payload_hash,
            sf_modstamp=None,
            field_hashes=field_hashes,
        )
    crash_point(create.kind.after_link)
