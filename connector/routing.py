"""Which Stripe account a record bills through, from mappings/routing.yaml (pure: no I/O).

An Account's *home* is the account its routing field names (through `routes:`, else `default:`).
Its Orders bill there too, unless `order_field` names another account of the home's Stripe
Organization sharing group: those accounts share the Customer (same id), so an Order may bill
in any of them. Every other combination is refused by the pipeline that meets it, with the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connector.mapping.engine import read_path
from connector.mapping.schema import RoutingMapping


@dataclass(frozen=True)
class Route:
    """Where one record goes: `account` (None when nothing routes it) and why, for messages."""

    account: str | None
    field: str
    value: str | None

    def unrouted_reason(self, noun: str) -> str:
        shown = repr(self.value) if self.value else "empty"
        return (
            f"the {noun}'s {self.field} is {shown}, which routing.yaml routes to no Stripe account (it has "
            "no default). Fix: set the field to a routed value, or add the value under routes: (or a "
            "default:) in routing.yaml"
        )


class Router:
    """The routing rules of one routing.yaml, as decisions on Salesforce rows."""

    def __init__(self, routing: RoutingMapping) -> None:
        self.routing = routing
        self.names: tuple[str, ...] = tuple(routing.accounts)

    @property
    def first(self) -> str:
        """The account that reports records routed nowhere (the default, else the first named)."""
        return self.routing.default or self.names[0]

    def group(self, name: str) -> str | None:
        options = self.routing.accounts.get(name)
        return options.sharing_group if options is not None else None

    def shares_customers(self, a: str, b: str) -> bool:
        """The same account, or two accounts of one sharing group (one Customer id in both)."""
        group = self.group(a)
        return a == b or (group is not None and group == self.group(b))

    def _route(self, value: Any, field: str) -> Route:
        text = str(value).strip() if value not in (None, "") else None
        account = self.routing.routes.get(text) if text is not None else None
        return Route(account or self.routing.default, field, text)

    def home(self, account: Mapping[str, Any]) -> Route:
        """An Account row's home account."""
        field = self.routing.account_field
        return self._route(account.get(field), field)

    def order_route(self, order: Mapping[str, Any]) -> Route:
        """An Order row's account: its own field when set, else its Account's home."""
        own = self.routing.order_field
        if own and order.get(own) not in (None, ""):
            return self._route(order.get(own), own)
        return self.order_home(order)

    def order_home(self, order: Mapping[str, Any]) -> Route:
        """The home of an Order row's Account (read through the Order's Account lookup)."""
        field = self.routing.account_field
        return self._route(read_path(order, f"Account.{field}"), f"Account.{field}")

    def account_fields(self) -> list[str]:
        """What an Account query must select for routing."""
        return [f for f in (self.routing.account_field, self.routing.write_back) if f]

    def order_fields(self) -> list[str]:
        """What an Order query must select for routing."""
        wanted = [f"Account.{self.routing.account_field}", self.routing.order_field, self.routing.write_back]
        return [f for f in wanted if f]
