"""Organization sharing groups: Customers shared across accounts, card payment methods usable by all.

As the seed page ("Share customers and payment methods across accounts in an Organization",
/work/shared/seeds/ digest) says: a Customer created in one account of a group is created in every
account of the group with the same id (`customer.created` in each); updates to the shared fields
reach every instance with `customer.updated` in every account, other fields stay in the account that
wrote them; a payment method lives in the account that saved it, and every account of the group may
use it if it is a card (events about it stay in its own account).

The accounts of a group share one lock (a write in one account writes the others), so a handler may
touch a peer's store while it holds its own."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any

from .common import Ctx
from .store import Store

# The Customer fields Stripe synchronises across a sharing group (the seed's list; `tax_id` is the
# customer's tax id objects, handled by `tax_id_made` / `tax_id_deleted`).
SHARED_FIELDS = ("name", "email", "address", "phone", "description", "preferred_locales")


@dataclass
class SharingGroup:
    name: str
    lock: threading.RLock = field(default_factory=threading.RLock)
    stores: list[Store] = field(default_factory=list)

    def join(self, store: Store) -> None:
        """Add an account (while no request runs on it). Every customer the group already shares is
        created in the new account too, and the new account's customers in the group (no events:
        enabling sharing is a Dashboard action, not an API call)."""
        with self.lock, store.lock:
            for peer in self.stores:
                for cust in list(peer.all("customer")):
                    if store.find("customer", cust["id"]) is None:
                        store.put(peer_instance(store, cust))
                for cust in list(store.all("customer")):
                    if peer.find("customer", cust["id"]) is None:
                        peer.put(peer_instance(peer, cust))
                # One card, one behaviour: a decline-test card declines whichever account charges it.
                peer.declining |= store.declining
                peer.charge_fails |= store.charge_fails
            if self.stores:
                store.declining = self.stores[0].declining
                store.charge_fails = self.stores[0].charge_fails
            store.lock = self.lock
            store.group = self
            self.stores.append(store)

    def peers(self, store: Store) -> list[Store]:
        return [s for s in self.stores if s is not store]


def peer_instance(store: Store, cust: dict[str, Any]) -> dict[str, Any]:
    """The instance another account of the group gets: the same id, creation time and shared fields;
    every other field as a new customer of that account has it."""
    from .resources.customers import blank_customer

    inst = blank_customer(store, cust["id"], cust["created"], None)
    for key in SHARED_FIELDS:
        inst[key] = copy.deepcopy(cust[key])
    return inst


def _peer_ctx(ctx: Ctx, store: Store) -> Ctx:
    """Events in a peer account come from no request of that account."""
    return Ctx(store=store, request_id=None, idempotency_key=None)


def customer_created(ctx: Ctx, cust: dict[str, Any]) -> None:
    group = ctx.store.group
    if group is None:
        return
    for peer in group.peers(ctx.store):
        inst = peer.put(peer_instance(peer, cust))
        _peer_ctx(ctx, peer).emit("customer.created", inst)


def customer_updated(ctx: Ctx, cust: dict[str, Any], previous: dict[str, Any]) -> None:
    """Copy the shared fields this update changed to every peer instance, each with its event."""
    group = ctx.store.group
    changed = [k for k in SHARED_FIELDS if k in previous]
    if group is None or not changed:
        return
    for peer in group.peers(ctx.store):
        inst = peer.find("customer", cust["id"])
        if inst is None:
            continue  # deleted in that account
        before = {k: inst[k] for k in changed if inst[k] != cust[k]}
        if not before:
            continue
        for key in before:
            inst[key] = copy.deepcopy(cust[key])
        peer.put(inst)
        _peer_ctx(ctx, peer).emit("customer.updated", inst, before)


def tax_id_made(ctx: Ctx, tax_id: dict[str, Any]) -> None:
    group = ctx.store.group
    if group is None:
        return
    for peer in group.peers(ctx.store):
        if peer.find("customer", tax_id["customer"]) is not None:
            made = peer.put(copy.deepcopy(tax_id))
            _peer_ctx(ctx, peer).emit("customer.tax_id.created", made)


def tax_id_deleted(ctx: Ctx, tax_id: dict[str, Any]) -> None:
    group = ctx.store.group
    if group is None:
        return
    for peer in group.peers(ctx.store):
        if peer.find("tax_id", tax_id["id"]) is not None:
            gone = peer.delete("tax_id", tax_id["id"])
            _peer_ctx(ctx, peer).emit("customer.tax_id.deleted", gone)


def shared_payment_method(store: Store, ident: str) -> dict[str, Any] | None:
    """A payment method another account of `store`'s group saved, if this account may use it: only
    cards are shared. A non-card one is not there for this account, so Stripe's answer is its
    ordinary "No such PaymentMethod" (the seed says only that other types cannot be shared)."""
    group = store.group
    if group is None:
        return None
    for peer in group.peers(store):
        pm = peer.objects["payment_method"].get(ident)
        if pm is not None:
            return pm if pm.get("type") == "card" else None
    return None
