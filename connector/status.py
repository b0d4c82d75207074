"""`cpq2stripe status`: what is linked, where the cursors are, what failed and why, the last run.

Reads only the state store: it works when Salesforce or Stripe is unreachable.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connector.settings import Settings
from connector.state.instances import LEADER_LEASE
from connector.state.models import Failure, Heartbeat
from connector.state.store import StateStore

REMOVED_SHOWN = 20
# The commands whose last run is shown (an interrupted one with what it did before Ctrl-C).
RUN_KINDS = ("sync", "retry", "backfill", "reconcile", "billing-status")
# A heartbeat older than this many beat intervals means the instance is gone (killed, host lost).
STALE_BEATS = 3


@dataclass(frozen=True)
class FailureFilter:
    """Which failures to show: by Salesforce object or link type, error code, and age."""

    object: str | None = None  # accounts, Order, customer, subscriptions (any case)
    reason: str | None = None  # an error code, e.g. invalid_data
    since: datetime | None = None  # last failed at or after

    def keep(self, f: Failure) -> bool:
        if self.object:
            wanted = {self.object.lower(), self.object.lower().removesuffix("s")}  # orders, Order
            if not wanted & {f.sf_object.lower(), f.object_type.lower()}:
                return False
        if self.reason and self.reason != f.error_code:
            return False
        return self.since is None or f.last_failed_at >= self.since


def by_reason(failures: Sequence[Failure]) -> list[tuple[str, str, int]]:
    """(object, error code, count), most frequent first: what to fix first."""
    counts = Counter((f.sf_object, f.error_code) for f in failures)
    return [(obj, code, n) for (obj, code), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def print_status(
    settings: Settings,
    *,
    failed_only: bool,
    out: Callable[[str], None],
    only: FailureFilter | None = None,
    as_json: bool = False,
) -> None:
    store = StateStore.open(settings.database_url)
    try:
        failures = [f for f in store.failures.all() if (only or FailureFilter()).keep(f)]
        if as_json:
            out(json.dumps(_status_document(store, settings, failures, failed_only), indent=2, default=str))
            return
        if not failed_only:
            out("Links (Salesforce record ↔ Stripe object):")
            by_account = store.links.counts_by_account()
            several = len({account for account, _t, _s in by_account}) > 1
            if not by_account:
                out("  none yet — run `cpq2stripe sync`")
            for (account, object_type, status), n in sorted(by_account.items()):
                out(f"  {account + ' ' if several else ''}{object_type:22} {status:12} {n}")
            removed = [
                link
                for status in ("merged_away", "deleted")
                for link in store.links.all(status=status, limit=REMOVED_SHOWN)
            ]
            if removed:
                out("Merged away or deleted in Salesforce (nothing was changed in Stripe):")
            for link in removed[:REMOVED_SHOWN]:
                out(
                    f"  {link.sf_object} {link.sf_id} {link.status} {link.stripe_id or ''}: {link.note or ''}"
                )
            out("Cursors (newest SystemModstamp fully handled):")
            cursors = store.cursors.all()
            if not cursors:
                out("  none yet")
            for name, cursor in cursors:
                stamp = cursor.modstamp.isoformat() if cursor.modstamp else "—"
                out(f"  {name:22} {stamp}")
            for kind in RUN_KINDS:
                run = store.runs.last(kind)
                if run:
                    counts_text = ", ".join(f"{v} {k}" for k, v in sorted(run.counts.items())) or "nothing"
                    finished = run.finished_at.isoformat() if run.finished_at else "still running"
                    out(f"Last {kind} run: {run.status} at {finished}: {counts_text}")
                    if run.status == "interrupted":
                        out(f"  {run.error or 'interrupted'}; run `cpq2stripe {kind}` again to continue")
                    elif run.error:
                        out(f"  error: {run.error}")
        if not failed_only:
            _print_instances(store, settings.heartbeat_interval_seconds, out)
        out(f"Needing attention: {len(failures)}")
        groups = by_reason(failures)
        if len(failures) > 1:
            out("  by reason (most first; filter with --object / --reason / --since):")
            for obj, code, n in groups:
                out(f"    {n:6}  {obj} [{code}]")
        for f in failures:
            when = (
                f"retry after {f.next_retry_at.isoformat()}"
                if f.next_retry_at
                else "retries when the record changes, or with `cpq2stripe retry`"
            )
            out(f"  {f.sf_object} {f.sf_id} [{f.error_code}] after {f.attempts} attempt(s); {when}")
            out(f"    {f.message}")
    finally:
        store.close()


def _status_document(
    store: StateStore, settings: Settings, failures: Sequence[Failure], failed_only: bool
) -> dict[str, Any]:
    """What `status --json` prints: the same facts as the text, for scripts and monitoring."""
    doc: dict[str, Any] = {
        "failures": [
            {
                "sf_object": f.sf_object,
                "sf_id": f.sf_id,
                "object_type": f.object_type,
                "reason": f.error_code,
                "message": f.message,
                "retryable": f.retryable,
                "attempts": f.attempts,
                "last_failed_at": f.last_failed_at.isoformat(),
                "next_retry_at": f.next_retry_at.isoformat() if f.next_retry_at else None,
            }
            for f in failures
        ],
        "failures_by_reason": [{"sf_object": o, "reason": c, "count": n} for o, c, n in by_reason(failures)],
    }
    if failed_only:
        return doc
    doc["links"] = [
        {"stripe_account": a, "object_type": t, "status": s, "count": n}
        for (a, t, s), n in sorted(store.links.counts_by_account().items())
    ]
    doc["cursors"] = {
        name: cursor.modstamp.isoformat() if cursor.modstamp else None for name, cursor in store.cursors.all()
    }
    runs = {}
    for kind in RUN_KINDS:
        run = store.runs.last(kind)
        if run:
            runs[kind] = {
                "status": run.status,
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "counts": dict(run.counts),
                "error": run.error,
            }
    doc["last_runs"] = runs
    doc["instances"] = [
        {
            "instance_id": b.instance_id,
            "role": role.role,
            "leading": role.leading,
            "status": role.text,
            "host": b.host,
            "pid": b.pid,
            "last_beat": b.beat_at.isoformat(),
            "lease_expires_at": role.lease_expires_at.isoformat() if role.lease_expires_at else None,
            "stale": role.stale,
        }
        for b, role in _roles(store, settings.heartbeat_interval_seconds)
    ]
    return doc


@dataclass(frozen=True)
class Role:
    """An instance's role as it really is now, not as its last heartbeat said."""

    role: str  # leader | former leader | standby
    text: str  # for people
    lease_expires_at: datetime | None  # its leader lease, while the row is still its own
    stale: bool  # stopped beating (killed, host lost)

    @property
    def leading(self) -> bool:
        return self.role == "leader"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _roles(store: StateStore, beat_interval: float) -> list[tuple[Heartbeat, Role]]:
    """Each instance's role by the lease rule the daemon and manual runs use (Lease.live_at): a
    leader whose lease has expired (killed, cut off) is a former leader from that moment; one that
    stopped beating is stale."""
    lease = store.instances.lease(LEADER_LEASE)
    now = store.db.clock()
    stale_after = STALE_BEATS * beat_interval
    out = []
    for beat in store.instances.list_heartbeats():
        own = lease if lease is not None and lease.holder == beat.instance_id else None
        stale = (now - beat.beat_at).total_seconds() > stale_after
        expires = own.expires_at if own else None
        if beat.role != "leader":
            role, text = beat.role, beat.role
        elif own is not None and own.live_at(now):
            role, text = "leader", f"leader (holds the lease), renewed until {_when(own.expires_at)}"
        else:
            if own is not None:
                why = f"lease expired at {_when(own.expires_at)}"
            elif lease is not None:
                why = f"the lease is held by {lease.holder}"
            else:
                why = "lease released"
            role, text = "former leader", f"former leader, {why}, last heartbeat {_when(beat.beat_at)}"
        if stale:
            text += "; STALE: not beating"
        out.append((beat, Role(role, text, expires, stale)))
    return out


def _print_instances(store: StateStore, beat_interval: float, out: Callable[[str], None]) -> None:
    """Daemon instances from their heartbeats: role, last beat age, counters."""
    beats = _roles(store, beat_interval)
    now = datetime.now(UTC)
    out("Daemon instances (`cpq2stripe run`):")
    if not beats:
        out("  none running")
        return
    for beat, role in beats:
        age = (now - beat.beat_at).total_seconds()
        out(f"  {beat.instance_id}  {role.text}  pid {beat.pid} on {beat.host}  last beat {age:.0f} s ago")
        info = beat.info or {}
        if beat.role == "leader" and info:
            lag = info.get("event_lag_seconds")
            api = ", ".join(f"{k} {v}" for k, v in sorted((info.get("api_calls") or {}).items())) or "none"
            out(
                f"    synced {info.get('synced', 0)}, failed {info.get('failed', 0)}, "
                f"refused {info.get('refused', 0)}; API calls: {api}; "
                f"event lag {'—' if lag is None else lag} s"
            )
        if info.get("mapping_error"):
            out(f"    mapping reload failed ({info['mapping_error']}): running on the last good mapping")
