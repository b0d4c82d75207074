"""One payment-term reader for the mapping's `payment_term` transform and the Order rules."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.mapping.payment_terms import MAX_DAYS, PaymentTermError, parse_payment_term
from connector.mapping.transforms import TransformError, apply


@pytest.mark.parametrize(
    ("term", "days"),
    [
        ("Net 30", 30),
        ("net 15", 15),
        ("Net30", 30),
        ("NET 30", 30),
        ("net-30", 30),
        ("Net 30 days", 30),
        ("Net 30 Days", 30),
        ("Net 1 day", 1),
        ("30 days", 30),
        ("30 Days", 30),
        ("45", 45),
        (" 45 ", 45),
        (60, 60),
        (90.0, 90),
        ("Due on Receipt", 0),
        ("Due upon receipt", 0),
        ("Upon receipt", 0),
        ("Immediately", 0),
        ("Net 730", 730),
        ("Net 0000030", 30),
        (None, None),
        ("", None),
        ("   ", None),
    ],
)
def test_accepted_spellings(term, days):
    assert parse_payment_term(term) == days


@pytest.mark.parametrize(
    "term", ["2/10 Net 30", "soon", "-5", "Net -5", "30.5", 30.5, True, "Net 731", 731, "Net", "days"]
)
def test_anything_else_is_refused_with_the_accepted_forms(term):
    with pytest.raises(PaymentTermError) as err:
        parse_payment_term(term)
    assert "0 to 730" in err.value.fix or "'Net 30 days'" in err.value.fix


@given(
    st.integers(min_value=0, max_value=MAX_DAYS), st.sampled_from(["Net {}", "Net {} days", "{}", "{} days"])
)
def test_any_term_in_range_reads_as_its_days(days, form):
    assert parse_payment_term(form.format(days)) == days


@given(st.one_of(st.text(max_size=20), st.integers(-1000, 2000), st.none()))
def test_the_mapping_transform_and_the_rules_agree(value):
    """The bug this module fixes: a term the mapping passed was refused later by the rules."""
    try:
        expected = parse_payment_term(value)
    except PaymentTermError as exc:
        with pytest.raises(TransformError) as err:
            apply("payment_term", None, value, None)
        assert exc.problem in str(err.value)
    else:
        assert apply("payment_term", None, value, None) == expected


@pytest.mark.parametrize(
    "term",
    ["9" * 5000, "Net " + "9" * 5000, 10**5000, -(10**5000), 1e300],
    ids=["digits", "net-digits", "int", "negative-int", "float"],
)
def test_huge_numbers_are_out_of_range_not_a_crash(term):
    """int() and str() refuse numbers of over 4,300 digits; the parser must still answer."""
    with pytest.raises(PaymentTermError) as err:
        parse_payment_term(term)
    assert "out of range" in err.value.problem and err.value.fix == "Stripe allows 0 to 730 days"
