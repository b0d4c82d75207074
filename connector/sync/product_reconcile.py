"""Drift on Products: a name, description or active state edited in Stripe is put back to what the
Product2 says (one-way authority), as `reconcile` does for Customers.

Cheap by construction: the linked Products are read with the list API (100 a page), their
Product2 rows with one SOQL per 200 ids, and each drifted Product gets one update carrying only
its drifted fields. Only the fields the Product2 pass owns are compared (connector.sync.products);
metadata and everything else on the Product are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from connector.state.models import Link, LogEntry
from connector.stripe_sink.catalog import CatalogSink
from connector.sync.context import SyncContext
from connector.sync.fieldhash import changed_params, field_hashes, payload_hash
from connector.sync.products import (
    OBJECT_TYPE,
    OWNED,
    SF_OBJECT,
    compared_fields,
    product_fields,
    product_params,
)
from connector.sync.reconcile import (
    Drift,
    ReconcileReport,
    linked_by_stripe_id,
    list_all,
    put_back,
    rows_by_id,
)

log = logging.getLogger(__name__)


def product_drift(
    sf_id: str, desired: Mapping[str, Any], product: Mapping[str, Any], compared: set[str]
) -> list[Drift]:
    """The owned fields where the Product differs from the Product2 (pure): an empty description
    equals none, `active` compares as a flag."""
    drifts = []
    for name in sorted(compared):
        want, have = desired.get(name), product.get(name)
        same = bool(want) == bool(have) if name == "active" else (want or None) == (have or None)
        if not same:
            drifts.append(Drift(OBJECT_TYPE, sf_id, str(product["id"]), name, have, want))
    return drifts


class ProductReconciler:
    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.lines = ctx.mappings.subscription.lines
        self.sink = CatalogSink(ctx.gateway)
        # name, description, active (metadata drift is not Product data a person edits by hand)
        self.compared = compared_fields(self.lines) & set(OWNED)

    def product2_rows(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        fields = ", ".join(dict.fromkeys(["Id", *product_fields(self.lines)]))
        return rows_by_id(self.ctx, f"SELECT {fields} FROM {SF_OBJECT}", "", ids)

    def run(self, report: ReconcileReport) -> None:
        ctx, store = self.ctx, self.ctx.store
        links = linked_by_stripe_id(ctx, OBJECT_TYPE)
        if not links or ctx.stop.is_set():
            return
        listed = list_all(ctx, "products.list", ctx.gateway.client.v1.products.list)
        products = {p["id"]: p for p in listed if p["id"] in links}
        rows = self.product2_rows(sorted(link.sf_id for link in links.values()))
        entries: list[LogEntry] = []
        try:
            for stripe_id, link in sorted(links.items(), key=lambda kv: kv[1].sf_id):
                if ctx.stop.is_set() or report.fatal:
                    return
                product, row = products.get(stripe_id), rows.get(link.sf_id)
                if product is None or row is None:
                    continue  # deleted on either side: the Product2 pass and the Orders say so
                if not self._check(link, product, row, entries, report):
                    return
        finally:
            store.runs.log_action(entries)

    def _check(
        self,
        link: Link,
        product: dict[str, Any],
        row: dict[str, Any],
        entries: list[LogEntry],
        report: ReconcileReport,
    ) -> bool:
        """One Product against its Product2; False after a fatal error."""
        ctx = self.ctx
        desired, errors = product_params(self.lines, row)
        desired = {k: v for k, v in desired.items() if k in self.compared}
        if errors:
            report.skipped.append(f"product {product['id']} (Salesforce {link.sf_id}): {'; '.join(errors)}")
            return True
        report.products_checked += 1
        drifts = product_drift(link.sf_id, desired, product, self.compared)
        report.drifts.extend(drifts)
        if not drifts or report.dry_run:
            return True
        live = {k: product.get(k) for k in self.compared if product.get(k) not in (None, "")}
        changes = changed_params(field_hashes(live), desired)
        hashes = field_hashes(desired)
        done = put_back(ctx, report, "product", str(product["id"]), changes, self.sink.update_product)
        if done is None:
            return False
        if not done:
            return True
        report.corrected.append(str(product["id"]))
        kept = {k: v for k, v in (link.field_hashes or {}).items() if k not in self.compared}
        merged = {**kept, **hashes}
        ctx.store.links.update_hash(
            ctx.stripe_account, OBJECT_TYPE, link.sf_id, payload_hash(merged), field_hashes=merged
        )
        entries.append(
            LogEntry(
                OBJECT_TYPE,
                "reconcile",
                "updated",
                link.sf_id,
                SF_OBJECT,
                str(product["id"]),
                "drift put back: " + "; ".join(f"{d.field} was {d.stripe_value!r}" for d in drifts),
                run_id=ctx.run_id,
            )
        )
        return True
