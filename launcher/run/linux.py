"""The Linux prctl calls the launcher needs, through libc (no compiled code): the parent-death signal
and the subreaper for the supervisor, and non-dumpable for every command (docs/reference/security.md)."""

from __future__ import annotations

import ctypes
import sys

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36

_prctl = None
if sys.platform.startswith("linux"):
    try:
        # The running interpreter has libc mapped already; find_library would run ldconfig.
        _libc = ctypes.CDLL(None, use_errno=True)
        _prctl = _libc.prctl
        _prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        _prctl.restype = ctypes.c_int
    except (OSError, AttributeError):
        _prctl = None


def prctl(option: int, value: int) -> bool:
    """Call prctl(option, value); False when unsupported or refused.

    The function object is resolved at import time, so a forked child calls it
    without loading anything (no locks that another thread could hold).
    """
    if _prctl is None:
        return False
    return bool(_prctl(option, value, 0, 0, 0) == 0)


def make_undumpable() -> bool:
    """Make this process non-dumpable; False when unsupported or refused.

    The launcher holds every secret value (and its own token) for its whole run: with
    this, no core file of it is written, and a process of the same user cannot read its
    memory or ``/proc/PID/environ`` (root still can). ``execve`` of a program makes the
    new image dumpable again: an ``exec``'d child is not affected.
    """
    return prctl(PR_SET_DUMPABLE, 0)
