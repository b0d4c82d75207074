from datetime import UTC, datetime, timedelta

import pytest

from connector.synclog import parse_since

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("2h", NOW - timedelta(hours=2)),
        (" 3D ", NOW - timedelta(days=3)),
        ("1w", NOW - timedelta(weeks=1)),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01T09:30:00Z", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
        ("2026-12-01T09:30:00+01:00", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_since_takes_a_duration_or_an_iso_time(text, expected):
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2 hours", "-3d", "2026-13-01"])
def test_since_names_the_accepted_forms_when_it_cannot_read_the_value(text):
    with pytest.raises(ValueError, match="30m, 2h, 3d, 1w") as err:
        parse_since(text, NOW)
    assert repr(text) in str(err.value)
