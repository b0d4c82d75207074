"""The connector's only door to Stripe: one client, one rate budget, one retry policy.

stripe-python retries connection errors, 409 and 5xx itself when `max_network_retries` is set
(unset means none); it does not retry 429. The gateway adds the shared token bucket and a
bounded backoff for 429, and counts calls per operation for reports and benchmarks.

Requests go through `PooledHTTPClient`, one urllib3 pool shared by every worker thread, rather
than stripe-python's `RequestsClient`: the HTTP layer was the largest share of the connector's
CPU per new record after the state store (requests re-reads the proxy environment on every call
and builds its own request and response objects around urllib3's), and RequestsClient keeps one
session per thread, so every batch's fresh worker threads opened fresh connections.
"""

from __future__ import annotations

import logging
import random
import re
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

import requests.utils
import stripe
import urllib3
from urllib3.exceptions import (
    ClosedPoolError,
    MaxRetryError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)

from connector.errors import FatalError
from connector.settings import Settings
from connector.stripe_sink.ratelimit import PacedLimiter

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_RATE_LIMIT_RETRIES = 8
WRITE_OPERATIONS = frozenset({"create", "update", "cancel", "delete", "release", "attach"})
# Idle keep-alive connections kept: more than the most workers (64), so a connection is never
# dropped for want of room while every worker has a call in flight.
POOL_SIZE = 128
# What requests sent by default besides its own User-Agent (stripe-python sends its own).
_DEFAULT_HEADERS = {
    "Accept-Encoding": requests.utils.DEFAULT_ACCEPT_ENCODING,
    "Accept": "*/*",
    "Connection": "keep-alive",
}


class PooledHTTPClient(stripe.HTTPClient):
    """stripe-python's `RequestsClient` without requests, on one connection pool for all threads.

    Kept as RequestsClient has it: the timeout applies to connecting and to each read; TLS is
    verified against stripe-python's CA bundle; a failure becomes `APIConnectionError` with
    `should_retry` set exactly where RequestsClient would set it (connection errors and timeouts,
    but not TLS errors, nor a body cut off after the headers), so stripe-python's own
    `max_network_retries` retries the same failures. Proxies from the environment are not handled
    here: `http_client_for` keeps RequestsClient when one applies. Not kept: requests followed a
    redirect (a POST turned into a GET); the API never redirects, and a redirect answer now reaches
    stripe-python as the error it is. Nor is ~/.netrc read (stripe-python sends its own key).
    """

    name = "urllib3"

    def __init__(self, timeout: float | tuple[float, float] = 80, *, maxsize: int = POOL_SIZE) -> None:
        super().__init__()
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self._timeout = urllib3.Timeout(connect=connect, read=read)
        # requests' own adapter setting: no retries in urllib3, and a failed read is not re-sent.
        self._retries = urllib3.Retry(0, read=False)
        self._pool = urllib3.PoolManager(
            maxsize=maxsize,
            cert_reqs="CERT_REQUIRED",
            ca_certs=stripe.ca_bundle_path,
        )

    def request(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, **_: Any
    ) -> tuple[Any, int, Mapping[str, str]]:
        """(body bytes, status, headers), as RequestsClient returns them."""
        body = post_data.encode("utf-8") if isinstance(post_data, str) else post_data
        try:
            response = self._pool.urlopen(
                method.upper(),  # stripe-python passes "get", "post"; requests upper-cases them
                url,
                body=body,
                headers={**_DEFAULT_HEADERS, **(headers or {})},
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                retries=self._retries,
                timeout=self._timeout,
            )
        except Exception as exc:
            self._raise_connection_error(exc, retry=_retry_sending(exc))
        try:
            content = response.read(decode_content=True)
        except Exception as exc:
            # requests turns a timeout while reading into ConnectionError (retried) and a body cut
            # short into ChunkedEncodingError (not retried: the request may have been applied).
            self._raise_connection_error(exc, retry=isinstance(exc, ReadTimeoutError))
        finally:
            response.release_conn()
        return content, response.status, response.headers

    def request_stream(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, **_: Any
    ) -> tuple[Any, int, Mapping[str, str]]:
        raise NotImplementedError("the connector makes no streaming Stripe requests")

    def close(self) -> None:
        self._pool.clear()

    def _raise_connection_error(self, exc: Exception, *, retry: bool) -> NoReturn:
        """The APIConnectionError stripe-python's RequestsClient raises, with its wording."""
        if isinstance(exc, SSLError) or isinstance(getattr(exc, "reason", None), SSLError):
            msg = (
                "Could not verify Stripe's SSL certificate.  Please make sure that your network is not "
                "intercepting certificates.  If this problem persists, let us know at support@stripe.com."
            )
        else:
            msg = "Unexpected error communicating with Stripe.  If this problem persists, let us know at "
            msg += "support@stripe.com."
        message = textwrap.fill(msg) + f"\n\n(Network error: {type(exc).__name__}: {exc})"
        raise stripe.APIConnectionError(message, should_retry=retry) from exc  # type: ignore[no-untyped-call]


def _retry_sending(exc: Exception) -> bool:
    """Whether RequestsClient would retry this failure to send a request or read its headers:
    requests maps these to ConnectionError / Timeout (retried) or SSLError and others (not)."""
    if isinstance(exc, ProtocolError | OSError | ClosedPoolError | ProxyError | ReadTimeoutError):
        return True
    if isinstance(exc, MaxRetryError):
        return not isinstance(exc.reason, ResponseError | SSLError)
    return False


def http_client_for(settings: Settings) -> stripe.HTTPClient:
    """The pooled client, or RequestsClient where the environment names a proxy for the API host
    (HTTPS_PROXY and the like, minus NO_PROXY), which requests knows how to go through."""
    base = str(settings.stripe_api_base)
    if requests.utils.select_proxy(base, requests.utils.get_environ_proxies(base)):
        return stripe.RequestsClient(timeout=settings.stripe_timeout_seconds)
    return PooledHTTPClient(timeout=settings.stripe_timeout_seconds)


class StripeGateway:
    def __init__(
        self,
        client: stripe.StripeClient,
        limiter: PacedLimiter,
        *,
        sleep: Callable[[float], None] = time.sleep,
        account_id: str | None = None,
        restricted_key: bool = False,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.calls: Counter[str] = Counter()
        self.rate_limited = 0
        self._sleep = sleep
        self._lock = threading.Lock()
        self._account_id: str | None = None
        self._configured_account = account_id
        self._restricted_key = restricted_key

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway:
        key = settings.stripe_key.get_secret_value()
        client = stripe.StripeClient(
            key,
            stripe_context=settings.stripe_context,
            base_addresses={"api": str(settings.stripe_api_base).rstrip("/")},
            max_network_retries=settings.stripe_max_network_retries,
            http_client=http_client_for(settings),
        )
        return cls(
            client,
            PacedLimiter(settings.effective_stripe_rps),
            account_id=settings.stripe_account_id,
            restricted_key=key.startswith("rk_"),
        )

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
        """The Stripe account the key belongs to; links, intents and cursors are kept per account."""
        if self._account_id is None:
            self._account_id = self._resolve_account()
        return self._account_id

    def _resolve_account(self) -> str:
        """`CPQ2STRIPE_STRIPE_ACCOUNT_ID` for a restricted key (Stripe grants no restricted key
        `GET /v1/account`, so asking would only cost a refused call); otherwise the key's own
        account, checked against the setting when both exist."""
        configured = self._configured_account
        if configured and self._restricted_key:
            return configured
        try:
            account = self.call("account.retrieve", self.client.v1.accounts.retrieve_current)
        except stripe.PermissionError as exc:
            if configured:
                return configured
            named = re.search(r"on account '(acct_[A-Za-z0-9]+)'", exc.user_message or "")
            hint = "CPQ2STRIPE_STRIPE_ACCOUNT_ID=" + (named.group(1) if named else "acct_…")
            raise FatalError(
                "stripe_account_unreadable",
                "the Stripe key may not read its account (GET /v1/account answered 403, as it does for "
                f"every restricted key): set {hint} (Dashboard → Settings → Business → Account details)",
            ) from None
        actual = str(account.id)
        if configured and configured != actual:
            raise FatalError(
                "stripe_account_mismatch",
                f"CPQ2STRIPE_STRIPE_ACCOUNT_ID is {configured} but the Stripe key belongs to {actual}: "
                "fix the setting or use that account's key",
            )
        return actual
