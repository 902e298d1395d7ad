"""Log lines: one line per record, whatever the message holds."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from launcher.errors import ManifestError
from launcher.logs import JsonFormatter, TextFormatter, one_line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("a\nb", "a\\nb"),
        ("a\r\nb", "a\\r\\nb"),
        ("tab\there", "tab\\there"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("nul\x00", "nul\\x00"),
        ("del\x7f", "del\\x7f"),
        ("c1\x85next\x9b", "c1\\x85next\\x9b"),
        ("vt\x0bff\x0c", "vt\\x0bff\\x0c"),
        ("fs\x1cgs\x1drs\x1e", "fs\\x1cgs\\x1drs\\x1e"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("bidi\u202eevil\u2066", "bidi\\u202eevil\\u2066"),
        ("back\\slash", "back\\slash"),  # left alone
        ("caf\u00e9 \u05e9\u05dc\u05d5\u05dd \U0001f600", "caf\u00e9 \u05e9\u05dc\u05d5\u05dd \U0001f600"),  # printable text stays
    ],
)
def test_one_line(text: str, expected: str) -> None:
    assert one_line(text) == expected
    assert len(one_line(text).splitlines()) <= 1


def record(msg: str, *args: object, level: int = logging.WARNING, exc_info: bool = False) -> logging.LogRecord:
    info = sys.exc_info() if exc_info else None
    return logging.LogRecord("launcher.manifest", level, __file__, 1, msg, args, info)


FORGERY = "A\nlauncher: resolved 3 variables from vault in 0.1s\r\x1b[2K\u2028x\x85y"


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR])
def test_text_lines_cannot_be_forged(level: int) -> None:
    out = TextFormatter().format(record("unknown key %s", FORGERY, level=level))
    assert len(out.splitlines()) == 1 and "\x1b" not in out and "\r" not in out
    assert out.endswith("unknown key A\\nlauncher: resolved 3 variables from vault in 0.1s\\r\\x1b[2K\\u2028x\\x85y")


def test_json_lines_cannot_be_forged() -> None:
    out = JsonFormatter().format(record("unknown key %s", FORGERY))
    assert len(out.splitlines()) == 1
    assert json.loads(out)["msg"] == f"unknown key {FORGERY}"  # escaped, not altered


def test_json_fields_are_escaped_too() -> None:
    rec = record("x")
    rec.fields = {"name": "a\u2028b\x85c\nd"}
    out = JsonFormatter().format(rec)
    assert len(out.splitlines()) == 1 and json.loads(out)["name"] == "a\u2028b\x85c\nd"


def test_a_traceback_may_span_lines() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        text = TextFormatter().format(record("failed", level=logging.DEBUG, exc_info=True))
        as_json = JsonFormatter().format(record("failed", level=logging.DEBUG, exc_info=True))
    assert text.splitlines()[0] == "launcher: debug: [launcher.manifest] failed" and "Traceback" in text
    assert len(as_json.splitlines()) == 1 and "Traceback" in json.loads(as_json)["traceback"]


def test_manifest_errors_are_one_line_themselves() -> None:
    err = ManifestError("not a valid variable name", where="launcher.yaml:3", field="env.A\nlauncher: forged")
    assert str(err) == "launcher.yaml:3: env.A\\nlauncher: forged: not a valid variable name"
    assert err.field == "env.A\nlauncher: forged"  # the attribute keeps what was read
