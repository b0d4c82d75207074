"""A PricebookEntry whose amount changed: its new Price replaces the old one, which is archived.

Stripe prices are immutable (only `active`, metadata and a few labels can change), so a new list
amount is a new Price, made exactly once like any other (connector.sync.orders `_price`) and
written back to the PricebookEntry. The Price it replaces is archived (`active=false`) once
nothing bills it: no subscription that has not ended (Stripe's list filters by `price`) and no
subscription schedule that has not finished. Existing subscriptions keep their price: contracts
change through Amendments, not through the catalog.

The state store remembers the archive on the old Price's link, so an entry that goes back to the
old amount reuses that Price after reactivating it, instead of making a third.
"""

from __future__ import annotations

import logging
from typing import Any

from connector.errors import Disposition, classify
from connector.state.models import Link
from connector.stripe_sink.catalog import MANAGED_BY, CatalogSink
from connector.sync.context import SyncContext
from connector.sync.exactly_once import PRICE

log = logging.getLogger(__name__)

# The marker on a Price link's field hashes while the connector has the Price archived.
ARCHIVED = {"active": "archived"}


def is_archived(link: Link | None) -> bool:
    return link is not None and (link.field_hashes or {}).get("active") == ARCHIVED["active"]


def retire(ctx: SyncContext, sink: CatalogSink, old: Any, replacement_id: str) -> bool:
    """Archive the replaced Price `old` (a retrieved stripe.Price) when the connector made it and
    nothing bills it; True when archived. Its links are marked so a later use reactivates it."""
    if old is None or old.id == replacement_id or not getattr(old, "active", False):
        return False
    metadata = old.to_dict().get("metadata") or {}
    if metadata.get("managed_by") != MANAGED_BY["managed_by"]:
        return False  # an admin's own Price: theirs to archive
    try:
        if sink.price_in_use(old.id):
            log.info("kept price %s (replaced by %s): something still bills it", old.id, replacement_id)
            return False
        sink.archive_price(old.id)
    except Exception as exc:  # the Order is billed with its new price either way
        verdict = classify(exc)
        if verdict.disposition is Disposition.FATAL:
            raise
        log.warning("price %s, replaced by %s, was not archived: %s", old.id, replacement_id, verdict.message)
        return False
    for link in ctx.store.links.find_by_stripe_id(old.id, ctx.stripe_account):
        if link.object_type == PRICE.object_type:
            ctx.store.links.update_hash(
                ctx.stripe_account, link.object_type, link.sf_id, link.payload_hash, field_hashes=ARCHIVED
            )
    log.info("archived price %s, replaced by %s", old.id, replacement_id)
    return True


def revive(ctx: SyncContext, sink: CatalogSink, link: Link) -> None:
    """A Price the connector archived is wanted again (the entry went back to its amount)."""
    assert link.stripe_id
    sink.reactivate_price(link.stripe_id)
    ctx.store.links.update_hash(
        ctx.stripe_account, link.object_type, link.sf_id, link.payload_hash, field_hashes={}
    )
