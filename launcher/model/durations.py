"""Durations (``500ms``, ``30s``, ``5m``, ``8h``, ``1h30m``, plain seconds) and signal names."""

from __future__ import annotations

import re
import signal

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h))+\Z")
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?\Z")


def parse_duration(text: str) -> float:
    """Return seconds; raise ``ValueError`` with a hint for anything else."""
    text = text.strip()
    if _NUMBER_RE.match(text):
        return float(text)
    if not _DURATION_RE.match(text):
        raise ValueError(f"invalid duration {text!r} (examples: 500ms, 30s, 5m, 1h30m, 10)")
    return sum(float(n) * _UNITS[u] for n, u in _PART_RE.findall(text))


def format_duration(seconds: float) -> str:
    """A short human form, for log lines and ``check`` output."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:g}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def parse_signal(text: str) -> signal.Signals:
    """``SIGHUP``, ``HUP`` or ``hup`` -> ``signal.SIGHUP``; ``ValueError`` otherwise."""
    name = text.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        sig = signal.Signals[name]
    except KeyError:
        raise ValueError(f"unknown signal {text!r}") from None
    if sig in (signal.SIGKILL, signal.SIGSTOP):
        raise ValueError(f"{sig.name} cannot be used here")
    return sig
