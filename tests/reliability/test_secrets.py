"""Secrets never leak: the whole flow (two sync passes, status, retry, a JWT-bearer pass, a record
that fails, a wrong Salesforce secret, a refused Stripe key) runs as the CLI with known secret
values, and every output line, every state-store row, every Salesforce value the connector wrote
and every Stripe object and request parameter is scanned for them. The SQLite state file is
readable by its owner only."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, select

from .conftest import SF_OBJECTS, STRIPE_TYPES, connector_env, run_cli

STRIPE_KEY = "sk_test_SeCrEtStripeKey4242"  # accepted by the fake Stripe
WRONG_SF_SECRET = "WrongSecret-XyZ987"
WRONG_STRIPE_KEY = "sk_live_WrongStripeKey-XyZ987"  # a live key against the sandbox: refused
SEED = 8


def _issued_tokens(sandbox: Any) -> set[str]:
    app = sandbox.servers.salesforce.app
    with app._lock:
        return set(app._tokens)


def _pem_lines(path: str) -> list[str]:
    lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("-----")]


def _store_rows(database_url: str) -> list[tuple[str, str]]:
    engine = create_engine(database_url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        rows = []
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(select(table)):
                    rows.append((f"state table {table.name}", repr(tuple(row))))
        return rows
    finally:
        engine.dispose()


def test_no_secret_appears_anywhere(sandbox, tmp_path: Path):
    sandbox.sf_admin.seed(accounts=30, orders=20, seed=SEED)
    bad_account = sandbox.sf_admin.create_record(
        "Account",
        {"Name": "Bad Email Co", "Billing_Email__c": "ap.@bad.example", "Billing_Entity__c": True},
    )
    state_dir = tmp_path / "state"
    database_url = f"sqlite:///{state_dir / 'connector.db'}"
    env = connector_env(sandbox, database_url, CPQ2STRIPE_STRIPE_SECRET_KEY=STRIPE_KEY)
    sf_secret = env["CPQ2STRIPE_SALESFORCE_CONSUMER_SECRET"]
    pem = env["CPQ2STRIPE_SALESFORCE_PRIVATE_KEY_FILE"]
    jwt_env = {**env, "CPQ2STRIPE_SALESFORCE_AUTH_FLOW": "jwt_bearer"}
    jwt_env.pop("CPQ2STRIPE_SALESFORCE_CONSUMER_SECRET")

    runs = [
        ("sync 1", env, ["--json-logs", "-v", "sync"], (0, 1)),
        ("sync 2", env, ["--json-logs", "-v", "sync"], (0, 1)),
        ("status", env, ["-v", "status"], (0,)),
        ("retry --all", env, ["--json-logs", "-v", "retry", "--all"], (0, 1)),
        ("sync text logs", env, ["-v", "sync"], (0, 1)),
        ("sync jwt_bearer", jwt_env, ["--json-logs", "-v", "sync"], (0, 1)),
        (
            "wrong Salesforce secret",
            {**env, "CPQ2STRIPE_SALESFORCE_CONSUMER_SECRET": WRONG_SF_SECRET},
            ["--json-logs", "-v", "sync"],
            (3,),
        ),
        (
            "refused Stripe key",
            {**env, "CPQ2STRIPE_STRIPE_SECRET_KEY": WRONG_STRIPE_KEY},
            ["--json-logs", "-v", "sync"],
            (2,),
        ),
    ]
    texts: list[tuple[str, str]] = []
    tokens: set[str] = set()
    for name, run_env, args, codes in runs:
        done = run_cli(sandbox, database_url, *args, env=run_env)
        assert done.returncode in codes, (name, done.returncode, done.stdout[-2000:], done.stderr[-2000:])
        assert "Traceback" not in done.stderr, (name, done.stderr[-2000:])
        texts += [(f"{name} stdout", line) for line in done.stdout.splitlines()]
        texts += [(f"{name} stderr", line) for line in done.stderr.splitlines()]
        tokens |= _issued_tokens(sandbox)

    # the flow really happened: records synced, one failed with a message, errors were printed
    bad = sandbox.sf_admin.get_record("Account", bad_account)
    assert bad["Stripe_Sync_Status__c"] == "Failed" and bad["Stripe_Sync_Message__c"]
    assert sandbox.stripe_admin.objects("customer") and sandbox.stripe_admin.objects("subscription")
    assert any("invalid_client" in t or "authentication" in t.lower() for w, t in texts if "wrong" in w)
    assert tokens, "the org issued no token to read"

    for row in _store_rows(database_url):
        texts.append(row)
    texts.append(("Salesforce change log", json.dumps(sandbox.sf_admin.changes(), default=str)))
    org = sandbox.org
    with org.lock:
        for name in SF_OBJECTS:
            texts += [(f"Salesforce {name}", json.dumps(r, default=str)) for r in org.records(name)]
    texts.append(("Stripe request log", json.dumps(sandbox.stripe_admin.requests(), default=str)))
    for kind in STRIPE_TYPES:
        texts.append((f"Stripe {kind}", json.dumps(sandbox.stripe_admin.objects(kind), default=str)))

    secrets = {
        "Stripe key": STRIPE_KEY,
        "Stripe key body": STRIPE_KEY.removeprefix("sk_test_"),
        "refused Stripe key": WRONG_STRIPE_KEY.removeprefix("sk_live_"),
        "Salesforce consumer secret": sf_secret,
        "wrong Salesforce secret": WRONG_SF_SECRET,
        **{f"access token {i}": t for i, t in enumerate(sorted(tokens))},
        **{f"token body {i}": t.split("!", 1)[-1] for i, t in enumerate(sorted(tokens))},
        **{f"private key line {i}": ln for i, ln in enumerate(_pem_lines(pem))},
    }
    leaks = [(where, what) for where, text in texts for what, secret in secrets.items() if secret in text]
    assert leaks == [], leaks[:20]

    # the state file and its WAL side files: owner-only; the directory not world-writable
    db = state_dir / "connector.db"
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
    assert not state_dir.stat().st_mode & stat.S_IWOTH, oct(state_dir.stat().st_mode)
    print(
        f"\n[secrets] {len(secrets)} secret values ({len(tokens)} access tokens) scanned in "
        f"{len(texts)} lines/rows/objects from {len(runs)} CLI runs; 0 found"
    )
