"""Chaos kills: a full sync (Accounts and Orders of a seeded org) SIGKILLed again and again — at
the connector's named crash points and after random delays — then run to the end. Whatever the
kills interrupted, the end state must be the undisturbed run's: exactly one Stripe object per
eligible Salesforce record, no orphans, every written-back id real, nothing refused created."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from connector.faults import CRASH_POINTS
from connector.faults import EXIT_CODE as CRASH_EXIT
from tests.e2e.test_orders import Org

from .conftest import (
    Tally,
    invariant_problems,
    snapshot,
    spawn,
    sync_until_done,
)

SEED = 8086
# stretch a pass a little so random delays land all over it, not only in start-up
STRIPE_LATENCY_MS = 4


def crash_points() -> list[str]:
    """Every crash point the connector declares (crash_point refuses undeclared names), so new
    ones are attacked too."""
    return sorted(CRASH_POINTS)


def _bucket(seconds: float) -> str:
    low = int(seconds * 1000) // 500 * 500
    return f"after {low}-{low + 500} ms"


def _fresh_org(sandbox, size, *, latency_ms: int = 0) -> list[str]:
    sandbox.sf_admin.reset()
    sandbox.stripe_admin.reset()
    sandbox.stripe_admin.config(rps=1000, latency_ms=latency_ms, error_rate=0)
    sandbox.sf_admin.seed(accounts=size.accounts, orders=size.orders, seed=SEED, contracts=size.contracts)
    with sandbox.org.lock:
        return sorted(r["Id"] for r in sandbox.org.records("Account"))


def _more_work(sandbox, org: Org, round_no: int, added: list[str], orders: list[str]) -> None:
    """New billing Accounts (one with a new Order of a new product at a discount) and edited
    Accounts, so later kills still find work in flight at every crash point."""
    for i in range(8):
        added.append(
            sandbox.sf_admin.create_record(
                "Account",
                {
                    "Name": f"Chaos Added {round_no}-{i}",
                    "Billing_Email__c": f"ap{round_no}x{i}@chaos.example",
                    "BillingCity": "Springfield",
                    "BillingCountry": "US",
                    "Billing_Entity__c": True,
                },
            )
        )
    order_id, _ = org.order(
        added[-1], [{"product": f"Chaos Product {round_no}", "price": 100.0, "unit": 90.0, "quantity": 2}]
    )
    orders.append(order_id)
    with sandbox.org.lock:
        synced = [r["Id"] for r in sandbox.org.records("Account") if r.get("Stripe_Customer_ID__c")]
    for account_id in synced[round_no * 7 % max(1, len(synced)) :][:15]:
        sandbox.sf_admin.patch_record("Account", account_id, {"Description": f"edited in round {round_no}"})


def test_sigkill_at_random_points_then_finish(sandbox, store_url, size, tmp_path: Path):
    # the undisturbed run of the same org is the reference
    accounts = _fresh_org(sandbox, size)
    reference_db = f"sqlite:///{tmp_path / 'reference' / 'connector.db'}"
    sync_until_done(sandbox, reference_db)
    undisturbed = snapshot(sandbox, reference_db)
    assert invariant_problems(undisturbed) == []
    reference = undisturbed.outcomes()
    assert len(reference["customers"]) > size.accounts // 2 and len(reference["orders"]) > size.orders // 3

    assert _fresh_org(sandbox, size, latency_ms=STRIPE_LATENCY_MS) == accounts  # same seed, same ids
    target = size.kills if store_url.startswith("sqlite") else size.kills_postgres
    rng = random.Random(SEED)
    points = crash_points()
    assert len(points) >= 7, points
    org = Org(sandbox)
    order_points = [p for p in points if p.startswith("order.")]
    landed = Tally("kills landed")
    finished = Tally("passes that finished before their kill")
    exhausted: set[str] = set()
    added: list[str] = []
    added_orders: list[str] = []
    kills = attempts = rounds = 0
    logs = tmp_path / "logs"
    logs.mkdir()

    def short_of_each_kind() -> bool:
        """Both kinds of kill must land a third of the target; a SIGKILL lands only when a pass
        outlives its random delay, so keep going (new work makes passes longer) until they have."""
        sigkills = sum(n for k, n in landed.counts.items() if k.startswith("SIGKILL"))
        return min(sigkills, kills - sigkills) < target // 3

    while kills < target or short_of_each_kind():
        attempts += 1
        assert attempts < target * 4, (landed.render(), finished.render())
        out = (logs / f"{attempts}.out").open("w")
        live_points = [p for p in points if p not in exhausted]
        if attempts % 2 and live_points:
            # while the seeded Orders are unsynced, aim at them first; then anywhere
            point = order_points.pop(0) if order_points else rng.choice(live_points)
            proc = spawn(sandbox, store_url, "sync", crash_at=point, output=out)
            code = proc.wait(timeout=300)
            out.close()
            if code == CRASH_EXIT:
                kills += 1
                landed.add(point)
                continue
            exhausted.add(point)  # nothing left that reaches this point
            finished.add(f"crash point {point} not reached")
        else:
            delay = rng.uniform(0.15, 2.0)
            proc = spawn(sandbox, store_url, "sync", output=out)
            try:
                code = proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.kill()  # SIGKILL
                proc.wait()
                out.close()
                kills += 1
                landed.add(f"SIGKILL {_bucket(delay)}")
                continue
            finished.add("pass ended before its SIGKILL")
        out.close()
        assert code in (0, 1), (logs / f"{attempts}.out").read_text()[-3000:]
        # a pass ran to its end: give the next kills new Accounts to be in the middle of
        rounds += 1
        _more_work(sandbox, org, rounds, added, added_orders)
        exhausted.clear()

    codes = sync_until_done(sandbox, store_url)
    world = snapshot(sandbox, store_url)
    reference["customers"] |= set(added)
    reference["orders"] |= set(added_orders)
    reference["products"] |= set(org.products.values())
    del reference["prices"]  # new discounted prices came with the new Orders: checked for duplicates only
    problems = invariant_problems(world, reference)
    report = (
        f"\n[chaos] {kills} kills survived in {attempts} passes (+{len(codes)} to finish), "
        f"{rounds} rounds of new work ({len(added)} Accounts added)\n"
        f"[chaos] {landed.render()}\n[chaos] {finished.render()}\n[chaos] end state: {world.counts()}"
    )
    print(report)
    assert problems == [], report + "\n" + "\n".join(problems[:40])
    assert kills >= target
    assert sum(n for k, n in landed.counts.items() if not k.startswith("SIGKILL")) >= target // 3
    assert sum(n for k, n in landed.counts.items() if k.startswith("SIGKILL")) >= target // 3
