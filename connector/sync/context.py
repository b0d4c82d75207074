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
from connector.routing import Router
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


@dataclass(frozen=True)
class AccountScope:
    """A context's account among several (mappings/routing.yaml): its name, the rules, and the
    run's context for all of them (to find a record's link in another account)."""

    name: str
    router: Router
    run: SyncContext

    def account_id(self, name: str) -> str:
        return self.run.account_context(name).stripe_account


def account_problems(settings: Settings, mappings: Mappings) -> list[str]:
    """CPQ2STRIPE_STRIPE_ACCOUNTS and routing.yaml must name the same accounts."""
    configured, routing = set(settings.stripe_accounts), mappings.routing
    if routing is None:
        if configured:
            return [
                "CPQ2STRIPE_STRIPE_ACCOUNTS names several Stripe accounts but the mappings have no "
                "routing.yaml to say which records bill through which: add one "
                "(README: Several Stripe accounts)"
            ]
        return []
    routed = set(routing.accounts)
    if not configured:
        return [
            "routing.yaml routes to Stripe accounts but CPQ2STRIPE_STRIPE_ACCOUNTS is not set: give it "
            "each account's key as JSON ({\"" + '": "sk_…", "'.join(sorted(routed)) + '": "sk_…"})'
        ]
    problems = []
    if routed - configured:
        problems.append(
            "routing.yaml names account(s) with no key in CPQ2STRIPE_STRIPE_ACCOUNTS: "
            + ", ".join(sorted(routed - configured))
        )
    if configured - routed:
        problems.append(
            "CPQ2STRIPE_STRIPE_ACCOUNTS names account(s) routing.yaml does not: "
            + ", ".join(sorted(configured - routed))
        )
    return problems


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
    # Several Stripe accounts: the account this context bills through (None: the run's context).
    scope: AccountScope | None = None
    _accounts: dict[str, SyncContext] = field(default_factory=dict, repr=False)
    _accounts_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @cached_property
    def router(self) -> Router | None:
        """The routing rules when the run bills through several Stripe accounts."""
        routing = self.mappings.routing
        return Router(routing) if routing is not None and self.settings.stripe_accounts else None

    @property
    def routed(self) -> bool:
        """The run's context of several accounts: its pipelines hand each record to its account's."""
        return self.scope is None and self.router is not None

    def account_context(self, name: str) -> SyncContext:
        """One account's context (made once): its own key, gateway, rate budget and workers; the
        run's Salesforce client, state store and stop request. The first account's is this
        context's own gateway, so its budget is never split in two."""
        if self.scope is not None:
            return self.scope.run.account_context(name)
        router = self.router
        assert router is not None, "one Stripe account: there are no account contexts"
        with self._accounts_lock:
            child = self._accounts.get(name)
            if child is None:
                settings = self.settings.for_stripe_account(name)
                gateway = self.gateway if name == router.first else StripeGateway.from_settings(settings)
                child = SyncContext(
                    settings,
                    self.mappings,
                    self.sf,
                    gateway,
                    self.store,
                    now=self.now,
                    scope=AccountScope(name, router, self),
                )
                self._accounts[name] = child
        child.run_id, child.stop, child.progress = self.run_id, self.stop, self.progress
        return child

    def account_contexts(self) -> list[SyncContext]:
        """Every account's context (this one alone with one Stripe account)."""
        if self.router is None or self.scope is not None:
            return [self]
        return [self.account_context(name) for name in self.router.names]

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

    def gateways(self) -> list[StripeGateway]:
        """Every Stripe account's gateway, once each (the first account shares this context's)."""
        return list({id(c.gateway): c.gateway for c in [self, *self._accounts.values()]}.values())

    def account_calls_by_operation(self) -> dict[str, dict[str, int]]:
        """Stripe requests by operation, per account name ("" with one account)."""
        if not self.routed:
            return {"": dict(self.gateway.calls)}
        return {c.scope.name: dict(c.gateway.calls) for c in self.account_contexts() if c.scope is not None}

    def account_calls(self) -> dict[str, int]:
        """Stripe requests per account name (several accounts only)."""
        if not self.routed:
            return {}
        return {c.scope.name: c.gateway.total_calls for c in self.account_contexts() if c.scope is not None}

    @property
    def stripe_calls(self) -> int:
        """Stripe requests of the run, over every account."""
        return sum(g.total_calls for g in self.gateways())

    def close(self) -> None:
        for child in list(self._accounts.values()):
            child.close()
        if "stripe_workers" in self.__dict__:
            self.stripe_workers.shutdown(wait=True)
