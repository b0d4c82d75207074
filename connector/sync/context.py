"""Everything one sync run needs, built once from settings and passed down explicitly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from connector.mapping import Mappings
from connector.settings import Settings
from connector.state.store import StateStore
from connector.stripe_sink.gateway import StripeGateway


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

    @cached_property
    def stripe_account(self) -> str:
        return self.gateway.account_id()
