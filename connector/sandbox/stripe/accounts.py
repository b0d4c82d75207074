"""Which account a request reaches: real Stripe is one API host and the key (with the
`Stripe-Context` header) picks the account.

- An account's secret key (`sk_test_…`) reaches that account; the primary account also takes any
  `sk_test_…` key no other account registered (the single-account sandbox's old behaviour).
- A restricted key (`rk_test_…`) reaches the account that created it.
- An organization key (`sk_org_test_…`, docs.stripe.com/keys/organization-api-keys: "Organization API
  keys are prefixed sk_org", "All API requests made with an organization API key must include the
  Stripe-Context header to identify the affected account" and "…must include the Stripe-Version
  header") reaches the account its `Stripe-Context` names, if that account is in its organization.
- A `Stripe-Context` naming another account than an account key's own is refused: the sandbox has
  no connected accounts (docs.stripe.com/context)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import StripeError

ORG_KEY_PREFIX = "sk_org_test_"

# Stripe's answer to an organization key without the header, as stripe-python's changelog quotes it
# (stripe/stripe-python#1660); the status is not documented, 400 is our reading.
NO_CONTEXT = (
    "Please include the Stripe-Context header with your target account when using an Organization API key."
)
# Not documented; the wording is ours.
NO_VERSION = "Please include the Stripe-Version header when using an Organization API key."


def no_access(masked_key: str, account: str) -> StripeError:
    """Stripe's answer to a context/account header the key may not act on (403 `account_invalid`)."""
    return StripeError(
        f"The provided key '{masked_key}' does not have access to account '{account}' (or that account "
        "does not exist). Application access may have been revoked.",
        status=403,
        code="account_invalid",
    )


@dataclass
class KeyRing:
    """Keys by account id. Mutated only while setting the sandbox up (admin API)."""

    primary: str
    secret: dict[str, str] = field(default_factory=dict)  # sk_test_ key -> account id
    organization: dict[str, frozenset[str]] = field(default_factory=dict)  # sk_org_test_ key -> ids

    def account_for(
        self,
        key: str,
        masked_key: str,
        context: str | None,
        version: str | None,
        restricted_owner: str | None,
    ) -> str:
        """The account id `key` reaches with this `Stripe-Context`; `restricted_owner` is the account
        that created an `rk_` key (None: no account did). Raises Stripe's error otherwise."""
        if key.startswith("sk_org_"):
            accounts = self.organization.get(key)
            if accounts is None:
                raise StripeError(f"Invalid API Key provided: {masked_key}", status=401)
            if not version:
                raise StripeError(NO_VERSION)
            if not context:
                raise StripeError(NO_CONTEXT)
            if context not in accounts:
                raise no_access(masked_key, context)
            return context
        if key.startswith("rk_"):
            if restricted_owner is None:
                raise StripeError(f"Invalid API Key provided: {masked_key}", status=401)
            owner = restricted_owner
        else:
            owner = self.secret.get(key, self.primary)
        if context and context != owner:
            raise no_access(masked_key, context)
        return owner
