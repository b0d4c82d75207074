"""The one table that decides what an error means: retry, record failure, or stop.

Every layer asks `classify(exc)` instead of scattering try/except decisions. RETRY errors are
transient (rate limits, 5xx, dropped connections, row locks) and retried with backoff; RECORD
errors belong to one Salesforce record (bad data) and are recorded against it while the others
go on; FATAL errors (bad credentials, a broken mapping, a bug) stop the run with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import requests
import stripe
from simple_salesforce import exceptions as sf_exc


class Disposition(StrEnum):
    RETRY = "retry"
    RECORD = "record"
    FATAL = "fatal"


@dataclass(frozen=True)
class Classified:
    disposition: Disposition
    code: str
    message: str
    retry_after: float | None = None


class ConnectorError(Exception):
    """Base for errors raised by the connector itself."""


class RecordError(ConnectorError):
    """A problem with one record's data: recorded against that record, the others go on."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class RetryLater(ConnectorError):
    """The outcome is not knowable yet (an interrupted create reached Stripe, but what it made is not
    findable yet): the record is retried with backoff."""

    code = "retry_later"


class FatalError(ConnectorError):
    """Configuration or authentication problem: nothing can sync until an operator fixes it."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


# Salesforce REST error codes (from the body's errorCode) that a retry can cure.
SALESFORCE_RETRYABLE_CODES = frozenset(
    {"UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED", "SERVER_UNAVAILABLE", "QUERY_TIMEOUT"}
)
# Salesforce HTTP statuses that a retry can cure regardless of body.
SALESFORCE_RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


def salesforce_response_retryable(status: int, error_codes: list[str]) -> bool:
    """Used by the retrying Salesforce session: should this HTTP response be retried?"""
    if status in SALESFORCE_RETRYABLE_STATUSES:
        return True
    return any(code in SALESFORCE_RETRYABLE_CODES for code in error_codes)


def _salesforce_codes(exc: sf_exc.SalesforceError) -> list[str]:
    content = exc.content
    if isinstance(content, list):
        return [str(item.get("errorCode", "")) for item in content if isinstance(item, dict)]
    return []


def _stripe_message(exc: stripe.StripeError) -> str:
    return exc.user_message or f"Stripe answered {exc.http_status}"


def classify(exc: BaseException) -> Classified:
    """Decide what an exception means. Messages never include request headers or keys."""
    if isinstance(exc, RecordError):
        return Classified(Disposition.RECORD, exc.code, str(exc))
    if isinstance(exc, RetryLater):
        return Classified(Disposition.RETRY, RetryLater.code, str(exc))
    if isinstance(exc, FatalError):
        return Classified(Disposition.FATAL, exc.code, str(exc))

    # Stripe
    if isinstance(exc, stripe.RateLimitError):
        return Classified(Disposition.RETRY, "stripe_rate_limit", _stripe_message(exc))
    if isinstance(exc, stripe.APIConnectionError):
        return Classified(
            Disposition.RETRY, "stripe_connection", "could not reach Stripe (connection failed)"
        )
    if isinstance(exc, stripe.PermissionError):
        return Classified(
            Disposition.FATAL,
            "stripe_permission",
            "the Stripe key lacks a permission: "
            + _stripe_message(exc)
            + " Grant it on the restricted key (Dashboard → Developers → API keys); docs/PRODUCTION.md "
            "lists every permission the connector needs.",
        )
    if isinstance(exc, stripe.AuthenticationError):
        return Classified(
            Disposition.FATAL, "stripe_auth", "Stripe rejected the API key: " + _stripe_message(exc)
        )
    if isinstance(exc, stripe.IdempotencyError):
        # Same key, different parameters: a connector bug, never retried blindly.
        return Classified(Disposition.FATAL, "stripe_idempotency", _stripe_message(exc))
    if isinstance(exc, stripe.InvalidRequestError):
        code = exc.code or "invalid_request"
        if exc.http_status and exc.http_status >= 500:
            return Classified(Disposition.RETRY, code, _stripe_message(exc))
        param = f" (parameter {exc.param})" if exc.param else ""
        return Classified(Disposition.RECORD, f"stripe_{code}", _stripe_message(exc) + param)
    if isinstance(exc, stripe.StripeError):
        status = exc.http_status or 0
        if status >= 500 or status in (0, 409, 429):
            return Classified(Disposition.RETRY, "stripe_api_error", _stripe_message(exc))
        return Classified(Disposition.RECORD, "stripe_error", _stripe_message(exc))

    # Salesforce
    if isinstance(exc, sf_exc.SalesforceExpiredSession):
        return Classified(Disposition.RETRY, "INVALID_SESSION_ID", "Salesforce session expired")
    if isinstance(exc, sf_exc.SalesforceAuthenticationFailed):
        return Classified(Disposition.FATAL, "salesforce_auth", str(exc.message))
    if isinstance(exc, sf_exc.SalesforceError):
        codes = _salesforce_codes(exc)
        first = codes[0] if codes else f"HTTP_{exc.status}"
        if salesforce_response_retryable(exc.status, codes):
            return Classified(Disposition.RETRY, first, f"Salesforce answered {exc.status} {first}")
        # a query that cannot run as written (INVALID_QUERY_FILTER_OPERATOR: a value that does not fit
        # its field, such as a malformed Id) fails the same way for every record: stop
        if first in {
            "MALFORMED_QUERY",
            "INVALID_FIELD",
            "INVALID_TYPE",
            "INVALID_QUERY_FILTER_OPERATOR",
            "INSUFFICIENT_ACCESS",
        }:
            return Classified(Disposition.FATAL, first, _salesforce_text(exc))
        return Classified(Disposition.RECORD, first, _salesforce_text(exc))

    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return Classified(Disposition.RETRY, "network", f"network error: {network_text(exc)}")
    return Classified(Disposition.FATAL, "internal", f"{type(exc).__name__}: {exc}")


# What the socket said, as requests wraps it, in words an operator acts on.
NETWORK_REASONS = (
    ("connection refused", "connection refused (nothing listens there: check the URL and port)"),
    ("name or service not known", "unknown host name (check the URL)"),
    ("temporary failure in name resolution", "the host name could not be resolved (DNS)"),
    ("certificate verify failed", "the server's TLS certificate is not trusted (check the CA bundle)"),
    ("timed out", "timed out"),
    ("no route to host", "no route to host"),
    ("connection reset", "the connection was reset"),
    ("remote end closed", "the server closed the connection"),
)


def network_text(exc: requests.RequestException) -> str:
    """`ConnectionError reaching https://login.example.com: connection refused (...)`: the host
    and the reason, without the URL's path or query (they may carry ids)."""
    text = f"{type(exc).__name__}"
    url = getattr(exc.request, "url", None) if exc.request is not None else None
    if url:
        parts = urlsplit(str(url))
        text += f" reaching {parts.scheme}://{parts.netloc}"
    lowered = str(exc).lower()
    reason = next((said for key, said in NETWORK_REASONS if key in lowered), None)
    return f"{text}: {reason}" if reason else text


def _salesforce_text(exc: sf_exc.SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return "; ".join(f"{c.get('errorCode')}: {c.get('message')}" for c in content if isinstance(c, dict))
    return f"Salesforce answered {exc.status}"
