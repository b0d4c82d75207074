"""The parts every object's pipeline shares: the write-back policy and the exactly-once routine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe

from connector.errors import RecordError, RetryLater
from connector.mapping.schema import WriteBack
from connector.state.models import Link
from connector.sync.exactly_once import CUSTOMER, PRODUCT, SUBSCRIPTION, Create, Kind, obtain
from connector.sync.pipeline import writeback_fields
from connector.sync.report import Outcome

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
WB = WriteBack(
    stripe_id="Stripe_ID__c",
    status="Stripe_Sync_Status__c",
    message="Stripe_Sync_Message__c",
    synced_at="Stripe_Last_Synced__c",
)


def outcome(status: str, stripe_id: str | None = "cus_1", message: str = "") -> Outcome:
    return Outcome("customer", "001A", "Acme", "x", status, stripe_id, message)


def synced(**extra: Any) -> dict[str, Any]:
    return {
        "Stripe_ID__c": "cus_1",
        "Stripe_Sync_Status__c": "Synced",
        "Stripe_Sync_Message__c": None,
        **extra,
    }


# ---- the write-back policy: the same for every object --------------------------------------------


def test_a_new_object_writes_its_id_status_and_time() -> None:
    fields = writeback_fields(WB, {}, outcome("created"), NOW)
    assert fields == {
        "Stripe_ID__c": "cus_1",
        "Stripe_Sync_Status__c": "Synced",
        "Stripe_Last_Synced__c": NOW,
    }


def test_an_unchanged_record_in_step_writes_nothing() -> None:
    assert writeback_fields(WB, synced(), outcome("unchanged"), NOW) == {}


def test_an_unchanged_record_that_failed_before_loses_its_old_error() -> None:
    row = synced(Stripe_Sync_Status__c="Failed", Stripe_Sync_Message__c="bad country")
    fields = writeback_fields(WB, row, outcome("unchanged"), NOW)
    assert fields == {"Stripe_Sync_Status__c": "Synced", "Stripe_Sync_Message__c": None}


def test_a_refusal_writes_status_and_reason_but_no_sync_time() -> None:
    fields = writeback_fields(WB, synced(), outcome("refused", message="merged after sync"), NOW)
    assert fields == {"Stripe_Sync_Status__c": "Refused", "Stripe_Sync_Message__c": "merged after sync"}
    row = synced(Stripe_Sync_Status__c="Refused", Stripe_Sync_Message__c="merged after sync")
    assert writeback_fields(WB, row, outcome("refused", message="merged after sync"), NOW) == {}


def test_a_failure_keeps_the_stripe_id_already_written() -> None:
    fields = writeback_fields(WB, synced(), outcome("failed", message="Stripe is down"), NOW)
    assert fields == {"Stripe_Sync_Status__c": "Failed", "Stripe_Sync_Message__c": "Stripe is down"}


def test_an_update_writes_what_changed_and_the_time() -> None:
    fields = writeback_fields(WB, synced(), outcome("updated", message="changed phone"), NOW)
    assert fields == {"Stripe_Sync_Message__c": "changed phone", "Stripe_Last_Synced__c": NOW}


# ---- the exactly-once routine -------------------------------------------------------------------


class Obj:
    def __init__(self, obj_id: str) -> None:
        self.id = obj_id


class Calls:
    """Stands in for Stripe: counts creates and finds, answers as told."""

    def __init__(self, *, found: Obj | None = None, create_error: Exception | None = None) -> None:
        self.sent: list[str] = []
        self.finds = 0
        self.refreshed: list[str] = []
        self._found = found
        self._error = create_error

    def create(self, kind: Kind, *, find: bool = True, refresh: bool = False) -> Create:
        return Create(
            kind,
            "Account",
            "001A",
            "key-1",
            send=self.send,
            find=self.find if find else None,
            refresh=self.refresh if refresh else None,
        )

    def send(self, key: str) -> Obj:
        self.sent.append(key)
        if self._error is not None:
            raise self._error
        return Obj("new_1")

    def find(self) -> Obj | None:
        self.finds += 1
        return self._found

    def refresh(self, obj: Obj) -> Obj:
        self.refreshed.append(obj.id)
        return obj


def link(age: timedelta = timedelta(0)) -> Link:
    at = NOW - age
    return Link("acct", "customer", "Account", "001A", None, "pending", "key-1", None, None, at, at, None)


def test_a_new_object_is_created_with_the_recorded_key_and_nothing_is_looked_up() -> None:
    calls = Calls()
    obj = obtain(calls.create(CUSTOMER), link(), recovering=False, now=NOW)
    assert (obj.id, calls.sent, calls.finds) == ("new_1", ["key-1"], 0)


def test_a_listable_kind_looks_before_it_creates_again() -> None:
    calls = Calls(found=Obj("sub_made_before"))
    obj = obtain(calls.create(SUBSCRIPTION), link(), recovering=True, now=NOW)
    assert (obj.id, calls.sent) == ("sub_made_before", [])


def test_a_searchable_kind_reuses_the_key_inside_the_window_and_searches_past_it() -> None:
    calls = Calls(found=Obj("cus_old"))
    assert obtain(calls.create(CUSTOMER), link(timedelta(hours=1)), recovering=True, now=NOW).id == "new_1"
    assert calls.finds == 0  # search lags a fresh write: the key is the answer inside the window
    calls = Calls(found=Obj("cus_old"))
    obj = obtain(calls.create(CUSTOMER, refresh=True), link(timedelta(days=2)), recovering=True, now=NOW)
    assert (obj.id, calls.sent, calls.refreshed) == ("cus_old", [], ["cus_old"])


def test_a_kind_that_cannot_be_found_is_refused_past_the_window() -> None:
    calls = Calls()
    with pytest.raises(RecordError, match="interrupted more than a day ago") as err:
        obtain(calls.create(PRODUCT, find=False), link(timedelta(days=2)), recovering=True, now=NOW)
    assert err.value.code == "product_intent_expired" and calls.sent == []


def test_a_key_used_with_other_data_finds_the_object_or_retries_later() -> None:
    mismatch = stripe.IdempotencyError(
        "Keys for idempotent requests can only be used with the same parameters"
    )
    calls = Calls(found=Obj("cus_first"), create_error=mismatch)
    obj = obtain(calls.create(CUSTOMER, refresh=True), link(), recovering=True, now=NOW)
    assert (obj.id, calls.refreshed) == ("cus_first", ["cus_first"])
    calls = Calls(create_error=mismatch)
    with pytest.raises(RetryLater):
        obtain(calls.create(CUSTOMER), link(), recovering=True, now=NOW)
