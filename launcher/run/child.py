"""The child process: ``ChildProcess`` owns one child end to end; spawning; execve's limits.

``ChildProcess`` (after consul-template's ``child.Child``) starts one command,
signals it, stops it with a deadline (``stop_signal``, then SIGKILL after
``stop_timeout``), drains what is left of its process group once it exited,
and keeps its exit code. It knows nothing about secrets or rotation, and
never waits: the supervisor's reaper tells it when its process exited
(``exited``) and its loop calls ``tick`` for the deadlines.

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
import logging
import os
import signal
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence

from launcher.clock import SYSTEM, Clock
from launcher.errors import CommandError
from launcher.model.config import ProcessConfig
from launcher.model.vocabulary import SignalTarget
from launcher.run.command import not_found_message
from launcher.run.reaper import exit_code

log = logging.getLogger(__name__)

# Python ignores these for itself at start-up, and the supervisor ignores the terminal's job
# control signals (it hands the terminal over and takes it back). A child gets them back at
# the default unless the launcher inherited them ignored; for SIGPIPE and SIGXFSZ that cannot
# be known once Python has started, so they are always reset (as Popen's restore_signals does).
LAUNCHER_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTTOU, signal.SIGTTIN)


class InheritedSignals:
    """The signal state the launcher was started with, which its children start with too.

    ``mask``: the blocked set it inherited; ``ignored``: the signals it inherited
    as ignored (``nohup``; tini's ``sigconf`` test). Captured before the
    supervisor blocks anything.
    """

    def __init__(self, mask: Iterable[int], ignored: Iterable[int]) -> None:
        self.mask = frozenset(mask)
        self.ignored = frozenset(ignored)

    @classmethod
    def capture(cls) -> InheritedSignals:
        ignored = set()
        for sig in signal.valid_signals():
            try:
                if signal.getsignal(sig) == signal.SIG_IGN and sig not in (signal.SIGPIPE, signal.SIGXFSZ):
                    ignored.add(sig)
            except (ValueError, OSError):
                continue
        return cls(signal.pthread_sigmask(signal.SIG_BLOCK, []), ignored)

    def to_reset(self) -> list[signal.Signals]:
        """Signals the launcher ignores itself that the child must get back at the default."""
        return [s for s in LAUNCHER_IGNORED if s not in self.ignored]


class ChildProcess:
    """One child: start, signal, stop with a deadline, drain its group, exit code.

    ``tty_fd``: a terminal to hand to the child's group. ``inherited``: the
    signal mask and ignored signals the child starts with (the launcher's own).
    ``outputs``: file descriptors to put at the child's stdout (1) and stderr (2).
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], process: ProcessConfig, *,
                 tty_fd: int | None = None, inherited: InheritedSignals | None = None, clock: Clock = SYSTEM,
                 outputs: Mapping[int, int] | None = None) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.process = process
        self.tty_fd = tty_fd
        self.inherited = inherited or InheritedSignals((), ())
        self.outputs = dict(outputs or {})  # the child's fd 1 / 2 -> what to give it there (a masking pipe)
        self.clock = clock
        self.pid = 0  # also its process group: it leads a group of its own
        self.exit_code: int | None = None
        self.stopping = False  # stopped on purpose (restart, exit on rotation, shutdown)
        self._kill_at: float | None = None  # SIGKILL the group then (a stop, or the drain after exit)
        self._killed = False

    def __repr__(self) -> str:
        return f"ChildProcess({self.argv[0]!r}, pid={self.pid}, exit_code={self.exit_code})"

    def start(self) -> None:
        """Fork and exec; ``CommandError`` (126/127) when the command cannot run.

        Call from the supervisor's loop thread (PR_SET_PDEATHSIG is tied to the thread that forks).
        """
        self.pid = spawn(self.argv, self.env, tty_fd=self.tty_fd, reset_signals=self.inherited.to_reset(),
                         mask=self.inherited.mask, outputs=self.outputs)
        log.debug("started %s as pid %d", self.argv[0], self.pid)

    @property
    def running(self) -> bool:
        return self.pid > 0 and self.exit_code is None

    @property
    def done(self) -> bool:
        """Exited, and nothing is left of its group (or what was left got SIGKILL)."""
        return self.exit_code is not None and (self._killed or not group_alive(self.pid))

    def signal(self, sig: int, target: SignalTarget | None = None) -> bool:
        """Send ``sig`` to the child's group or the child alone: ``target``, else ``process.signal_target``
        (a forwarded signal's rule; the rotation signal passes ``watch.signal_target``)."""
        return self.running and send(self.pid, sig, group=(target or self.process.signal_target) == "group")

    def stop(self) -> None:
        """``stop_signal`` to the group now, SIGKILL after ``stop_timeout``; a second call changes nothing."""
        if self.stopping or self.pid <= 0:
            return
        self.stopping = True
        if self.exit_code is None:
            send(self.pid, self.process.stop_signal)
            self._kill_at = self.clock.monotonic() + self.process.stop_timeout

    def exited(self, status: int) -> None:
        """The reaper saw our process end with wait ``status``; drain what is left of the group."""
        self.exit_code = exit_code(status)
        log.debug("child %d exited with %d", self.pid, self.exit_code)
        if group_alive(self.pid):
            if self._kill_at is None:  # exited on its own: the rest of its group gets stop_signal too
                send(self.pid, self.process.stop_signal)
                self._kill_at = self.clock.monotonic() + self.process.stop_timeout
        else:
            self._kill_at = None

    def tick(self) -> None:
        """SIGKILL the group once its deadline passed (a stop not obeyed, or leftovers after exit)."""
        if self._kill_at is None:
            return
        if self.exit_code is not None and not group_alive(self.pid):
            self._kill_at = None
        elif self.clock.monotonic() >= self._kill_at:
            if self.exit_code is None:
                log.warning("%s did not stop within %gs: sending SIGKILL", self.argv[0], self.process.stop_timeout)
            send(self.pid, signal.SIGKILL)
            self._kill_at = None
            self._killed = self.exit_code is not None

    def next_deadline(self) -> float | None:
        return self._kill_at


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    tty_fd: int | None = None,
    reset_signals: Iterable[signal.Signals] = LAUNCHER_IGNORED,
    mask: Iterable[int] = (),
    outputs: Mapping[int, int] | None = None,
) -> int:
    """Fork and exec ``argv`` in a new process group; raise ``CommandError`` (126/127); return its pid.

    ``tty_fd``: a terminal to hand to the child's group. ``reset_signals``:
    signals set back to the default in the child (those caught by a handler
    are reset by execve itself). ``mask``: the child's blocked signals.
    ``outputs``: child fd -> our fd to put there (stdout and stderr through a pipe).
    Must be called from the supervisor's loop thread (PR_SET_PDEATHSIG is tied
    to the thread that forks).
    """
    from launcher.run.linux import PR_SET_PDEATHSIG, prctl  # ctypes: only `run` pays for it, and before the fork

    argv = list(argv)
    env = dict(env)
    reset = list(reset_signals)
    child_mask = list(mask)
    redirects = sorted((outputs or {}).items())
    parent = os.getpid()
    read_fd, write_fd = os.pipe()  # close-on-exec: EOF means exec succeeded
    # Block signals so none runs a Python handler in the child between fork and exec.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns on fork() in a threaded process; the child side below is
            # written for exactly that case (no locks, nothing resolved after the fork).
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, checked by the process tests
            _child_side(argv, env, tty_fd, reset, child_mask, redirects, parent, write_fd,
                        lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL))
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
        if code in (errno.ENOENT, errno.ENOTDIR):
            import shutil  # the error path only

            program = shutil.which(argv[0], path=env.get("PATH", os.defpath)) if "/" not in argv[0] else argv[0]
            raise CommandError(not_found_message(argv[0], program) if program else f"{argv[0]}: command not found", 127)
        raise CommandError(f"{argv[0]}: cannot execute: {os.strerror(code).lower()}", 126)
    return pid


def _child_side(
    argv: list[str], env: dict[str, str], tty_fd: int | None, reset: list[signal.Signals], mask: list[int],
    redirects: list[tuple[int, int]], parent: int, err_fd: int, set_pdeathsig: Callable[[], bool],
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
        for target, source in redirects:
            os.dup2(source, target)  # the pipe's close-on-exec end, as a plain fd 1 or 2
        for sig in reset:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # what the launcher inherited, not what it blocks
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


def send(pid: int, sig: int, group: bool = True) -> bool:
    """Send ``sig`` to the process group led by ``pid`` (or to ``pid`` alone); False if gone."""
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
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
