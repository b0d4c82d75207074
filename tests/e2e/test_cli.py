"""The command line as an operator uses it: mapping checks, status, retry (subprocesses)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import MAPPINGS, REPO


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CPQ2STRIPE_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def sandbox_env(sandbox: Any, database_url: str, mappings: Path = MAPPINGS) -> dict[str, str]:
    return {**sandbox.env, "CPQ2STRIPE_DATABASE_URL": database_url, "CPQ2STRIPE_MAPPINGS_DIR": str(mappings)}


def test_mappings_check_reports_every_problem_with_file_line_and_fix(tmp_path):
    broken = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, broken)
    text = (broken / "customer.yaml").read_text()
    text = text.replace("  - target: name\n", "  - target: nmae\n", 1)
    text = text.replace("    source: Name\n", "    source: Name\n    transfroms: [trim]\n", 1)
    (broken / "customer.yaml").write_text(text)

    done = cli("mappings", "check", "--dir", str(broken))

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "customer.yaml:" in lines[0] and "'nmae'" in lines[0] and "did you mean 'name'" in lines[0]
    assert "unknown key 'transfroms'" in lines[1] and "did you mean 'transforms'" in lines[1]
    assert "Traceback" not in done.stderr


def test_mappings_check_against_the_org_finds_missing_salesforce_fields(sandbox, tmp_path):
    copy = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, copy)
    good = cli(
        "mappings",
        "check",
        "--dir",
        str(copy),
        "--against-org",
        env=sandbox_env(sandbox, f"sqlite:///{tmp_path}/s.db", copy),
    )
    assert good.returncode == 0, good.stderr
    text = (copy / "customer.yaml").read_text().replace("source: BillingCity", "source: BillingTown", 1)
    (copy / "customer.yaml").write_text(text)

    bad = cli(
        "mappings",
        "check",
        "--dir",
        str(copy),
        "--against-org",
        env=sandbox_env(sandbox, f"sqlite:///{tmp_path}/s.db", copy),
    )

    assert bad.returncode == 2
    assert "BillingTown" in bad.stderr and "customer.yaml:" in bad.stderr


def test_mappings_check_against_the_org_names_a_missing_edit_activated_orders_permission(sandbox, tmp_path):
    """Without the permission every Order write-back would fail with ENTITY_IS_LOCKED: the check
    says so before the first run, with the command that assigns the shipped permission set."""
    env = sandbox_env(sandbox, f"sqlite:///{tmp_path}/s.db")
    sandbox.sf_admin.profile(edit_activated_orders=False)

    bad = cli("mappings", "check", "--against-org", env=env)

    assert bad.returncode == 2, bad.stdout
    assert "subscription.yaml:" in bad.stderr and "Edit Activated Orders" in bad.stderr
    assert "sf org assign permset --name Cpq2Stripe_Integration" in bad.stderr

    sandbox.sf_admin.profile(edit_activated_orders=True)
    assert cli("mappings", "check", "--against-org", env=env).returncode == 0


def test_status_and_retry_show_and_clear_a_failure(sandbox, tmp_path):
    env = sandbox_env(sandbox, f"sqlite:///{tmp_path}/state.db")
    bad = sandbox.sf_admin.create_record(
        "Account", {"Name": "Nowhere Inc", "BillingCountry": "Atlantis", "Billing_Entity__c": True}
    )

    first = cli("sync", env=env)
    assert first.returncode == 1, first.stderr
    assert "1 failed" in first.stdout

    status = cli("status", "--failed", env=env)
    assert status.returncode == 0
    assert bad in status.stdout and "Atlantis" in status.stdout

    nothing = cli("retry", env=env)
    assert nothing.returncode == 2 and "--all" in nothing.stderr

    sandbox.sf_admin.patch_record("Account", bad, {"BillingCountry": "Portugal"})
    retried = cli("retry", bad, env=env)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "1 created" in retried.stdout
    after = cli("status", "--failed", env=env)
    assert "Needing attention: 0" in after.stdout


def test_dry_run_prints_the_plan_per_record(sandbox, tmp_path):
    env = sandbox_env(sandbox, f"sqlite:///{tmp_path}/state.db")
    sandbox.sf_admin.create_record(
        "Account", {"Name": "Plan Co", "BillingCountry": "FR", "Billing_Entity__c": True}
    )

    done = cli("sync", "--dry-run", env=env)

    assert done.returncode == 0, done.stderr
    assert "create" in done.stdout and "Plan Co" in done.stdout and "dry run, nothing changed" in done.stdout
    assert sandbox.stripe_admin.objects("customer") == []


def test_log_tells_what_happened_to_a_record(sandbox, tmp_path):
    env = sandbox_env(sandbox, f"sqlite:///{tmp_path}/state.db")
    bad = sandbox.sf_admin.create_record(
        "Account", {"Name": "Logged Inc", "BillingCountry": "Atlantis", "Billing_Entity__c": True}
    )
    other = sandbox.sf_admin.create_record(
        "Account", {"Name": "Quiet Co", "BillingCountry": "FR", "Billing_Entity__c": True}
    )
    assert cli("sync", env=env).returncode == 1
    sandbox.sf_admin.patch_record("Account", bad, {"BillingCountry": "Portugal"})
    assert cli("retry", bad, env=env).returncode == 0

    shown = cli("log", "--record", bad, env=env)

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 2, shown.stdout
    assert "failed" in lines[0] and "Atlantis" in lines[0]  # oldest first
    assert "created" in lines[1] and "cus_" in lines[1]
    assert other not in shown.stdout
    customer = next(word for word in lines[1].split() if word.startswith("cus_"))
    by_stripe_id = cli("log", "--record", customer, env=env)
    assert by_stripe_id.stdout.splitlines() == lines[1:]

    recent = cli("log", "--since", "1h", "--object", "accounts", env=env)
    assert bad in recent.stdout and other in recent.stdout
    assert cli("log", "--since", "2099-01-01", env=env).stdout.startswith("No sync log entries match.")
    newest = cli("log", "--limit", "1", env=env)
    assert "--limit N shows more" in newest.stdout

    wrong = cli("log", "--since", "yesterday", env=env)
    assert wrong.returncode == 2 and "'yesterday'" in wrong.stderr and "2h" in wrong.stderr


def test_sync_is_one_pass_and_once_is_gone(sandbox, tmp_path):
    env = sandbox_env(sandbox, f"sqlite:///{tmp_path}/state.db")

    old = cli("sync", "--once", env=env)

    assert old.returncode == 2 and "--once" in old.stderr


def test_status_filters_failures_and_prints_json(sandbox, tmp_path):
    import json

    env = sandbox_env(sandbox, f"sqlite:///{tmp_path}/state.db")
    bad = sandbox.sf_admin.create_record(
        "Account", {"Name": "Nowhere Inc", "BillingCountry": "Atlantis", "Billing_Entity__c": True}
    )
    assert cli("sync", env=env).returncode == 1

    shown = cli("status", "--failed", "--object", "accounts", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert [f["sf_id"] for f in doc["failures"]] == [bad]
    assert doc["failures_by_reason"] == [
        {"sf_object": "Account", "reason": doc["failures"][0]["reason"], "count": 1}
    ]
    none = cli("status", "--failed", "--object", "orders", env=env)
    assert "Needing attention: 0" in none.stdout
    wrong = cli("status", "--since", "yesterday", env=env)
    assert wrong.returncode == 2 and "--since 'yesterday'" in wrong.stderr
