"""`cpq2stripe status`: what is linked, where the cursors are, what failed and why, the last run.

Reads only the state store: it works when Salesforce or Stripe is unreachable.
"""

from __future__ import annotations

from collections.abc import Callable

from connector.settings import Settings
from connector.state.store import StateStore

REMOVED_SHOWN = 20


def print_status(settings: Settings, *, failed_only: bool, out: Callable[[str], None]) -> None:
    store = StateStore.open(settings.database_url)
    try:
        failures = store.failures.all()
        if not failed_only:
            out("Links (Salesforce record ↔ Stripe object):")
            counts = store.links.counts()
            if not counts:
                out("  none yet — run `cpq2stripe sync`")
            for (object_type, status), n in sorted(counts.items()):
                out(f"  {object_type:22} {status:12} {n}")
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
            for kind in ("sync", "retry"):
                run = store.runs.last(kind)
                if run:
                    counts_text = ", ".join(f"{v} {k}" for k, v in sorted(run.counts.items())) or "nothing"
                    finished = run.finished_at.isoformat() if run.finished_at else "still running"
                    out(f"Last {kind} run: {run.status} at {finished}: {counts_text}")
                    if run.error:
                        out(f"  error: {run.error}")
        if not failed_only:
            _print_instances(store, out)
        out(f"Needing attention: {len(failures)}")
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


def _print_instances(store: StateStore, out: Callable[[str], None]) -> None:
    """Daemon instances from their heartbeats: role, last beat age, counters."""
    from datetime import UTC, datetime

    beats = store.instances.list_heartbeats()
    lease = store.instances.lease_holder("daemon")
    now = datetime.now(UTC)
    out("Daemon instances (`cpq2stripe run`):")
    if not beats:
        out("  none running")
        return
    for beat in beats:
        age = (now - beat.beat_at).total_seconds()
        holds = lease is not None and lease[0] == beat.instance_id and lease[1] > now
        role = beat.role + (" (holds the lease)" if holds else "")
        stale = "  STALE: not beating; killed?" if age > 60 else ""
        out(f"  {beat.instance_id}  {role}  pid {beat.pid} on {beat.host}  last beat {age:.0f} s ago{stale}")
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
