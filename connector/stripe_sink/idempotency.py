"""Deterministic idempotency keys: the one place they are made.

A key names the Salesforce record and the action, so a run that crashed after sending a create
sends the same key again and Stripe replays the first answer instead of creating a second object.
Keys are at most 255 characters (Stripe's limit); Salesforce ids are 18.
"""

from __future__ import annotations

import hashlib

PREFIX = "cpq2stripe"
VERSION = "v1"


def create_key(stripe_account: str, object_type: str, salesforce_id: str, discriminator: str = "") -> str:
    """The key for creating the Stripe object that belongs to one Salesforce record.

    `discriminator` distinguishes several objects made for one record (e.g. a price per line
    spec); it is hashed so the key stays short whatever it holds.
    """
    tail = f"-{hashlib.sha256(discriminator.encode()).hexdigest()[:16]}" if discriminator else ""
    key = f"{PREFIX}-{VERSION}-{stripe_account}-{object_type}-create-{salesforce_id}{tail}"
    assert len(key) <= 255
    return key


def update_key(stripe_account: str, object_type: str, stripe_id: str, payload_hash: str) -> str:
    """Updates are keyed by their content: retrying the same update replays, a new one is new."""
    return f"{PREFIX}-{VERSION}-{stripe_account}-{object_type}-update-{stripe_id}-{payload_hash[:32]}"


def action_key(stripe_account: str, object_type: str, stripe_id: str, action: str) -> str:
    """A one-way action on an object (finalizing an invoice): one key per object and action, so a
    retry replays the first answer."""
    return f"{PREFIX}-{VERSION}-{stripe_account}-{object_type}-{action}-{stripe_id}"
