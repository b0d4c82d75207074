"""Each transform, with property tests for the country table and phone normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.mapping.countries import ALPHA3, COUNTRY_NAMES, country_code
from connector.mapping.transforms import TransformError, apply, normalise_phone

CODES = sorted(COUNTRY_NAMES)


def test_simple_text_transforms():
    assert apply("trim", None, "  a   b  ", None) == "a b"
    assert apply("lower", None, "AbC", None) == "abc"
    assert apply("upper", None, "AbC", None) == "ABC"
    assert apply("trim", None, 5, None) == 5
    for blank in ("", "  ", "-", "N/A", "none", "NULL", "tbd"):
        assert apply("none_if_empty", None, blank, None) is None
    assert apply("none_if_empty", None, "x", None) == "x"


def test_truncate_to_target_limit_or_explicit_length():
    assert apply("truncate", None, "abcdef", 4) == "abcd"
    assert apply("truncate", 2, "abcdef", 4) == "ab"
    assert apply("truncate", None, "abc", 4) == "abc"
    assert apply("truncate", None, "ab   cd", 4) == "ab"  # no trailing space left behind


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("USA", "US"),
        ("United States of America", "US"),
        ("U.S.A.", "US"),
        ("united states", "US"),
        ("Deutschland", "DE"),
        ("Germany", "DE"),
        ("deu", "DE"),
        ("UK", "GB"),
        ("Great Britain", "GB"),
        ("The Netherlands", "NL"),
        ("Côte d’Ivoire", "CI"),
        ("Österreich", "AT"),
        ("Türkiye", "TR"),
        ("Republic of Korea", "KR"),
        (" fr ", "FR"),
    ],
)
def test_country_aliases(value, code):
    assert apply("country", None, value, None) == code


def test_unknown_country_is_an_error_naming_the_value():
    with pytest.raises(TransformError) as info:
        apply("country", None, "Atlantis", None)
    assert "Atlantis" in info.value.message
    assert info.value.fix
    assert apply("country", None, None, None) is None


def test_country_table_is_complete_and_consistent():
    assert len(CODES) >= 249
    assert all(len(code) == 2 and code.isupper() for code in CODES)
    assert len(set(ALPHA3.values())) == len(ALPHA3)


@given(st.sampled_from(CODES))
def test_country_roundtrip(code):
    assert country_code(code) == code
    assert country_code(code.lower()) == code
    assert country_code(ALPHA3[code]) == code
    assert country_code(COUNTRY_NAMES[code]) == code
    assert country_code(COUNTRY_NAMES[code].upper()) == code
    # the transform's own output is a fixed point
    assert apply("country", None, apply("country", None, COUNTRY_NAMES[code], None), None) == code


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("(555) 123-4567", "+15551234567"),
        ("555.123.4567", "+15551234567"),
        ("1-555-123-4567", "+15551234567"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("+49 30 1234567", "+49301234567"),
        ("0049 30 1234567", "+49301234567"),
        ("+44 (0)20 7946 0958", "+442079460958"),
        ("+81 3-123-4567", "+8131234567"),
    ],
)
def test_phone_normalisation(raw, expected):
    assert apply("phone", None, raw, 20) == expected


def test_phone_with_calling_code_argument():
    assert apply("phone", "49", "030 1234567", 20) == "+49301234567"


@pytest.mark.parametrize(
    "raw", ["call me", "ask for Jürgen", "n/a", "123", "+1 555 123 4567 x12", "+0123456789"]
)
def test_phone_garbage_is_rejected(raw):
    with pytest.raises(TransformError):
        apply("phone", None, raw, 20)


@given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True))
def test_phone_normalisation_is_idempotent_on_e164(number):
    once = normalise_phone(number)
    assert once == number
    assert normalise_phone(once) == once


@given(
    st.lists(st.sampled_from(["", " ", "-", ".", "(", ")"]), min_size=10, max_size=10),
    st.from_regex(r"[2-9][0-9]{9}", fullmatch=True),
)
def test_phone_separators_do_not_matter(separators, digits):
    decorated = "".join(sep + d for sep, d in zip(separators, digits, strict=True))
    try:
        once = normalise_phone(decorated)
    except TransformError:
        return  # e.g. "(0)" happened to be formed; rejecting is fine, silently changing is not
    assert once == "+1" + digits
    assert normalise_phone(once) == once


def test_payment_terms():
    assert apply("payment_term", None, "Net 30", None) == 30
    assert apply("payment_term", None, "net45", None) == 45
    assert apply("payment_term", None, "Due on Receipt", None) == 0
    assert apply("payment_term", None, "Due upon receipt", None) == 0
    assert apply("payment_term", None, 15, None) == 15
    assert apply("payment_term", None, 60.0, None) == 60
    assert apply("payment_term", None, "90", None) == 90
    assert apply("payment_term", None, None, None) is None
    with pytest.raises(TransformError):
        apply("payment_term", None, "2/10 Net 30", None)


def test_email():
    assert apply("email", None, " billing@x.example.com ", None) == "billing@x.example.com"
    for bad in (".a@x.com", "a..b@x.com", "a.@x.com", "no-at.example.com"):
        with pytest.raises(TransformError):
            apply("email", None, bad, None)
