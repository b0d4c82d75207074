"""Resource families; each module exposes ENDPOINTS."""

from __future__ import annotations

from ..common import Endpoint
from . import (
    account,
    billing,
    catalog,
    checkout,
    customers,
    invoicing,
    meters,
    payments,
    tax_ids,
    testclocks,
    webhooks,
)


def endpoints() -> list[Endpoint]:
    """Every API endpoint. Fixed paths come before `{id}` patterns (`/search` before `/{id}`)."""
    eps: list[Endpoint] = []
    modules = (
        account,
        customers,
        tax_ids,
        catalog,
        meters,
        payments,
        checkout,
        billing,
        invoicing,
        testclocks,
        webhooks,
    )
    for module in modules:
        eps.extend(module.ENDPOINTS)
    return sorted(eps, key=lambda e: "{" in e.pattern.rsplit("/", 1)[-1])
