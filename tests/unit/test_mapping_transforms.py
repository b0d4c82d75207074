"""Each transform, with property tests for the country table and phone normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.mapping.countries import ALPHA3, COUNTRY_NAMES, country_code
from connector.mapping.transforms import (
    TRANSFORMS,
    Context,
    TransformError,
    apply,
    fields_read,
    normalise_phone,
)

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


def phone(raw, country=None, target="phone", arg=None, limit=20):
    """The phone transform on an Account whose BillingCountry is `country`."""
    ctx = Context(target=target, lookup={"BillingCountry": country}.get)
    return apply("phone", arg, raw, limit, ctx)


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("030 1234567", "DE", "+49301234567"),  # the reported bug: it became +10301234567
        ("030 1234567", "Germany", "+49301234567"),  # a country name works as well as a code
        ("044 668 18 00", "CH", "+41446681800"),
        ("044 668 18 00", "Schweiz", "+41446681800"),
        ("(415) 555-0132", "US", "+14155550132"),
        ("1-415-555-0132", "United States", "+14155550132"),
        ("020 7946 0958", "UK", "+442079460958"),
        ("03-1234-5678", "JP", "+81312345678"),
        # written internationally: the record's country does not matter
        ("+1 (415) 555-0100", "DE", "+14155550100"),
        ("+49 30 1234567", "US", "+49301234567"),
        ("+44 (0)20 7946 0958", None, "+442079460958"),
        ("0049 30 1234567", "DE", "+49301234567"),
        ("0049 30 1234567", "US", "+49301234567"),  # the US dials 011, but 00 is meant the same
    ],
)
def test_phone_is_read_in_the_records_country(raw, country, expected):
    assert phone(raw, country) == expected


def test_phone_region_from_names_the_country_field_and_region_is_the_fallback():
    record = {"ShippingCountry": "CH", "BillingCountry": "DE"}
    ctx = Context(target="shipping.phone", lookup=record.get)
    assert apply("phone", {"region_from": "ShippingCountry"}, "044 668 18 00", 20, ctx) == "+41446681800"
    assert apply("phone", {"region_from": ["Missing__c", "BillingCountry"]}, "030 1234567", 20, ctx) == (
        "+49301234567"
    )
    empty = Context(lookup={}.get)
    assert apply("phone", {"region": "DE"}, "030 1234567", 20, empty) == "+49301234567"
    assert apply("phone", "49", "030 1234567", 20, empty) == "+49301234567"  # the old calling-code form
    # the record's own country wins over the fixed fallback
    assert phone("(415) 555-0132", "US", arg={"region": "DE"}) == "+14155550132"


def test_phone_without_country_code_or_record_country_says_what_to_fill():
    with pytest.raises(TransformError) as info:
        phone("030 1234567", None)
    assert "no country code" in info.value.message
    assert "country" in info.value.fix


@pytest.mark.parametrize(
    "raw",
    ["call me", "ask for Jürgen", "n/a", "123", "+0123456789", "030 1234567 (Zentrale)", "1-800-FLOWERS"],
)
def test_phone_garbage_is_rejected_naming_the_value_and_country(raw):
    with pytest.raises(TransformError) as info:
        phone(raw, "DE")
    assert raw in info.value.message and "DE" in info.value.message
    assert info.value.fix


def test_phone_extension_kept_when_it_fits_stripes_limit_else_dropped_with_a_note():
    assert phone("(415) 555-0132 x12", "US") == "+14155550132 x12"
    assert phone("030 1234567 ext. 12", "DE") == "+49301234567 x12"
    ctx = Context(target="phone", lookup={"BillingCountry": "DE"}.get)
    # 16 characters of number + " x4567" is over Stripe's 20: the number is kept, the extension noted
    assert apply("phone", None, "030 12345678901 ext. 4567", 20, ctx) == "+493012345678901"
    assert ctx.notes == ["extension 4567 of '030 12345678901 ext. 4567' left out: phone holds 20 characters"]


def test_phone_arguments_are_checked():
    check = TRANSFORMS["phone"].check
    assert check is not None
    assert check(None) is None and check({"region_from": "BillingCountry", "region": "US"}) is None
    assert "unknown phone option 'regin'" in check({"regin": "DE"})[0]
    assert "region_from" in check({"region_from": "Billing Country"})[0]
    assert "Atlantis" in check({"region": "Atlantis"})[0]
    assert fields_read("phone", {"region_from": ["A__c", "B__c"]}) == ("A__c", "B__c")
    assert fields_read("phone", None) == ("BillingCountry", "ShippingCountry")
    assert fields_read("trim", None) == ()


@given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True))
def test_phone_normalisation_is_idempotent(number):
    try:
        once = normalise_phone(number)
    except TransformError:
        return  # not every digit string is a possible number; rejecting is fine, changing is not
    assert normalise_phone(once) == once
    assert normalise_phone(once + " x12") == once + " x12"


@given(
    st.lists(st.sampled_from(["", " ", "-", ".", "(", ")"]), min_size=10, max_size=10),
    st.from_regex(r"[2-9][0-9]{2}[2-9][0-9]{6}", fullmatch=True),
)
def test_phone_separators_do_not_matter(separators, digits):
    decorated = "".join(sep + d for sep, d in zip(separators, digits, strict=True))
    once = normalise_phone(decorated, "US")
    assert once == "+1" + digits
    assert normalise_phone(once) == once


@pytest.mark.parametrize(
    ("street", "line1", "line2"),
    [
        ("Hauptstr. 1\nHinterhaus", "Hauptstr. 1", "Hinterhaus"),
        ("Hauptstr. 1\r\nHinterhaus\r\n3. OG", "Hauptstr. 1", "Hinterhaus, 3. OG"),
        ("  Hauptstr.   1 \n\n  Hinterhaus ", "Hauptstr. 1", "Hinterhaus"),
        ("Hauptstr. 1", "Hauptstr. 1", None),
        ("\n", None, None),
    ],
)
def test_street_lines(street, line1, line2):
    assert apply("street_line", 1, street, None) == line1
    assert apply("street_line", 2, street, None) == line2


def test_street_line_argument_is_checked():
    check = TRANSFORMS["street_line"].check
    assert check is not None
    assert check(1) is None and check(2) is None
    assert check(None) is not None and check(3) is not None and check(True) is not None


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
