"""`start_sandbox` and `python -m connector.sandbox`: both servers up, seeded, DIR/env usable."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import stripe
from simple_salesforce import Salesforce

from connector.sandbox.runner import RunningSandbox, main, parse_stripe_accounts, start_sandbox

REPO = Path(__file__).resolve().parents[2]
EXPECTED_KEYS = {
    "CPQ2STRIPE_SALESFORCE_LOGIN_URL",
    "CPQ2STRIPE_SALESFORCE_API_VERSION",
    "CPQ2STRIPE_SALESFORCE_AUTH_FLOW",
    "CPQ2STRIPE_SALESFORCE_CONSUMER_KEY",
    "CPQ2STRIPE_SALESFORCE_CONSUMER_SECRET",
    "CPQ2STRIPE_SALESFORCE_USERNAME",
    "CPQ2STRIPE_SALESFORCE_PRIVATE_KEY_FILE",
    "CPQ2STRIPE_SALESFORCE_CA_BUNDLE",
    "CPQ2STRIPE_SALESFORCE_PUBSUB_URL",
    "CPQ2STRIPE_STRIPE_SECRET_KEY",
    "CPQ2STRIPE_STRIPE_API_BASE",
    "CPQ2STRIPE_STRIPE_RPS",
}


def salesforce_from_env(env: dict[str, str]) -> Salesforce:
    """A real simple-salesforce client built only from the sandbox's environment."""
    session = requests.Session()
    session.trust_env = False  # the machine's REQUESTS_CA_BUNDLE would override verify
    session.verify = env["CPQ2STRIPE_SALESFORCE_CA_BUNDLE"]
    resp = session.post(
        env["CPQ2STRIPE_SALESFORCE_LOGIN_URL"] + "/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": env["CPQ2STRIPE_SALESFORCE_CONSUMER_KEY"],
            "client_secret": env["CPQ2STRIPE_SALESFORCE_CONSUMER_SECRET"],
        },
    )
    resp.raise_for_status()
    token = resp.json()
    return Salesforce(
        instance_url=token["instance_url"],
        session_id=token["access_token"],
        session=session,
        version=env["CPQ2STRIPE_SALESFORCE_API_VERSION"],
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> RunningSandbox:
    # A space in the directory checks that DIR/env quotes paths for the shell.
    directory = tmp_path_factory.mktemp("runner") / "sandbox dir"
    with start_sandbox(directory, accounts=7, orders=11, seed=3, stripe_rps=50) as running:
        yield running


def test_seeds_exactly_the_requested_accounts_and_orders(seeded: RunningSandbox) -> None:
    sf = salesforce_from_env(seeded.env)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 7
    assert sf.query("SELECT COUNT() FROM Order")["totalSize"] == 11
    assert seeded.seeded["Account"] == 7
    assert seeded.seeded["Order"] == 11
    assert sf.query("SELECT COUNT() FROM Product2")["totalSize"] == seeded.seeded["Product2"]
    standard = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")
    assert standard["totalSize"] == 1


def test_env_points_at_both_servers(seeded: RunningSandbox) -> None:
    env = seeded.env
    assert set(env) == EXPECTED_KEYS
    assert env["CPQ2STRIPE_SALESFORCE_LOGIN_URL"] == seeded.salesforce_url
    assert env["CPQ2STRIPE_SALESFORCE_LOGIN_URL"].startswith("https://127.0.0.1:")
    assert env["CPQ2STRIPE_STRIPE_API_BASE"] == seeded.stripe_url
    assert env["CPQ2STRIPE_STRIPE_API_BASE"].startswith("http://127.0.0.1:")
    assert env["CPQ2STRIPE_SALESFORCE_API_VERSION"] == "61.0"
    assert env["CPQ2STRIPE_SALESFORCE_AUTH_FLOW"] == "client_credentials"
    assert env["CPQ2STRIPE_STRIPE_SECRET_KEY"] == "sk_test_sandbox"
    assert env["CPQ2STRIPE_STRIPE_RPS"] == "50"
    assert Path(env["CPQ2STRIPE_SALESFORCE_CA_BUNDLE"]) == (seeded.directory / "ca.pem").resolve()
    assert Path(env["CPQ2STRIPE_SALESFORCE_PRIVATE_KEY_FILE"]) == (seeded.directory / "jwt-key.pem").resolve()
    assert Path(env["CPQ2STRIPE_SALESFORCE_CA_BUNDLE"]).is_file()
    assert Path(env["CPQ2STRIPE_SALESFORCE_PRIVATE_KEY_FILE"]).is_file()

    client = stripe.StripeClient(
        env["CPQ2STRIPE_STRIPE_SECRET_KEY"], base_addresses={"api": env["CPQ2STRIPE_STRIPE_API_BASE"]}
    )
    customer = client.v1.customers.create(params={"name": "Runner Check"})
    assert client.v1.customers.retrieve(customer.id).name == "Runner Check"


def test_env_file_can_be_sourced_by_a_shell(seeded: RunningSandbox) -> None:
    script = f"set -a; . {_sh_quote(str(seeded.env_file))}; env -0"
    out = subprocess.run(
        ["bash", "-c", script], check=True, capture_output=True, env={"PATH": "/usr/bin:/bin"}
    )
    sourced = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    assert {k: v for k, v in sourced.items() if k.startswith("CPQ2STRIPE_")} == seeded.env
    lines = seeded.env_file.read_text(encoding="utf-8").splitlines()
    assert all(not line.startswith("export ") for line in lines)


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_empty_sandbox_seeds_nothing(tmp_path: Path) -> None:
    with start_sandbox(tmp_path) as running:
        sf = salesforce_from_env(running.env)
        assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
        assert running.seeded == {}
        assert running.env_file.is_file()


def test_contract_histories_are_seeded_on_request(tmp_path: Path) -> None:
    with start_sandbox(tmp_path, contracts=6, seed=2) as running:
        sf = salesforce_from_env(running.env)
        contracts = sf.query("SELECT COUNT() FROM Contract")["totalSize"]
        changes = sf.query("SELECT COUNT() FROM Order WHERE Type IN ('Amendment', 'Renewal')")["totalSize"]
        assert contracts >= 6 and running.seeded["Contract"] == contracts
        assert changes > 0, "the histories carry amendments or renewals"
        assert running.seeded["Order"] == sf.query("SELECT COUNT() FROM Order")["totalSize"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_module_cli_prints_env_and_exits_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connector.sandbox",
            "--dir",
            str(tmp_path),
            "--accounts",
            "5",
            "--orders",
            "3",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        printed = []
        for line in proc.stdout:  # blocks until the banner is complete (or the process dies)
            printed.append(line.rstrip("\n"))
            if line.startswith("running;"):
                break
        assert printed and printed[-1].startswith("running;"), proc.stderr.read() if proc.stderr else ""
        env_lines = (tmp_path / "env").read_text(encoding="utf-8").splitlines()
        for line in env_lines:
            assert line in printed
        assert any("Account 5" in line and "Order 3" in line for line in printed)
        sf = salesforce_from_env(dict(line.split("=", 1) for line in env_lines))
        assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 5
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stripe_accounts_are_created_in_their_sharing_groups_and_listed_in_the_env(tmp_path: Path) -> None:
    with start_sandbox(tmp_path, stripe_accounts=parse_stripe_accounts("de:eu, at:eu,us")) as running:
        keys = json.loads(running.env["CPQ2STRIPE_STRIPE_ACCOUNTS"])
        assert keys == {"de": "sk_test_sandbox_de", "at": "sk_test_sandbox_at", "us": "sk_test_sandbox_us"}
        assert running.env["CPQ2STRIPE_STRIPE_SECRET_KEY"] == "sk_test_sandbox"
        sourced = dict(
            line.split("=", 1) for line in running.env_file.read_text(encoding="utf-8").splitlines()
        )
        assert json.loads(shlex.split(sourced["CPQ2STRIPE_STRIPE_ACCOUNTS"])[0]) == keys

        def client(name: str) -> stripe.StripeClient:
            base = {"api": running.env["CPQ2STRIPE_STRIPE_API_BASE"]}
            return stripe.StripeClient(keys[name], base_addresses=base, max_network_retries=0)

        assert client("us").v1.accounts.retrieve_current().id == running.stripe_accounts["us"]
        cus = client("de").v1.customers.create(params={"name": "Shared"})
        assert client("at").v1.customers.retrieve(cus.id).name == "Shared"
        with pytest.raises(stripe.InvalidRequestError):
            client("us").v1.customers.retrieve(cus.id)


def test_a_bad_stripe_accounts_list_is_refused_before_anything_starts(tmp_path: Path, capsys) -> None:
    assert parse_stripe_accounts("de:eu,us,") == {"de": "eu", "us": None}
    assert main(["--dir", str(tmp_path), "--stripe-accounts", "DE GmbH"]) == 2
    assert "'DE GmbH' is not an account name" in capsys.readouterr().err
    with pytest.raises(ValueError, match="named twice"):
        parse_stripe_accounts("de,de:eu")
    assert not (tmp_path / "env").exists()
