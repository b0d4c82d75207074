"""The connector's only door to Stripe: one client, one rate budget, one retry policy.

stripe-python retries connection errors, 409 and 5xx itself when `max_network_retries` is set
(unset means none); it does not retry 429. The gateway adds the shared token bucket and a
bounded backoff for 429, and counts calls per operation for reports and benchmarks.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import stripe

from connector.settings import Settings
from connector.stripe_sink.ratelimit import PacedLimiter

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_RATE_LIMIT_RETRIES = 8
WRITE_OPERATIONS = frozenset({"create", "update", "cancel", "delete", "release", "attach"})


class StripeGateway:
    def __init__(
        self,
        client: stripe.StripeClient,
        limiter: PacedLimiter,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.calls: Counter[str] = Counter()
        self.rate_limited = 0
        self._sleep = sleep
        self._lock = threading.Lock()
        self._account_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway:
        client = stripe.StripeClient(
            settings.stripe_secret_key.get_secret_value(),
            base_addresses={"api": str(settings.stripe_api_base).rstrip("/")},
            max_network_retries=settings.stripe_max_network_retries,
            http_client=stripe.RequestsClient(timeout=settings.stripe_timeout_seconds),
        )
        return cls(client, PacedLimiter(settings.effective_stripe_rps))

    def call(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one Stripe request under the budget; back off and retry on 429."""
        for attempt in range(MAX_RATE_LIMIT_RETRIES + 1):
            self.limiter.acquire()
            with self._lock:
                self.calls[operation] += 1
            try:
                return fn(*args, **kwargs)
            except stripe.RateLimitError:
                if attempt == MAX_RATE_LIMIT_RETRIES:
                    raise
                delay = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random() / 2)
                with self._lock:
                    self.rate_limited += 1
                self.limiter.penalise(delay)
                log.info("stripe rate limited on %s; retrying in %.2fs", operation, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    @property
    def total_calls(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    @property
    def write_calls(self) -> int:
        """Calls that create or change something in Stripe."""
        with self._lock:
            return sum(n for op, n in self.calls.items() if op.rsplit(".", 1)[-1] in WRITE_OPERATIONS)

    def account_id(self) -> str:
        """The Stripe account the key belongs to; links are kept per account."""
        if self._account_id is None:
            account = self.call("account.retrieve", self.client.v1.accounts.retrieve_current)
            self._account_id = str(account.id)
        return self._account_id
