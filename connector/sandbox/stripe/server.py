"""The fake Stripe API server: auth, rate limit, faults, idempotency, then the resource handlers.

Entry point `start_stripe` (see docs/DEVELOPING.md, "Sandbox contract")."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..http import Request, Response, Router, SandboxServer, ServerKnobs
from . import resources
from .accounts import ORG_KEY_PREFIX, KeyRing
from .common import Ctx, Endpoint, expand
from .errors import StripeError
from .forms import decode_body, decode_pairs
from .idempotency import IdempotencyStore
from .limits import FAULT_KINDS, Faults, TokenBucket
from .permissions import denial_message, granted, required
from .sharing import SharingGroup
from .store import API_VERSION, Store
from .validation import validate

_KEY_PREFIXES = (ORG_KEY_PREFIX, "sk_test_", "sk_live_", "rk_test_", "rk_live_", "pk_test_", "pk_live_")
_NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization header, using "
    "Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication "
    "for details, or we can help at https://support.stripe.com/."
)
_RATE_LIMIT = "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits."
_API_ERROR = (
    "Sorry, something went wrong. We've already been notified of the problem, but if you need any help, you "
    "can reach us at support.stripe.com/contact."
)


def mask_key(key: str) -> str:
    """Stripe shows the key's prefix and last four characters only."""
    prefix = next((p for p in _KEY_PREFIXES if key.startswith(p)), "")
    body = key[len(prefix) :]
    if len(body) <= 4:
        return prefix + "*" * len(body)
    return prefix + "*" * (len(body) - 4) + body[-4:]


@dataclass
class StripeState:
    """One account of the sandbox: `store` is its objects; its own rate limit, faults, idempotency
    keys and request log (Stripe limits and scopes idempotency per account). `knobs` (latency,
    counters) is the server's, shared by every account."""

    store: Store
    knobs: ServerKnobs
    bucket: TokenBucket
    faults: Faults
    idempotency: IdempotencyStore = field(default_factory=IdempotencyStore)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100_000))
    # Restricted keys (`rk_test_…`) that exist, with the permissions each holds; any other rk_ key
    # is unknown to the account, as a deleted or mistyped key is.
    restricted_keys: dict[str, frozenset[str]] = field(default_factory=dict)
    log_lock: threading.Lock = field(default_factory=threading.Lock)

    def objects(self, kind: str) -> list[dict[str, Any]]:
        with self.store.lock:
            copied: list[dict[str, Any]] = json.loads(json.dumps(self.store.all(kind)))
            return copied

    def reset(self) -> None:
        self.store.reset()
        self.idempotency.reset()
        self.knobs.reset_counts()
        with self.log_lock:
            self.requests.clear()


def _api_key(req: Request) -> str | None:
    auth = req.header("authorization") or ""
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if auth.lower().startswith("basic "):
        try:
            return base64.b64decode(auth[6:]).decode("utf-8").split(":", 1)[0]
        except ValueError:
            return ""
    return None


class StripeApp:
    def __init__(self, state: StripeState) -> None:
        self.state = state  # the primary account
        self.accounts: dict[str, StripeState] = {state.store.account_id: state}
        self.keys = KeyRing(primary=state.store.account_id)
        self.groups: dict[str, SharingGroup] = {}
        self._setup_lock = threading.Lock()
        self.router = Router()
        for ep in resources.endpoints():
            self.router.add(ep.method, ep.pattern, self._wrap(ep))
        self._admin()

    # API requests ---------------------------------------------------------------------------
    def _wrap(self, ep: Endpoint) -> Callable[[Request], Response]:
        def handler(req: Request) -> Response:
            return self._handle(ep, req)

        return handler

    def _handle(self, ep: Endpoint, req: Request) -> Response:
        state = self.state  # until the key names another account: `finish` logs to the latest one
        store = state.store
        request_id = "req_" + secrets.token_hex(7)  # not under the store lock: that may be busy
        idem_key = req.header("idempotency-key") if req.method == "POST" else None
        started = time.time()
        headers = {"Request-Id": request_id, "Stripe-Version": API_VERSION}
        if idem_key:
            headers["Idempotency-Key"] = idem_key

        params: dict[str, Any] = {}

        def finish(status: int, body: bytes, extra: dict[str, str] | None = None) -> Response:
            with state.log_lock:
                state.requests.append(
                    {
                        "method": req.method,
                        "path": req.path,
                        "pattern": ep.pattern,
                        "idempotency_key": idem_key,
                        "params": params,  # as decoded from the form, before validation
                        "status": status,
                        "request_id": request_id,
                        "time": started,
                        "duration_ms": round((time.time() - started) * 1000, 3),
                    }
                )
            hdrs = {"Content-Type": "application/json", **headers, **(extra or {})}
            return Response(status, body, hdrs)

        def error(exc: StripeError, extra: dict[str, str] | None = None) -> Response:
            return finish(exc.status, _dump(exc.body(request_id)), extra)

        key = _api_key(req)
        if not key:
            return error(StripeError(_NO_KEY, status=401))
        if not key.startswith(("sk_test_", "rk_test_", ORG_KEY_PREFIX)) or len(key) <= 8:
            return error(StripeError(f"Invalid API Key provided: {mask_key(key)}", status=401))
        try:
            state = self.account_for(key, req)
        except StripeError as exc:
            return error(exc)
        store = state.store
        if key.startswith("rk_"):
            held = state.restricted_keys[key]
            needed = required(req.method, ep.pattern)
            if not granted(needed, held):
                message = denial_message(mask_key(key), store.account_id, needed)
                return error(StripeError(message, status=403))
        if not state.bucket.take():
            return error(StripeError(_RATE_LIMIT, status=429, code="rate_limit"))
        fault = state.faults.pick()
        if fault == "500":
            return error(
                StripeError(_API_ERROR, status=500, type="api_error"), {"Stripe-Should-Retry": "true"}
            )
        if fault == "429":
            return error(StripeError(_RATE_LIMIT, status=429, code="rate_limit"))
        if fault == "slow":
            time.sleep(state.faults.slow_seconds)

        try:
            if req.method == "POST":
                params = decode_body(req.body, req.header("content-type"))
                if req.query:
                    params = {**decode_pairs(req.query), **params}
            else:
                params = decode_pairs(req.query)
        except StripeError as exc:
            return error(exc)

        replay = None
        if idem_key:
            try:
                replay = state.idempotency.begin(key, idem_key, req.method, req.path, params)
            except StripeError as exc:
                return error(exc)
        if replay is not None:
            resp = finish(
                replay.status,
                replay.body,
                {"Idempotent-Replayed": "true", "Original-Request": replay.request_id},
            )
            return Response(-1) if fault == "drop" else resp

        ctx = Ctx(store=store, request_id=request_id, idempotency_key=idem_key, path=dict(req.params))
        saved = True
        try:
            try:
                clean = validate(ep.spec, params)
            except StripeError as exc:
                exc.saved = False
                raise
            with store.lock:
                result = ep.fn(ctx, clean)
                paths = clean.get("expand") or []
                body = _dump(expand(store, result, paths) if paths else result)
            status = 200
        except StripeError as exc:
            status, body, saved = exc.status, _dump(exc.body(request_id)), exc.saved
        if idem_key:
            state.idempotency.finish(key, idem_key, status, body, request_id, saved)
        resp = finish(status, body)
        if fault == "drop":
            return Response(-1)
        return resp

    # accounts -------------------------------------------------------------------------------
    def account_for(self, key: str, req: Request) -> StripeState:
        """The account this key and `Stripe-Context` header reach (see `accounts`)."""
        owner = None
        if key.startswith("rk_"):
            owner = next((i for i, s in self.accounts.items() if key in s.restricted_keys), None)
        ident = self.keys.account_for(
            key, mask_key(key), req.header("stripe-context"), req.header("stripe-version"), owner
        )
        return self.accounts[ident]

    def account(self, account_id: str | None) -> StripeState:
        if account_id is None:
            return self.state
        state = self.accounts.get(account_id)
        if state is None:
            raise KeyError(f"no such account in the sandbox: {account_id}")
        return state

    def add_account(
        self,
        *,
        key: str,
        account_id: str | None = None,
        rps: float | None = None,
        sharing_group: str | None = None,
    ) -> StripeState:
        """A new account reached with `key` (its own objects, limits, idempotency keys, log)."""
        if not key.startswith("sk_test_") or len(key) <= 8:
            raise ValueError(f"an account's secret test key starts with sk_test_: {mask_key(key)}")
        if key in self.keys.secret:
            raise ValueError(f"the key {mask_key(key)} already belongs to {self.keys.secret[key]}")
        if account_id is not None and (not account_id.startswith("acct_") or account_id in self.accounts):
            raise ValueError(f"account ids start with acct_ and are unique: {account_id}")
        primary = self.state
        state = StripeState(
            store=Store(account_id=account_id),
            knobs=primary.knobs,
            bucket=TokenBucket(primary.bucket.rate if rps is None else rps),
            faults=Faults(),
        )
        with self._setup_lock:
            self.accounts[state.store.account_id] = state
            self.keys.secret[key] = state.store.account_id
            if sharing_group:
                self.groups.setdefault(sharing_group, SharingGroup(sharing_group)).join(state.store)
        return state

    def add_organization_key(self, key: str, account_ids: list[str]) -> None:
        """An organization key (`sk_org_test_…`) that reaches these accounts through `Stripe-Context`."""
        if not key.startswith(ORG_KEY_PREFIX) or len(key) <= len(ORG_KEY_PREFIX):
            raise ValueError(f"an organization test key starts with {ORG_KEY_PREFIX}: {mask_key(key)}")
        unknown = [a for a in account_ids if a not in self.accounts]
        if unknown or not account_ids:
            raise ValueError(f"no such accounts in the sandbox: {unknown or account_ids}")
        with self._setup_lock:
            self.keys.organization[key] = self.keys.organization.get(key, frozenset()) | set(account_ids)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "id": ident,
                "primary": state is self.state,
                "sharing_group": state.store.group.name if state.store.group else None,
                "keys": sorted(mask_key(k) for k, owner in self.keys.secret.items() if owner == ident),
                "rps": state.bucket.rate,
            }
            for ident, state in self.accounts.items()
        ]

    # admin API ------------------------------------------------------------------------------
    def _admin(self) -> None:
        state = self.state  # routes without `?account=` act on the primary account
        r = self.router

        def chosen(req: Request) -> StripeState:
            return self.account(req.query_dict().get("account") or None)

        def reset(req: Request) -> Response:
            """`?account=` resets that account; without it, every account (objects, not accounts)."""
            if req.query_dict().get("account"):
                chosen(req).reset()
            else:
                for each in self.accounts.values():
                    each.reset()
            return Response.json({"ok": True})

        def counters(_req: Request) -> Response:
            return Response.json(state.knobs.snapshot())

        def counters_reset(_req: Request) -> Response:
            state.knobs.reset_counts()
            return Response.json({"ok": True})

        def requests(req: Request) -> Response:
            """The request log; `?since=<epoch seconds>` keeps the requests started at or after it."""
            since = float(req.query_dict().get("since") or 0)
            account = chosen(req)
            with account.log_lock:
                return Response.json([r for r in account.requests if r["time"] >= since])

        def config(req: Request) -> Response:
            body = req.json() or {}
            unknown = set(body) - CONFIG_KEYS
            if unknown:
                return Response.json({"error": f"unknown config keys: {sorted(unknown)}"}, 400)
            kinds = body.get("error_kinds")
            if kinds is not None and not set(kinds) <= set(FAULT_KINDS):
                return Response.json({"error": f"error_kinds must be among {list(FAULT_KINDS)}"}, 400)
            account = chosen(req)
            apply_config(account, body)
            return Response.json(current_config(account))

        def get_config(req: Request) -> Response:
            return Response.json(current_config(chosen(req)))

        def objects(req: Request) -> Response:
            return Response.json(chosen(req).objects(req.params["type"]))

        def accounts(_req: Request) -> Response:
            return Response.json(self.describe())

        def add_account(req: Request) -> Response:
            body = req.json() or {}
            unknown = set(body) - {"key", "account_id", "rps", "sharing_group"}
            if unknown or not isinstance(body.get("key"), str):
                return Response.json({"error": "body: {key, account_id?, rps?, sharing_group?}"}, 400)
            made = self.add_account(
                key=body["key"],
                account_id=body.get("account_id"),
                rps=None if body.get("rps") is None else float(body["rps"]),
                sharing_group=body.get("sharing_group"),
            )
            return Response.json({"id": made.store.account_id})

        def add_organization_key(req: Request) -> Response:
            body = req.json() or {}
            if not isinstance(body.get("key"), str) or not isinstance(body.get("account_ids"), list):
                return Response.json({"error": "body: {key, account_ids}"}, 400)
            self.add_organization_key(body["key"], [str(a) for a in body["account_ids"]])
            return Response.json({"ok": True})

        r.add("POST", "/_sandbox/reset", reset)
        r.add("GET", "/_sandbox/counters", counters)
        r.add("POST", "/_sandbox/counters/reset", counters_reset)
        r.add("GET", "/_sandbox/requests", requests)
        r.add("POST", "/_sandbox/config", config)
        r.add("GET", "/_sandbox/config", get_config)
        r.add("GET", "/_sandbox/objects/{type}", objects)
        r.add("GET", "/_sandbox/accounts", accounts)
        r.add("POST", "/_sandbox/accounts", add_account)
        r.add("POST", "/_sandbox/organization_keys", add_organization_key)

        def checkout(req: Request) -> Response:
            """The customer on a Checkout page: `complete` (body: the payment method, e.g.
            {"type": "card", "token": "tok_visa"} or {"type": "sepa_debit", "iban": "DE89…"}; a
            declining token fails the attempt) or `abandon` (the session expires)."""
            try:
                session = customer_action(
                    chosen(req), req.params["id"], req.params["action"], req.json() or {}
                )
            except (ValueError, StripeError) as exc:
                return Response.json({"error": str(exc)}, 400)
            return Response.json(session)

        r.add("POST", "/_sandbox/checkout/{id}/{action}", checkout)


def customer_action(
    state: StripeState, session_id: str, action: str, method: dict[str, Any]
) -> dict[str, Any]:
    """What a customer does on a Checkout page, with the events Stripe sends for it."""
    from .resources import checkout

    ctx = Ctx(store=state.store, request_id="req_" + secrets.token_hex(7), idempotency_key=None)
    with state.store.lock:
        if action == "complete":
            return checkout.complete(ctx, session_id, method)
        if action == "abandon":
            return checkout.abandon(ctx, session_id)
    raise ValueError(f"unknown checkout action {action!r}; expected complete or abandon")


def _set_restricted_keys(state: StripeState, keys: dict[str, list[str]]) -> None:
    """Create restricted keys (`{"rk_test_x": ["rak_customer_write", ...]}`), as the Dashboard does."""
    for key, perms in keys.items():
        if not key.startswith("rk_test_") or len(key) <= 8:
            raise ValueError(f"a restricted test key starts with rk_test_: {key[:8]}…")
        state.restricted_keys[key] = frozenset(perms)


CONFIG_KEYS = frozenset(
    {
        "rps",
        "latency_ms",
        "error_rate",
        "error_kinds",
        "search_lag_seconds",
        "seed",
        "slow_seconds",
        "restricted_keys",
    }
)


def apply_config(state: StripeState, knobs: dict[str, Any]) -> None:
    """Set an account's knobs (`latency_ms` is the server's: every account's)."""
    if "rps" in knobs:
        state.bucket.set_rate(float(knobs["rps"]))
    if "latency_ms" in knobs:
        state.knobs.latency_ms = float(knobs["latency_ms"])
    if "error_rate" in knobs:
        state.faults.rate = float(knobs["error_rate"])
    if knobs.get("error_kinds") is not None:
        state.faults.kinds = list(knobs["error_kinds"])
    if "slow_seconds" in knobs:
        state.faults.slow_seconds = float(knobs["slow_seconds"])
    if "seed" in knobs:
        state.faults.reseed(knobs["seed"])
    if "search_lag_seconds" in knobs:
        state.store.set_search_lag(float(knobs["search_lag_seconds"]))
    if "restricted_keys" in knobs:
        _set_restricted_keys(state, knobs["restricted_keys"])


def current_config(state: StripeState) -> dict[str, Any]:
    return {
        "rps": state.bucket.rate,
        "latency_ms": state.knobs.latency_ms,
        "error_rate": state.faults.rate,
        "error_kinds": state.faults.kinds,
        "slow_seconds": state.faults.slow_seconds,
        "search_lag_seconds": state.store.search_lag_seconds,
        "seed": state.faults.seed,
        "restricted_keys": {mask_key(k): sorted(v) for k, v in state.restricted_keys.items()},
    }


def _dump(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _not_found(req: Request) -> Response:
    body = {
        "error": {
            "type": "invalid_request_error",
            "message": f"Unrecognized request URL ({req.method}: {req.path}). Please see "
            "https://stripe.com/docs "
            "or we can help at https://support.stripe.com/.",
        }
    }
    return Response.json(body, 404)


class StripeSandbox:
    """A running fake Stripe: `.url` for `base_addresses={"api": url}`, `.state` (the primary
    account) for tests; `add_account` / `account` for more accounts behind the same URL."""

    def __init__(self, server: SandboxServer, state: StripeState, app: StripeApp | None = None) -> None:
        self._server = server
        self.state = state
        self._app = app or StripeApp(state)

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    def configure(self, *, account: str | None = None, **knobs: Any) -> dict[str, Any]:
        """Same knobs as `POST /_sandbox/config[?account=]`, without HTTP (default: primary account)."""
        state = self._app.account(account)
        apply_config(state, knobs)
        return current_config(state)

    def add_account(
        self,
        *,
        key: str,
        account_id: str | None = None,
        rps: float | None = None,
        sharing_group: str | None = None,
    ) -> str:
        """Add an account reached with `key`; returns its id (`acct_…`). `rps` defaults to the primary's
        current limit; `sharing_group` puts it in that Organization sharing group (made on first use)."""
        made = self._app.add_account(key=key, account_id=account_id, rps=rps, sharing_group=sharing_group)
        return made.store.account_id

    def add_organization_key(self, key: str, account_ids: list[str]) -> None:
        self._app.add_organization_key(key, account_ids)

    def account(self, account_id: str) -> StripeState:
        return self._app.account(account_id)

    def accounts(self) -> list[dict[str, Any]]:
        """Every account: id, primary, sharing_group, masked keys, rps."""
        return self._app.describe()

    def complete_checkout(
        self, session_id: str, *, account: str | None = None, **method: Any
    ) -> dict[str, Any]:
        """The customer completes a setup Checkout Session: `type="card", token="tok_visa"` (the
        default) or `type="sepa_debit", iban=..., name=..., email=...`. A declining token
        (tok_chargeDeclined) fails the attempt and leaves the session open. `account`: the
        session's account (default: the primary)."""
        return customer_action(self._app.account(account), session_id, "complete", method)

    def abandon_checkout(self, session_id: str, *, account: str | None = None) -> dict[str, Any]:
        """The customer never comes back: the session expires now (as at its `expires_at`)."""
        return customer_action(self._app.account(account), session_id, "abandon", {})

    def stop(self) -> None:
        self._server.stop()


def start_stripe(*, port: int = 0, rps: float = 25, latency_ms: float = 0) -> StripeSandbox:
    """Start the fake Stripe on 127.0.0.1 (`port=0` picks a free one); `rps=0` disables the limit."""
    knobs = ServerKnobs(latency_ms=latency_ms)
    state = StripeState(store=Store(), knobs=knobs, bucket=TokenBucket(rps), faults=Faults())
    app = StripeApp(state)
    server = SandboxServer(app.router, knobs, _not_found, port=port, name="stripe-sandbox").start()
    return StripeSandbox(server, state, app)
