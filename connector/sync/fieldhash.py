"""Per-field hashes of what was last sent to Stripe.

The state store keeps a hash per top-level Stripe field (and per metadata key) instead of the
values themselves: it can tell exactly which fields changed since the last write without holding
a copy of customer data, and without reading Stripe. `address` and `shipping` are hashed whole
because Stripe replaces them whole on update; other nested objects (`invoice_settings`) are
hashed per leaf by dot path (`invoice_settings.footer`), since Stripe updates their parts one by
one: an update then carries only the parts that changed, and a part no longer mapped is unset.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# One encoder for every hash: json.dumps with these options builds a new JSONEncoder per call,
# which was most of the cost of hashing a short value. The output is the same text (hashes kept
# in the state store must not change).
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _digest(value: Any) -> str:
    canonical = _CANONICAL.encode(value)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


# Nested objects Stripe replaces whole on update.
WHOLE_OBJECTS = frozenset({"address", "shipping"})


def field_hashes(params: dict[str, Any]) -> dict[str, str]:
    """One hash per top-level field; metadata is split per key (Stripe merges metadata by key),
    other nested objects but address and shipping per leaf (Stripe merges them part by part)."""
    hashes: dict[str, str] = {}
    for name, value in params.items():
        if name == "metadata" and isinstance(value, dict):
            for key, item in value.items():
                hashes[f"metadata.{key}"] = _digest(item)
        elif isinstance(value, dict) and name not in WHOLE_OBJECTS:
            hashes.update(_leaf_hashes(value, f"{name}."))
        else:
            hashes[name] = _digest(value)
    return hashes


def _leaf_hashes(value: dict[str, Any], prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out.update(_leaf_hashes(item, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = _digest(item)
    return out


def _read(params: dict[str, Any], path: str) -> Any:
    node: Any = params
    for part in path.split("."):
        node = node[part]
    return node


def _set(changes: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = changes
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def payload_hash(hashes: dict[str, str]) -> str:
    return _digest(hashes)


def changed_params(previous: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
    """The update params carrying only what changed since `previous` (field hashes).

    A field that was sent before and is now empty is unset with "" (Stripe's convention).
    """
    current = field_hashes(params)
    changes: dict[str, Any] = {}
    for name, digest in current.items():
        if previous.get(name) == digest:
            continue
        if name.startswith("metadata."):
            changes.setdefault("metadata", {})[name.removeprefix("metadata.")] = params["metadata"][
                name.removeprefix("metadata.")
            ]
        else:
            _set(changes, name, _read(params, name))
    for name in sorted(previous.keys() - current.keys()):
        if name.startswith("metadata."):
            changes.setdefault("metadata", {})[name.removeprefix("metadata.")] = ""
        else:
            _set(changes, name, "")
    return changes
