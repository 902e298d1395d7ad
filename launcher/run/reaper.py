"""Reaping: the supervisor owns ``waitpid(-1)``; wait statuses become exit codes.

Because this loop reaps every child, nothing else in the process may wait on
a pid of its own (``Popen.wait/poll`` would see ECHILD and report exit 0).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def reap_all(untraced: bool = False) -> list[tuple[int, int]]:
    """Collect every child that has changed state, without blocking.

    Returns (pid, wait status) pairs; with ``untraced`` stopped children are
    reported too (``os.WIFSTOPPED``), which terminal job control needs.
    """
    flags = os.WNOHANG | (os.WUNTRACED if untraced else 0)
    out = []
    while True:
        try:
            pid, status = os.waitpid(-1, flags)
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        if pid == 0:
            break
        out.append((pid, status))
    return out


def exit_code(status: int) -> int:
    """A wait status as a shell would report it: the code, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 0


def become_subreaper() -> bool:
    """Adopt orphaned descendants (as PID 1 is by nature); True when in effect."""
    from launcher.run.linux import PR_SET_CHILD_SUBREAPER, prctl  # ctypes: only `run` pays for it

    if os.getpid() == 1:
        return True
    if prctl(PR_SET_CHILD_SUBREAPER, 1):
        return True
    log.warning("cannot register as child subreaper: orphaned grandchildren will not be reaped by the launcher")
    return False
