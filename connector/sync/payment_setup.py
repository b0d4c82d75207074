"""Payment method setup from Salesforce: a Stripe Checkout link per request, its outcome written back.

An Account whose request field is ticked (`payment_setup.fields.request` in mappings/customer.yaml)
gets a Checkout Session in setup mode for its Customer, made exactly once (connector.sync.
exactly_once: the intent is durable before the create, and a rerun sends the same idempotency key
or finds the session by the request tag in its metadata). Its URL and expiry go back to the Account.
While that link is open, further runs send nothing (never two live links); once it has ended
(saved or expired) and that outcome is written back, ticking the box again makes a new one.

The outcome comes from Stripe's events (connector.sync.billing_events reads them): a completed
setup makes the method the Customer's `invoice_settings.default_payment_method` and writes its id,
type and a safe summary (brand and last four, or the bank; never the number) to the Account; a
failed attempt or an expired link is written with Stripe's reason; a method detached in Stripe is
cleared from the Account, so its next Orders are invoiced again. An ended session the events have
not reported yet is settled the same way by this stream when it meets it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from connector.faults import crash_point
from connector.mapping.schema import PaymentSetup, PaymentSetupFields
from connector.salesforce.soql import id_literal, quote
from connector.salesforce.writeback import WriteBack, salesforce_datetime, truncate
from connector.state.models import BatchWrites, FailureUpdate, Link, LogEntry
from connector.stripe_sink import idempotency
from connector.sync import pipeline
from connector.sync.context import SyncContext
from connector.sync.exactly_once import (
    CUSTOMER,
    PAYMENT_SETUP,
    SUBSCRIPTION,
    Create,
    link_existing,
    obtain,
    record_intents,
)
from connector.sync.report import Outcome, RunReport

log = logging.getLogger(__name__)

OBJECT_TYPE = PAYMENT_SETUP.object_type
SF_OBJECT = "Account"
ACCOUNT_ID_KEY = "salesforce_account_id"  # as on the Customer (connector.sync.billing_status)
REQUEST_KEY = "cpq2stripe_setup_request"  # the session's tag: a hash of its intent's key
EXPAND = ["setup_intent", "setup_intent.payment_method"]
SETTLED = "settled"  # link note: the session has ended and its outcome is in Salesforce
STATUS_LENGTH = 255  # the shipped status field's length
# The events that concern a payment setup (connector.sync.billing_status.EVENT_TYPES lists them).
SETUP_EVENT_TYPES: tuple[str, ...] = (
    "checkout.session.completed",
    "checkout.session.expired",
    "setup_intent.succeeded",
    "setup_intent.setup_failed",
    "payment_method.detached",
)
TYPE_NAMES = {
    "card": "card",
    "sepa_debit": "SEPA Direct Debit",
    "us_bank_account": "US bank account",
    "bacs_debit": "Bacs Direct Debit",
    "au_becs_debit": "BECS Direct Debit",
    "acss_debit": "pre-authorized debit",
    "amazon_pay": "Amazon Pay",
    "paypal": "PayPal",
    "link": "Link",
}


# ---- pure parts ---------------------------------------------------------------------------------


def summary(pm: Mapping[str, Any]) -> str:
    """What a payment method is, safe to show anywhere: brand and last four, or bank and last four."""
    kind = str(pm.get("type") or "")
    details = pm.get(kind) or {}
    last4 = details.get("last4")
    if kind == "card":
        brand = details.get("display_brand") or details.get("brand") or "card"
        return f"{brand} •••• {last4}"
    bank = details.get("bank_name") or (
        f"bank {details['bank_code']}" if details.get("bank_code") else details.get("sort_code")
    )
    parts = [TYPE_NAMES.get(kind, kind), bank, f"•••• {last4}" if last4 else None]
    return " ".join(p for p in parts if p)


def _when(ts: int | None) -> str:
    return datetime.fromtimestamp(ts or 0, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _expanded(session: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = session.get(key)
    return value if isinstance(value, Mapping) else {}


def _error(seti: Mapping[str, Any]) -> str | None:
    err = seti.get("last_setup_error") or {}
    if not err:
        return None
    code = err.get("decline_code") or err.get("code")
    return f"{err.get('message') or 'the setup failed'}" + (f" ({code})" if code else "")


def is_live(session: Mapping[str, Any], now: datetime) -> bool:
    return session.get("status") == "open" and int(session.get("expires_at") or 0) > now.timestamp()


def session_values(session: Mapping[str, Any], f: PaymentSetupFields, now: datetime) -> dict[str, Any]:
    """The Account's setup fields for a session as it is now (expanded setup_intent.payment_method)."""
    seti = _expanded(session, "setup_intent")
    error = _error(seti)
    if session.get("status") == "complete":
        pm = _expanded(seti, "payment_method")
        text = summary(pm)
        values: dict[str, Any] = {
            f.request: False,
            f.url: None,
            f.expires: None,
            f.status: f"Saved {text}; new Orders are charged automatically",
            f.payment_method_id: pm.get("id"),
        }
        if f.payment_method_type:
            values[f.payment_method_type] = pm.get("type")
        if f.payment_method_summary:
            values[f.payment_method_summary] = text
    elif is_live(session, now):
        expires = datetime.fromtimestamp(int(session["expires_at"]), UTC)
        status = f"Link sent; it works until {_when(int(session['expires_at']))}"
        if error:
            status = f"The customer's last attempt failed: {error}. The link works until " + _when(
                int(session["expires_at"])
            )
        values = {f.url: session.get("url"), f.expires: salesforce_datetime(expires), f.status: status}
    else:
        status = (
            f"The link expired on {_when(session.get('expires_at'))} before a payment method was saved"
            + (f" (last attempt: {error})" if error else "")
            + f"; tick {f.request} again for a new link"
        )
        values = {f.request: False, f.url: None, f.expires: None, f.status: status}
    if f.status in values:
        values[f.status] = truncate(str(values[f.status]), STATUS_LENGTH)
    return values


def detached_values(pm: Mapping[str, Any], f: PaymentSetupFields, when: int | None) -> dict[str, Any]:
    """A saved method removed in Stripe: cleared on the Account (its next Orders are invoiced)."""
    status = (
        f"{summary(pm)} ({pm.get('id')}) was removed from the Stripe Customer on {_when(when)}; new Orders "
        f"are invoiced (send_invoice) until a method is saved again: tick {f.request} for a link"
    )
    values: dict[str, Any] = {f.payment_method_id: None, f.status: truncate(status, STATUS_LENGTH)}
    for name in (f.payment_method_type, f.payment_method_summary):
        if name:
            values[name] = None
    return values


def request_tag(idempotency_key: str) -> str:
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


# ---- Stripe calls -------------------------------------------------------------------------------


class SetupStripe:
    """The Stripe side of a setup: read a session, create one, apply a completed one."""

    def __init__(self, ctx: SyncContext, setup: PaymentSetup) -> None:
        self.ctx, self.setup = ctx, setup

    def retrieve(self, session_id: str) -> dict[str, Any]:
        v1 = self.ctx.gateway.client.v1
        session = self.ctx.gateway.call(
            "checkout.sessions.retrieve", v1.checkout.sessions.retrieve, session_id, params={"expand": EXPAND}
        )
        return dict(session.to_dict())

    def create(self, account_id: str, customer_id: str, key: str) -> Any:
        s, v1 = self.setup, self.ctx.gateway.client.v1
        params: dict[str, Any] = {
            "mode": "setup",
            "customer": customer_id,
            "payment_method_types": list(s.payment_method_types),
            "success_url": s.success_url,
            "metadata": {ACCOUNT_ID_KEY: account_id, REQUEST_KEY: request_tag(key)},
            "setup_intent_data": {"metadata": {ACCOUNT_ID_KEY: account_id}},
        }
        if s.cancel_url:
            params["cancel_url"] = s.cancel_url
        return self.ctx.gateway.call(
            "checkout.sessions.create",
            v1.checkout.sessions.create,
            params=params,
            options={"idempotency_key": key},
        )

    def find(self, customer_id: str, key: str) -> Any | None:
        """The session an interrupted run made (a list is consistent right after a write)."""
        v1, tag = self.ctx.gateway.client.v1, request_tag(key)
        page = self.ctx.gateway.call(
            "checkout.sessions.list",
            v1.checkout.sessions.list,
            params={"customer": customer_id, "limit": 100},
        )
        return next(
            (s for s in page.data if (s.to_dict().get("metadata") or {}).get(REQUEST_KEY) == tag), None
        )

    def apply_completed(self, account_id: str, session: Mapping[str, Any]) -> None:
        """A saved method becomes the Customer's default for invoices (and, when the mapping says
        so, the Account's synced subscriptions charge it instead of e-mailing invoices)."""
        if session.get("status") != "complete":
            return
        pm = _expanded(_expanded(session, "setup_intent"), "payment_method")
        customer, pm_id = session.get("customer"), pm.get("id")
        if not customer or not pm_id:
            return
        gateway, v1 = self.ctx.gateway, self.ctx.gateway.client.v1
        gateway.call(
            "customers.update",
            v1.customers.update,
            str(customer),
            params={"invoice_settings": {"default_payment_method": pm_id}},
        )
        if self.setup.switch_existing_subscriptions:
            self._switch_subscriptions(account_id, str(pm_id))

    def _switch_subscriptions(self, account_id: str, pm_id: str) -> None:
        ctx = self.ctx
        soql = f"SELECT Id FROM Order WHERE AccountId = {id_literal(account_id)}"
        orders = [r["Id"] for page in ctx.sf.query_pages(soql) for r in page]
        links = ctx.store.links.get_many(ctx.stripe_account, SUBSCRIPTION.object_type, orders)
        v1 = ctx.gateway.client.v1
        for link in links.values():
            sub_id = link.stripe_id or ""
            if link.status != "linked" or not sub_id.startswith("sub_") or sub_id.startswith("sub_sched_"):
                continue  # one-time invoices and schedules are left as they are
            sub = ctx.gateway.call("subscriptions.retrieve", v1.subscriptions.retrieve, sub_id)
            if sub.status in ("canceled", "incomplete_expired") or (
                sub.collection_method == "charge_automatically" and sub.default_payment_method == pm_id
            ):
                continue
            ctx.gateway.call(
                "subscriptions.update",
                v1.subscriptions.update,
                sub_id,
                params={"collection_method": "charge_automatically", "default_payment_method": pm_id},
            )
            log.info("subscription %s of Account %s now charges %s", sub_id, account_id, pm_id)


def mark_settled(ctx: SyncContext, account_ids: Iterable[str], sessions: Mapping[str, str]) -> None:
    """Ended sessions whose outcome is in Salesforce: the next request makes a new link."""
    for account_id in account_ids:
        link = ctx.store.links.get(ctx.stripe_account, OBJECT_TYPE, account_id)
        if link is not None and link.stripe_id == sessions.get(account_id) and link.note != SETTLED:
            ctx.store.links.set_status(ctx.stripe_account, OBJECT_TYPE, account_id, "linked", SETTLED)


# ---- the stream: requests -> links ----------------------------------------------------------------


class PaymentSetupSync:
    """Accounts with the request ticked, polled on their own cursor (connector.sync.polling)."""

    object_type = OBJECT_TYPE
    cursor_name = "Account.payment_setup"
    noun = "payment setup request"
    missing_reason = (
        "no payment setup is requested on it (the request field is not ticked), or it was deleted"
    )

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.setup = ctx.mappings.customer.payment_setup

    def _select(self) -> str:
        if self.setup is None:
            return "SELECT Id, SystemModstamp FROM Account"
        f = self.setup.fields
        names = ["Id", "Name", "SystemModstamp", f.request, f.url, f.expires, f.status, f.payment_method_id]
        if self.ctx.scope is not None:  # several Stripe accounts: the link is made in the Account's home
            names += self.ctx.scope.router.account_fields()
        return f"SELECT {', '.join(dict.fromkeys(names))} FROM Account"

    def _where(self, *clauses: str) -> str:
        parts = [f"{self.setup.fields.request} = true" if self.setup is not None else "Id = null"]
        parts.extend(c for c in clauses if c)
        return f" WHERE {' AND '.join(parts)}"

    def mapping_version(self) -> str:
        return "1"  # a changed setup block changes no link already sent: nothing to re-evaluate

    def process(
        self, rows: Sequence[Mapping[str, Any]], report: RunReport, links: dict[str, Link] | None = None
    ) -> None:
        if not rows or self.setup is None:
            return
        ctx, store, account = self.ctx, self.ctx.store, self.ctx.stripe_account
        ids = [str(r["Id"]) for r in rows]
        if links is None:
            links = store.links.get_many(account, OBJECT_TYPE, ids)
        customers = store.links.get_many(account, CUSTOMER.object_type, ids)
        if report.dry_run:
            for row in rows:
                report.add(self._dry(row, links.get(str(row["Id"])), customers.get(str(row["Id"]))))
            return
        failing = store.failures.failing_ids(OBJECT_TYPE, ids)
        wb, writes = WriteBack(ctx.sf), BatchWrites()
        settled: dict[str, str] = {}
        stripe = SetupStripe(ctx, self.setup)
        for index, row in enumerate(rows):
            if ctx.stop.is_set():
                report.unprocessed += len(rows) - index
                break
            sid = str(row["Id"])
            base = Outcome(OBJECT_TYPE, sid, str(row.get("Name") or ""), "create", "failed")
            work = functools.partial(self._one, stripe, row, links.get(sid), customers.get(sid), wb, settled)
            outcome = pipeline.apply_safely(ctx, base, work)
            if outcome is None:
                report.fatal = ctx.fatal_message or "a fatal error stopped the run"
                break
            report.add(outcome)
            if outcome.status in ("failed", "refused"):
                writes.failures.append(
                    FailureUpdate(
                        OBJECT_TYPE, SF_OBJECT, sid, outcome.code, outcome.message, outcome.retryable
                    )
                )
            elif sid in failing:
                writes.cleared.setdefault(OBJECT_TYPE, set()).add(sid)
            if outcome.status != "unchanged":
                writes.log.append(
                    LogEntry(
                        OBJECT_TYPE,
                        outcome.action,
                        outcome.status,
                        sid,
                        SF_OBJECT,
                        outcome.stripe_id,
                        outcome.message,
                        run_id=ctx.run_id,
                    )
                )
        store.write_batch(account, writes, ctx.now())
        failures = wb.flush()
        mark_settled(ctx, [s for s in settled if s not in {f.record_id for f in failures}], settled)
        if failures:
            store.write_batch(
                account,
                BatchWrites(
                    failures=[
                        FailureUpdate(
                            OBJECT_TYPE,
                            SF_OBJECT,
                            f.record_id,
                            f"writeback_{f.code}",
                            f"writing the payment setup link back to Salesforce failed: {f.message}",
                            True,
                        )
                        for f in failures
                    ]
                ),
                ctx.now(),
            )

    def _one(
        self,
        stripe: SetupStripe,
        row: Mapping[str, Any],
        link: Link | None,
        customer: Link | None,
        wb: WriteBack,
        settled: dict[str, str],
    ) -> Outcome:
        ctx, store, account = self.ctx, self.ctx.store, self.ctx.stripe_account
        assert self.setup is not None
        f, sid, label, now = self.setup.fields, str(row["Id"]), str(row.get("Name") or ""), ctx.now()
        if customer is None or customer.status != "linked" or not customer.stripe_id:
            return Outcome(
                OBJECT_TYPE,
                sid,
                label,
                "error",
                "failed",
                None,
                f"Account {sid} has no Stripe Customer yet, so there is no one to ask for a payment method; "
                "the link is made once the Account is synced (only billing entities become Customers)",
                "payment_setup_no_customer",
                retryable=True,
            )
        if link is not None and link.status == "linked" and link.stripe_id and link.note != SETTLED:
            session = stripe.retrieve(link.stripe_id)
            values = session_values(session, f, now)
            if is_live(session, now):
                self._stage(wb, row, values)
                return Outcome(
                    OBJECT_TYPE,
                    sid,
                    label,
                    "noop",
                    "unchanged",
                    link.stripe_id,
                    f"a link is out already ({values[f.status]})",
                )
            # Ended before its outcome reached Salesforce: written now; a new link needs a new request.
            stripe.apply_completed(sid, session)
            self._stage(wb, row, values)
            settled[sid] = link.stripe_id
            return Outcome(OBJECT_TYPE, sid, label, "update", "updated", link.stripe_id, values[f.status])
        if link is not None and link.status == "linked" and link.stripe_id:  # a new request
            key = idempotency.create_key(account, OBJECT_TYPE, sid, link.stripe_id)
            link = store.links.restart_intent(
                account, OBJECT_TYPE, sid, ended_stripe_id=link.stripe_id, idempotency_key=key
            )
            crash_point(PAYMENT_SETUP.after_intent)
        customer_id = customer.stripe_id
        key = link.idempotency_key if link is not None else idempotency.create_key(account, OBJECT_TYPE, sid)
        create = Create(
            PAYMENT_SETUP,
            SF_OBJECT,
            sid,
            key,
            send=lambda k: stripe.create(sid, customer_id, k),
            find=lambda: stripe.find(customer_id, key),
            expired_fix=(
                f"look for an open Checkout Session of Customer {customer_id} in Stripe and expire it, then "
                f"tick {f.request} again"
            ),
        )
        fresh = link is None
        if fresh:
            link = record_intents(store, account, [create])[sid]
        assert link is not None
        made = obtain(create, link, recovering=not fresh, now=now)
        link_existing(store, account, create, str(made.id))
        session = dict(made.to_dict())
        values = session_values(session, f, now)
        if not is_live(session, now):  # found after a crash, and ended since: its outcome is written
            session = stripe.retrieve(str(made.id))
            values = session_values(session, f, now)
            stripe.apply_completed(sid, session)
            settled[sid] = str(made.id)
        self._stage(wb, row, values)
        return Outcome(OBJECT_TYPE, sid, label, "create", "created", str(made.id), values[f.status])

    def _stage(self, wb: WriteBack, row: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        changed = pipeline.only_changed(row, values)
        if changed:
            wb.stage(SF_OBJECT, str(row["Id"]), changed)

    def _dry(self, row: Mapping[str, Any], link: Link | None, customer: Link | None) -> Outcome:
        sid, label = str(row["Id"]), str(row.get("Name") or "")
        if customer is None or customer.status != "linked":
            return Outcome(
                OBJECT_TYPE, sid, label, "error", "planned", None, "waits for the Account's Customer"
            )
        if link is not None and link.status == "linked" and link.note != SETTLED:
            return Outcome(
                OBJECT_TYPE, sid, label, "noop", "planned", link.stripe_id, "a link is out already"
            )
        return Outcome(
            OBJECT_TYPE, sid, label, "create", "planned", None, "a payment setup link would be made"
        )


# ---- Stripe's events -> Salesforce ------------------------------------------------------------------


class SetupEvents:
    """The payment setup part of the billing-status pass: which Accounts the events concern, their
    sessions read as they are now, the values for Salesforce; `settle` once those are written."""

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.setup = ctx.mappings.customer.payment_setup
        self.accounts: set[str] = set()
        self.detached: dict[str, tuple[dict[str, Any], int]] = {}  # pm id -> (pm, event time)
        self.ended: dict[str, str] = {}  # account id -> ended session id

    def add(self, event: Mapping[str, Any]) -> None:
        if self.setup is None or event.get("type") not in SETUP_EVENT_TYPES:
            return
        obj = (event.get("data") or {}).get("object") or {}
        if obj.get("object") == "payment_method":
            self.detached[str(obj.get("id"))] = (dict(obj), int(event.get("created") or 0))
            return
        if obj.get("object") == "checkout.session" and obj.get("mode") != "setup":
            return
        account_id = (obj.get("metadata") or {}).get(ACCOUNT_ID_KEY)
        if account_id:
            self.accounts.add(str(account_id))

    def read(self, desired: dict[str, dict[str, Any]], errors: list[str]) -> bool:
        """Fold the touched Accounts' values into `desired`; False when a read may succeed later."""
        if self.setup is None:
            return True
        from connector.errors import Disposition, classify

        ctx, f, complete = self.ctx, self.setup.fields, True
        stripe = SetupStripe(ctx, self.setup)
        for account_id in sorted(self.accounts):
            link = ctx.store.links.get(ctx.stripe_account, OBJECT_TYPE, account_id)
            if link is None or link.status != "linked" or not link.stripe_id or link.note == SETTLED:
                # not this connector's, being made (the stream links it), or written already (a
                # replayed event must not clear a request ticked since)
                continue
            try:
                session = stripe.retrieve(link.stripe_id)
                stripe.apply_completed(account_id, session)
            except Exception as exc:
                verdict = classify(exc)
                if verdict.disposition is Disposition.FATAL:
                    raise
                errors.append(f"payment setup of Account {account_id}: {verdict.message}")
                complete = complete and verdict.disposition is not Disposition.RETRY
                continue
            desired.setdefault(account_id, {}).update(session_values(session, f, ctx.now()))
            if not is_live(session, ctx.now()):
                self.ended[account_id] = link.stripe_id
        if self.detached:
            holders = self._holders(list(self.detached))
            for account_id, pm_id in holders:
                pm, when = self.detached[pm_id]
                if not pm.get("customer"):  # detached, and not attached again since
                    desired.setdefault(account_id, {}).update(detached_values(pm, f, when))
        return complete

    def _holders(self, pm_ids: list[str]) -> list[tuple[str, str]]:
        assert self.setup is not None
        field = self.setup.fields.payment_method_id
        found: list[tuple[str, str]] = []
        for start in range(0, len(pm_ids), 100):
            chunk = ", ".join(quote(p) for p in pm_ids[start : start + 100])
            soql = f"SELECT Id, {field} FROM Account WHERE {field} IN ({chunk})"
            for page in self.ctx.sf.query_pages(soql):
                found.extend((str(r["Id"]), str(r[field])) for r in page)
        return found

    def settle(self) -> None:
        mark_settled(self.ctx, list(self.ended), self.ended)
