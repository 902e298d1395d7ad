"""``${VAR}`` interpolation: a table."""

from __future__ import annotations

import pytest

from launcher.manifest.interpolate import interpolate

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


def nested(levels: int) -> str:
    """``${U:-${U:-...x...}}`` with ``levels`` levels of ``${``."""
    return "${U:-" * levels + "x" + "}" * levels


def test_nesting_up_to_the_cap_expands() -> None:
    assert interpolate(nested(32), {}) == "x"


@pytest.mark.parametrize("levels", [33, 1_000, 100_000])
def test_deeper_nesting_is_a_plain_error_not_a_crash(levels: int) -> None:
    # 1,000 levels used to exhaust Python's stack (RecursionError: exit 70).
    with pytest.raises(ValueError, match="nested too deeply") as info:
        interpolate(nested(levels), {})
    assert not isinstance(info.value, RecursionError)


def test_deep_unterminated_nesting_is_also_too_deep() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        interpolate("${" * 50_000, {})


def test_an_invalid_name_is_not_echoed() -> None:
    # The text inside ${...} may be part of a literal password written in the manifest.
    with pytest.raises(ValueError) as info:
        interpolate("p@ss${w0rd!secret}x", {})
    assert "w0rd" not in str(info.value) and "invalid variable reference" in str(info.value)
