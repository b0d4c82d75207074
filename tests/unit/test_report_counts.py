"""Counts per object, each record once; dry runs that plan failures or could not run say so."""

from __future__ import annotations

from collections import Counter

from connector.backfill.report import BackfillReport, FailureCsv
from connector.sync.report import Outcome, RunReport, regroup, run_counts
from connector.sync.runner import EXIT_FATAL, EXIT_OK, EXIT_RECORD_FAILURES, exit_code

TITLES = {"customer": "Accounts → Customers", "subscription": "Orders → Subscriptions"}


def account(sf_id: str, action: str = "create", status: str = "created") -> Outcome:
    return Outcome("customer", sf_id, sf_id, action, status)


def order(sf_id: str, action: str = "create", status: str = "created") -> Outcome:
    return Outcome("subscription", sf_id, sf_id, action, status)


def test_accounts_created_for_orders_count_under_accounts_once():
    accounts = RunReport(TITLES["customer"], object_type="customer")
    accounts.outcomes = [account("001A"), account("001B", "error", "failed")]
    orders = RunReport(TITLES["subscription"], object_type="subscription")
    # The Order batch created 001C for its Order and tried failing 001B again.
    orders.outcomes = [account("001C"), account("001B", "error", "failed"), order("801A")]

    grouped = regroup([accounts, orders], TITLES)

    assert [r.kind for r in grouped] == [TITLES["customer"], TITLES["subscription"]]
    assert Counter(o.status for o in grouped[0].outcomes) == Counter(created=2, failed=1)
    assert [o.sf_id for o in grouped[1].outcomes] == ["801A"]
    assert grouped[1].summary_lines()[0].startswith("Orders → Subscriptions: 1 created, 0 updated")
    assert run_counts(grouped) == {"customer created": 2, "customer failed": 1, "subscription created": 1}


def test_an_orders_only_run_gets_an_accounts_report_for_the_accounts_it_created():
    orders = RunReport(TITLES["subscription"], object_type="subscription")
    orders.outcomes = [account("001C"), order("801A")]
    removals = RunReport("Merged and deleted in Salesforce")

    grouped = regroup([orders, removals], TITLES)

    assert [r.kind for r in grouped] == [*TITLES.values(), "Merged and deleted in Salesforce"]
    assert [o.sf_id for o in grouped[0].outcomes] == ["001C"]


def test_a_dry_run_that_plans_errors_or_refusals_exits_as_the_run_would():
    clean = RunReport("Orders", dry_run=True, outcomes=[order("801A", "create", "planned")])
    refusing = RunReport("Orders", dry_run=True, outcomes=[order("801B", "refuse", "planned")])
    erring = RunReport("Accounts", dry_run=True, outcomes=[account("001B", "error", "planned")])

    assert exit_code([clean]) == EXIT_OK
    assert exit_code([clean, refusing]) == EXIT_RECORD_FAILURES
    assert exit_code([erring]) == EXIT_RECORD_FAILURES


def test_a_dry_run_that_stopped_shows_why_not_nothing_to_do():
    stopped = RunReport("Accounts", dry_run=True, fatal="Salesforce login failed: connection refused")

    assert stopped.summary_lines() == [
        "Accounts (dry run, nothing changed): STOPPED: Salesforce login failed: connection refused"
    ]
    assert exit_code([stopped]) == EXIT_FATAL


def test_the_backfill_counts_an_orders_accounts_under_accounts_and_a_failed_account_once(tmp_path):
    path = tmp_path / "failures.csv"
    report = BackfillReport(False, FailureCsv(path))
    accounts = report.totals_for("customer")
    report.add_outcomes(accounts, [account("001A"), account("001B", "error", "failed")])
    orders = report.totals_for("subscription")
    report.add_outcomes(
        orders,
        [
            account("001C"),
            account("001B", "error", "failed"),
            order("801A"),
            order("801B", "refuse", "refused"),
        ],
    )
    report.csv.close()

    assert [t.sobject for t in report.objects] == ["Account", "Order"]
    assert accounts.counts == Counter(created=2, failed=1)
    assert orders.counts == Counter(created=1, refused=1)
    assert report.failed == 2
    rows = path.read_text(encoding="utf-8").splitlines()[1:]
    assert [r.split(",")[:2] for r in rows] == [["001B", "Account"], ["801B", "Order"]]
    assert report.run_counts() == {
        "customer created": 2,
        "customer failed": 1,
        "subscription created": 1,
        "subscription refused": 1,
    }


def test_a_backfill_dry_run_counts_an_account_planned_twice_once_and_its_planned_failures():
    report = BackfillReport(True, FailureCsv(None))
    accounts = report.totals_for("customer")
    report.add_outcomes(accounts, [account("001A", "create", "planned"), account("001B", "error", "planned")])
    orders = report.totals_for("subscription")
    report.add_outcomes(
        orders,
        [
            account("001A", "create", "planned"),
            account("001B", "error", "planned"),
            order("801A", "create", "planned"),
        ],
    )

    assert accounts.planned == Counter(create=1, error=1)
    assert orders.planned == Counter(create=1)
    assert report.failed == 1


def test_an_orders_only_backfill_puts_the_accounts_totals_first():
    report = BackfillReport(False, FailureCsv(None))
    orders = report.totals_for("subscription")
    report.add_outcomes(orders, [account("001C"), order("801A")])

    assert [t.title for t in report.objects] == list(TITLES.values())
    assert report.objects[0].counts == Counter(created=1)
