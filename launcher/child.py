"""Starting the child: argv untouched, environment checked against execve's limits."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from launcher.errors import ManifestError

# Linux refuses one argv/env string longer than MAX_ARG_STRLEN (32 pages).
MAX_ARG_STRLEN = 32 * 4096
_POINTER = 8


def check_exec_limits(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Raise ``ManifestError`` (78) before execve would fail with E2BIG.

    Names the offending variable and suggests ``file: true``.
    """
    biggest_name, biggest = "", 0
    total = 0
    for name, value in env.items():
        size = len(name.encode()) + 1 + len(value.encode("utf-8", "surrogateescape")) + 1
        if size > MAX_ARG_STRLEN:
            raise ManifestError(f"{name} is {size} bytes, over the {MAX_ARG_STRLEN}-byte limit of one environment string; use `file: true` for it")
        if size > biggest:
            biggest_name, biggest = name, size
        total += size + _POINTER
    total += sum(len(a.encode("utf-8", "surrogateescape")) + 1 + _POINTER for a in argv)
    try:
        arg_max = os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError):
        arg_max = 2 * 1024 * 1024
    # Leave room for the auxiliary vector and the program name the kernel adds.
    if total > arg_max - 4096:
        raise ManifestError(f"the environment and arguments take {total} bytes, over ARG_MAX ({arg_max}); the largest variable is {biggest_name} ({biggest} bytes): use `file: true` for it")
