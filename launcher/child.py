"""The child process: spawn with argv untouched, signal it, check execve's limits.

Spawning forks from the supervisor's loop thread and runs a few calls in the
child before ``execve``: its own process group, the terminal's foreground
(like ``tini -g``), default signal dispositions, and ``PR_SET_PDEATHSIG`` so a
SIGKILLed launcher never leaves the child running. ``posix_spawn`` cannot set
the parent-death signal and ``preexec_fn`` adds Popen, whose own
``waitpid`` calls would race our reaper, so we fork ourselves; the code after
fork only calls functions resolved before the fork and takes no Python-level
lock that another thread could hold.
"""

from __future__ import annotations

import errno
import os
import signal
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from launcher.errors import CommandError, ManifestError

# Python 3.12+ warns on fork() in a threaded process; the child side below is
# written for exactly that case (no locks, nothing resolved after the fork).
warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning)

# Linux refuses one argv/env string longer than MAX_ARG_STRLEN (32 pages).
MAX_ARG_STRLEN = 32 * 4096
_POINTER = 8
# Python ignores these for itself; a child must start with the default (as Popen's restore_signals does).
_PYTHON_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ)


@dataclass(frozen=True)
class Child:
    """A started child: its pid and process group (equal: it leads its group)."""

    pid: int
    pgid: int
    argv0: str


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    tty_fd: int | None = None,
    reset_signals: Iterable[signal.Signals] = (),
) -> Child:
    """Fork and exec ``argv`` in a new process group; raise ``CommandError`` (126/127).

    ``tty_fd``: a terminal to hand to the child's group. ``reset_signals``:
    signals the launcher handles, set back to the default in the child.
    Must be called from the supervisor's loop thread (PR_SET_PDEATHSIG is tied
    to the thread that forks).
    """
    from launcher.linux import PR_SET_PDEATHSIG, prctl  # ctypes: only `run` pays for it, and before the fork

    argv = list(argv)
    env = dict(env)
    reset = [*reset_signals, *_PYTHON_IGNORED]
    parent = os.getpid()
    read_fd, write_fd = os.pipe()  # close-on-exec: EOF means exec succeeded
    # Block signals so none runs a Python handler in the child between fork and exec.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, checked by the process tests
            _child_side(argv, env, tty_fd, reset, parent, write_fd, lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    os.close(write_fd)
    try:
        # Also set from the parent, so the group exists before we signal it (classic race).
        os.setpgid(pid, pid)
    except OSError:
        pass  # the child already exec'd (EACCES) or exited: its own setpgid stands
    data = _read_all(read_fd)
    if data:
        os.waitpid(pid, 0)  # ours, failed before exec: reap it here
        code = int(data.decode())
        missing = code in (errno.ENOENT, errno.ENOTDIR)
        raise CommandError(
            f"{argv[0]}: {'command not found' if missing else 'cannot execute: ' + os.strerror(code)}",
            127 if missing else 126,
        )
    return Child(pid, pid, argv[0])


def _child_side(
    argv: list[str], env: dict[str, str], tty_fd: int | None, reset: list[signal.Signals], parent: int, err_fd: int,
    set_pdeathsig: Callable[[], bool],
) -> None:
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        set_pdeathsig()
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)
        os.setpgid(0, 0)
        if tty_fd is not None:
            # A background group calling tcsetpgrp gets SIGTTOU; it is blocked here.
            try:
                os.tcsetpgrp(tty_fd, os.getpid())
            except OSError:
                pass
        for sig in reset:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        code = exc.errno or errno.ENOEXEC
    except BaseException:
        code = errno.ENOEXEC
    try:
        os.write(err_fd, str(code).encode())
    finally:
        os._exit(127)


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 64):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def send(child: Child, sig: int, group: bool = True) -> bool:
    """Send ``sig`` to the child's process group (or the child alone); False if gone."""
    try:
        if group:
            os.killpg(child.pgid, sig)
        else:
            os.kill(child.pid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def group_alive(pgid: int) -> bool:
    """True while any process (zombies included) is still in group ``pgid``."""
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def check_exec_limits(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Raise ``ManifestError`` (78) before execve would fail with E2BIG.

    Names the offending variable and suggests ``file: true``.
    """
    biggest_name, biggest = "", 0
    total = 0
    for name, value in env.items():
        size = len(name.encode()) + 1 + len(value.encode("utf-8", "surrogateescape")) + 1
        if size > MAX_ARG_STRLEN:
            raise ManifestError(f"{name} is {size} bytes, over the {MAX_ARG_STRLEN}-byte limit of one environment string; use `file: true`")
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
        raise ManifestError(
            f"the environment and arguments take {total} bytes, over ARG_MAX ({arg_max}); "
            f"the largest variable is {biggest_name} ({biggest} bytes): use `file: true` for it"
        )
