"""One object's pipeline over several Stripe accounts (mappings/routing.yaml).

The run keeps one query, one cursor and one failure record per Salesforce record, as with one
account; each page is split by the routing rules and every account's share is applied by that
account's own pipeline (its key, gateway, rate budget and workers), the accounts side by side.
A record goes to exactly one account, so its outcome, failure and write-back have one owner.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from connector.mapping.engine import read_path
from connector.routing import Router
from connector.sync.context import SyncContext
from connector.sync.exactly_once import CUSTOMER, METER_EVENT, PAYMENT_SETUP, SUBSCRIPTION
from connector.sync.report import OK_STATUSES, RunReport

if TYPE_CHECKING:
    from connector.sync.streams import Pipeline

Row = Mapping[str, Any]


def route_of(ctx: SyncContext, object_type: str, row: Row) -> list[str]:
    """The accounts a row goes to: its home (an Account), its billing account (an Order, a usage
    record through its Order).
    A row routed nowhere goes to the first account, which refuses it with the reason. Product2
    upkeep goes nowhere: its one Stripe id field cannot name a Product per account (a gap)."""
    router = ctx.router
    assert router is not None
    if object_type in (CUSTOMER.object_type, PAYMENT_SETUP.object_type):  # an Account: its home
        return [router.home(row).account or router.first]
    if object_type == SUBSCRIPTION.object_type:
        return [router.order_route(row).account or router.first]
    if object_type == METER_EVENT.object_type:
        order = read_path(row, usage_order_path(ctx)) or {}
        return [router.order_route(order).account or router.first]
    return []


def usage_order_path(ctx: SyncContext) -> str:
    """The relationship path from a usage record to its Order (Order_Product__r.OrderId -> …Order)."""
    usage = ctx.mappings.usage
    path = usage.order if usage is not None else "Order_Product__r.OrderId"
    return path[:-2] if path.endswith("Id") else path


def usage_route_fields(ctx: SyncContext, router: Router) -> list[str]:
    """What a usage query selects to route its records by their Orders."""
    base = usage_order_path(ctx)
    return [f"{base}.{f}" for f in router.order_fields() if f != router.routing.write_back]


class RoutedSync:
    """A PolledSync (connector.sync.polling) that hands each row to its account's pipeline."""

    def __init__(self, ctx: SyncContext, build: Callable[[SyncContext], Pipeline]) -> None:
        router = ctx.router
        assert router is not None and ctx.routed
        self.ctx = ctx
        self._build = build
        self._pipelines: dict[str, Pipeline] = {}
        first = self.pipeline(router.first)
        self.object_type: str = first.object_type
        self.cursor_name: str = first.cursor_name
        self.noun: str = first.noun
        self.missing_reason: str = first.missing_reason
        self._first = first

    def pipeline(self, name: str) -> Pipeline:
        if name not in self._pipelines:
            self._pipelines[name] = self._build(self.ctx.account_context(name))
        return self._pipelines[name]

    def _select(self) -> str:
        return self._first._select()

    def _where(self, *clauses: str) -> str:
        return self._first._where(*clauses)

    def mapping_version(self) -> str:
        return self._first.mapping_version()

    def _members(self, rows: Sequence[Row], shares: dict[str, list[Row]]) -> set[tuple[str, str]]:
        """Accounts whose Customer another account of their sharing group uses too (an Order
        billed there linked it): that account gets the row as well, to keep its own fields (the
        metadata, never the shared ones) current. (account name, sf id) of each such share."""
        router = self.ctx.router
        assert router is not None
        members: set[tuple[str, str]] = set()
        for name in router.names:
            candidates = {
                str(r["Id"]): r
                for r in rows
                if (home := router.home(r).account) and home != name and router.shares_customers(home, name)
            }
            if not candidates:
                continue
            child = self.ctx.account_context(name)
            for sid in child.store.links.get_many(
                child.stripe_account, CUSTOMER.object_type, list(candidates)
            ):
                shares.setdefault(name, []).append(candidates[sid])
                members.add((name, sid))
        return members

    def process(self, rows: Sequence[Row], report: RunReport, links: dict[str, Any] | None = None) -> None:
        """Each account's rows by its own pipeline, the accounts side by side; the outcomes in
        one report, each naming its account. `links` (the run's account's) is not used: each
        account's pipeline reads its own."""
        shares: dict[str, list[Row]] = {}
        for row in rows:
            for name in route_of(self.ctx, self.object_type, row):
                shares.setdefault(name, []).append(row)
        members = self._members(rows, shares) if self.object_type == CUSTOMER.object_type else set()
        reports = {
            name: RunReport(report.kind, dry_run=report.dry_run, object_type=report.object_type)
            for name in shares
        }

        errors: list[BaseException] = []

        def run(name: str) -> None:
            child = self.ctx.account_context(name)
            try:
                self.pipeline(name).process(shares[name], reports[name])
            except BaseException as exc:  # raised again below, in the caller's thread
                errors.append(exc)
            if child.fatal_message and not self.ctx.fatal_message:
                self.ctx.fatal_message = child.fatal_message

        threads = [threading.Thread(target=run, args=(n,), name=f"account-{n}") for n in list(shares)[1:]]
        for t in threads:
            t.start()
        if shares:
            run(next(iter(shares)))
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        for name, share in reports.items():
            report.outcomes.extend(
                replace(o, account=name)
                for o in share.outcomes
                if (name, o.sf_id) not in members or o.status not in OK_STATUSES  # counted at home
            )
            report.fatal = report.fatal or share.fatal
            report.unprocessed += share.unprocessed


# Customer fields a Stripe Organization sharing group keeps the same in every account (Stripe:
# "Share customers and payment methods across accounts"): written by the home account only.
SHARED_CUSTOMER_FIELDS = frozenset(
    {"name", "email", "address", "phone", "description", "preferred_locales", "tax_id_data"}
)


def linked_in(ctx: SyncContext, name: str, object_type: str, ids: Sequence[str]) -> dict[str, str]:
    """sf id -> Stripe id of these records' links in another of the run's accounts."""
    if not ids:
        return {}
    assert ctx.scope is not None
    links = ctx.store.links.get_many(ctx.scope.account_id(name), object_type, ids)
    return {sid: link.stripe_id for sid, link in links.items() if link.stripe_id}


def linked_elsewhere(
    ctx: SyncContext, object_type: str, ids: Sequence[str], *, allowed: Callable[[str], bool]
) -> dict[str, str]:
    """sf id -> the name of another account (not `allowed`) where the record is linked already:
    routing now sends it here, but it bills there."""
    scope = ctx.scope
    assert scope is not None
    found: dict[str, str] = {}
    for name in scope.router.names:
        if name != scope.name and not allowed(name):
            for sid in linked_in(ctx, name, object_type, [i for i in ids if i not in found]):
                found[sid] = name
    return found


def moved_reason(noun: str, old: str, new: str, field: str, value: str | None) -> str:
    """Why a record that bills through one account is not re-created in the one it is routed to."""
    shown = repr(value) if value else "empty"
    return (
        f"this {noun} bills through Stripe account '{old}', but routing.yaml now sends it to '{new}' "
        f"({field} is {shown}); the connector never moves billing between accounts that do not share "
        f"customers. Fix: set {field} back; to bill through '{new}' from now on, end the billing in "
        f"'{old}' by hand and clear the {noun}'s Stripe ID and Stripe account fields"
    )
