"""A language read from a Salesforce field for preferred_locales is checked when the Account syncs:
'German' (a word, not a language tag) fails that Account with the field, the value and the fix,
or is left out with a note when the field says `on_invalid: omit`; a valid list reaches Stripe."""

from __future__ import annotations

import shutil
from pathlib import Path

from connector.mapping import load_mappings

from .conftest import MAPPINGS
from .test_orders import Org, record, stripe_objects

LOCALES_ENTRY = "  - target: preferred_locales\n    source: Description\n"


def _mappings_with_locales(tmp_path: Path, extra: str = "") -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, target)
    customer = target / "customer.yaml"
    text = customer.read_text()
    # replace the shipped Description -> description entry by Description -> preferred_locales
    start = text.index("  - target: description\n")
    end = text.index("  - target:", start + 1)
    customer.write_text(text[:start] + LOCALES_ENTRY + extra + text[end:])
    return target


def _customers(sandbox) -> dict[str, dict]:
    return {c["metadata"]["salesforce_account_id"]: c for c in stripe_objects(sandbox, "customer")}


def test_a_locale_word_from_salesforce_fails_the_account_naming_field_value_and_fix(
    sandbox, run_sync, tmp_path
):
    mappings = load_mappings(_mappings_with_locales(tmp_path))
    org = Org(sandbox)
    german = org.account(Name="Berliner Bäckerei GmbH", Description="German")
    fine = org.account(Name="Zürcher Uhren AG", Description="de-CH; fr")

    result = run_sync(mappings=mappings)

    failed = result.outcome(german)
    assert failed.status == "failed"
    assert "Description -> preferred_locales" in failed.message
    assert "'German' is not a language tag" in failed.message
    assert "de-DE" in failed.message  # the fix: write IETF language tags
    assert german not in _customers(sandbox)
    saved = record(sandbox, "Account", german)
    assert saved["Stripe_Sync_Status__c"] == "Failed"
    assert "'German' is not a language tag" in saved["Stripe_Sync_Message__c"]

    assert result.outcome(fine).status == "created"
    assert _customers(sandbox)[fine]["preferred_locales"] == ["de-CH", "fr"]


def test_on_invalid_omit_leaves_the_locale_out_and_says_so(sandbox, run_sync, tmp_path):
    mappings = load_mappings(_mappings_with_locales(tmp_path, "    on_invalid: omit\n"))
    account = Org(sandbox).account(Description="German")

    result = run_sync(mappings=mappings)

    assert result.outcome(account).status == "created"
    assert not _customers(sandbox)[account].get("preferred_locales")
    message = record(sandbox, "Account", account)["Stripe_Sync_Message__c"]
    assert message.startswith("Description left out of preferred_locales: 'German' is not a language tag")
