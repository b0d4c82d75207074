"""Runs the fake org and fake Stripe together: `cpq2stripe sandbox --dir DIR ...`.

`start_sandbox` starts both servers on 127.0.0.1, seeds the org and writes `DIR/env`, the exact
environment that points the connector at them (`set -a; . DIR/env`). `main` is the command line
behind `cpq2stripe sandbox` and `python -m connector.sandbox`: it prints the same and runs until
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from connector.sandbox.salesforce import seed as seed_data
from connector.sandbox.salesforce.server import start_salesforce
from connector.sandbox.stripe.server import start_stripe

API_VERSION = "61.0"
CONSUMER_KEY = "sandbox-client"
CONSUMER_SECRET = "sandbox-secret"
INTEGRATION_USERNAME = "integration@sandbox.example"
STRIPE_SECRET_KEY = "sk_test_sandbox"
STRIPE_ORGANIZATION_KEY = "sk_org_test_sandbox"  # reaches every account named by --stripe-accounts
ENV_FILE_NAME = "env"
_ACCOUNT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")


@dataclass
class RunningSandbox:
    """Both servers, the environment that points at them, and what was seeded."""

    directory: Path
    salesforce: Any  # SalesforceSandbox
    stripe: Any  # StripeSandbox
    env: dict[str, str]
    seeded: dict[str, int] = field(default_factory=dict)
    # --stripe-accounts: account name -> the fake Stripe account id (`stripe.account(id)`)
    stripe_accounts: dict[str, str] = field(default_factory=dict)
    _stopped: bool = False

    @property
    def salesforce_url(self) -> str:
        return str(self.salesforce.url)

    @property
    def stripe_url(self) -> str:
        return str(self.stripe.url)

    @property
    def ca_file(self) -> Path:
        return Path(self.salesforce.ca_file)

    @property
    def env_file(self) -> Path:
        return self.directory / ENV_FILE_NAME

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self.stripe.stop()
        finally:
            self.salesforce.stop()

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sandbox_env(salesforce: Any, stripe: Any, stripe_rps: float) -> dict[str, str]:
    """The CPQ2STRIPE_* variables that point the connector at these two servers."""
    return {
        "CPQ2STRIPE_SALESFORCE_LOGIN_URL": str(salesforce.url),
        "CPQ2STRIPE_SALESFORCE_API_VERSION": API_VERSION,
        "CPQ2STRIPE_SALESFORCE_AUTH_FLOW": "client_credentials",
        "CPQ2STRIPE_SALESFORCE_CONSUMER_KEY": CONSUMER_KEY,
        "CPQ2STRIPE_SALESFORCE_CONSUMER_SECRET": CONSUMER_SECRET,
        "CPQ2STRIPE_SALESFORCE_USERNAME": INTEGRATION_USERNAME,
        "CPQ2STRIPE_SALESFORCE_PRIVATE_KEY_FILE": str(Path(salesforce.jwt_private_key_file).resolve()),
        "CPQ2STRIPE_SALESFORCE_CA_BUNDLE": str(Path(salesforce.ca_file).resolve()),
        "CPQ2STRIPE_SALESFORCE_PUBSUB_URL": str(salesforce.pubsub_url),
        "CPQ2STRIPE_STRIPE_SECRET_KEY": STRIPE_SECRET_KEY,
        "CPQ2STRIPE_STRIPE_API_BASE": str(stripe.url),
        "CPQ2STRIPE_STRIPE_RPS": _number(stripe_rps),
    }


def stripe_account_key(name: str) -> str:
    """The secret key of the named extra account (`CPQ2STRIPE_STRIPE_ACCOUNTS` lists them)."""
    return f"{STRIPE_SECRET_KEY}_{name}"


def parse_stripe_accounts(text: str) -> dict[str, str | None]:
    """`de:eu,at:eu,us` -> {"de": "eu", "at": "eu", "us": None}: account names, each with the
    Organization sharing group it belongs to after a colon (none: an independent account)."""
    accounts: dict[str, str | None] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, group = item.partition(":")
        name, group = name.strip(), group.strip()
        if not _ACCOUNT_NAME.match(name):
            raise ValueError(
                f"--stripe-accounts: {name!r} is not an account name (lowercase letters, digits, _ or -, "
                "starting with a letter); write e.g. de:eu,at:eu,us"
            )
        if name in accounts:
            raise ValueError(f"--stripe-accounts: the account {name!r} is named twice")
        accounts[name] = group or None
    return accounts


def add_stripe_accounts(stripe: Any, accounts: Mapping[str, str | None]) -> dict[str, str]:
    """Create the named accounts in the fake Stripe (each with `stripe_account_key(name)`, in its
    sharing group) and an organization key over all of them; returns name -> account id."""
    ids = {
        name: stripe.add_account(key=stripe_account_key(name), sharing_group=group)
        for name, group in accounts.items()
    }
    if ids:
        stripe.add_organization_key(STRIPE_ORGANIZATION_KEY, list(ids.values()))
    return ids


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def env_lines(env: dict[str, str]) -> list[str]:
    """KEY=VALUE lines a POSIX shell can source (values quoted only when they need it)."""
    return [f"{key}={shlex.quote(value)}" for key, value in env.items()]


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """Write atomically, so a process waiting for the file never reads half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(env_lines(env)) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def seed_org(org: Any, accounts: int, orders: int, seed: int, contracts: int = 0) -> dict[str, int]:
    """Load a generated CPQ org (and `contracts` contract histories) into `org`, created by the
    org's Admin User as if a human had built it; returns records per object."""
    return seed_data.populate(org, accounts, orders, seed, contracts=contracts).counts


def start_sandbox(
    directory: Path | str,
    *,
    salesforce_port: int = 0,
    stripe_port: int = 0,
    accounts: int = 0,
    orders: int = 0,
    seed: int = 0,
    latency_ms: float = 0,
    stripe_rps: float = 25,
    contracts: int = 0,
    stripe_accounts: Mapping[str, str | None] | None = None,
) -> RunningSandbox:
    """Start both fakes, seed exactly `accounts` Accounts and `orders` Orders, plus `contracts`
    contract histories (each with its own Account; nothing at all when all are 0), write
    DIR/ca.pem, DIR/jwt-key.pem and DIR/env. `stripe_accounts` (name -> sharing group or None) adds
    Stripe accounts besides the primary one; DIR/env then lists their keys in
    CPQ2STRIPE_STRIPE_ACCOUNTS (JSON: name -> key)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    salesforce = start_salesforce(directory, port=salesforce_port, latency_ms=latency_ms)
    try:
        stripe = start_stripe(port=stripe_port, rps=stripe_rps, latency_ms=latency_ms)
    except BaseException:
        salesforce.stop()
        raise
    running = RunningSandbox(directory, salesforce, stripe, sandbox_env(salesforce, stripe, stripe_rps))
    try:
        running.stripe_accounts = add_stripe_accounts(stripe, stripe_accounts or {})
        if running.stripe_accounts:
            keys = {name: stripe_account_key(name) for name in running.stripe_accounts}
            running.env["CPQ2STRIPE_STRIPE_ACCOUNTS"] = json.dumps(keys, separators=(",", ":"))
        if accounts or orders or contracts:
            running.seeded = seed_org(salesforce.org, accounts, orders, seed, contracts)
        write_env_file(running.env_file, running.env)
    except BaseException:
        running.stop()
        raise
    return running


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the fake Salesforce org and the fake Stripe API on 127.0.0.1 until interrupted.",
    )
    parser.add_argument(
        "--dir", required=True, type=Path, help="where ca.pem, jwt-key.pem and env are written"
    )
    parser.add_argument("--salesforce-port", type=int, default=0, help="fake org port (default: a free one)")
    parser.add_argument("--stripe-port", type=int, default=0, help="fake Stripe port (default: a free one)")
    parser.add_argument("--accounts", type=int, default=0, help="Accounts to seed")
    parser.add_argument("--orders", type=int, default=0, help="Orders to seed")
    parser.add_argument(
        "--contracts",
        type=int,
        default=0,
        help="CPQ contract histories to seed (amendments, renewals, terminations; about 20%% flawed)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generated org")
    parser.add_argument("--latency-ms", type=float, default=0, help="delay added to every API call")
    parser.add_argument(
        "--stripe-rps", type=float, default=25, help="fake Stripe requests/s limit (each account's)"
    )
    parser.add_argument(
        "--stripe-accounts",
        default="",
        metavar="NAME[:GROUP],...",
        help="more fake Stripe accounts, e.g. de:eu,at:eu,us (de and at share customers in the "
        "Organization sharing group eu; us is independent); keys go to CPQ2STRIPE_STRIPE_ACCOUNTS",
    )
    return parser


def main(argv: list[str] | None = None, *, prog: str = "cpq2stripe sandbox") -> int:
    args = _parser(prog).parse_args(argv)
    if min(args.accounts, args.orders, args.contracts, args.salesforce_port, args.stripe_port) < 0:
        print("error: counts and ports must not be negative", file=sys.stderr)
        return 2
    if args.orders and not args.accounts:
        print("error: --orders needs --accounts of at least 1", file=sys.stderr)
        return 2
    try:
        stripe_accounts = parse_stripe_accounts(args.stripe_accounts)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with start_sandbox(
            args.dir,
            salesforce_port=args.salesforce_port,
            stripe_port=args.stripe_port,
            accounts=args.accounts,
            orders=args.orders,
            contracts=args.contracts,
            seed=args.seed,
            latency_ms=args.latency_ms,
            stripe_rps=args.stripe_rps,
            stripe_accounts=stripe_accounts,
        ) as running:
            _print_banner(running)
            while not stop.wait(0.5):
                pass
            print("stopping sandbox", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _print_banner(running: RunningSandbox) -> None:
    lines = [
        f"fake Salesforce org: {running.salesforce_url}  (CA: {running.ca_file})",
        f"fake Pub/Sub API:    {running.salesforce.pubsub_url}  (gRPC, TLS, same CA)",
        f"fake Stripe API:     {running.stripe_url}",
    ]
    for name, ident in running.stripe_accounts.items():
        group = running.stripe.account(ident).store.group
        shared = f", sharing group {group.name}" if group else ""
        lines.append(f"  Stripe account {name}: {ident}{shared}")
    if running.stripe_accounts:
        lines.append(f"  organization key {STRIPE_ORGANIZATION_KEY} (send Stripe-Context: <account id>)")
    if running.seeded:
        lines.append("seeded: " + ", ".join(f"{obj} {n}" for obj, n in running.seeded.items()))
    else:
        lines.append("seeded: nothing (empty org)")
    lines.append(
        f"environment ({running.env_file}; load with: set -a; . {shlex.quote(str(running.env_file))}):"
    )
    lines.extend(env_lines(running.env))
    lines.append("running; press Ctrl-C to stop")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
