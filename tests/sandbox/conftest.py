"""The fake Stripe as the tests under tests/sandbox drive it: one server per test module, reset
before each test, and a real stripe-python client on it (a module may define its own)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import stripe

from connector.sandbox.stripe.server import StripeSandbox, start_stripe


@pytest.fixture(scope="module")
def server() -> Iterator[StripeSandbox]:
    sb = start_stripe(rps=0)
    yield sb
    sb.stop()


@pytest.fixture
def sb(server: StripeSandbox) -> StripeSandbox:
    server.state.reset()
    server.configure(rps=0, error_rate=0, search_lag_seconds=0)
    server.state.store.clock = time.time
    return server


@pytest.fixture
def client(sb: StripeSandbox) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_123", base_addresses={"api": sb.url}, max_network_retries=0)
