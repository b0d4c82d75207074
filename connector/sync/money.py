"""Salesforce currency amounts -> Stripe minor units, exactly (Decimal only, never float arithmetic).

Stripe takes amounts in the currency's minor unit (cents for USD, yen for JPY, fils for BHD).
`unit_amount` is an integer; `unit_amount_decimal` is the same value as a decimal string with at
most 12 decimal places, used when a fraction of the minor unit remains (e.g. 0.125 USD = 12.5).
Sources: docs.stripe.com/currencies (zero-decimal list, three-decimal rule, ISK special case) and
stripe-python 16's PriceCreateParams docstrings (12 decimal places).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Zero-decimal currencies: the amount *is* the minor unit (JPY 500 -> 500).
ZERO_DECIMAL_CURRENCIES = _codes("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF")
# Three-decimal currencies: 1 BHD = 1000 fils, but Stripe requires the last digit to be 0
# (amounts rounded to the nearest ten). We refuse instead of rounding someone's price.
THREE_DECIMAL_CURRENCIES = _codes("BHD JOD KWD OMR TND")
# Two-decimal in the API but only whole units are accepted (ISK: multiples of 100 since 2023).
WHOLE_UNIT_TWO_DECIMAL_CURRENCIES = frozenset({"ISK"})

# Stripe presentment currencies (snapshot of docs.stripe.com/currencies). Anything else is refused
# as unknown; OrderRulesConfig.extra_currencies can extend the list without a code change.
STRIPE_CURRENCIES = _codes(
    """
    USD AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CVE CZK DJF DKK DOP DZD EGP ETB EUR FJD FKP GBP GEL GIP
    GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR ISK JMD JOD JPY KES KGS KHR KMF KRW KWD KYD KZT
    LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
    NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SEK SGD SHP SLE SOS SRD
    STD SZL THB TJS TND TOP TRY TTD TWD TZS UAH UGX UYU UZS VND VUV WST XAF XCD XOF XPF YER ZAR
    ZMW
    """
)

# Stripe's largest unit amount: eight digits of minor units (99,999,999).
MAX_UNIT_AMOUNT = 99_999_999
# unit_amount_decimal: "a decimal value in cents (or local equivalent) with at most 12 decimal places".
MAX_DECIMAL_PLACES = 12


class MoneyError(ValueError):
    """An amount Stripe cannot take as it is; `fix` says what the admin should change."""

    def __init__(self, problem: str, fix: str, code: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        self.code = code


def normalize_currency(currency: str | None, extra: frozenset[str] = frozenset()) -> str:
    """Upper-case ISO code, or MoneyError when Stripe does not know it."""
    code = (currency or "").strip().upper()
    if code not in STRIPE_CURRENCIES and code not in extra:
        raise MoneyError(
            f"Stripe does not support the currency {currency!r}",
            "use a currency Stripe supports (docs.stripe.com/currencies)",
            "unknown_currency",
        )
    return code


def minor_unit_exponent(currency: str) -> int:
    """How many decimal places one major unit has in Stripe's API (0, 2 or 3)."""
    code = currency.upper()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def to_decimal(amount: Decimal | float | int | str) -> Decimal:
    """Exact Decimal of a Salesforce number; floats go through str() so 0.1 stays 0.1."""
    if isinstance(amount, bool):
        raise MoneyError("a true/false value is not an amount", "put a number in the field", "not_a_number")
    if isinstance(amount, float):
        amount = str(amount)
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError, ValueError):
        raise MoneyError(f"{amount!r} is not a number", "put a number in the field", "not_a_number") from None
    if not value.is_finite():
        raise MoneyError(f"{amount!r} is not a finite number", "put a number in the field", "not_a_number")
    return value


def _plain(value: Decimal) -> str:
    """Decimal as a plain string without exponent or trailing zeros ("12.5", "1200")."""
    text = format(value.normalize(), "f")
    return text


def to_minor_units(
    amount: Decimal | float | int | str, currency: str, extra_currencies: frozenset[str] = frozenset()
) -> tuple[int | None, str | None]:
    """(unit_amount, None) when the amount is a whole number of minor units, else
    (None, unit_amount_decimal). Raises MoneyError for what Stripe would reject: unknown currency,
    negative or too large amounts, more than 12 decimal places of the minor unit, three-decimal
    amounts whose last digit is not 0, fractional ISK."""
    code = normalize_currency(currency, extra_currencies)
    value = to_decimal(amount)
    if value < 0:
        raise MoneyError(
            f"negative amounts ({value}) cannot be a Stripe price",
            "use a positive price; give discounts as a separate credit in Stripe",
            "negative_amount",
        )
    minor = value.scaleb(minor_unit_exponent(code))
    if minor > MAX_UNIT_AMOUNT:
        raise MoneyError(
            f"{value} {code} is {_plain(minor)} minor units, above Stripe's maximum of {MAX_UNIT_AMOUNT}",
            "check the amount (a typo?) or split it across several lines",
            "amount_too_large",
        )
    whole = minor == minor.to_integral_value()
    if code in THREE_DECIMAL_CURRENCIES and (not whole or minor % 10 != 0):
        raise MoneyError(
            f"{value} {code} has a third decimal digit other than 0; Stripe requires the last digit"
            " of three-decimal currencies to be 0",
            f"round the price to 2 decimal places (e.g. {value.quantize(Decimal('0.01'))})",
            "three_decimal_last_digit",
        )
    if code in WHOLE_UNIT_TWO_DECIMAL_CURRENCIES and (not whole or minor % 100 != 0):
        raise MoneyError(
            f"{value} {code} has a fraction; Stripe accepts only whole {code} amounts",
            "round the price to a whole number",
            "whole_units_only",
        )
    if whole:
        return int(minor), None
    exponent = minor.normalize().as_tuple().exponent
    places = -exponent if isinstance(exponent, int) else 0  # finite here: to_decimal refused NaN
    if places > MAX_DECIMAL_PLACES:
        raise MoneyError(
            f"{value} {code} needs {places} decimal places of the minor unit;"
            f" Stripe allows {MAX_DECIMAL_PLACES}",
            "round the price",
            "too_many_decimal_places",
        )
    return None, _plain(minor)


def from_minor_units(unit_amount: int | None, unit_amount_decimal: str | None, currency: str) -> Decimal:
    """The major-unit amount back from what to_minor_units returned (for round trips and reports)."""
    minor = Decimal(unit_amount) if unit_amount is not None else Decimal(unit_amount_decimal or "0")
    return minor.scaleb(-minor_unit_exponent(currency))
