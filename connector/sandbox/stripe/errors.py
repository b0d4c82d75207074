"""Stripe-shaped API errors. Raising one anywhere in a handler yields Stripe's error body."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An error answered as `{"error": {...}}` with an HTTP status.

    `saved` says whether an idempotent request keeps this answer: Stripe saves the result only once
    the endpoint started executing, so parameter validation failures are not saved."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        saved: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.saved = saved
        self.extra = extra or {}

    def body(self, request_id: str) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            err["param"] = self.param
        err["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}?t=0"
        err.update(self.extra)
        return {"error": err}


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    """A parameter validation failure (never saved for idempotency)."""
    return StripeError(message, param=param, code=code, saved=False)


def missing(kind: str, ident: str, param: str | None = "id") -> StripeError:
    """resource_missing: `No such customer: 'cus_x'`; 404 for the object in the path, 400 for one
    named by a body parameter."""
    return StripeError(
        f"No such {kind}: '{ident}'",
        status=404 if param == "id" else 400,
        code="resource_missing",
        param=param,
        saved=True,
    )


def unknown_param(param: str) -> StripeError:
    return invalid(f"Received unknown parameter: {param}", param, "parameter_unknown")


def missing_param(param: str) -> StripeError:
    return invalid(f"Missing required param: {param}.", param, "parameter_missing")


def exclusive(*params: str) -> StripeError:
    return invalid(
        f"You may only specify one of these parameters: {', '.join(params)}.",
        params[0],
        "parameters_exclusive",
    )
