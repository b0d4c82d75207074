"""OAuth tokens from the configured login URL: client credentials or JWT bearer.

simple-salesforce's own login helpers only talk to `https://{domain}.salesforce.com`, so the
connector asks `{login_url}/services/oauth2/token` itself and hands the token to simple-salesforce.

Failures become `FatalError` carrying Salesforce's `error` / `error_description` (for example
`invalid_client: invalid client credentials`), never the secret, key or assertion we sent.
Transient trouble (5xx after the session's retries, network errors) is raised as a
`SalesforceGeneralError` / requests error so `errors.classify` says RETRY.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import requests
from pydantic import SecretStr
from simple_salesforce.exceptions import SalesforceGeneralError

from connector.errors import FatalError
from connector.settings import AuthFlow, Settings

TOKEN_PATH = "/services/oauth2/token"
JWT_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME_SECONDS = 180  # Salesforce accepts an assertion whose exp is at most a few minutes away
# Salesforce's own login hosts want exactly this audience; My Domain / community logins use their URL.
_WELL_KNOWN_AUDIENCES = {
    "login.salesforce.com": "https://login.salesforce.com",
    "test.salesforce.com": "https://test.salesforce.com",
}


@dataclass(frozen=True)
class Token:
    """An access token and where to use it. `repr` never shows the token."""

    access_token: SecretStr
    instance_url: str
    issued_at: datetime
    identity_url: str
    user_id: str | None
    org_id: str | None


def login_base(settings: Settings) -> str:
    return str(settings.salesforce_login_url).rstrip("/")


def token_url(settings: Settings) -> str:
    return login_base(settings) + TOKEN_PATH


def jwt_audience(login_url: str, configured: object = None) -> str:
    """The `aud` claim: the configured audience; else what Salesforce documents for the host —
    https://login.salesforce.com for production (its own host or a My Domain), https://test.salesforce.com
    for a sandbox, and the login URL itself for any other host (an Experience Cloud site)."""
    if configured:
        return str(configured).rstrip("/")
    host = (urlsplit(login_url).hostname or "").lower()
    if host in _WELL_KNOWN_AUDIENCES:
        return _WELL_KNOWN_AUDIENCES[host]
    if host.endswith(".sandbox.my.salesforce.com"):
        return _WELL_KNOWN_AUDIENCES["test.salesforce.com"]
    if host.endswith(".my.salesforce.com"):
        return _WELL_KNOWN_AUDIENCES["login.salesforce.com"]
    return login_url.rstrip("/")


def build_jwt_assertion(
    *, consumer_key: str, username: str, audience: str, private_key_pem: bytes, now: float | None = None
) -> str:
    """An RS256-signed assertion: iss = consumer key, sub = username, aud, exp = now + 3 min."""
    issued = int(now if now is not None else time.time())
    claims = {"iss": consumer_key, "sub": username, "aud": audience, "exp": issued + JWT_LIFETIME_SECONDS}
    return jwt.encode(claims, private_key_pem, algorithm="RS256")


def _read_private_key(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FatalError(
            "salesforce_private_key", f"cannot read the JWT private key file {path}: {exc.strerror}"
        ) from None


def _token_request_body(settings: Settings) -> tuple[dict[str, str], list[str]]:
    """The form to post, and the secret strings that must never appear in an error message."""
    flow = settings.salesforce_auth_flow
    if flow is AuthFlow.CLIENT_CREDENTIALS:
        if settings.salesforce_consumer_secret is None:
            raise FatalError("salesforce_auth", "client_credentials flow needs a consumer secret")
        secret = settings.salesforce_consumer_secret.get_secret_value()
        form = {
            "grant_type": "client_credentials",
            "client_id": settings.salesforce_consumer_key,
            "client_secret": secret,
        }
        return form, [secret]
    if flow is AuthFlow.JWT_BEARER:
        if not settings.salesforce_username or not settings.salesforce_private_key_file:
            raise FatalError("salesforce_auth", "jwt_bearer flow needs a username and a private key file")
        key = _read_private_key(settings.salesforce_private_key_file)
        try:
            assertion = build_jwt_assertion(
                consumer_key=settings.salesforce_consumer_key,
                username=settings.salesforce_username,
                audience=jwt_audience(login_base(settings), settings.salesforce_jwt_audience),
                private_key_pem=key,
            )
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise FatalError(
                "salesforce_private_key",
                f"cannot sign the JWT assertion with {settings.salesforce_private_key_file} "
                f"(not a PEM RSA private key?): {type(exc).__name__}",
            ) from None
        return {"grant_type": JWT_GRANT_TYPE, "assertion": assertion}, [assertion]
    raise FatalError("salesforce_auth", f"unsupported auth flow {flow}")


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _parse_issued_at(value: object) -> datetime:
    """Salesforce sends issued_at as milliseconds since the epoch (a string); JWT responses may
    omit it, in which case the time we received the token is close enough."""
    try:
        millis = int(str(value))
    except (TypeError, ValueError):
        return datetime.now(UTC)
    return datetime.fromtimestamp(millis / 1000, UTC)


def _ids_from_identity_url(identity_url: str) -> tuple[str | None, str | None]:
    """`https://login.salesforce.com/id/<org id>/<user id>` -> (org id, user id)."""
    parts = [p for p in urlsplit(identity_url).path.split("/") if p]
    if len(parts) >= 3 and parts[-3] == "id":
        return parts[-2], parts[-1]
    return None, None


def authenticate(settings: Settings, session: requests.Session) -> Token:
    """Ask the configured login URL for an access token with the configured flow."""
    form, secrets = _token_request_body(settings)
    url = token_url(settings)
    flow = settings.salesforce_auth_flow.value
    response = session.post(url, data=form, headers={"Accept": "application/json"})
    try:
        body = response.json()
    except ValueError:
        body = None

    if response.status_code >= 500:
        raise SalesforceGeneralError(url, response.status_code, "oauth2/token", b"token endpoint unavailable")
    if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
        if isinstance(body, dict) and body.get("error"):
            detail = str(body["error"])
            if body.get("error_description"):
                detail += f": {body['error_description']}"
        else:
            detail = f"unexpected response (HTTP {response.status_code})"
        raise FatalError(
            "salesforce_auth",
            _scrub(
                f"Salesforce refused the {flow} token request at {url} "
                f"(client id {settings.salesforce_consumer_key}): {detail}",
                secrets,
            ),
        )

    instance_url = str(body.get("instance_url") or "").rstrip("/")
    if not instance_url.startswith(("https://", "http://")):
        raise FatalError("salesforce_auth", "Salesforce's token response had no instance_url")
    identity_url = str(body.get("id") or "")
    org_id, user_id = _ids_from_identity_url(identity_url)
    return Token(
        access_token=SecretStr(str(body["access_token"])),
        instance_url=instance_url,
        issued_at=_parse_issued_at(body.get("issued_at")),
        identity_url=identity_url,
        user_id=user_id,
        org_id=org_id,
    )
