"""api.strconv.parse_bool: exactly Go's ParseBool spellings."""

from __future__ import annotations

import pytest

from pymoby.api.strconv import parse_bool


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_true_spellings(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_false_spellings(text: str) -> None:
    assert parse_bool(text) is False


@pytest.mark.parametrize("text", ["", "yes", "tRUE", " true", "2"])
def test_anything_else_is_none(text: str) -> None:
    assert parse_bool(text) is None
