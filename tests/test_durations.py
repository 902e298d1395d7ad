"""Durations and signal names: tables."""

from __future__ import annotations

import signal

import pytest

from launcher.model.durations import format_duration, parse_duration, parse_signal


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("8h", 28800.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1h0m5s250ms", 3605.25),
        ("1.5s", 1.5),
        ("10", 10.0),
        ("0", 0.0),
        ("2.5", 2.5),
        (" 7s ", 7.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5 minutes", "1d", "-1s", "-3", "1h 30m", "5M", "1.s", "abc", "30sec", "1m30"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (1, "1s"), (90, "90s"), (300, "5m"), (28800, "8.0h")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "sig"),
    [("SIGHUP", signal.SIGHUP), ("HUP", signal.SIGHUP), ("hup", signal.SIGHUP), ("sigterm", signal.SIGTERM), ("USR1", signal.SIGUSR1)],
)
def test_parse_signal(text: str, sig: signal.Signals) -> None:
    assert parse_signal(text) == sig


@pytest.mark.parametrize("text", ["SIGFOO", "", "1", "SIGKILL", "STOP"])
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_signal(text)
