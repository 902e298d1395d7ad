"""Log formatting: one line per record on stderr, as text or JSON.

Only the ``launcher`` loggers follow ``--log-level``: the root stays at
WARNING, and each backend's libraries (hvac, urllib3, azure, botocore...) are
capped at WARNING when the source registry loads that backend, so that no
library can put a request body, and so a value, in our output.

Whatever a message holds (a manifest key with a newline, an escape sequence
in a file name), a record is one line: the text format escapes control
characters with ``one_line`` (``\\n``, ``\\x1b``), and the JSON format
escapes the few that JSON itself leaves raw. Only a traceback (``exc_info``,
debug) spans several lines.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Any

from launcher.errors import LauncherError, errors_of, one_line

__all__ = ["JsonFormatter", "TextFormatter", "configure", "one_line", "report"]


class TextFormatter(logging.Formatter):
    """``launcher: msg`` for info, ``launcher: warning: msg`` above and below."""

    def format(self, record: logging.LogRecord) -> str:
        # Structured fields are for JSON; the text message already says it.
        msg = record.getMessage()
        level = record.levelname.lower()
        prefix = "launcher: " if level == "info" else f"launcher: {level}: "
        if level == "debug":
            prefix += f"[{record.name}] "
        out = prefix + one_line(msg)
        if record.exc_info:
            out += "\n" + self.formatException(record.exc_info)
        return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg and structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        import json  # only JSON logs pay for it

        return _JSON_RAW_RE.sub(_json_escape, json.dumps(out, ensure_ascii=False, default=str))


# JSON escapes U+0000-U+001F itself; these it would leave raw, though line-splitting
# readers (``str.splitlines``) break on some and terminals act on others.
_JSON_RAW_RE = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def configure(level: str, fmt: str) -> None:
    """Send logs to stderr (never the child's stdout) at ``level`` for our own loggers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("launcher").setLevel(level.upper())


def report(exc: LauncherError) -> None:
    """Log every problem of ``exc`` on its own line (one error, each failing binding, each manifest
    problem), the exit code with the last one in JSON logs; logging is configured first if nothing did."""
    if not logging.getLogger().handlers:
        configure("info", os.environ.get("LAUNCHER_LOG_FORMAT", "text"))
    log = logging.getLogger("launcher")
    problems = errors_of(exc)
    json_logs = any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)
    for problem in problems:
        fields = {"exit_code": exc.exit_code} if problem is problems[-1] and json_logs else None
        log.error("%s", problem.message, extra={"fields": fields} if fields else None)
