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
# invoice_settings is hashed per part since it became mappable (invoice_settings.custom_fields);
# no mapping could write it before, so no stored hash changed.
HASHES = {
    "name": "2917acb23c014ffa6359779196b8773e",
    "phone": "4b7b23c563a07014da86b863596b2e96",
    "address": "8e4e5833c6d86777457aa7f22bb62494",
    "preferred_locales": "4959c4213110250072d1ca5ef4988951",
    "invoice_settings.days_until_due": "624b60c58c9d8bfb6ff1886c2fd605d2",
    "metadata.region": "d3197f841c9971c8d34c9d6b01311204",
    "metadata.tier": "8dd7871b52fd5765059f398c5b5ffcec",
}


def test_hashes_never_change() -> None:
    assert field_hashes(PARAMS) == HASHES
    assert payload_hash(HASHES) == "5687343c4f9644f69b782045ae28ef1f"


def test_key_order_does_not_matter() -> None:
    reordered = {k: PARAMS[k] for k in reversed(list(PARAMS))}
    reordered["address"] = dict(reversed(list(PARAMS["address"].items())))
    assert field_hashes(reordered) == HASHES


def test_changed_params_sends_changes_and_unsets_what_went_away() -> None:
    previous = {**HASHES, "email": "x", "metadata.old": "y"}
    now = {**PARAMS, "name": "Müller AG", "metadata": {"region": "EMEA", "tier": "gold"}}
    assert changed_params(previous, now) == {"name": "Müller AG", "email": "", "metadata": {"old": ""}}
    assert changed_params(HASHES, PARAMS) == {}


def test_objects_stripe_merges_are_compared_part_by_part() -> None:
    before = {"invoice_settings": {"custom_fields": [{"name": "PO", "value": "1"}], "footer": "Thanks"}}
    after = {"invoice_settings": {"footer": "Thank you"}}
    assert changed_params(field_hashes(before), after) == {
        "invoice_settings": {"footer": "Thank you", "custom_fields": ""}
    }
    assert changed_params(field_hashes(before), before) == {}
