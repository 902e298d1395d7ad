"""``${VAR}`` interpolation: a table."""

from __future__ import annotations

import pytest

from launcher.interpolate import interpolate

ENV = {"HOST": "db.internal", "EMPTY": "", "DOLLAR": "a$b${HOST}", "B": "bee"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${HOST}", "db.internal"),
        ("postgres://${HOST}:5432", "postgres://db.internal:5432"),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${HOST:-fallback}", "db.internal"),
        ("${UNSET:-}", ""),
        ("${EMPTY}", ""),
        ("$$", "$"),
        ("$${HOST}", "${HOST}"),
        ("pa$$word", "pa$word"),
        ("$HOST", "$HOST"),
        ("a $x b", "a $x b"),
        ("trailing $", "trailing $"),
        ("${DOLLAR}", "a$b${HOST}"),  # a value is inserted as it is, never expanded again
        ("${UNSET:-${B}}", "bee"),
        ("${HOST:-${UNSET}}", "db.internal"),  # an unused default is not expanded
        ("${UNSET:-${ALSO_UNSET:-x}}-${B}", "x-bee"),
        ("${UNSET:-a:-b}", "a:-b"),
        ("no variables", "no variables"),
    ],
)
def test_interpolate(text: str, expected: str) -> None:
    assert interpolate(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${UNSET}", "${UNSET} is not set"),
        ("x ${UNSET} y", "${UNSET} is not set"),
        ("${1BAD}", "invalid variable reference"),
        ("${}", "invalid variable reference"),
        ("${HOST", "unterminated"),
        ("${UNSET:-${X}", "unterminated"),
    ],
)
def test_interpolate_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        interpolate(text, ENV)
    assert message in str(info.value)
