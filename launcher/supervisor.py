"""The event loop of ``launcher run``: one thread, woken by signals and a 1 s tick.

Recipe, after tini: resolve; write secret files; install handlers for every
forwardable signal (as PID 1 an unhandled signal is never delivered); become
subreaper; start the child in its own process group (giving it the terminal);
then loop: forward signals, reap every zombie, act on events posted by the
watcher thread, and when the main child exits, stop the rest of its group and
exit with the child's code. The watcher never touches the child; it only
posts events through ``post``.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import select
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from launcher import child as childmod
from launcher.child import Child
from launcher.config import Manifest
from launcher.files import SecretFiles
from launcher.reaper import become_subreaper, exit_code, reap_all
from launcher.resolver import Resolution, Resolver, child_environment, log_resolved
from launcher.watcher import Debounce, Outage, Rotation, StormGuard, Watcher, strongest_action

log = logging.getLogger(__name__)

TICK = 1.0
# Not forwarded: SIGCHLD is ours; the synchronous faults are the launcher's own
# (forwarding a real SIGSEGV would loop); SIGPIPE would come from a broken
# stderr of ours; SIGTTIN/SIGTTOU are job control of the launcher itself.
_NOT_FORWARDED = {
    signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGSEGV, signal.SIGBUS, signal.SIGILL,
    signal.SIGFPE, signal.SIGABRT, signal.SIGTRAP, signal.SIGSYS, signal.SIGPIPE, signal.SIGTTIN, signal.SIGTTOU,
}


def forwardable_signals() -> list[signal.Signals]:
    """Every catchable signal except those in ``_NOT_FORWARDED``."""
    out = []
    for sig in sorted(signal.valid_signals()):
        if not isinstance(sig, signal.Signals):
            try:
                sig = signal.Signals(sig)
            except ValueError:
                continue
        if sig not in _NOT_FORWARDED:
            out.append(sig)
    return out


class Supervisor:
    """Owns the child, the signals and ``waitpid(-1)``; see the module docstring."""

    def __init__(
        self,
        manifest: Manifest,
        argv: Sequence[str],
        files: SecretFiles,
        environ: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.manifest = manifest
        self.process = manifest.process
        self.argv = list(argv)
        self.files = files
        self.environ = dict(environ)
        self.clock = clock
        self.child: Child | None = None
        self.resolution: Resolution | None = None
        self._posts: queue.SimpleQueue[Rotation | Outage] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        self._post_r, self._post_w = os.pipe()
        for fd in (self._wake_r, self._wake_w, self._post_r, self._post_w):
            os.set_blocking(fd, False)
        self._forwarded = forwardable_signals()
        self._ignored_at_start: set[signal.Signals] = set()
        self._tty_fd: int | None = None
        self._own_pgrp = os.getpgrp()
        self._is_pid1 = os.getpid() == 1
        self._exit_code: int | None = None  # the main child's code, once it exited
        self._group_deadline: float | None = None  # SIGKILL the leftover group after this
        self._stop_deadline: float | None = None  # SIGKILL the child we are stopping after this
        self._after_stop: Callable[[], None] | None = None  # what to do once a stopped child is gone
        self._final: int | None = None  # the launcher's exit code, once decided
        self._leftover: Child | None = None  # the exited child whose group we are stopping
        # Rotation state: changes wait out the debounce, then the splay, then the storm guard.
        self.random = random.random
        self._debounce = Debounce(manifest.watch.debounce)
        self._pending: Resolution | None = None  # the newest resolution not yet acted on
        self._pending_names: set[str] = set()
        self._act_at: float | None = None  # end of the splay
        self._held_until: float | None = None  # the storm guard frees a restart slot then
        self._storm_guard = StormGuard(manifest.watch.max_restarts, manifest.watch.restart_window)
        self._hold_logged = False
        self._bindings = {b.name: b for b in manifest.env}

    # -- the watcher's way in ------------------------------------------------

    def post(self, event: Rotation | Outage) -> None:
        """Queue a watcher event for the loop thread; safe from any thread."""
        self._posts.put(event)
        try:
            os.write(self._post_w, b"!")
        except BlockingIOError:
            pass  # the loop already has a wake-up pending

    # -- setup ----------------------------------------------------------------

    def install_signals(self) -> None:
        """Handlers for every forwarded signal; bytes arrive on the wake-up pipe."""
        for sig in self._forwarded:
            if signal.getsignal(sig) == signal.SIG_IGN and sig not in (signal.SIGXFSZ,):
                self._ignored_at_start.add(sig)  # e.g. nohup: the child keeps it ignored too
                continue
            signal.signal(sig, _noop)
        signal.signal(signal.SIGCHLD, _noop)
        # The launcher hands the terminal over and takes it back: it must not stop itself doing so.
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        signal.signal(signal.SIGTTIN, signal.SIG_IGN)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _terminal(self) -> int | None:
        """stdin, when it is a terminal whose foreground is our group (not when in the background)."""
        try:
            if os.isatty(0) and os.tcgetpgrp(0) == self._own_pgrp:
                return 0
        except OSError:
            pass
        return None

    # -- main ------------------------------------------------------------------

    def run(self, resolution: Resolution) -> int:
        """Start the child with ``resolution`` and supervise until the launcher should exit."""
        self.install_signals()
        if not self._is_pid1:
            become_subreaper()
        self._tty_fd = self._terminal()
        self.resolution = resolution
        try:
            self._start()
            return self._loop()
        finally:
            self._restore_terminal()
            signal.set_wakeup_fd(-1)

    def child_env(self, resolution: Resolution) -> dict[str, str]:
        """Bindings with secret files written (atomically) and replaced by their paths."""
        values = dict(resolution.values)
        file_values = {k: v for k, v in values.items() if k in resolution.files}
        if file_values:
            paths, _ = self.files.write_all(file_values)
            values.update(paths)
        env = child_environment(self.environ, values, self.process)
        childmod.check_exec_limits(self.argv, env)
        return env

    def _start(self) -> None:
        assert self.resolution is not None
        env = self.child_env(self.resolution)
        reset = [s for s in self._forwarded if s not in self._ignored_at_start] + [signal.SIGTTOU, signal.SIGTTIN, signal.SIGCHLD]
        self.child = childmod.spawn(self.argv, env, tty_fd=self._tty_fd, reset_signals=reset)
        log.debug("started %s as pid %d", self.argv[0], self.child.pid)

    def _loop(self) -> int:
        while self._final is None:
            try:
                select.select([self._wake_r, self._post_r], [], [], self._timeout())
            except InterruptedError:  # pragma: no cover - PEP 475 retries select
                pass
            for sig in _drain(self._wake_r):
                self._on_signal(sig)
            _drain(self._post_r)
            while not self._posts.empty():
                self._on_event(self._posts.get())
            self._reap()
            self._check_deadlines()
        return self._final

    def _timeout(self) -> float:
        timers = (self._group_deadline, self._stop_deadline, self._debounce.deadline, self._act_at, self._held_until)
        deadlines = [d for d in timers if d is not None]
        if not deadlines:
            return TICK
        return max(0.0, min(TICK, min(deadlines) - self.clock()))

    # -- signals -----------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # reaping happens on every pass of the loop
        if self.child is None:
            if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP) and self._exit_code is None:
                # Between a stop and the next start (a restart): nothing to forward to, so leave.
                self._final = 128 + signum
            return
        if signum == signal.SIGCONT and self._tty_fd is not None:
            self._give_terminal()
        childmod.send(self.child, signum, group=self.process.signal_target == "group")

    # -- children ------------------------------------------------------------------

    def _reap(self) -> None:
        for pid, status in reap_all(untraced=self._tty_fd is not None):
            if self.child is None or pid != self.child.pid:
                continue  # an adopted orphan, or a stopped grandchild: reaped, nothing more
            if os.WIFSTOPPED(status):
                self._on_child_stopped()
                continue
            self._on_child_exit(exit_code(status))

    def _on_child_exit(self, code: int) -> None:
        assert self.child is not None
        gone = self.child
        self.child = None
        self._stop_deadline = None
        if self._after_stop is not None:  # we stopped it on purpose (restart, exit on rotation)
            then, self._after_stop = self._after_stop, None
            then()
            return
        log.debug("child %d exited with %d", gone.pid, code)
        self._exit_code = code
        if childmod.group_alive(gone.pgid):
            # The rest of its group gets stop_signal, then SIGKILL after stop_timeout.
            childmod.send(gone, self.process.stop_signal)
            self._group_deadline = self.clock() + self.process.stop_timeout
            self._leftover = gone
        else:
            self._final = code

    def _check_deadlines(self) -> None:
        now = self.clock()
        if self._group_deadline is not None and self._leftover is not None:
            if not childmod.group_alive(self._leftover.pgid):
                self._group_deadline = None
                self._final = self._exit_code
            elif now >= self._group_deadline:
                childmod.send(self._leftover, signal.SIGKILL)
                self._group_deadline = None
                self._final = self._exit_code
        if self._stop_deadline is not None and self.child is not None and now >= self._stop_deadline:
            log.warning("%s did not stop within %gs: sending SIGKILL", self.argv[0], self.process.stop_timeout)
            childmod.send(self.child, signal.SIGKILL)
            self._stop_deadline = None
        self._rotation_timers(now)

    def stop_child(self, then: Callable[[], None]) -> None:
        """Stop the child (stop_signal, stop_timeout, SIGKILL to the group), then call ``then``."""
        if self.child is None:
            then()
            return
        self._after_stop = then
        childmod.send(self.child, self.process.stop_signal)
        self._stop_deadline = self.clock() + self.process.stop_timeout

    # -- terminal job control ----------------------------------------------------------

    def _on_child_stopped(self) -> None:
        """Ctrl-Z stopped the child: stop ourselves too, so the shell sees the job stop."""
        if self._tty_fd is None or self._is_pid1:
            return
        self._restore_terminal()
        os.kill(os.getpid(), signal.SIGSTOP)
        # `fg` continued us: hand the terminal back and wake the child.
        self._give_terminal()
        if self.child is not None:
            childmod.send(self.child, signal.SIGCONT)

    def _give_terminal(self) -> None:
        if self._tty_fd is not None and self.child is not None:
            try:
                os.tcsetpgrp(self._tty_fd, self.child.pgid)
            except OSError:
                pass

    def _restore_terminal(self) -> None:
        if self._tty_fd is not None:
            try:
                os.tcsetpgrp(self._tty_fd, self._own_pgrp)
            except OSError:
                pass

    # -- watcher events (rotation) ---------------------------------------------------

    def _on_event(self, event: Rotation | Outage) -> None:
        if isinstance(event, Outage):
            if self.manifest.watch.on_error == "exit" and self._final is None and self._after_stop is None:
                code = event.error.exit_code if event.error.exit_code in (66, 69, 77) else 69
                log.error("stopping: %s (watch.on_error is exit)", event.error)
                self.stop_child(lambda: self._set_final(code))
            return
        assert self.resolution is not None
        old, new = self.resolution.values, event.resolution.values
        changed = {n for n in old.keys() | new.keys() if old.get(n) != new.get(n)}
        if not changed:
            log.debug("checked %s: new version, same environment: nothing to do", ", ".join(map(str, event.keys)))
            return
        self._pending = event.resolution
        self._pending_names |= changed
        if event.urgent:  # a lease is about to end: the child must not wait out a debounce
            self._debounce.clear()
            self._act_at = self.clock()
        else:
            self._debounce.change(self.clock(), changed)

    def _rotation_timers(self, now: float) -> None:
        if self._debounce.ready(now):
            self._debounce.clear()
            splay = self.manifest.watch.splay
            self._act_at = now + self.random() * splay if splay > 0 else now
        if self._act_at is not None and now >= self._act_at:
            self._act_at = None
            self._act()
        if self._held_until is not None and now >= self._held_until:
            self._held_until = None
            self._act()

    def _act(self) -> None:
        if self._pending is None or self._final is not None or self._after_stop is not None or self.child is None:
            return
        names = sorted(self._pending_names)
        action, fallbacks = strongest_action(self._pending_names, self._bindings, self.manifest.watch.on_change)
        for name in fallbacks:
            log.info("%s changed and is not a file binding: restarting instead of signalling", name)
        pending = self._pending
        fields = {"fields": {"action": action, "variables": names}}
        if action == "ignore":
            log.info("secrets changed: %s (on_change: ignore)", ", ".join(names), extra=fields)
        elif action == "signal":
            self.child_env(pending)  # rewrites the files atomically before the signal
            log.info("secrets changed: %s: sending %s", ", ".join(names), self.manifest.watch.signal.name, extra=fields)
            childmod.send(self.child, self.manifest.watch.signal, group=self.process.signal_target == "group")
        elif action == "exit":
            log.info("secrets changed: %s: stopping and exiting 75 (on_change: exit)", ", ".join(names), extra=fields)
            self.stop_child(lambda: self._set_final(75))
        else:
            free_at = self._storm_guard.take(self.clock())
            if free_at is not None:
                if not self._hold_logged:  # once per hold, however many changes merge into it
                    self._hold_logged = True
                    log.warning("restart held: %d restarts in the last %gs (watch.max_restarts); acting in %.0fs",
                                len(self._storm_guard.starts), self._storm_guard.window, free_at - self.clock())
                self._held_until = free_at
                return
            self._hold_logged = False
            log.info("secrets changed: %s: restarting %s", ", ".join(names), self.argv[0], extra=fields)
            self.stop_child(lambda: self._restart_with(pending))
        self.resolution = pending
        self._pending, self._pending_names = None, set()

    def _restart_with(self, resolution: Resolution) -> None:
        self.resolution = resolution
        self._start()
        if self._pending is not None:  # a newer change arrived while the old child was stopping
            self._act_at = self.clock()

    def _set_final(self, code: int) -> None:
        self._final = code


def _noop(signum: int, frame: Any) -> None:
    """Python-level handler; the C handler already wrote the signal to the wake-up pipe."""


def _drain(fd: int) -> bytes:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 512)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def supervise(manifest: Manifest, argv: Sequence[str], inline: bool = True) -> int:
    """``launcher run``: resolve all or nothing, start and supervise the child, return its code."""
    started = time.monotonic()
    resolver = Resolver(manifest)
    files = SecretFiles()
    watcher: Watcher | None = None
    try:
        resolution = resolver.resolve(os.environ, inline=inline)
        resolution.raise_for_errors()
        log_resolved(resolution, started, f"; starting {argv[0]}")
        supervisor = Supervisor(manifest, argv, files, os.environ)
        if manifest.watch.enabled:
            watcher = Watcher(manifest, resolver, os.environ, supervisor.post, inline)
            watcher.track(resolution)
            watcher.start()
        return supervisor.run(resolution)
    finally:
        if watcher is not None:
            watcher.stop()
        files.remove()
        resolver.close()
