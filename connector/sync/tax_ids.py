"""A Customer's tax ids brought to what the Account's mapped tax id fields say.

Run when the Account's `tax_id_data` hash changed (connector.sync.plan): the Customer's tax ids
are listed once; the ones Salesforce no longer holds are deleted (idempotent by nature), the new
ones created exactly once (connector.sync.exactly_once.create_listed: the list read first is the
find, the key replays a create a network retry repeated)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from connector.stripe_sink import idempotency
from connector.stripe_sink.tax_ids import TaxIdSink
from connector.sync.exactly_once import TAX_ID, Create, create_listed


def describe(tax_ids: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"{t['value']} ({t['type']})" for t in tax_ids) or "none"


def apply_tax_ids(
    sink: TaxIdSink,
    stripe_account: str,
    account_id: str,
    customer_id: str,
    desired: Sequence[dict[str, Any]],
    key_salt: str,
) -> list[str]:
    """Make the Customer hold exactly `desired` ({type, value} each); what changed, in words.
    `key_salt` (the Account's payload hash and version) makes each create's idempotency key."""
    wanted = {(t["type"], t["value"]): t for t in desired}
    kept: dict[tuple[str, str], str] = {}
    done: list[str] = []
    for existing in sink.list(customer_id):
        key = (str(existing.type), str(existing.value))
        if key in wanted and key not in kept:
            kept[key] = str(existing.id)
            continue
        sink.delete(customer_id, str(existing.id))
        done.append(f"removed tax ID {existing.value}")
    for key, tax_id in wanted.items():
        if key in kept:
            continue
        discriminator = f"{key[0]}:{key[1]}:{key_salt}"
        create_listed(
            Create(
                TAX_ID,
                "Account",
                account_id,
                idempotency.create_key(stripe_account, TAX_ID.object_type, account_id, discriminator),
                send=_sender(sink, customer_id, tax_id),
                find=None,  # the list read above is the find: nothing of this type and value was there
            )
        )
        done.append(f"added tax ID {key[1]} ({key[0]})")
    return done


def _sender(sink: TaxIdSink, customer_id: str, tax_id: dict[str, Any]) -> Callable[[str], Any]:
    return lambda key: sink.create(customer_id, tax_id, key)
