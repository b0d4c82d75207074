"""The fake Salesforce org over HTTPS: OAuth 2.0, the REST API subset the connector uses, and the
`/_sandbox/` admin API. Wire formats, status codes and error wording follow the real REST API.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import random
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connector.sandbox.http import Request, Response, Router, SandboxServer, ServerKnobs
from connector.sandbox.salesforce.ids import make_id
from connector.sandbox.salesforce.org import (
    ADMIN_USER_ID,
    INTEGRATION_USER_ID,
    ORG_ID,
    SYSTEM_FIELDS,
    JsonParserError,
    Org,
    SalesforceError,
)
from connector.sandbox.salesforce.schema import ObjectDef
from connector.sandbox.salesforce.tls import make_server_context

MIN_VERSION, MAX_VERSION = 31, 62
DAILY_API_LIMIT = 15000
COLLECTION_LIMIT = 200
DEFAULT_BATCH = 2000
MAX_CURSORS = 500
CLIENTS = {
    "sandbox-client": ("sandbox-secret", INTEGRATION_USER_ID),
    "sandbox-admin": ("sandbox-admin-secret", ADMIN_USER_ID),
}
JWT_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
_VERSION_RE = re.compile(r"^v(\d+)\.0$")
_RELEASES = {
    31: "Summer '14",
    32: "Winter '15",
    33: "Spring '15",
    34: "Summer '15",
    35: "Winter '16",
    36: "Spring '16",
    37: "Summer '16",
    38: "Winter '17",
    39: "Spring '17",
    40: "Summer '17",
    41: "Winter '18",
    42: "Spring '18",
    43: "Summer '18",
    44: "Winter '19",
    45: "Spring '19",
    46: "Summer '19",
    47: "Winter '20",
    48: "Spring '20",
    49: "Summer '20",
    50: "Winter '21",
    51: "Spring '21",
    52: "Summer '21",
    53: "Winter '22",
    54: "Spring '22",
    55: "Summer '22",
    56: "Winter '23",
    57: "Spring '23",
    58: "Summer '23",
    59: "Winter '24",
    60: "Spring '24",
    61: "Summer '24",
    62: "Winter '25",
}
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
SERVICE_UNAVAILABLE_HTML = (
    "<html><head><title>Service Unavailable</title></head><body><h1>Service Unavailable</h1>"
    "<p>The server is temporarily unable to service your request. Please try again later.</p></body></html>"
)


@dataclass
class _Token:
    user_id: str
    expires_at: float


@dataclass
class _Cursor:
    records: list[dict[str, Any]]
    total_size: int
    batch: int


@dataclass
class _Faults:
    rate: float = 0.0
    kinds: list[str] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    drawn: dict[str, int] = field(default_factory=dict)  # faults injected per kind


def _sf_error(exc: SalesforceError) -> Response:
    return Response.json([exc.as_dict()], exc.status)


def _err(status: int, code: str, message: str, fields: list[str] | None = None) -> Response:
    body: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        body["fields"] = fields
    return Response.json([body], status)


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    return Response.json({"error": error, "error_description": description}, status)


def _locate(body: bytes, field_name: str) -> str:
    """` at [line:L, column:C]` pointing at the field's value in the raw body, like Jackson does."""
    text = body.decode("utf-8", "replace")
    pos = text.find(f'"{field_name}"')
    if pos < 0:
        return ""
    colon = text.find(":", pos)
    pos = colon + 1 if colon >= 0 else pos
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f" at [line:{line}, column:{column}]"


def _parse_json(req: Request) -> Any:
    try:
        return json.loads(req.body.decode("utf-8")) if req.body else None
    except UnicodeDecodeError:
        raise SalesforceError("JSON_PARSER_ERROR", "Invalid UTF-8 start byte") from None
    except json.JSONDecodeError as exc:
        ch = exc.doc[exc.pos] if exc.pos < len(exc.doc) else ""
        what = f"Unexpected character ('{ch}' (code {ord(ch)}))" if ch else "Unexpected end-of-input"
        raise SalesforceError(
            "JSON_PARSER_ERROR", f"{what}: {exc.msg} at [line:{exc.lineno}, column:{exc.colno}]"
        ) from None


@dataclass
class OrgProfile:
    """How this org differs from the default one, set through `POST /_sandbox/profile` and undone
    by `/_sandbox/reset`.

    `login_host`: "my_domain" (the server is the org's My Domain, the default) or "generic" (it
    stands for login.salesforce.com / test.salesforce.com, where Salesforce refuses the client
    credentials flow). `jwt_audiences`: the `aud` values the org accepts in a JWT bearer
    assertion (None: its own URL and both Salesforce login hosts). `edit_activated_orders`:
    whether the integration user holds the Edit Activated Orders permission. `bulk_chunk_rows`,
    `bulk_sorted_limit_rows`: Bulk API 2.0's primary-key chunk size, and the object size above
    which a sorted Bulk query times out (small values let a test see both). `single_currency`:
    None for a multi-currency org, else the one currency of an org without multi-currency (no
    CurrencyIsoCode field anywhere; changing it clears the records).
    """

    login_host: str = "my_domain"
    jwt_audiences: tuple[str, ...] | None = None
    edit_activated_orders: bool = True
    bulk_chunk_rows: int = 100_000
    bulk_sorted_limit_rows: int = 1_000_000
    single_currency: str | None = None


class SalesforceApp:
    """Routes and state of one fake org server (tokens, cursors, faults, API usage)."""

    def __init__(self, org: Org, public_key: Any, knobs: ServerKnobs, token_ttl_seconds: int) -> None:
        self.org = org
        self.public_key = public_key
        self.knobs = knobs
        self.token_ttl_seconds = token_ttl_seconds
        self.url = ""
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._faults = _Faults()
        self.api_usage = 0
        self.profile = OrgProfile()
        self._describe_cache: dict[str, dict[str, Any]] = {}
        self.on_reset: list[Any] = []  # callables run by /_sandbox/reset (the Pub/Sub event bus)
        self.router = Router()
        self._routes()

    # ------------------------------------------------------------------ routing
    def _routes(self) -> None:
        r = self.router
        r.add("POST", "/services/oauth2/token", self.token)
        r.add("GET", "/services/oauth2/userinfo", self.api(self.userinfo))
        r.add("GET", "/services/data", self.versions)
        r.add("GET", "/services/data/", self.versions)
        api = "/services/data/{version}"
        r.add("GET", api, self.api(self.resources))
        r.add("GET", api + "/", self.api(self.resources))
        r.add("GET", api + "/limits", self.api(self.limits))
        r.add("GET", api + "/limits/", self.api(self.limits))
        r.add("GET", api + "/query", self.api(self.query))
        r.add("GET", api + "/query/", self.api(self.query))
        r.add("GET", api + "/queryAll", self.api(self.query_all))
        r.add("GET", api + "/queryAll/", self.api(self.query_all))
        r.add("GET", api + "/query/{locator}", self.api(self.query_more))
        r.add("GET", api + "/queryAll/{locator}", self.api(self.query_more))
        r.add("GET", api + "/sobjects", self.api(self.describe_global))
        r.add("GET", api + "/sobjects/", self.api(self.describe_global))
        r.add("GET", api + "/sobjects/{sobject}", self.api(self.sobject_info))
        r.add("POST", api + "/sobjects/{sobject}", self.api(self.create, write=True))
        r.add("POST", api + "/sobjects/{sobject}/", self.api(self.create, write=True))
        r.add("GET", api + "/sobjects/{sobject}/describe", self.api(self.describe))
        r.add("GET", api + "/sobjects/{sobject}/describe/", self.api(self.describe))
        r.add("GET", api + "/sobjects/{sobject}/{record_id}", self.api(self.retrieve))
        r.add("PATCH", api + "/sobjects/{sobject}/{record_id}", self.api(self.update, write=True))
        r.add("DELETE", api + "/sobjects/{sobject}/{record_id}", self.api(self.delete, write=True))
        r.add("POST", api + "/composite/sobjects", self.api(self.collection_create, write=True))
        r.add("PATCH", api + "/composite/sobjects", self.api(self.collection_update, write=True))
        from connector.sandbox.salesforce.bulk import BulkQueryJobs

        self.bulk = BulkQueryJobs(self)
        self.bulk.register(r, api, self.api)  # Bulk API 2.0 query jobs, before the catch-all
        for method in ("GET", "POST", "PATCH", "DELETE", "PUT"):
            r.add(method, api + "/{rest:path}", self.api(lambda _r: Response.json(NOT_FOUND, 404)))
        admin = "/_sandbox"
        r.add("POST", admin + "/reset", self.admin_reset)
        r.add("POST", admin + "/seed", self.admin_seed)
        r.add("POST", admin + "/merge", self.admin_merge)
        r.add("GET", admin + "/counters", self.admin_counters)
        r.add("POST", admin + "/counters/reset", self.admin_counters_reset)
        r.add("POST", admin + "/faults", self.admin_faults)
        r.add("POST", admin + "/expire-tokens", self.admin_expire_tokens)
        r.add("POST", admin + "/latency", self.admin_latency)
        r.add("POST", admin + "/profile", self.admin_profile)
        r.add("GET", admin + "/changes", self.admin_changes)
        r.add("POST", admin + "/records/{sobject}", self.admin_create)
        r.add("PATCH", admin + "/records/{sobject}/{record_id}", self.admin_update)
        r.add("GET", admin + "/records/{sobject}/{record_id}", self.admin_get)

    def not_found(self, req: Request) -> Response:
        return Response.json(NOT_FOUND, 404)

    def _limit_header(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.api_usage}/{DAILY_API_LIMIT}"}

    def api(self, handler: Any, *, write: bool = False) -> Any:
        """Wraps a REST handler: version check, session check, faults, usage count, error shape."""

        def wrapped(req: Request) -> Response:
            version = req.params.get("version")
            if version is not None:
                m = _VERSION_RE.match(version)
                if not m or not MIN_VERSION <= int(m.group(1)) <= MAX_VERSION:
                    return Response.json(NOT_FOUND, 404)
            user_id = self._authenticate(req)
            if user_id is None:
                resp = Response.json(
                    [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], 401
                )
                resp.headers["WWW-Authenticate"] = 'Token realm="sandbox",error="invalid_token"'
                return resp
            req.params["_user"] = user_id
            fault = self._draw_fault(write)
            with self._lock:
                if fault != "REQUEST_LIMIT_EXCEEDED":
                    self.api_usage += 1
            if fault == "503":
                resp = Response.text(SERVICE_UNAVAILABLE_HTML, 503, "text/html;charset=UTF-8")
            elif fault == "REQUEST_LIMIT_EXCEEDED":
                resp = _err(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            elif fault == "UNABLE_TO_LOCK_ROW":
                resp = _err(400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", [])
            else:
                try:
                    resp = handler(req)
                except JsonParserError as exc:
                    exc.message += _locate(req.body, exc.field_name)
                    resp = _sf_error(exc)
                except SalesforceError as exc:
                    resp = _sf_error(exc)
            resp.headers.update(self._limit_header())
            return resp

        return wrapped

    def _authenticate(self, req: Request) -> str | None:
        auth = req.header("authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token:
            return None
        with self._lock:
            entry = self._tokens.get(token.strip())
            if entry is None:
                return None
            if entry.expires_at <= time.time():
                del self._tokens[token.strip()]
                return None
            return entry.user_id

    def _draw_fault(self, write: bool) -> str | None:
        with self._lock:
            faults = self._faults
            if faults.rate <= 0 or not faults.kinds:
                return None
            if faults.rng.random() >= faults.rate:
                return None
            kinds = [k for k in faults.kinds if write or k != "UNABLE_TO_LOCK_ROW"]
            if not kinds:
                return None
            # The kind injected least so far (ties drawn at random): every kind shows up early
            # whatever order concurrent calls arrive in, so a short run still meets each one.
            fewest = min(faults.drawn.get(k, 0) for k in kinds)
            kind = faults.rng.choice([k for k in kinds if faults.drawn.get(k, 0) == fewest])
            faults.drawn[kind] = faults.drawn.get(kind, 0) + 1
            return kind

    # ------------------------------------------------------------------ OAuth
    def _issue(self, user_id: str) -> Response:
        token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(48)}"
        with self._lock:
            self._tokens[token] = _Token(user_id, time.time() + self.token_ttl_seconds)
        issued_at = str(int(time.time() * 1000))
        identity = f"{self.url}/id/{ORG_ID}/{user_id}"
        signature = base64.b64encode(
            hmac.new(b"sandbox-signing-key", (identity + issued_at).encode(), hashlib.sha256).digest()
        ).decode()
        return Response.json(
            {
                "access_token": token,
                "signature": signature,
                "scope": "api",
                "instance_url": self.url,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued_at,
            },
            headers={"Cache-Control": "no-cache,must-revalidate,max-age=0,no-store,private"},
        )

    def token(self, req: Request) -> Response:
        form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        form.update({k: v for k, v in req.query if k not in form})
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if self.profile.login_host == "generic":
                return _oauth_error("invalid_grant", "request not supported on this domain")
            client_id, secret = form.get("client_id"), form.get("client_secret")
            basic = req.header("authorization") or ""
            if basic.lower().startswith("basic ") and not client_id:
                try:
                    client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
                except ValueError:
                    client_id = None
            if client_id not in CLIENTS:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            expected, user_id = CLIENTS[client_id]
            if not secret or not hmac.compare_digest(secret, expected):
                return _oauth_error("invalid_client", "invalid client credentials")
            return self._issue(user_id)
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._jwt_bearer(form.get("assertion") or "")
        if not grant:
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        return _oauth_error("unsupported_grant_type", "grant type not supported")

    def _jwt_bearer(self, assertion: str) -> Response:
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return _oauth_error("invalid_grant", "invalid assertion")
        if header.get("alg") != "RS256":
            return _oauth_error("invalid_grant", "invalid assertion")
        if claims.get("iss") not in CLIENTS:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        try:
            jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_aud": False},
            )
        except jwt.InvalidSignatureError:
            return _oauth_error("invalid_grant", "invalid assertion")
        except jwt.PyJWTError:
            return _oauth_error("invalid_grant", "invalid assertion")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        accepted = self.profile.jwt_audiences
        if accepted is None:
            accepted = (self.url, *JWT_AUDIENCES)
        allowed = {*accepted, *(a + "/" for a in accepted)}
        if not any(isinstance(a, str) and a in allowed for a in audiences):
            return _oauth_error("invalid_grant", "audience is invalid")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= time.time():
            return _oauth_error("invalid_grant", "expired authorization code")
        user_id = self.org.users.get(str(claims.get("sub", "")).lower())
        if user_id is None:
            return _oauth_error("invalid_grant", "user hasn't approved this consumer")
        return self._issue(user_id)

    def userinfo(self, req: Request) -> Response:
        user_id = req.params["_user"]
        row = self.org.get("User", user_id) or {}
        return Response.json(
            {
                "sub": f"{self.url}/id/{ORG_ID}/{user_id}",
                "user_id": user_id,
                "organization_id": ORG_ID,
                "preferred_username": row.get("Username"),
                "name": row.get("Name"),
                "email": row.get("Email"),
            }
        )

    # ------------------------------------------------------------------ REST resources
    def versions(self, req: Request) -> Response:
        return Response.json(
            [
                {"label": _RELEASES[v], "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
                for v in range(MIN_VERSION, MAX_VERSION + 1)
            ]
        )

    def resources(self, req: Request) -> Response:
        base = f"/services/data/{req.params['version']}"
        names = ["limits", "query", "queryAll", "sobjects", "composite"]
        return Response.json({n: f"{base}/{n}" for n in names})

    def limits(self, req: Request) -> Response:
        used = self.api_usage
        return Response.json(
            {
                "DailyApiRequests": {"Max": DAILY_API_LIMIT, "Remaining": max(0, DAILY_API_LIMIT - used)},
                "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
                "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
                "DataStorageMB": {"Max": 5, "Remaining": 5},
                "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
            }
        )

    def _base(self, req: Request) -> str:
        return f"/services/data/{req.params['version']}"

    def _batch_size(self, req: Request) -> int:
        options = req.header("sforce-query-options") or ""
        m = re.search(r"batchSize\s*=\s*(\d+)", options, re.IGNORECASE)
        if not m:
            return DEFAULT_BATCH
        return max(200, min(DEFAULT_BATCH, int(m.group(1))))

    def query(self, req: Request, include_deleted: bool = False) -> Response:
        soql = req.query_dict().get("q")
        if soql is None:
            return _err(400, "MALFORMED_QUERY", "A query string must be provided.")
        from connector.sandbox.salesforce.soql import SoqlError

        try:
            result = self.org.query(soql, include_deleted=include_deleted, base_url_path=self._base(req))
        except SoqlError as exc:
            return _err(400, exc.error_code, exc.message)
        records = list(result.records)
        return self._page(req, _Cursor(records, result.total_size, self._batch_size(req)), 0, None)

    def query_all(self, req: Request) -> Response:
        return self.query(req, include_deleted=True)

    def _page(self, req: Request, cursor: _Cursor, offset: int, locator: str | None) -> Response:
        end = offset + cursor.batch
        body: dict[str, Any] = {"totalSize": cursor.total_size, "done": end >= len(cursor.records)}
        if end < len(cursor.records):
            if locator is None:
                locator = "01g" + make_id("01g", int.from_bytes(os.urandom(5), "big"))[3:15]
                with self._lock:
                    self._cursors[locator] = cursor
                    while len(self._cursors) > MAX_CURSORS:
                        self._cursors.popitem(last=False)
            body["nextRecordsUrl"] = f"{self._base(req)}/query/{locator}-{end}"
        elif locator is not None:
            with self._lock:
                self._cursors.pop(locator, None)
        body["records"] = cursor.records[offset:end]
        return Response.json(body)

    def query_more(self, req: Request) -> Response:
        locator, _, offset_text = req.params["locator"].rpartition("-")
        with self._lock:
            cursor = self._cursors.get(locator)
        if cursor is None or not offset_text.isdigit() or int(offset_text) > len(cursor.records):
            return _err(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(req, cursor, int(offset_text), locator)

    def _obj(self, name: str) -> ObjectDef:
        obj = self.org.schema.object(name)
        if obj is None:
            raise SalesforceError("NOT_FOUND", "The requested resource does not exist", status=404)
        return obj

    def _urls(self, req: Request, obj: ObjectDef) -> dict[str, str]:
        base = f"{self._base(req)}/sobjects/{obj.name}"
        return {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}

    def _global_entry(self, req: Request, obj: ObjectDef) -> dict[str, Any]:
        return {
            "name": obj.name,
            "label": obj.label,
            "labelPlural": obj.label + "s",
            "keyPrefix": obj.key_prefix,
            "custom": obj.name.endswith("__c"),
            "createable": obj.name != "User",
            "updateable": True,
            "deletable": obj.name != "User",
            "queryable": True,
            "retrieveable": True,
            "searchable": True,
            "mergeable": obj.mergeable,
            "layoutable": True,
            "replicateable": True,
            "triggerable": True,
            "urls": self._urls(req, obj),
        }

    def describe_global(self, req: Request) -> Response:
        return Response.json(
            {
                "encoding": "UTF-8",
                "maxBatchSize": COLLECTION_LIMIT,
                "sobjects": [self._global_entry(req, o) for o in self.org.schema.objects.values()],
            }
        )

    def sobject_info(self, req: Request) -> Response:
        obj = self._obj(req.params["sobject"])
        return Response.json({"objectDescribe": self._global_entry(req, obj), "recentItems": []})

    def describe(self, req: Request) -> Response:
        obj = self._obj(req.params["sobject"])
        key = f"{self._base(req)}:{obj.name}"
        cached = self._describe_cache.get(key)
        if cached is None:
            cached = self._describe_cache[key] = self._build_describe(req, obj)
        return Response.json(cached)

    def _build_describe(self, req: Request, obj: ObjectDef) -> dict[str, Any]:
        fields = []
        for f in obj.fields.values():
            is_number = f.type in ("double", "currency", "percent", "int")
            fields.append(
                {
                    "name": f.name,
                    "label": f.label,
                    "type": f.type,
                    "length": f.length
                    if not is_number and f.type not in ("boolean", "date", "datetime")
                    else 0,
                    "byteLength": f.length * 3 if not is_number else 0,
                    "precision": f.precision if is_number and f.type != "int" else 0,
                    "scale": f.scale if is_number and f.type != "int" else 0,
                    "digits": f.precision if f.type == "int" else 0,
                    "nillable": f.nillable and f.type != "boolean",
                    "createable": f.createable,
                    "updateable": f.updateable,
                    "custom": f.custom,
                    "defaultedOnCreate": f.default is not None
                    or f.name in SYSTEM_FIELDS
                    or bool(f.auto_number),
                    "defaultValue": f.default if f.type != "picklist" else None,
                    "autoNumber": bool(f.auto_number),
                    "calculated": False,
                    "unique": False,
                    "externalId": f.external_id,
                    "idLookup": f.name == "Id" or f.external_id,
                    "filterable": f.filterable,
                    "sortable": f.type != "textarea" or f.length <= 255,
                    "groupable": f.type not in ("double", "currency", "percent", "textarea", "datetime"),
                    "nameField": f.name == obj.name_field,
                    "picklistValues": [
                        {
                            "value": v,
                            "label": v,
                            "active": True,
                            "defaultValue": v == f.default,
                            "validFor": None,
                        }
                        for v in f.values
                    ],
                    "restrictedPicklist": f.restricted,
                    "referenceTo": list(f.reference_to),
                    "relationshipName": f.relationship_name,
                    "cascadeDelete": False,
                    "soapType": _soap_type(f.type),
                }
            )
        children = [
            {
                "childSObject": rel.child_object,
                "field": rel.field,
                "relationshipName": rel.name,
                "cascadeDelete": (rel.child_object, rel.field)
                in (("OrderItem", "OrderId"), ("Contact", "AccountId")),
                "deprecatedAndHidden": False,
                "restrictedDelete": False,
            }
            for rel in obj.children.values()
        ]
        if obj.mergeable:
            children.append(
                {
                    "childSObject": obj.name,
                    "field": "MasterRecordId",
                    "relationshipName": None,
                    "cascadeDelete": False,
                    "deprecatedAndHidden": False,
                    "restrictedDelete": False,
                }
            )
        entry = self._global_entry(req, obj)
        entry.update(fields=fields, childRelationships=children, recordTypeInfos=[])
        return entry

    def _with_attributes(self, req: Request, obj: ObjectDef, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "attributes": {
                "type": obj.name,
                "url": f"{self._base(req)}/sobjects/{obj.name}/{row.get('Id') or ''}",
            },
            **row,
        }

    def retrieve(self, req: Request) -> Response:
        obj = self._obj(req.params["sobject"])
        fields_param = req.query_dict().get("fields")
        fields = [f.strip() for f in fields_param.split(",") if f.strip()] if fields_param else None
        if fields is not None and not any(f.lower() == "id" for f in fields):
            fields = [*fields]
        row = self.org.retrieve(obj.name, req.params["record_id"], fields)
        out = self._with_attributes(req, obj, row)
        out["attributes"]["url"] = f"{self._base(req)}/sobjects/{obj.name}/{req.params['record_id']}"
        return Response.json(out)

    def _body_object(self, req: Request, obj: ObjectDef) -> dict[str, Any]:
        data = _parse_json(req)
        if not isinstance(data, dict):
            token = "START_ARRAY" if isinstance(data, list) else "VALUE_STRING"
            raise SalesforceError(
                "JSON_PARSER_ERROR", f"Cannot deserialize instance of {obj.name} from {token} value"
            )
        return data

    def create(self, req: Request) -> Response:
        obj = self._obj(req.params["sobject"])
        return self._create_as(obj, self._body_object(req, obj), req.params["_user"])

    def _create_as(self, obj: ObjectDef, data: dict[str, Any], user_id: str) -> Response:
        record_id = self.org.insert(obj.name, data, user_id)
        return Response.json({"id": record_id, "success": True, "errors": []}, 201)

    def update(self, req: Request) -> Response:
        obj = self._obj(req.params["sobject"])
        data = self._body_object(req, obj)
        self.org.update(obj.name, req.params["record_id"], data, req.params["_user"])
        return Response(204)

    def delete(self, req: Request) -> Response:
        obj = self._obj(req.params["sobject"])
        self.org.delete(obj.name, req.params["record_id"], req.params["_user"])
        return Response(204)

    def _collection(self, req: Request, create: bool) -> Response:
        data = _parse_json(req)
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            return _err(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of SObjectCollection", [])
        records = data["records"]
        all_or_none = bool(data.get("allOrNone", False))
        if len(records) > COLLECTION_LIMIT:
            return _err(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
                [],
            )
        items: list[tuple[str, dict[str, Any]]] = []
        for rec in records:
            if not isinstance(rec, dict):
                return _err(
                    400,
                    "JSON_PARSER_ERROR",
                    "Cannot deserialize instance of SObject from START_ARRAY value",
                    [],
                )
            attrs = rec.get("attributes")
            sobject = attrs.get("type") if isinstance(attrs, dict) else None
            if not sobject:
                return _err(400, "INVALID_TYPE", "Must send a concrete entity type.", [])
            if self.org.schema.object(sobject) is None:
                return _err(400, "INVALID_TYPE", f"sObject type '{sobject}' is not supported.", [])
            items.append((sobject, {k: v for k, v in rec.items() if k != "attributes"}))
        results = self.org.save_many(
            items, create=create, all_or_none=all_or_none, user_id=req.params["_user"]
        )
        return Response.json([r.as_dict() for r in results])

    def collection_create(self, req: Request) -> Response:
        return self._collection(req, create=True)

    def collection_update(self, req: Request) -> Response:
        return self._collection(req, create=False)

    # ------------------------------------------------------------------ admin API
    def _admin(self, fn: Callable[[], Response]) -> Response:
        try:
            return fn()
        except SalesforceError as exc:
            return _sf_error(exc)
        except (ValueError, TypeError, KeyError) as exc:
            return Response.json({"error": f"bad admin request: {exc}"}, 400)

    def admin_reset(self, req: Request) -> Response:
        self._apply_profile(OrgProfile())
        self.org.reset()
        self.bulk.reset()
        self.knobs.reset_counts()
        with self._lock:
            self._faults = _Faults()
            self._cursors.clear()
            self.api_usage = 0
        for hook in self.on_reset:
            hook()
        return Response.json({"ok": True})

    def admin_seed(self, req: Request) -> Response:
        def run() -> Response:
            body = _parse_json(req) or {}
            from connector.sandbox.salesforce import seed

            today = date.fromisoformat(body["today"]) if body.get("today") else None
            seeded = seed.populate(
                self.org,
                int(body.get("accounts", 0)),
                int(body.get("orders", 0)),
                int(body.get("seed", 0)),
                contracts=int(body.get("contracts", 0)),
                today=today,
            )
            return Response.json(
                {
                    "ok": True,
                    "loaded": seeded.loaded,
                    "counts": seeded.counts,
                    "contracts": [h.contract_id for h in seeded.contracts],
                }
            )

        return self._admin(run)

    def admin_merge(self, req: Request) -> Response:
        def run() -> Response:
            body = _parse_json(req) or {}
            result = self.org.merge(
                body["master_id"], list(body.get("loser_ids") or []), body.get("keep") or {}
            )
            return Response.json(result)

        return self._admin(run)

    def admin_counters(self, req: Request) -> Response:
        counts: dict[str, int] = {}
        for key, n in self.knobs.snapshot().items():  # `/sobjects/X` and `/sobjects/X/` are one endpoint
            counts[key.rstrip("/")] = counts.get(key.rstrip("/"), 0) + n
        return Response.json({"counts": counts, "api_usage": self.api_usage})

    def admin_counters_reset(self, req: Request) -> Response:
        self.knobs.reset_counts()
        with self._lock:
            self.api_usage = 0
        return Response.json({"ok": True})

    def admin_faults(self, req: Request) -> Response:
        def run() -> Response:
            body = _parse_json(req) or {}
            kinds = [
                str(k) for k in body.get("kinds") or ["503", "UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED"]
            ]
            unknown = set(kinds) - {"503", "UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED"}
            if unknown:
                raise ValueError(f"unknown fault kinds {sorted(unknown)}")
            rate = float(body.get("rate", 0))
            if not 0 <= rate <= 1:
                raise ValueError("rate must be within 0..1")
            with self._lock:
                self._faults = _Faults(rate, kinds, random.Random(body.get("seed", 0)))
            return Response.json({"ok": True, "rate": rate, "kinds": kinds})

        return self._admin(run)

    def admin_profile(self, req: Request) -> Response:
        def run() -> Response:
            body = _parse_json(req) or {}
            unknown = set(body) - {f.name for f in dataclasses.fields(OrgProfile)}
            if unknown:
                raise ValueError(f"unknown profile keys {sorted(unknown)}")
            profile = OrgProfile(
                login_host=str(body.get("login_host", self.profile.login_host)),
                jwt_audiences=(
                    tuple(str(a) for a in body["jwt_audiences"])
                    if body.get("jwt_audiences") is not None
                    else self.profile.jwt_audiences
                ),
                edit_activated_orders=bool(
                    body.get("edit_activated_orders", self.profile.edit_activated_orders)
                ),
                bulk_chunk_rows=int(body.get("bulk_chunk_rows", self.profile.bulk_chunk_rows)),
                bulk_sorted_limit_rows=int(
                    body.get("bulk_sorted_limit_rows", self.profile.bulk_sorted_limit_rows)
                ),
                single_currency=(
                    str(body["single_currency"]).upper() if body.get("single_currency") else None
                )
                if "single_currency" in body
                else self.profile.single_currency,
            )
            if profile.single_currency and profile.single_currency not in self.org.schema.currencies:
                raise ValueError(f"single_currency must be one of {list(self.org.schema.currencies)}")
            if profile.login_host not in ("my_domain", "generic"):
                raise ValueError("login_host is my_domain or generic")
            self._apply_profile(profile)
            return Response.json({"ok": True, **dataclasses.asdict(profile)})

        return self._admin(run)

    def _apply_profile(self, profile: OrgProfile) -> None:
        if profile.single_currency != self.profile.single_currency:
            self.org.set_currency_mode(profile.single_currency)
            self._describe_cache.clear()
        self.profile = profile
        self.org.set_edit_activated_orders(INTEGRATION_USER_ID, profile.edit_activated_orders)
        self.bulk.chunk_rows = profile.bulk_chunk_rows
        self.bulk.sorted_limit_rows = profile.bulk_sorted_limit_rows

    def admin_expire_tokens(self, req: Request) -> Response:
        with self._lock:
            expired = len(self._tokens)
            self._tokens.clear()
        return Response.json({"ok": True, "expired": expired})

    def admin_latency(self, req: Request) -> Response:
        def run() -> Response:
            body = _parse_json(req) or {}
            self.knobs.latency_ms = float(body.get("ms", 0))
            return Response.json({"ok": True, "ms": self.knobs.latency_ms})

        return self._admin(run)

    def admin_changes(self, req: Request) -> Response:
        return self._admin(lambda: Response.json(self.org.changes(int(req.query_dict().get("after", 0)))))

    def admin_create(self, req: Request) -> Response:
        def run() -> Response:
            obj = self._obj(req.params["sobject"])
            return self._create_as(obj, self._body_object(req, obj), ADMIN_USER_ID)

        return self._admin(run)

    def admin_update(self, req: Request) -> Response:
        def run() -> Response:
            obj = self._obj(req.params["sobject"])
            self.org.update(obj.name, req.params["record_id"], self._body_object(req, obj), ADMIN_USER_ID)
            return Response(204)

        return self._admin(run)

    def admin_get(self, req: Request) -> Response:
        def run() -> Response:
            obj = self._obj(req.params["sobject"])
            with self.org.lock:
                row = self.org.get(obj.name, req.params["record_id"])
                if row is None:
                    raise SalesforceError("NOT_FOUND", "The requested resource does not exist", status=404)
                return Response.json(dict(row))

        return self._admin(run)


def _soap_type(t: str) -> str:
    return {
        "id": "tns:ID",
        "reference": "tns:ID",
        "boolean": "xsd:boolean",
        "double": "xsd:double",
        "currency": "xsd:double",
        "percent": "xsd:double",
        "int": "xsd:int",
        "date": "xsd:date",
        "datetime": "xsd:dateTime",
    }.get(t, "xsd:string")


@dataclass
class SalesforceSandbox:
    url: str
    ca_file: Path
    jwt_private_key_file: Path
    org: Org
    app: SalesforceApp
    server: SandboxServer
    pubsub: Any = None  # PubSubSandbox: the Pub/Sub API (gRPC over TLS)

    @property
    def pubsub_url(self) -> str:
        """`127.0.0.1:PORT` of the Pub/Sub API (TLS with the same DIR/ca.pem)."""
        return str(self.pubsub.url)

    def stop(self) -> None:
        try:
            if self.pubsub is not None:
                self.pubsub.stop()
        finally:
            self.server.stop()


def start_salesforce(
    directory: Path,
    *,
    port: int = 0,
    latency_ms: float = 0,
    token_ttl_seconds: int = 7200,
    pubsub_port: int = 0,
) -> SalesforceSandbox:
    """Start the fake org on https://127.0.0.1:PORT and its Pub/Sub API (gRPC, TLS) on
    127.0.0.1:PUBSUB_PORT; writes DIR/ca.pem (trusted by both) and DIR/jwt-key.pem."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    context, ca_file = make_server_context(directory)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = directory / "jwt-key.pem"
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(key_file, 0o600)
    org = Org()
    knobs = ServerKnobs(latency_ms)
    app = SalesforceApp(org, key.public_key(), knobs, token_ttl_seconds)
    server = SandboxServer(
        app.router, knobs, app.not_found, port=port, ssl_context=context, name="sfdc-sandbox"
    )
    app.url = server.url
    server.start()
    sandbox = SalesforceSandbox(server.url, ca_file, key_file, org, app, server)
    try:
        from connector.sandbox.salesforce.pubsub.server import add_admin_routes, start_pubsub

        def token_user(token: str) -> str | None:
            with app._lock:
                entry = app._tokens.get(token)
                return entry.user_id if entry is not None and entry.expires_at > time.time() else None

        sandbox.pubsub = start_pubsub(org, ORG_ID, token_user, ca_file, port=pubsub_port)
        add_admin_routes(app.router, sandbox.pubsub.bus, ADMIN_USER_ID)
        app.on_reset.append(sandbox.pubsub.bus.reset)
    except BaseException:
        sandbox.stop()
        raise
    return sandbox
