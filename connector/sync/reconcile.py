"""Drift: put mapped Customer fields edited in Stripe back to what Salesforce says, and report each.

Salesforce is the authority (seed 001): a mapped field changed in Stripe is put back; a field the
mapping does not name, and a metadata key the connector does not own, is never touched. Reads are
in bulk: the Customers with the list API (100 a page), the Accounts with one SOQL per 200 ids.
Each drifted Customer gets one update carrying only its drifted fields. Nested objects (address,
shipping) are replaced whole by Stripe, so their unmapped parts (say ``address.line2`` set by hand)
are sent back as Stripe holds them. Afterwards the link's per-field hashes say what Stripe holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connector.errors import Disposition, classify
from connector.interrupt import EXIT_INTERRUPTED, interrupted_line
from connector.mapping import map_record, project_stripe_object, soql_fields
from connector.mapping.engine import TAX_IDS_PARAM
from connector.salesforce.soql import id_list
from connector.state.models import Link, LogEntry
from connector.stripe_sink.customers import SALESFORCE_ID_KEY, CustomerSink
from connector.sync.context import SyncContext
from connector.sync.fieldhash import WHOLE_OBJECTS, field_hashes, payload_hash
from connector.sync.polling import progress_task
from connector.sync.routed import SHARED_CUSTOMER_FIELDS
from connector.sync.runner import finish_run

if TYPE_CHECKING:
    from connector.progress import Task as ProgressTask

log = logging.getLogger(__name__)

OBJECT_TYPE = "customer"
SF_OBJECT = "Account"
PAGE = 100  # Stripe's largest list page
SOQL_CHUNK = 200


@dataclass(frozen=True)
class Drift:
    object_type: str
    sf_id: str
    stripe_id: str
    field: str  # Stripe dot-path
    stripe_value: Any
    salesforce_value: Any

    def line(self) -> str:
        return (
            f"{self.object_type} {self.stripe_id} (Salesforce {self.sf_id}) {self.field}: "
            f"Stripe has {self.stripe_value!r}, Salesforce says {self.salesforce_value!r}"
        )


@dataclass
class ReconcileReport:
    dry_run: bool = False
    checked: int = 0
    drifts: list[Drift] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)  # Stripe ids updated
    skipped: list[str] = field(default_factory=list)  # why a linked record was not compared
    errors: list[str] = field(default_factory=list)
    fatal: str | None = None
    unprocessed: int = 0  # Customers left for the next run (Ctrl-C)
    products_checked: int = 0  # Products against their Product2 (connector.sync.product_reconcile)

    def summary_lines(self) -> list[str]:
        lines = [self._head("Customers", self.checked, OBJECT_TYPE)]
        if self.products_checked:
            lines.append(self._head("Products", self.products_checked, "product"))
        lines += [f"  DRIFT {d.line()}" for d in self.drifts]
        lines += [f"  SKIPPED {s}" for s in self.skipped]
        lines += [f"  FAILED {e}" for e in self.errors]
        if self.fatal:
            lines.append(f"  STOPPED: {self.fatal}")
        return lines

    def _head(self, noun: str, checked: int, object_type: str) -> str:
        drifted = {d.stripe_id for d in self.drifts if d.object_type == object_type}
        if self.dry_run:
            return f"Reconcile (dry run, nothing changed): {checked} {noun} checked, {len(drifted)} drifted"
        put_back = len([s for s in self.corrected if s in drifted])
        return (
            f"Reconcile: {checked} {noun} checked, {len(drifted)} drifted, "
            f"{put_back} put back to the Salesforce values"
        )


# ---- pure parts ---------------------------------------------------------------------------------


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves by dot-path; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def _without_empty(value: Any) -> Any:
    if isinstance(value, Mapping):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, "", {}, [])}
    return value


def _overlay(stripe_value: Any, desired: Any, mapped_prefixes: list[str]) -> Any:
    """A nested object to send whole: Stripe's unmapped parts kept, the mapped parts as desired."""
    base = flatten(_without_empty(stripe_value) if isinstance(stripe_value, Mapping) else {})
    merged = {
        p: v for p, v in base.items() if not any(p == m or p.startswith(f"{m}.") for m in mapped_prefixes)
    }
    merged.update(flatten(desired) if isinstance(desired, Mapping) else {})
    out: dict[str, Any] = {}
    for path, value in merged.items():
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def list_all(ctx: SyncContext, op: str, lister: Callable[..., Any]) -> Iterator[dict[str, Any]]:
    """Every object of a Stripe list, 100 a page (the list API, not one retrieve per object);
    stops early once the run is asked to stop."""
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": PAGE}
        if after:
            params["starting_after"] = after
        page = ctx.gateway.call(op, lister, params=params)
        for obj in page.data:
            yield obj.to_dict()
        if not page.has_more or not page.data or ctx.stop.is_set():
            return
        after = page.data[-1].id


def rows_by_id(ctx: SyncContext, select: str, condition: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """`select` (SELECT … FROM …) for these ids, one SOQL per 200, by Id; `condition` is ANDed
    before the ids ("" or "(…) AND ")."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), SOQL_CHUNK):
        soql = f"{select} WHERE {condition}Id IN {id_list(ids[start : start + SOQL_CHUNK])}"
        for page in ctx.sf.query_pages(soql):
            found.update((r["Id"], dict(r)) for r in page)
    return found


def linked_by_stripe_id(ctx: SyncContext, object_type: str) -> dict[str, Link]:
    """The linked records of one object type, by their Stripe id."""
    links = ctx.store.links.all(stripe_account=ctx.stripe_account, object_type=object_type, status="linked")
    return {link.stripe_id: link for link in links if link.stripe_id}


def put_back(
    ctx: SyncContext,
    report: ReconcileReport,
    noun: str,
    stripe_id: str,
    changes: dict[str, Any],
    update: Callable[[str, dict[str, Any], str], Any],
) -> bool | None:
    """One update with only the drifted fields. False: this object failed; None: fatal."""
    # Keyed by the run too: the same correction made again after a later hand edit must not
    # replay the first answer from Stripe's idempotency cache.
    key_hash = payload_hash({"run": str(ctx.run_id), "changes": repr(sorted(changes.items()))})
    try:
        update(stripe_id, changes, key_hash)
    except Exception as exc:
        verdict = classify(exc)
        if verdict.disposition is Disposition.FATAL:
            report.fatal = verdict.message
            return None
        report.errors.append(f"{noun} {stripe_id}: {verdict.message}")
        return False
    return True


def customer_drift(
    mapping: Any, sf_id: str, desired: dict[str, Any], stripe_obj: Mapping[str, Any]
) -> tuple[list[Drift], dict[str, Any]]:
    """The drifts of one Customer and the update that puts them back (empty when none).

    Compares only the mapping's targets (``project_stripe_object``) plus the connector's own
    ``metadata.salesforce_account_id``; everything else on the Customer is out of scope.
    """
    stripe_id = str(stripe_obj["id"])
    # A Customer object does not carry its tax ids (they are a list of their own): they are kept in
    # step when the Account's tax id fields change (connector.sync.tax_ids), not compared here.
    desired = {k: v for k, v in desired.items() if k != TAX_IDS_PARAM}
    current = project_stripe_object(mapping, dict(stripe_obj))
    want, have = flatten(desired), flatten(current)
    owner = (stripe_obj.get("metadata") or {}).get(SALESFORCE_ID_KEY)
    owner_path = f"metadata.{SALESFORCE_ID_KEY}"
    if owner != sf_id:
        want[owner_path], have[owner_path] = sf_id, owner
    drifts = [
        Drift(OBJECT_TYPE, sf_id, stripe_id, path, have.get(path), want.get(path))
        for path in sorted(want.keys() | have.keys())
        if want.get(path) != have.get(path)
    ]
    changes: dict[str, Any] = {}
    mapped_targets = [f.target for f in mapping.fields]
    for top in sorted({d.field.split(".", 1)[0] for d in drifts}):
        if top == "metadata":
            for d in drifts:
                if d.field.startswith("metadata."):
                    key = d.field.removeprefix("metadata.")
                    changes.setdefault("metadata", {})[key] = (
                        "" if d.salesforce_value is None else want[d.field]
                    )
            continue
        value = desired.get(top)
        if top not in WHOLE_OBJECTS and (
            isinstance(value, Mapping) or isinstance(stripe_obj.get(top), Mapping)
        ):
            # Merged part by part (invoice_settings): only the drifted parts, "" to unset one.
            for d in drifts:
                if d.field.startswith(f"{top}."):
                    node = changes.setdefault(top, {})
                    *parents, leaf = d.field.removeprefix(f"{top}.").split(".")
                    for part in parents:
                        node = node.setdefault(part, {})
                    node[leaf] = "" if d.salesforce_value is None else want[d.field]
            continue
        if isinstance(value, Mapping) or isinstance(stripe_obj.get(top), Mapping):
            prefixes = [t.removeprefix(f"{top}.") for t in mapped_targets if t.startswith(f"{top}.")]
            value = _overlay(stripe_obj.get(top), value or {}, prefixes) or ""
        changes[top] = "" if value is None else value
    return drifts, changes


# ---- the run ------------------------------------------------------------------------------------


class CustomerReconciler:
    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.mapping = ctx.mappings.customer
        self.sink = CustomerSink(ctx.gateway)

    def accounts(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The Accounts the mapping still selects, one SOQL per 200 ids."""
        fields = soql_fields(self.mapping)
        if self.ctx.scope is not None:  # whether the Account is this account's, or a group member's
            fields = [*fields, *(f for f in self.ctx.scope.router.account_fields() if f not in fields)]
        select = f"SELECT {', '.join(fields)} FROM {SF_OBJECT}"
        condition = f"({self.mapping.condition}) AND " if self.mapping.condition else ""
        return rows_by_id(self.ctx, select, condition, ids)

    def run(self, report: ReconcileReport) -> None:
        ctx, store = self.ctx, self.ctx.store
        links = linked_by_stripe_id(ctx, OBJECT_TYPE)
        if not links:
            return
        listed = list_all(ctx, "customers.list", ctx.gateway.client.v1.customers.list)
        customers = {c["id"]: c for c in listed if c["id"] in links and not c.get("deleted")}
        if ctx.stop.is_set():  # Ctrl-C while listing: nothing compared yet
            report.unprocessed = len(links)
            return
        rows = self.accounts(sorted(link.sf_id for link in links.values()))
        entries: list[LogEntry] = []
        with progress_task(ctx, "Reconcile: Customers", OBJECT_TYPE, len(links)) as task:
            try:
                self._compare(links, customers, rows, entries, report, task)
            finally:
                store.runs.log_action(entries)

    def _compare(
        self,
        links: Mapping[str, Link],
        customers: Mapping[str, dict[str, Any]],
        rows: Mapping[str, dict[str, Any]],
        entries: list[LogEntry],
        report: ReconcileReport,
        task: ProgressTask | None,
    ) -> None:
        """Each linked Customer against its Account, one at a time; asked to stop (Ctrl-C), it
        ends after the Customer in hand and counts the rest in `report.unprocessed`."""
        ctx, store = self.ctx, self.ctx.store
        ordered = sorted(links.items(), key=lambda kv: kv[1].sf_id)
        for number, (stripe_id, link) in enumerate(ordered):
            if ctx.stop.is_set():
                report.unprocessed = len(ordered) - number
                return
            if task is not None:
                task.advance(1)
            customer, row = customers.get(stripe_id), rows.get(link.sf_id)
            if customer is None:
                report.skipped.append(
                    f"customer {stripe_id} (Salesforce {link.sf_id}): not found in Stripe (deleted by hand?);"
                    " the connector does not recreate it"
                )
                continue
            if row is None:
                report.skipped.append(
                    f"customer {stripe_id} (Salesforce {link.sf_id}): the Account is no longer selected by"
                    " the mapping's condition; left as it is"
                )
                continue
            mapped = map_record(self.mapping, row)
            if mapped.errors:
                report.skipped.append(
                    f"customer {stripe_id} (Salesforce {link.sf_id}): the Account has mapping errors "
                    f"({'; '.join(str(e) for e in mapped.errors)}); fix them and run the sync"
                )
                continue
            report.checked += 1
            params = mapped.params
            scope = ctx.scope
            if scope is not None and scope.router.home(row).account != scope.name:
                # Another account's Customer, shared with this one: its home puts shared fields back.
                params = {k: v for k, v in params.items() if k not in SHARED_CUSTOMER_FIELDS}
            drifts, changes = customer_drift(self.mapping, link.sf_id, params, customer)
            report.drifts.extend(drifts)
            if report.dry_run:
                continue
            hashes = field_hashes(params)
            if changes:
                outcome = self._put_back(stripe_id, changes, report)
                if outcome is None:
                    return
                if not outcome:
                    continue
                report.corrected.append(stripe_id)
                entries.append(
                    LogEntry(
                        OBJECT_TYPE,
                        "reconcile",
                        "updated",
                        link.sf_id,
                        SF_OBJECT,
                        stripe_id,
                        "drift put back: " + "; ".join(f"{d.field} was {d.stripe_value!r}" for d in drifts),
                        run_id=ctx.run_id,
                    )
                )
            if changes or hashes != (link.field_hashes or {}):
                store.links.update_hash(
                    ctx.stripe_account, OBJECT_TYPE, link.sf_id, payload_hash(hashes), field_hashes=hashes
                )

    def _put_back(self, stripe_id: str, changes: dict[str, Any], report: ReconcileReport) -> bool | None:
        """One update with only the drifted fields. False: this Customer failed; None: fatal."""
        # Keyed by the run too: the same correction made again after a later hand edit must not
        # replay the first answer from Stripe's idempotency cache.
        return put_back(self.ctx, report, "customer", stripe_id, changes, self.sink.update)


Echo = Callable[[str], None]


def reconcile(ctx: SyncContext, *, dry_run: bool) -> ReconcileReport:
    report = ReconcileReport(dry_run=dry_run)
    outer_run = ctx.run_id  # a daemon's context is shared: give its run id back afterwards
    ctx.run_id = None if dry_run else ctx.store.runs.start("reconcile")
    try:
        from connector.sync.product_reconcile import ProductReconciler  # it builds on this module

        for account in ctx.account_contexts():  # each Stripe account's Customers (routing.yaml)
            if not report.fatal and not ctx.stop.is_set():
                CustomerReconciler(account).run(report)
        # Several accounts: Product2's one id field names no account's Products (none written).
        if not report.fatal and not ctx.stop.is_set() and not ctx.routed:
            ProductReconciler(ctx).run(report)
    except Exception as exc:
        report.fatal = classify(exc).message
    finally:
        if ctx.run_id is not None:
            checked = report.checked + report.products_checked
            counts = {"checked": checked, "drifted": len({d.stripe_id for d in report.drifts})}
            counts["updated"] = len(report.corrected)
            counts["failed"] = len(report.errors)
            finish_run(ctx, ctx.run_id, counts, report.fatal)
        ctx.run_id = outer_run
    return report


def run_reconcile(settings: Any, mappings: Any, *, dry_run: bool, out: Echo) -> int:
    """`cpq2stripe reconcile [--dry-run]`: 0 done, 1 some Customers failed, 3 stopped."""
    from connector.sync.runner import open_command

    try:
        with open_command(settings, mappings) as ctx:
            report = reconcile(ctx, dry_run=dry_run)
            calls = f"Stripe API calls: {ctx.stripe_calls}; Salesforce API calls: {ctx.sf.total_calls}"
            interrupted = ctx.stop.is_set()
    except Exception as exc:
        out(f"Reconcile stopped: {classify(exc).message}")
        return 3
    for line in report.summary_lines():  # after the progress display has ended
        out(line)
    out(calls)
    if report.fatal:
        return 3
    if interrupted:
        out(interrupted_line(report.unprocessed, []))
        return EXIT_INTERRUPTED
    return 1 if report.errors else 0
