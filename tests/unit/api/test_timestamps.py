"""since/until query values and `until` filter values, as dockerd parses them."""

from __future__ import annotations

import calendar

import pytest

from pymoby import errdefs
from pymoby.api.timestamps import (
    format_unix_timestamp,
    parse_duration,
    parse_event_range,
    parse_time,
    parse_unix_timestamp,
)

S = 1_000_000_000
NOW = 1_700_000_000 * S


def utc(*fields: int) -> int:
    """A UTC date and time (year, month, day[, hour[, minute[, second]]]) in ns since the epoch."""
    padded = (*fields, *(0,) * (6 - len(fields)))
    return calendar.timegm((*padded, 0, 0, 0)) * S


class TestUnixTimestamp:
    @pytest.mark.parametrize(
        "value, expected",
        [
            ("0", 0),
            ("1700000000", 1_700_000_000 * S),
            ("+3", 3 * S),
            ("1700000000.5", 1_700_000_000 * S + 500_000_000),
            ("1700000000.123456789", 1_700_000_000 * S + 123_456_789),
            ("1700000000.123456789999", 1_700_000_000 * S + 123_456_789),  # truncated
            ("1700000000.", 1_700_000_000 * S),
            ("1700000000.000000000", 1_700_000_000 * S),
            ("-1.5", -S + 500_000_000),  # time.Unix(-1, 5e8)
        ],
    )
    def test_accepted(self, value: str, expected: int) -> None:
        assert parse_unix_timestamp(value) == expected

    def test_empty_is_none(self) -> None:
        assert parse_unix_timestamp("") is None

    @pytest.mark.parametrize(
        "value, message",
        [
            ("abc", 'invalid timestamp "abc": invalid seconds "abc": invalid syntax'),
            ("1h", 'invalid timestamp "1h": invalid seconds "1h": invalid syntax'),
            (
                "2024-01-01T00:00:00Z",
                'invalid timestamp "2024-01-01T00:00:00Z": '
                'invalid seconds "2024-01-01T00:00:00Z": invalid syntax',
            ),
            (".5", 'invalid timestamp ".5": invalid seconds "": invalid syntax'),
            ("1_000", 'invalid timestamp "1_000": invalid seconds "1_000": invalid syntax'),
            (
                "99999999999999999999",
                'invalid timestamp "99999999999999999999": '
                'invalid seconds "99999999999999999999": value out of range',
            ),
            (
                "1.x5",
                "invalid timestamp \"1.x5\": invalid nanoseconds: invalid character 'x' "
                "at position 0",
            ),
            (
                "1.-5",
                "invalid timestamp \"1.-5\": invalid nanoseconds: invalid character '-' "
                "at position 0",
            ),
            (
                "1." + "1" * 21,
                f'invalid timestamp "1.{"1" * 21}": invalid nanoseconds: '
                "length 21 exceeds maximum 20",
            ),
        ],
    )
    def test_rejected(self, value: str, message: str) -> None:
        with pytest.raises(errdefs.InvalidParameter) as info:
            parse_unix_timestamp(value)
        assert str(info.value) == message

    def test_format(self) -> None:
        assert format_unix_timestamp(1_700_000_000 * S + 5) == "1700000000.000000005"
        assert parse_unix_timestamp(format_unix_timestamp(NOW + 123)) == NOW + 123


class TestEventRange:
    def test_none_given(self) -> None:
        assert parse_event_range("", "") == (None, None)

    def test_both(self) -> None:
        assert parse_event_range("10", "20.5") == (10 * S, 20 * S + 500_000_000)

    def test_equal_is_fine(self) -> None:
        assert parse_event_range("10", "10") == (10 * S, 10 * S)

    def test_names_the_parameter(self) -> None:
        with pytest.raises(errdefs.InvalidParameter) as info:
            parse_event_range("x", "")
        assert str(info.value) == (
            'invalid value for \'since\': invalid timestamp "x": invalid seconds "x": '
            "invalid syntax"
        )
        with pytest.raises(errdefs.InvalidParameter) as info:
            parse_event_range("", "1h")
        assert str(info.value).startswith("invalid value for 'until': invalid timestamp \"1h\"")

    def test_until_before_since(self) -> None:
        with pytest.raises(errdefs.InvalidParameter) as info:
            parse_event_range("20", "10")
        assert str(info.value) == "`since` time (20) cannot be after `until` time (10)"


class TestDuration:
    @pytest.mark.parametrize(
        "value, expected",
        [
            ("0", 0),
            ("-0", 0),
            ("1h", 3600 * S),
            ("1h30m", 5400 * S),
            ("-1.5h", -5400 * S),
            ("+5m", 300 * S),
            ("300ms", 300_000_000),
            ("2h45m10.5s", (2 * 3600 + 45 * 60 + 10) * S + 500_000_000),
            (".5s", 500_000_000),
            ("1.s", S),
            ("10ns", 10),
            ("7us", 7000),
            ("7\u00b5s", 7000),
            ("7\u03bcs", 7000),
            ("9223372036854775807ns", 9223372036854775807),
            ("-9223372036854775808ns", -9223372036854775808),
        ],
    )
    def test_accepted(self, value: str, expected: int) -> None:
        assert parse_duration(value) == expected

    @pytest.mark.parametrize(
        "value, message",
        [
            ("", 'time: invalid duration ""'),
            ("+", 'time: invalid duration "+"'),
            ("x", 'time: invalid duration "x"'),
            (".s", 'time: invalid duration ".s"'),
            ("1", 'time: missing unit in duration "1"'),
            ("1d", 'time: unknown unit "d" in duration "1d"'),
            ("1h2", 'time: missing unit in duration "1h2"'),
            ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
            ("3000000h", 'time: invalid duration "3000000h"'),
        ],
    )
    def test_rejected(self, value: str, message: str) -> None:
        with pytest.raises(errdefs.InvalidParameter) as info:
            parse_duration(value)
        assert str(info.value) == message


class TestParseTime:
    @pytest.mark.parametrize(
        "value, expected",
        [
            # durations count back from now; negative ones point into the future
            ("1h", NOW - 3600 * S),
            ("-30m", NOW + 1800 * S),
            ("0s", NOW),
            # Unix timestamps
            ("0", 0),
            ("1600000000", 1_600_000_000 * S),
            ("1600000000.25", 1_600_000_000 * S + 250_000_000),
            # RFC 3339 with a zone
            ("2024-01-02T03:04:05Z", utc(2024, 1, 2, 3, 4, 5)),
            ("2024-01-02T03:04:05+01:00", utc(2024, 1, 2, 2, 4, 5)),
            ("2024-01-02T03:04:05-05:30", utc(2024, 1, 2, 8, 34, 5)),
            ("2024-01-02T03:04:05.123456789Z", utc(2024, 1, 2, 3, 4, 5) + 123_456_789),
            ("2024-01-02T03:04:05.5+01:00", utc(2024, 1, 2, 2, 4, 5) + 500_000_000),
            ("2024-01-02T03:04Z", utc(2024, 1, 2, 3, 4)),
            ("2024-01-02T03Z", utc(2024, 1, 2, 3)),
            ("2024-01-02T03:04+02:00", utc(2024, 1, 2, 1, 4)),
            ("2024-01-02T3:04:05Z", utc(2024, 1, 2, 3, 4, 5)),  # Go accepts a 1-digit hour
            ("2024-01-02Z", utc(2024, 1, 2)),
            ("2024-01-02+01:00", utc(2024, 1, 1, 23)),
            # without a zone: the local zone (here +02:00)
            ("2024-01-02", utc(2024, 1, 1, 22)),
            ("2024-01-02T03", utc(2024, 1, 2, 1)),
            ("2024-01-02T03:04", utc(2024, 1, 2, 1, 4)),
            ("2024-01-02T03:04:05", utc(2024, 1, 2, 1, 4, 5)),
            ("2024-01-02T03:04:05.000000001", utc(2024, 1, 2, 1, 4, 5) + 1),
            ("2024-02-29", utc(2024, 2, 28, 22)),
            ("1969-12-31T23:59:59Z", -S),
        ],
    )
    def test_accepted(self, value: str, expected: int) -> None:
        assert parse_time(value, now_ns=NOW, utc_offset=7200) == expected

    def test_defaults_to_now_and_local_zone(self) -> None:
        assert parse_time("2024-01-02T03:04:05Z") == utc(2024, 1, 2, 3, 4, 5)
        assert isinstance(parse_time("1m"), int)
        assert isinstance(parse_time("2024-01-02"), int)

    @pytest.mark.parametrize(
        "value, message",
        [
            ("", "failed to parse value as time or duration: value is empty"),
            ("  ", "failed to parse value as time or duration: value is empty"),
            (
                "abc",
                'failed to parse value as time or duration: invalid seconds "abc": invalid syntax',
            ),
            (
                "1d",
                'failed to parse value as time or duration: invalid seconds "1d": invalid syntax',
            ),
            ("2024-13-01", 'parsing time "2024-13-01": month out of range'),
            ("2023-02-29", 'parsing time "2023-02-29": day out of range'),
            ("2024-01-32", 'parsing time "2024-01-32": day out of range'),
            ("2024-01-01T24:00", 'parsing time "2024-01-01T24:00": hour out of range'),
            ("2024-01-01T00:60", 'parsing time "2024-01-01T00:60": minute out of range'),
            (
                "2024-01-01T00:00:00+25:00",
                'parsing time "2024-01-01T00:00:00+25:00": time zone offset hour out of range',
            ),
            (
                "-5",
                'parsing time "-5" as "2006-01-02": cannot parse "-5" as "2006"',
            ),
            (
                "2024-1-02",
                'parsing time "2024-1-02" as "2006-01-02": cannot parse "1-02" as "01"',
            ),
            (
                "2024-01-01T00:00:00z",
                'parsing time "2024-01-01T00:00:00z" as "2006-01-02T15:04:05Z07:00": '
                'cannot parse "z" as "Z07:00"',
            ),
            (
                "2024-01-01T00:00:00Zjunk",
                'parsing time "2024-01-01T00:00:00Zjunk": extra text: "junk"',
            ),
            (
                "2024-01-01T00:00:00+0100",
                'parsing time "2024-01-01T00:00:00+0100" as "2006-01-02T15:04Z07:00": '
                'cannot parse ":00+0100" as "Z07:00"',
            ),
            (
                "2024-01-01x",
                'parsing time "2024-01-01x": extra text: "x"',
            ),
        ],
    )
    def test_rejected(self, value: str, message: str) -> None:
        with pytest.raises(errdefs.InvalidParameter) as info:
            parse_time(value, now_ns=NOW, utc_offset=0)
        assert str(info.value) == message

    def test_non_ascii_is_escaped_like_go(self) -> None:
        with pytest.raises(errdefs.InvalidParameter) as info:
            parse_time("2024-01-0\u00e9", now_ns=NOW, utc_offset=0)
        assert '"2024-01-0\\xc3\\xa9"' in str(info.value)
