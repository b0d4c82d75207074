"""Field hashes are stored with every link: the same params must always give the same hashes,
whatever the hashing code looks like, or every linked record would look changed after an upgrade."""

from __future__ import annotations

from typing import Any

from connector.sync.fieldhash import changed_params, field_hashes, payload_hash

PARAMS: dict[str, Any] = {
    "name": "Müller GmbH",
    "phone": "+49301234567",
    "address": {"line1": "Hauptstraße 12", "city": "Berlin", "country": "DE"},
    "preferred_locales": ["de", "en"],
    "invoice_settings": {"days_until_due": 30},
    "metadata": {"region": "EMEA", "tier": "gold"},
}

# Computed with the first implementation (json.dumps(sort_keys, ensure_ascii=False, compact)).
HASHES = {
    "name": "2917acb23c014ffa6359779196b8773e",
    "phone": "4b7b23c563a07014da86b863596b2e96",
    "address": "8e4e5833c6d86777457aa7f22bb62494",
    "preferred_locales": "4959c4213110250072d1ca5ef4988951",
    "invoice_settings": "74b1d1801c82176dd3486d0c9ed9040e",
    "metadata.region": "d3197f841c9971c8d34c9d6b01311204",
    "metadata.tier": "8dd7871b52fd5765059f398c5b5ffcec",
}


def test_hashes_never_change() -> None:
    assert field_hashes(PARAMS) == HASHES
    assert payload_hash(HASHES) == "1056713ddde17f303121b5a634746e9f"


def test_key_order_does_not_matter() -> None:
    reordered = {k: PARAMS[k] for k in reversed(list(PARAMS))}
    reordered["address"] = dict(reversed(list(PARAMS["address"].items())))
    assert field_hashes(reordered) == HASHES


def test_changed_params_sends_changes_and_unsets_what_went_away() -> None:
    previous = {**HASHES, "email": "x", "metadata.old": "y"}
    now = {**PARAMS, "name": "Müller AG", "metadata": {"region": "EMEA", "tier": "gold"}}
    assert changed_params(previous, now) == {"name": "Müller AG", "email": "", "metadata": {"old": ""}}
    assert changed_params(HASHES, PARAMS) == {}
