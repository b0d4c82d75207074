"""`scripts/bench --stripe-accounts N`: the routing it writes spreads the seeded org over every account."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.bench.accounts import (
    AccountsRun,
    account_names,
    routing_yaml,
    sandbox_flag,
    spread_bound,
    write_mappings,
)
from connector.mapping import load_mappings
from connector.mapping.loader import parse_mapping
from connector.mapping.schema import RoutingMapping
from connector.routing import Router
from connector.sandbox.runner import parse_stripe_accounts
from connector.sandbox.salesforce.seed import COUNTRIES, UNKNOWN_COUNTRIES

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def router(names: list[str]) -> Router:
    routing = parse_mapping(routing_yaml(names), "routing.yaml", "routing")
    assert isinstance(routing, RoutingMapping)
    return Router(routing)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_every_seeded_country_reaches_an_account_and_every_account_gets_countries(n):
    names = account_names(n)
    r = router(names)

    homes = {c.code: r.home({"BillingCountry": c.code}).account for c in COUNTRIES}
    by_name = {c.code: r.home({"BillingCountry": c.name}).account for c in COUNTRIES}

    assert homes == by_name  # the seed writes "DE" or "Germany": both bill through one account
    assert set(homes.values()) == set(names)
    assert {r.home({"BillingCountry": bad}).account for bad in UNKNOWN_COUNTRIES} == {names[-1]}


def test_the_first_two_accounts_share_customers_and_the_fake_is_started_with_the_same_accounts():
    names = account_names(3)
    r = router(names)

    assert r.shares_customers("a", "b") and not r.shares_customers("a", "c")
    assert parse_stripe_accounts(sandbox_flag(names)) == {"a": "g", "b": "g", "c": None}


def test_the_mappings_copy_loads_with_the_routing(tmp_path):
    mappings = load_mappings(write_mappings(MAPPINGS, tmp_path / "mappings", account_names(3)))

    assert mappings.routing is not None and list(mappings.routing.accounts) == ["a", "b", "c"]
    assert (tmp_path / "mappings" / "customer.yaml").read_text() == (MAPPINGS / "customer.yaml").read_text()


def test_the_rps_bound_is_all_calls_over_the_busiest_accounts():
    run = AccountsRun("3 accounts", {}, {"a": (600, 0), "b": (500, 3), "c": (600, 0)})

    assert spread_bound(run) == pytest.approx(1700 / 600)


@pytest.mark.parametrize("n", [0, 1, 27])
def test_fewer_than_two_or_more_than_26_accounts_are_refused(n):
    with pytest.raises(ValueError, match="2 to 26"):
        account_names(n)


def test_the_time_beyond_the_rps_budget_is_what_the_busiest_account_cannot_explain():
    run = AccountsRun("3 accounts", {"seconds": 10.0}, {"a": (630, 0), "b": (450, 0)})

    assert run.beyond_rps(90) == pytest.approx(3.0)
