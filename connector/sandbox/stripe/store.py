"""The in-memory Stripe account: objects by type, events, search snapshots.

Objects are stored as the JSON dicts the API returns. One re-entrant lock guards everything; a
write touches only the object it changes (plus a snapshot for events and, while a search lag is
configured, for the search index)."""

from __future__ import annotations

import copy
import random
import string
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import missing
from .webhooks import WebhookSender

if TYPE_CHECKING:
    from .sharing import SharingGroup

API_VERSION = "2026-10-28.endive"
_ALPHABET = string.ascii_letters + string.digits

# What "No such X" calls each type, as Stripe words it.
KIND_NAMES = {
    "customer": "customer",
    "product": "product",
    "price": "price",
    "subscription": "subscription",
    "subscription_item": "subscription item",
    "subscription_schedule": "subscription schedule",
    "payment_method": "PaymentMethod",
    "setup_intent": "setupintent",
    "checkout.session": "checkout.session",
    "mandate": "mandate",
    "coupon": "coupon",
    "invoice": "invoice",
    "event": "event",
    "billing.meter": "billing.meter",
    "test_helpers.test_clock": "test clock",
    "invoiceitem": "invoiceitem",
    "tax_id": "tax_id",
    "webhook_endpoint": "webhook endpoint",
}
SEARCHABLE = {"customer", "product", "price", "subscription", "invoice"}


class Store:
    """One Stripe account's objects. `group` is the Organization sharing group it belongs to, if any
    (see `sharing`): then a card payment method another account of the group saved is found here too."""

    def __init__(self, seed: int | None = None, account_id: str | None = None) -> None:
        self.lock = threading.RLock()
        self.objects: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.tombstones: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        # type -> id -> [(visible_at, snapshot or None once deleted)]; written only while a search lag
        # is configured, so objects written without a lag are searched live.
        self.search_versions: dict[str, dict[str, list[tuple[float, dict[str, Any] | None]]]] = defaultdict(
            dict
        )
        self.search_lag_seconds = 0.0
        self.declining: set[str] = set()  # payment methods made from decline test tokens
        self.charge_fails: set[str] = set()  # attach fine, every charge declined
        self.webhooks = WebhookSender()  # delivers events to the webhook endpoints
        self.rng = random.Random(seed)
        self.account_id = account_id or "acct_" + self._rand(16)
        self.group: SharingGroup | None = None
        self.clock: Callable[[], float] = time.time
        # While a handler works on a test clock's objects, "now" is that clock's frozen time
        # (see `frozen_at`); None = real time.
        self.frozen: int | None = None
        # Sandbox-private state about an object that its API shape has no field for, by object id.
        self.private: dict[str, dict[str, Any]] = defaultdict(dict)

    def reset(self) -> None:
        with self.lock:
            self.objects.clear()
            self.tombstones.clear()
            self.search_versions.clear()
            self.declining.clear()
            self.charge_fails.clear()
            self.private.clear()
            self.frozen = None

    # ids and time -------------------------------------------------------------------------
    def _rand(self, n: int) -> str:
        return "".join(self.rng.choice(_ALPHABET) for _ in range(n))

    def new_id(self, prefix: str, length: int = 14) -> str:
        while True:
            ident = f"{prefix}_{self._rand(length)}"
            if not any(ident in objs for objs in self.objects.values()):
                return ident

    def now(self) -> int:
        return self.frozen if self.frozen is not None else int(self.clock())

    @contextmanager
    def frozen_at(self, ts: int | None) -> Iterator[None]:
        """Make `now()` answer `ts` (a test clock's time) inside the block; None keeps real time."""
        before = self.frozen
        self.frozen = ts if ts is not None else before
        try:
            yield
        finally:
            self.frozen = before

    # objects ------------------------------------------------------------------------------
    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Insert or re-index an object after changing it."""
        kind = obj["object"]
        self.objects[kind][obj["id"]] = obj
        if kind in SEARCHABLE and self.search_lag_seconds > 0:
            self.search_versions[kind].setdefault(obj["id"], []).append(
                (self.clock() + self.search_lag_seconds, copy.deepcopy(obj))
            )
        return obj

    def get(self, kind: str, ident: Any, param: str | None = "id") -> dict[str, Any]:
        obj = self.find(kind, ident) if isinstance(ident, str) else None
        if obj is None:
            raise missing(KIND_NAMES.get(kind, kind), str(ident), param)
        return obj

    def find(self, kind: str, ident: str) -> dict[str, Any] | None:
        obj = self.objects[kind].get(ident)
        if obj is None and kind == "payment_method" and self.group is not None:
            from .sharing import shared_payment_method

            return shared_payment_method(self, ident)
        return obj

    def delete(self, kind: str, ident: str) -> dict[str, Any]:
        obj = self.objects[kind].pop(ident)
        stub = {"id": ident, "object": kind, "deleted": True}
        self.tombstones[kind][ident] = stub
        if kind in SEARCHABLE and self.search_lag_seconds > 0:
            self.search_versions[kind].setdefault(ident, []).append(
                (self.clock() + self.search_lag_seconds, None)
            )
        return obj

    def tombstone(self, kind: str, ident: str) -> dict[str, Any] | None:
        return self.tombstones[kind].get(ident)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return list(self.objects[kind].values())

    def newest_first(self, kind: str) -> Iterable[dict[str, Any]]:
        return reversed(list(self.objects[kind].values()))

    def set_search_lag(self, seconds: float) -> None:
        """Objects already stored stay searchable as they are now; later writes show after the lag."""
        with self.lock:
            if seconds > 0 and self.search_lag_seconds <= 0:
                for kind in SEARCHABLE:
                    for ident, obj in self.objects[kind].items():
                        self.search_versions[kind].setdefault(ident, [(0.0, copy.deepcopy(obj))])
            elif seconds <= 0:
                self.search_versions.clear()
            self.search_lag_seconds = float(seconds)

    # search index -------------------------------------------------------------------------
    def searchable(self, kind: str) -> list[dict[str, Any]]:
        """What search sees now: each object as of its newest write older than the lag, newest first."""
        now = self.clock()
        versions_of = self.search_versions[kind]
        out: list[dict[str, Any]] = [o for o in self.objects[kind].values() if o["id"] not in versions_of]
        for versions in versions_of.values():
            visible = [i for i, (at, _) in enumerate(versions) if at <= now]
            if not visible:
                continue  # not indexed yet
            if visible[-1] > 0:
                del versions[: visible[-1]]  # older versions can never be seen again
            snap = versions[0][1]
            if snap is not None:
                out.append(snap)
        out.sort(key=lambda o: o.get("created", 0), reverse=True)
        return out
