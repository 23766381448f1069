"""pymoby.log: logrus text lines byte for byte, levels, fields, configure/set_level."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

import pytest

from pymoby import log

# 2026-11-27T17:28:38.123456789Z
NS = 1_795_800_518_123_456_789


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def configured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    old_level = root.level
    handler = log.configure("info", stream)
    handler.setFormatter(log.LogfmtFormatter(clock=lambda: NS))
    yield stream
    log.reset()
    root.setLevel(old_level)
    assert all(not isinstance(h.formatter, log.LogfmtFormatter) for h in root.handlers)


def test_line_shape(utc: None) -> None:
    line = log.format_line(NS, logging.INFO, "API listen on /var/run/docker.sock")
    assert line == (
        'time="2026-11-27T17:28:38.123456789Z" level=info msg="API listen on /var/run/docker.sock"'
    )


def test_fields_sorted_and_quoted_like_logrus(utc: None) -> None:
    line = log.format_line(
        NS,
        logging.INFO,
        "serving...",
        {"type": "io.containerd.v1", "address": "/run/x.sock", "error": "<nil>", "n": 3},
    )
    assert line == (
        'time="2026-11-27T17:28:38.123456789Z" level=info msg=serving... address=/run/x.sock'
        ' error="<nil>" n=3 type=io.containerd.v1'
    )


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain-._/@^+Az09", "plain-._/@^+Az09"),
        ("", ""),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("line\nbreak\ttab", '"line\\nbreak\\ttab"'),
        ("bell\x07nul\x00del\x7f", '"bell\\anul\\x00del\\x7f"'),
        ("héllo", '"héllo"'),
        ("nbsp\u00a0", '"nbsp\\u00a0"'),
        ("a=b", '"a=b"'),
        (True, "true"),
        (None, '"<nil>"'),
        (1.5, "1.5"),
    ],
)
def test_value_quoting(value: object, written: str) -> None:
    assert log.format_value(value) == written


def test_levels_and_empty_message(utc: None) -> None:
    names = [
        log.format_line(NS, level, "").split(" ")[1]
        for level in (log.TRACE, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
    ]
    assert names == ["level=trace", "level=debug", "level=info", "level=warning", "level=error"]
    assert log.format_line(NS, logging.CRITICAL, "") == (
        'time="2026-11-27T17:28:38.123456789Z" level=fatal'
    )


def test_trailing_newline_trimmed_and_fixed_keys_renamed(utc: None) -> None:
    line = log.format_line(NS, logging.INFO, "done\n", {"msg": "x", "time": "y", "z": 1})
    assert line.endswith("msg=done fields.msg=x fields.time=y z=1")


def test_timestamp_with_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC-2")
    time.tzset()
    try:
        assert log.format_timestamp(NS) == "2026-11-27T19:28:38.123456789+02:00"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_parse_level() -> None:
    assert log.parse_level("WARN") == logging.WARNING
    assert log.parse_level("warning") == logging.WARNING
    assert log.parse_level("fatal") == logging.CRITICAL
    with pytest.raises(ValueError, match="unable to parse logging level: verbose"):
        log.parse_level("verbose")


def test_configure_fields_and_set_level(configured: io.StringIO, utc: None) -> None:
    logger = logging.getLogger("pymoby.test")
    logger.debug("hidden")
    logger.info("Starting up", extra=log.fields(pid=42, host="unix:///x.sock"))
    log.with_fields(logger, container="abc").warning("slow", extra=log.fields(ms=12))
    log.set_level("debug")
    logger.debug("now visible")
    lines = configured.getvalue().splitlines()
    stamp = 'time="2026-11-27T17:28:38.123456789Z"'
    assert lines == [
        f'{stamp} level=info msg="Starting up" host="unix:///x.sock" pid=42',
        f"{stamp} level=warning msg=slow container=abc ms=12",
        f'{stamp} level=debug msg="now visible"',
    ]


def test_configure_twice_replaces_own_handler(configured: io.StringIO) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    other = io.StringIO()
    log.configure("error", other)
    assert len(root.handlers) == before
    logging.getLogger("pymoby.x").warning("dropped")
    logging.getLogger("pymoby.x").error("kept")
    assert "kept" in other.getvalue() and "dropped" not in other.getvalue()
    assert configured.getvalue() == ""


def test_exception_becomes_error_and_stack_fields(configured: io.StringIO) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("pymoby.t").exception("handler failed")
    (line,) = configured.getvalue().splitlines()
    assert ' level=error msg="handler failed" error=boom stack="Traceback ' in line
    assert "\\n" in line and "RuntimeError: boom" in line


def test_go_quote_matches_strconv_quote() -> None:
    assert log.go_quote("\U0001f600 \u200b") == '"\U0001f600 \\u200b"'
    assert log.go_quote("\x1b[0m") == '"\\x1b[0m"'
