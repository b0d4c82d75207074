"""Connector settings from the environment (prefix CPQ2STRIPE_) or the connector home's `.env` file.

Precedence: an explicit value (a command-line option) > the environment > `.env` in the home >
the defaults. The home (connector/home.py) is found from `--home` / CPQ2STRIPE_HOME, or is the
working directory only when that looks like one; relative paths resolve against it.
Secrets are SecretStr so they never reach logs, reprs or error messages. `load_settings()` turns
every validation problem into one readable `SettingsError` listing all of them at once.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.home import ENV_FILE, HomeError, find_home, no_home_message, resolve_database_url, resolve_path
from connector.state.urls import normalise_database_url

ENV_PREFIX = "CPQ2STRIPE_"
# Variables with the prefix that are read outside Settings: the test suites' own knobs.
TEST_PREFIX = "CPQ2STRIPE_TEST_"
OTHER_VARIABLES = frozenset({"CPQ2STRIPE_RELIABILITY_SCALE"})
# Salesforce's shared login hosts: no org's My Domain, so no client credentials flow there.
GENERIC_LOGIN_HOSTS = frozenset({"login.salesforce.com", "test.salesforce.com"})


_KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_", "sk_org_")


class AuthFlow(StrEnum):
    CLIENT_CREDENTIALS = "client_credentials"
    JWT_BEARER = "jwt_bearer"


class HomePaths(BaseSettings):
    """The settings that locate things: the home and the paths resolved against it. `mappings check`
    reads only these (find_mappings_dir: no credentials needed); Settings extends them."""

    # No env_file here: load_settings() passes the home's .env, never the working directory's.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file_encoding="utf-8", extra="ignore")

    home: Path | None = None  # the connector home (CPQ2STRIPE_HOME); see connector/home.py
    database_url: str = "sqlite:///state/connector.db"
    mappings_dir: Path = Path("mappings")

    @field_validator("database_url")
    @classmethod
    def _database_url_form(cls, value: str) -> str:
        return normalise_database_url(value)

    @model_validator(mode="after")
    def _resolve_against_home(self) -> HomePaths:
        """Relative paths start in the home, never in whatever directory the command ran from."""
        database_url = resolve_database_url(self.database_url, self.home)
        mappings_dir = resolve_path(self.mappings_dir, self.home)
        if database_url is None or mappings_dir is None:
            relative = [
                f"{ENV_PREFIX}{name.upper()} is {value}"
                for name, value, resolved in (
                    ("database_url", self.database_url, database_url),
                    ("mappings_dir", self.mappings_dir, mappings_dir),
                )
                if resolved is None
            ]
            raise ValueError(
                f"{no_home_message()}. Or make the paths absolute: {' and '.join(relative)} (relative)"
            )
        self.database_url, self.mappings_dir = database_url, mappings_dir
        for name in ("salesforce_private_key_file", "salesforce_ca_bundle"):
            value = getattr(self, name, None)
            if isinstance(value, Path) and self.home is not None:
                setattr(self, name, resolve_path(value, self.home))
        return self


class Settings(HomePaths):
    # Salesforce
    salesforce_login_url: AnyHttpUrl = AnyHttpUrl("https://login.salesforce.com")
    salesforce_api_version: str = "61.0"
    salesforce_auth_flow: AuthFlow = AuthFlow.CLIENT_CREDENTIALS
    salesforce_consumer_key: str = Field(min_length=1)
    salesforce_consumer_secret: SecretStr | None = None
    salesforce_username: str | None = None
    salesforce_private_key_file: Path | None = None
    # The JWT bearer assertion's `aud`. Unset: https://login.salesforce.com for production hosts,
    # https://test.salesforce.com for sandbox hosts, else the login URL (an Experience Cloud site).
    salesforce_jwt_audience: AnyHttpUrl | None = None
    salesforce_ca_bundle: Path | None = None
    salesforce_timeout_seconds: float = Field(default=60.0, gt=0)
    # Pub/Sub API (events): host:port of the gRPC endpoint, the channels to subscribe to
    # (comma-separated; a platform event channel may name its object: `/event/Order_Activated__e=Order`)
    # and the platform event field that carries the record id.
    salesforce_pubsub_url: str = "api.pubsub.salesforce.com:7443"
    salesforce_pubsub_topics: str = "/data/AccountChangeEvent,/data/OrderChangeEvent"
    salesforce_pubsub_event_id_field: str = "Record_Id__c"

    # Stripe
    # Several accounts (mappings/routing.yaml routes to them): name -> the account's secret or
    # restricted key, or name -> its acct_ id when CPQ2STRIPE_STRIPE_SECRET_KEY is an organization key.
    stripe_accounts: dict[str, SecretStr] = Field(default_factory=dict)
    # The one account's key (required without CPQ2STRIPE_STRIPE_ACCOUNTS); with account ids there,
    # the organization key (sk_org_…) that reaches them through the Stripe-Context header.
    stripe_secret_key: SecretStr | None = Field(default=None, validate_default=True)
    # One account's id as the Stripe-Context header: set by for_stripe_account with an organization key.
    stripe_context: str | None = Field(default=None, exclude=True)
    stripe_api_base: AnyHttpUrl = AnyHttpUrl("https://api.stripe.com")
    # The account the key belongs to. Needed with a restricted key (rk_…): Stripe lets no
    # restricted key read GET /v1/account. With a secret key it is checked against the key's account.
    stripe_account_id: str | None = Field(default=None, pattern=r"^acct_[A-Za-z0-9]+$")
    stripe_max_network_retries: int = Field(default=3, ge=0, le=10)
    stripe_rps: float | None = Field(default=None, gt=0, le=1000)
    stripe_timeout_seconds: float = Field(default=80.0, gt=0)
    stripe_workers: int | None = Field(default=None, ge=1, le=64)  # None: from the rps budget

    # Behaviour (the state database and the mappings: HomePaths)
    poll_interval_seconds: int = Field(default=60, ge=1)
    cursor_overlap_seconds: int = Field(default=5, ge=0, le=3600)

    # Daemon (`cpq2stripe run`)
    retry_interval_seconds: int = Field(default=60, ge=1)
    reconcile_interval_seconds: int = Field(default=86_400, ge=60)
    merge_interval_seconds: int = Field(default=300, ge=1)
    # Billing status -> Salesforce: how often the daemon reads Stripe's events (one list call when idle).
    billing_status_interval_seconds: int = Field(default=60, ge=1)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)  # Prometheus /metrics; unset = off
    metrics_host: str = "127.0.0.1"
    leader_lease_ttl_seconds: float = Field(default=15.0, ge=1)
    heartbeat_interval_seconds: float = Field(default=5.0, gt=0)
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("stripe_secret_key")
    @classmethod
    def _stripe_key_shape(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and not info.data.get("stripe_accounts"):
            raise PydanticCustomError("missing", "Field required")  # worded as any missing setting
        if value is not None and not value.get_secret_value().startswith(_KEY_PREFIXES):
            raise ValueError(
                "does not look like a Stripe secret key "
                "(expected sk_test_…, sk_live_…, rk_test_…, rk_live_… or an organization key sk_org_…)"
            )
        return value

    @field_validator("stripe_accounts", mode="before")
    @classmethod
    def _stripe_accounts_json(cls, value: object) -> object:
        """The JSON text of the environment variable, also when it is given as a plain value."""
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except ValueError:
                raise ValueError('expected JSON: {"name": "sk_…", …}') from None
        return value

    @field_validator("stripe_accounts")
    @classmethod
    def _stripe_accounts_shape(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, key in value.items():
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", name):
                raise ValueError(f"'{name}' is not an account name: use lower-case letters, digits, - and _")
            secret = key.get_secret_value()
            if not (secret.startswith(_KEY_PREFIXES[:4]) or re.fullmatch(r"acct_[A-Za-z0-9]+", secret)):
                raise ValueError(
                    f"{name}: expected the account's key (sk_test_…, sk_live_…, rk_…) or, with an "
                    "organization key in CPQ2STRIPE_STRIPE_SECRET_KEY, its account id (acct_…)"
                )
        return value

    @field_validator("salesforce_api_version")
    @classmethod
    def _api_version_shape(cls, value: str) -> str:
        if not re.fullmatch(r"\d{2}\.0", value):
            raise ValueError("expected a Salesforce API version such as 61.0")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        problems = []
        if self.salesforce_auth_flow is AuthFlow.CLIENT_CREDENTIALS and not self.salesforce_consumer_secret:
            problems.append(
                "CPQ2STRIPE_SALESFORCE_CONSUMER_SECRET is required with the client_credentials auth flow"
            )
        if self.salesforce_auth_flow is AuthFlow.JWT_BEARER:
            if not self.salesforce_username:
                problems.append("CPQ2STRIPE_SALESFORCE_USERNAME is required with the jwt_bearer auth flow")
            if not self.salesforce_private_key_file:
                problems.append(
                    "CPQ2STRIPE_SALESFORCE_PRIVATE_KEY_FILE is required with the jwt_bearer auth flow"
                )
            elif not self.salesforce_private_key_file.is_file():
                problems.append(
                    f"CPQ2STRIPE_SALESFORCE_PRIVATE_KEY_FILE: no such file {self.salesforce_private_key_file}"
                )
        problems.extend(self._stripe_key_problems())
        if self.stripe_live_mode and (self.stripe_api_base.host or "") != "api.stripe.com":
            problems.append(
                "CPQ2STRIPE_STRIPE_SECRET_KEY is a live key but CPQ2STRIPE_STRIPE_API_BASE is "
                f"{self.stripe_api_base.host}, not api.stripe.com: use a test key (sk_test_…) with a "
                "sandbox, or the real Stripe API with a live key"
            )
        host = (self.salesforce_login_url.host or "").lower()
        if self.salesforce_auth_flow is AuthFlow.CLIENT_CREDENTIALS and host in GENERIC_LOGIN_HOSTS:
            problems.append(
                f"CPQ2STRIPE_SALESFORCE_LOGIN_URL is {host}, where Salesforce refuses the client_credentials "
                "flow ('request not supported on this domain'): set it to your org's My Domain URL "
                "(https://MYDOMAIN.my.salesforce.com, or https://MYDOMAIN--SANDBOX.sandbox.my.salesforce.com "
                "for a sandbox; Setup → My Domain shows it), or use "
                "CPQ2STRIPE_SALESFORCE_AUTH_FLOW=jwt_bearer"
            )
        if self.stripe_live_mode and (host == "test.salesforce.com" or ".sandbox." in host):
            problems.append(
                f"CPQ2STRIPE_STRIPE_SECRET_KEY is a live key but CPQ2STRIPE_SALESFORCE_LOGIN_URL ({host}) "
                "is a Salesforce sandbox: a sandbox org must not bill real customers, use sk_test_…"
            )
        if self.salesforce_ca_bundle and not self.salesforce_ca_bundle.is_file():
            problems.append(f"CPQ2STRIPE_SALESFORCE_CA_BUNDLE: no such file {self.salesforce_ca_bundle}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _stripe_key_problems(self) -> list[str]:
        key = self.stripe_secret_key.get_secret_value() if self.stripe_secret_key else None
        ids = [n for n, v in self.stripe_accounts.items() if v.get_secret_value().startswith("acct_")]
        if not self.stripe_accounts:
            if key is not None and key.startswith("sk_org_"):
                return [
                    "CPQ2STRIPE_STRIPE_SECRET_KEY is an organization key: name the accounts it bills "
                    'through in CPQ2STRIPE_STRIPE_ACCOUNTS ({"gmbh": "acct_…", …})'
                ]
            return []
        if ids and len(ids) < len(self.stripe_accounts):
            return [
                "CPQ2STRIPE_STRIPE_ACCOUNTS mixes account ids and keys: give every account its key, "
                "or every account its id with an organization key"
            ]
        if ids and not (key or "").startswith("sk_org_"):
            return [
                "CPQ2STRIPE_STRIPE_ACCOUNTS holds account ids: CPQ2STRIPE_STRIPE_SECRET_KEY must be the "
                "organization key (sk_org_…) that reaches them"
            ]
        return []

    def stripe_account_names(self) -> list[str]:
        return list(self.stripe_accounts)

    def for_stripe_account(self, name: str) -> Settings:
        """These settings narrowed to one of CPQ2STRIPE_STRIPE_ACCOUNTS: its key, or the organization
        key with that account as the Stripe-Context."""
        value = self.stripe_accounts[name]
        if value.get_secret_value().startswith("acct_"):
            account = value.get_secret_value()
            update: dict[str, object] = {"stripe_account_id": account, "stripe_context": account}
        else:
            update = {"stripe_secret_key": value, "stripe_account_id": None, "stripe_context": None}
        return self.model_copy(update={**update, "stripe_accounts": {}})

    @property
    def stripe_key(self) -> SecretStr:
        """The key requests are made with (the one account's, or the organization's)."""
        if self.stripe_secret_key is None:
            raise RuntimeError("no Stripe key: narrow the settings to one account (for_stripe_account)")
        return self.stripe_secret_key

    @property
    def stripe_live_mode(self) -> bool:
        keys = [self.stripe_secret_key, *self.stripe_accounts.values()]
        return any("_live_" in k.get_secret_value()[:8] for k in keys if k is not None)

    @property
    def effective_stripe_rps(self) -> float:
        """Stripe allows 25 requests/s in test mode and 100 live; stay under with headroom."""
        if self.stripe_rps is not None:
            return self.stripe_rps
        return 90.0 if self.stripe_live_mode else 25.0


class SettingsError(Exception):
    """Every settings problem at once, worded for an operator, with no secret values."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("Invalid settings:\n" + "\n".join(f"  - {p}" for p in problems))


def _describe(error: Mapping[str, Any]) -> list[str]:
    loc = [str(part) for part in error.get("loc", ()) if part != "__root__"]
    name = ENV_PREFIX + loc[0].upper() if loc else ""
    if error["type"] == "missing":
        return [f"{name} is required but not set"]
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not name:
        return message.split("; ")
    # Never echo the input: it may be a secret.
    return [f"{name}: {message}"]


def load_settings(home: Path | None = None, **overrides: object) -> Settings:
    """Load settings, or raise SettingsError naming every problem (never the secret values).

    `home` is the --home option; without it CPQ2STRIPE_HOME or a working directory that looks like
    a home (connector/home.py). The home's `.env` is read; relative paths resolve against the home."""
    return _load(Settings, home, overrides)


_S = TypeVar("_S", bound="HomePaths")


def find_mappings_dir(home: Path | None = None) -> Path:
    """The mappings directory exactly as load_settings finds it, without needing the credentials
    (`mappings check`). Raises SettingsError."""
    # the state database plays no part here: an in-memory URL keeps a relative one from counting
    return _load(HomePaths, home, {"database_url": "sqlite://"}).mappings_dir


def _load(cls: type[_S], home: Path | None, overrides: dict[str, object]) -> _S:
    try:
        found = find_home(home)
    except HomeError as exc:
        raise SettingsError([str(exc)]) from None
    env_file = found / ENV_FILE if found is not None and (found / ENV_FILE).is_file() else None
    try:
        return cls(_env_file=env_file, home=found, **overrides)  # type: ignore[arg-type, call-arg]
    except ValidationError as exc:
        errors = exc.errors(include_input=False)
        problems: list[str] = []
        for err in errors:
            problems.extend(_describe(err))
        if found is None and any(err["type"] == "missing" for err in errors):
            problems.insert(0, no_home_message())  # the settings may be in a .env that was not read
        raise SettingsError(problems) from None


def unknown_variables(names: Iterable[str], also_known: Iterable[str] = ()) -> list[str]:
    """One warning per CPQ2STRIPE_ variable nothing reads: a misspelt setting is otherwise ignored."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | OTHER_VARIABLES | set(also_known)
    warnings = []
    for name in sorted({n.upper() for n in names}):
        if not name.startswith(ENV_PREFIX) or name.startswith(TEST_PREFIX) or name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else "; see the settings in README.md, Configuration"
        warnings.append(f"{name} is not a setting and is ignored{hint}")
    return warnings


# The settings a new home must fill in (client credentials; the JWT bearer flow: README.md), each
# with what it is. No values: secrets go in the copy, `.env`, never in a file `init` writes.
_REQUIRED_EXAMPLE = (
    (
        "salesforce_login_url",
        "https://MYDOMAIN.my.salesforce.com",
        "the org's My Domain URL (Setup -> My Domain); the client_credentials flow is refused on "
        "login.salesforce.com",
    ),
    ("salesforce_consumer_key", "", "the connected app's consumer key"),
    ("salesforce_consumer_secret", "", "the connected app's consumer secret (client_credentials flow)"),
    (
        "stripe_secret_key",
        "",
        "sk_test_..., sk_live_... or a restricted key rk_... (docs/PRODUCTION.md lists its permissions)",
    ),
)


def env_example() -> str:
    """The commented `.env.example` `cpq2stripe init` writes: the required settings without values,
    then every other setting commented out with its default (generated, so none is ever missing)."""
    lines = [
        "# cpq2stripe settings for this connector home. Copy this file to .env in the same directory",
        "# (chmod 600: it will hold secrets) and fill in the required values.",
        "# Precedence: a command-line option > the environment > this directory's .env > the default.",
        "# Relative paths (the state database, the mappings directory, key files) start in this directory.",
        "",
        "# --- Required -----------------------------------------------------------------------------",
    ]
    required = set()
    for name, example, meaning in _REQUIRED_EXAMPLE:
        required.add(name)
        lines += [f"# {meaning}", f"{ENV_PREFIX}{name.upper()}={example}"]
    lines += ["", "# --- Optional: the defaults (README.md, Configuration, says what each does) ---"]
    for name, info in Settings.model_fields.items():
        # the home is where this file is, not a setting in it; the context is set per account
        if name in required or name in ("home", "stripe_context"):
            continue
        default = info.default
        shown = "" if default is None or info.default_factory else str(getattr(default, "value", default))
        lines.append(f"# {ENV_PREFIX}{name.upper()}={shown}")
    return "\n".join(lines) + "\n"
