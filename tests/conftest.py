"""Shared fixtures: the fake org and fake Stripe, started once per session on free ports.

`sandbox` resets both through their admin APIs before each test and hands the test the URLs, the
CA file, the connector's environment and two small admin clients. The admin clients speak plain
HTTP/JSON with requests; tests of behaviour go through the real simple-salesforce and stripe
clients instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
import requests

if TYPE_CHECKING:
    from connector.sandbox.runner import RunningSandbox

# The connector home for in-process tests: the repository (its mappings/ and state/), whatever the
# directory pytest runs from and whatever home the developer's shell names. Subprocess tests pass
# their own environment (without CPQ2STRIPE_ variables) and working directory.
REPO = Path(__file__).resolve().parents[1]
os.environ["CPQ2STRIPE_HOME"] = str(REPO)

API_VERSION = "61.0"
ADMIN_CLIENT_ID = "sandbox-admin"
ADMIN_CLIENT_SECRET = "sandbox-admin-secret"
STRIPE_TEST_RPS = 1000  # the rate limit has its own tests; other tests must not trip over it


def _raise_for_status(resp: requests.Response) -> None:
    if resp.status_code >= 400:
        raise AssertionError(f"{resp.request.method} {resp.url} -> {resp.status_code}: {resp.text[:500]}")


class SalesforceAdmin:
    """The fake org's /_sandbox/ API, plus record writes as the Admin User (a human in the org)."""

    def __init__(self, url: str, ca_file: Path | str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False  # otherwise REQUESTS_CA_BUNDLE overrides verify
        self.session.verify = str(ca_file)
        self._token: str | None = None

    def _admin(self, method: str, path: str, payload: Any = None, **params: Any) -> Any:
        resp = self.session.request(
            method, f"{self.url}/_sandbox/{path}", json=payload, params=params or None
        )
        _raise_for_status(resp)
        return resp.json() if resp.content else None

    def reset(self) -> Any:
        self._token = None
        return self._admin("POST", "reset")

    def seed(self, accounts: int, orders: int, seed: int = 0, contracts: int = 0) -> Any:
        body = {"accounts": accounts, "orders": orders, "seed": seed, "contracts": contracts}
        return self._admin("POST", "seed", body)

    def merge(self, master_id: str, loser_ids: list[str], keep: dict[str, str] | None = None) -> Any:
        return self._admin(
            "POST", "merge", {"master_id": master_id, "loser_ids": loser_ids, "keep": keep or {}}
        )

    def counters(self) -> dict[str, Any]:
        """{"counts": {"METHOD pattern": n}, "api_usage": n}"""
        return self._admin("GET", "counters")

    def reset_counters(self) -> Any:
        return self._admin("POST", "counters/reset")

    def faults(self, rate: float, kinds: list[str] | None = None, seed: int = 1) -> Any:
        body: dict[str, Any] = {"rate": rate, "seed": seed}
        if kinds is not None:
            body["kinds"] = kinds
        return self._admin("POST", "faults", body)

    def clear_faults(self) -> Any:
        return self.faults(0.0)

    def expire_tokens(self) -> Any:
        self._token = None
        return self._admin("POST", "expire-tokens")

    def latency(self, ms: float) -> Any:
        return self._admin("POST", "latency", {"ms": ms})

    def profile(self, **settings: Any) -> Any:
        """How the org differs from the default (login_host, jwt_audiences, edit_activated_orders,
        single_currency); `reset()` restores the default."""
        return self._admin("POST", "profile", settings)

    def changes(self, after: int = 0) -> Any:
        return self._admin("GET", "changes", after=after)

    # -- the REST API as the Admin User (client credentials sandbox-admin / sandbox-admin-secret)
    def _api(self, method: str, path: str, payload: Any = None) -> requests.Response:
        for attempt in range(2):
            if self._token is None:
                resp = self.session.post(
                    f"{self.url}/services/oauth2/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": ADMIN_CLIENT_ID,
                        "client_secret": ADMIN_CLIENT_SECRET,
                    },
                )
                _raise_for_status(resp)
                self._token = resp.json()["access_token"]
            resp = self.session.request(
                method,
                f"{self.url}/services/data/v{API_VERSION}/{path}",
                json=payload,
                headers={"Authorization": f"Bearer {self._token}"},
            )
            if resp.status_code == 401 and attempt == 0:
                self._token = None
                continue
            _raise_for_status(resp)
            return resp
        raise AssertionError("unreachable")

    def create_record(self, sobject: str, fields: dict[str, Any]) -> str:
        """Insert as the Admin User (uncounted admin path); returns the new id."""
        return self._admin("POST", f"records/{sobject}", fields)["id"]

    def patch_record(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        """Update as the Admin User (uncounted admin path)."""
        self._admin("PATCH", f"records/{sobject}/{record_id}", fields)

    def get_record(self, sobject: str, record_id: str) -> dict[str, Any]:
        """The stored row (uncounted admin path)."""
        return self._admin("GET", f"records/{sobject}/{record_id}")

    def delete_record(self, sobject: str, record_id: str) -> None:
        """Delete as the Admin User through the REST API (counted like any API call)."""
        self._api("DELETE", f"sobjects/{sobject}/{record_id}")

    def query(self, soql: str) -> list[dict[str, Any]]:
        """SOQL as the Admin User through the REST API (counted like any API call); first page."""
        return self._api("GET", f"query?q={quote(soql)}").json()["records"]


class StripeAdmin:
    """The fake Stripe's /_sandbox/ API."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        resp = self.session.request(method, f"{self.url}/_sandbox/{path}", json=payload)
        _raise_for_status(resp)
        return resp.json() if resp.content else None

    def reset(self) -> Any:
        return self._call("POST", "reset")

    def complete_checkout(self, session_id: str, **method: Any) -> Any:
        """The customer saves a payment method on a Checkout page (type card + token, or
        sepa_debit + iban + email); a declining token fails the attempt."""
        return self._call("POST", f"checkout/{session_id}/complete", method)

    def abandon_checkout(self, session_id: str) -> Any:
        """The customer never comes back: the Checkout Session expires."""
        return self._call("POST", f"checkout/{session_id}/abandon", {})

    def counters(self) -> dict[str, int]:
        return self._call("GET", "counters")

    def reset_counters(self) -> Any:
        return self._call("POST", "counters/reset")

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "requests")

    def config(self, **knobs: Any) -> Any:
        """rps, latency_ms, error_rate, error_kinds, search_lag_seconds, seed."""
        return self._call("POST", "config", knobs)

    def objects(self, object_type: str) -> list[dict[str, Any]]:
        found = self._call("GET", f"objects/{object_type}")
        return found["data"] if isinstance(found, dict) and "data" in found else found


@dataclass
class Sandbox:
    """What a test gets from the `sandbox` fixture."""

    servers: RunningSandbox
    sf_admin: SalesforceAdmin
    stripe_admin: StripeAdmin

    @property
    def salesforce_url(self) -> str:
        return self.servers.salesforce_url

    @property
    def stripe_url(self) -> str:
        return self.servers.stripe_url

    @property
    def ca_file(self) -> Path:
        return self.servers.ca_file

    @property
    def env(self) -> dict[str, str]:
        return dict(self.servers.env)

    @property
    def org(self) -> Any:
        """The in-memory org, for direct inspection."""
        return self.servers.salesforce.org

    @property
    def stripe_state(self) -> Any:
        return self.servers.stripe.state


@pytest.fixture(scope="session")
def sandbox_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """Both fakes, once per test session, on free ports; DIR holds ca.pem, jwt-key.pem and env."""
    from connector.sandbox.runner import start_sandbox  # only sessions that use the sandbox import it

    with start_sandbox(tmp_path_factory.mktemp("sandbox"), stripe_rps=STRIPE_TEST_RPS) as running:
        yield running


@pytest.fixture
def sandbox(sandbox_servers: RunningSandbox) -> Iterator[Sandbox]:
    """Both fakes, empty and with default knobs (no latency, faults or errors)."""
    sf_admin = SalesforceAdmin(sandbox_servers.salesforce_url, sandbox_servers.ca_file)
    stripe_admin = StripeAdmin(sandbox_servers.stripe_url)
    sf_admin.reset()
    sf_admin.latency(0)
    stripe_admin.reset()
    stripe_admin.config(rps=STRIPE_TEST_RPS, latency_ms=0, error_rate=0, search_lag_seconds=0)
    try:
        yield Sandbox(sandbox_servers, sf_admin, stripe_admin)
    finally:
        sf_admin.session.close()
        stripe_admin.session.close()


@pytest.fixture
def postgres_url() -> str:
    """A PostgreSQL URL for state-store tests, from CPQ2STRIPE_TEST_POSTGRES_URL."""
    url = os.environ.get("CPQ2STRIPE_TEST_POSTGRES_URL", "").strip()
    if not url:
        pytest.skip("CPQ2STRIPE_TEST_POSTGRES_URL is not set (point it at a scratch PostgreSQL database)")
    return url


# The full suite is the CI command; `./scripts/test --fast` leaves out what is marked slow here:
# the reliability suites (kills, faults, hostile input) and the e2e files that spawn daemons or
# kill processes. Their behaviour is covered again, at smaller scale, by the fast e2e tests.
SLOW_PATHS = (
    "tests/reliability/",
    "tests/e2e/test_daemon.py",
    "tests/e2e/test_orders_crash.py",
    "tests/e2e/test_usage_crash.py",
    "tests/e2e/test_payment_setup_crash.py",
    "tests/e2e/test_ctrl_c.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        where = Path(str(item.path)).relative_to(root).as_posix()
        if where.startswith(SLOW_PATHS):
            item.add_marker(pytest.mark.slow)
