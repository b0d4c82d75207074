"""Everything one sync run needs, built once from settings and passed down explicitly."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from connector.mapping import Mappings
from connector.settings import Settings
from connector.state.store import StateStore
from connector.stripe_sink.gateway import StripeGateway

if TYPE_CHECKING:
    from connector.progress import RunProgress


def workers_for(rps: float) -> int:
    """Enough concurrent Stripe requests to fill `rps` at ~250 ms a call plus our own work (the
    gateway's limiter keeps them within the budget): 45 at the live 90 rps, 13 at test mode's 25."""
    return max(4, min(64, math.ceil(rps * 0.5)))


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class SyncContext:
    settings: Settings
    mappings: Mappings
    sf: Any  # connector.salesforce.client.SalesforceClient
    gateway: StripeGateway
    store: StateStore
    now: Callable[[], datetime] = utcnow
    run_id: int | None = None
    fatal_message: str | None = field(default=None)
    # Set to stop after the records in flight (Ctrl-C): checked before each record and batch.
    stop: threading.Event = field(default_factory=threading.Event)
    progress: RunProgress | None = None  # a command's progress display; None in the daemon

    @cached_property
    def stripe_account(self) -> str:
        return self.gateway.account_id()

    @cached_property
    def single_currency(self) -> str | None:
        """None in a multi-currency org; otherwise the org's one currency. Salesforce has no
        CurrencyIsoCode field on any object until multi-currency is turned on, so a query naming
        it fails there; Organization.DefaultCurrencyIsoCode is then every amount's currency."""
        fields = {f["name"] for f in self.sf.describe("Order")["fields"]}
        if "CurrencyIsoCode" in fields:
            return None
        rows = self.sf.query_all("SELECT DefaultCurrencyIsoCode FROM Organization")
        return str(rows[0]["DefaultCurrencyIsoCode"]) if rows else None

    @cached_property
    def stripe_workers(self) -> ThreadPoolExecutor:
        """The run's one pool of Stripe workers. Batches queue their records on it in order, so a
        batch planned while another is applied starts the moment the other's last record does."""
        count = self.settings.stripe_workers or workers_for(self.settings.effective_stripe_rps)
        return ThreadPoolExecutor(max_workers=count, thread_name_prefix="stripe")

    def close(self) -> None:
        if "stripe_workers" in self.__dict__:
            self.stripe_workers.shutdown(wait=True)
