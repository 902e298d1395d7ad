"""The event loop of ``launcher run``: one thread, woken by signals, watcher events and a 1 s tick.

Recipe, after tini: block every signal the launcher handles and wait for them
with ``sigtimedwait`` (so none is lost, whatever mask the parent gave us, and
PID 1 receives them all); become subreaper; start the child in its own process
group (giving it the terminal) with the signal mask and ignored signals the
launcher inherited; then loop: forward each signal another process sent, reap
every zombie (a stopped child stops the launcher too), hand watcher events to
the rotation policy and carry out what it decides, and when the main child
exits, let its group drain and exit with the child's code. The pieces: ``ChildProcess`` owns one child, ``policy.decide``
decides about rotations, ``ChildEnvironment`` builds what the child sees; the
watcher thread only posts events through ``post``. See docs/architecture.md.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from launcher.clock import SYSTEM, Clock
from launcher.errors import LauncherError, RotationExitError
from launcher.events import NOTHING, Event, EventSink
from launcher.model.config import Manifest
from launcher.resolve.resolution import Resolution
from launcher.resolve.resolver import Resolver
from launcher.resolve.watcher import Outage, Rotation, Watcher
from launcher.run import policy
from launcher.run.child import ChildProcess, InheritedSignals
from launcher.run.command import check_exec_limits
from launcher.run.environment import ChildEnvironment
from launcher.run.reaper import become_subreaper, reap_all
from launcher.run.terminal import Terminal

if TYPE_CHECKING:
    from launcher.run.output_masking import Masking

if sys.version_info >= (3, 11):
    from typing import assert_never
else:  # pragma: no cover
    from typing_extensions import assert_never

log = logging.getLogger(__name__)

TICK = 1.0
# Not forwarded: SIGCHLD is ours (and wakes the loop for watcher events);
# SIGTTIN/SIGTTOU are the launcher's own job control (ignored: it hands the
# terminal over and takes it back). Fault signals and SIGPIPE are forwarded
# when another process sent them (docs/architecture.md, "Contract notes"): one the launcher raised itself
# (its own broken stderr) carries its own pid and is dropped; a real fault of
# its own is never queued, the kernel ends the launcher at once.
_NOT_FORWARDED = {signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGTTIN, signal.SIGTTOU}
_LEAVE_WITHOUT_CHILD = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
# si_code of a signal sent by a process (kill, sigqueue, tgkill), not by the kernel.
_SENT = (0, -1, -6)


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

    def __init__(self, manifest: Manifest, argv: Sequence[str], environment: ChildEnvironment, clock: Clock = SYSTEM,
                 events: EventSink = NOTHING) -> None:
        self.manifest = manifest
        self.events = events
        self.argv = list(argv)
        self.environment = environment
        self.clock = clock
        self.rules = policy.rules_for(manifest)
        self.child: ChildProcess | None = None  # the current child (None between a stop and a start)
        self.leftovers: list[ChildProcess] = []  # stopped children whose groups are still draining
        self.current: Resolution | None = None  # what the current child was started with
        self.state: policy.State[Resolution] = policy.State()
        self.restart_with: Resolution | None = None  # start a child with this once the old one is gone
        self.leave_with: int | None = None  # exit with this once the child is gone (exit on rotation, a failure)
        self.final: int | None = None  # the launcher's exit code, once decided
        self._posts: queue.SimpleQueue[Rotation | Outage] = queue.SimpleQueue()
        self.inherited = InheritedSignals.capture()  # before anything below changes the mask
        # Waited for: every forwardable signal not inherited as ignored (those stay ignored,
        # for the launcher and its child alike), and SIGCHLD.
        self._waited = {s for s in forwardable_signals() if s not in self.inherited.ignored} | {signal.SIGCHLD}
        self._loop_thread = threading.get_ident()
        self.terminal = Terminal()
        self._pid = os.getpid()
        self._is_pid1 = self._pid == 1
        self.masking: Masking | None = None  # the child's output through masking pumps (process.mask)

    # -- the watcher's way in ------------------------------------------------

    def post(self, event: Rotation | Outage) -> None:
        """Queue a watcher event for the loop thread; safe from any thread.

        The loop waits in ``sigtimedwait``, so the wake-up is a SIGCHLD to its
        thread: SIGCHLD is waited for anyway, and is never forwarded.
        """
        self._posts.put(event)
        signal.pthread_kill(self._loop_thread, signal.SIGCHLD)

    # -- setup ----------------------------------------------------------------

    def block_signals(self) -> None:
        """Block every waited-for signal in this thread; threads started later inherit the mask.

        A signal blocked in every thread stays pending until ``sigtimedwait``
        takes it: none is lost, and as PID 1 even one at its default disposition
        is received (the kernel drops those only when they are not blocked).
        """
        signal.pthread_sigmask(signal.SIG_BLOCK, self._waited)
        # The launcher hands the terminal over and takes it back: it must not stop itself doing so.
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        signal.signal(signal.SIGTTIN, signal.SIG_IGN)

    # -- main ------------------------------------------------------------------

    def run(self, resolution: Resolution, ready: Callable[[], None] | None = None) -> int:
        """Start the child with ``resolution`` and supervise until the launcher should exit.

        ``ready`` runs once the signals are blocked (the watcher starts there,
        so its thread inherits the blocked mask).
        """
        self._loop_thread = threading.get_ident()
        self.block_signals()
        if self.manifest.process.mask:
            from launcher.run.output_masking import Masking  # only a masking run pays for the matcher

            self.masking = Masking()  # its pump threads start with every signal blocked
            self.masking.update(resolution.secret_values)  # computed and built on the masking thread
            self.masking.start()
        if ready is not None:
            ready()
        if not self._is_pid1:
            become_subreaper()
        self.terminal.attach()
        try:
            self._start(resolution)
            return self._loop()
        finally:
            self.terminal.restore()
            if self.masking is not None:
                self.masking.finish(limit=self.manifest.process.stop_timeout)

    def _start(self, resolution: Resolution) -> None:
        env = self.environment.build(resolution)
        check_exec_limits(self.argv, env, resolution.where_of())
        outputs = self.masking.outputs() if self.masking is not None else None
        child = ChildProcess(self.argv, env, self.manifest.process, tty_fd=self.terminal.fd, inherited=self.inherited, clock=self.clock,
                             outputs=outputs)
        child.start()
        self.child, self.current = child, resolution
        self.events.emit(Event("child_started", child_pid=child.pid))

    def _loop(self) -> int:
        while self.final is None:
            info = signal.sigtimedwait(self._waited, self._timeout())
            while info is not None:  # everything pending, before reaping
                self._on_signal(info)
                info = signal.sigtimedwait(self._waited, 0)
            while not self._posts.empty():
                self._on_event(self._posts.get())
            self._reap()
            self._tick()
        return self.final

    def _timeout(self) -> float:
        children = [c for c in (self.child, *self.leftovers) if c is not None]
        timers = [self.state.next_timer(), *(c.next_deadline() for c in children)]
        deadlines = [d for d in timers if d is not None]
        if not deadlines:
            return TICK
        return max(0.0, min(TICK, min(deadlines) - self.clock.monotonic()))

    # -- signals -----------------------------------------------------------------

    def _on_signal(self, info: signal.struct_siginfo) -> None:
        signum = info.si_signo
        if signum == signal.SIGCHLD:
            return  # reaping happens on every pass of the loop
        if info.si_pid == self._pid and info.si_code in _SENT:
            log.debug("not forwarding %s: raised by the launcher itself", signal.Signals(signum).name)
            return
        if self.child is None:
            if signum in _LEAVE_WITHOUT_CHILD and self.leave_with is None:
                # Between a stop and the next start (a restart): nothing to forward to, so leave.
                self.final = 128 + signum
            return
        if signum == signal.SIGCONT and self.terminal.fd is not None:
            self._give_terminal()
        self.child.signal(signum)

    # -- children ------------------------------------------------------------------

    def _reap(self) -> None:
        for pid, status in reap_all(untraced=True):
            if self.child is None or pid != self.child.pid:
                continue  # an adopted orphan, or a stopped grandchild: reaped, nothing more
            if os.WIFSTOPPED(status):
                self._on_child_stopped()
                continue
            gone, self.child = self.child, None
            gone.exited(status)
            self.events.emit(Event("child_exited", child_pid=gone.pid, reason=str(gone.exit_code)))
            self._after_exit(gone)

    def _after_exit(self, gone: ChildProcess) -> None:
        """The current child exited: restart, leave, or (it exited on its own) drain and leave with its code."""
        if not gone.done:
            self.leftovers.append(gone)
        if self.restart_with is not None and self.leave_with is None:
            resolution, self.restart_with = self.restart_with, None
            self._carry_out(self._start, resolution)
            self._decide(policy.Restarted())
        elif self.leave_with is None:
            self.leave_with = gone.exit_code if gone.exit_code is not None else 0

    def _tick(self) -> None:
        for child in (self.child, *self.leftovers):
            if child is not None:
                child.tick()
        self.leftovers = [c for c in self.leftovers if not c.done]
        self._decide(policy.Tick(self.clock.random()))
        if self.leave_with is not None and self.child is None and not self.leftovers:
            self.final = self.leave_with

    def _stop_and_leave(self, code: int) -> None:
        """Stop the child (stop_signal, stop_timeout, SIGKILL) and exit with ``code`` once it is gone."""
        self.leave_with = code
        self.restart_with = None
        if self.child is not None:
            self.child.stop()

    # -- terminal job control ----------------------------------------------------------

    def _on_child_stopped(self) -> None:
        """The child stopped (Ctrl-Z, SIGTSTP, SIGSTOP): stop ourselves too, with or without a
        terminal, so the shell (or whatever started us) sees the job stop; SIGCONT resumes both.
        PID 1 cannot be stopped: it waits for the child to be continued."""
        if self._is_pid1:
            return
        self.terminal.restore()
        os.kill(os.getpid(), signal.SIGSTOP)
        # `fg` continued us: hand the terminal back and wake the child.
        self._give_terminal()
        if self.child is not None:
            self.child.signal(signal.SIGCONT)

    def _give_terminal(self) -> None:
        if self.child is not None:
            self.terminal.give(self.child.pid)

    # -- watcher events (rotation) ---------------------------------------------------

    def _on_event(self, event: Rotation | Outage) -> None:
        if isinstance(event, Outage):
            if self.manifest.watch.on_error == "exit" and self.leave_with is None:
                log.error("stopping: %s (watch.on_error is exit)", event.error)
                self.events.emit(Event("error", outcome=event.error.status, reason=str(event.error.exit_code)))
                self._stop_and_leave(event.error.exit_code)
            return
        old = self.state.payload or self.current
        assert old is not None
        new = event.resolution
        changed = new.changed_names(old)
        if not changed:
            log.debug("checked %s: new version, same environment: nothing to do", ", ".join(map(str, event.keys)))
            return
        for key in event.keys:
            secret = new.secrets.get(key)
            self.events.emit(Event("rotation", source=key.source, ref=str(key), version=secret.version if secret else None,
                                   bindings=tuple(sorted(changed)), child_pid=self.child.pid if self.child else None))
        self._decide(policy.Changed(changed, new, event.urgent))

    def _decide(self, event: policy.Changed[Resolution] | policy.Tick | policy.Restarted) -> None:
        if self.leave_with is not None:
            return
        decided: list[policy.Act[Resolution] | policy.Hold] = []

        def decide() -> None:
            self.state, found = policy.decide(self.state, event, self.clock.monotonic(), self.rules)
            decided.extend(found)

        self._carry_out(decide)  # a bug in the policy stops the child as any failure does, never kills the loop
        for action in decided:
            if isinstance(action, policy.Hold):
                log.warning("restart held: %d restarts in the last %gs (watch.max_restarts); acting in %.0fs",
                            action.restarts, self.rules.restart_window, action.until - self.clock.monotonic())
            else:
                self._carry_out(self._act, action)

    def _act(self, act: policy.Act[Resolution]) -> None:
        if self.masking is not None:  # before the child can see (and print) a new value
            self.masking.update(act.payload.secret_values)  # output is held until the new masker is in place
        names = ", ".join(act.names)
        fields = {"fields": {"action": act.action, "variables": list(act.names)}}
        for name in act.fell_back:
            log.info("%s changed and is not a file binding: restarting instead of signalling", name)
        match act.action:
            case "ignore":
                log.info("secrets changed: %s (on_change: ignore)", names, extra=fields)
                self.current = act.payload
            case "signal":
                self.environment.bindings(act.payload)  # rewrites the files atomically before the signal
                sig = self.manifest.watch.signal
                log.info("secrets changed: %s: sending %s", names, sig.name, extra=fields)
                if self.child is not None:
                    self.events.emit(Event("signal", bindings=act.names, child_pid=self.child.pid, reason=sig.name))
                    self.child.signal(sig, self.manifest.watch.signal_target)
                self.current = act.payload
                self._decide(policy.Restarted())
            case "exit":
                code = RotationExitError.exit_code
                log.info("secrets changed: %s: stopping and exiting %d (on_change: exit)", names, code, extra=fields)
                self._stop_and_leave(code)
            case "restart":
                log.info("secrets changed: %s: restarting %s", names, self.argv[0], extra=fields)
                self.restart_with = act.payload
                if self.child is not None:
                    self.events.emit(Event("restart", bindings=act.names, child_pid=self.child.pid, reason="rotation"))
                    self.child.stop()  # the new child starts once this one is reaped (_after_exit)
            case _:
                assert_never(act.action)

    def _carry_out(self, action: Callable[..., None], *args: Any) -> None:
        """Run ``action(*args)``; if it fails, stop the child (stop_signal, stop_timeout) and leave.

        A ``LauncherError`` (the command vanished: 127; a file cannot be written)
        leaves with its own code, anything else is a bug: 70.
        """
        try:
            action(*args)
        except LauncherError as exc:
            log.error("%s", exc)
            self.events.emit(Event("error", outcome=exc.status, reason=str(exc.exit_code)))
            self._stop_and_leave(exc.exit_code)
        except Exception:
            log.error("internal error while acting on a rotation (a bug: please report it; --log-level debug shows the traceback)")
            log.debug("traceback", exc_info=True)
            self._stop_and_leave(70)


def supervise(manifest: Manifest, argv: Sequence[str], resolver: Resolver, resolution: Resolution, inline: bool = True,
              events: EventSink = NOTHING) -> int:
    """``launcher run``: start and supervise the child with ``resolution``, return its code.

    Takes ownership of ``resolver`` (its sources, cache and stop flag): the watcher
    keeps using it, and it is closed on the way out. Leaving never waits on a
    request in flight (a check stuck on a stalled server).
    """
    environment = ChildEnvironment(manifest, os.environ)
    watcher: Watcher | None = None
    code: int | None = None
    try:
        supervisor = Supervisor(manifest, argv, environment, events=events)
        if manifest.watch.enabled:
            kept = "the child keeps its last good values" if manifest.watch.on_error == "keep" else "stopping the child (watch.on_error)"
            watcher = Watcher(manifest, resolver, os.environ, supervisor.post, inline, events=events, kept=kept)
            watcher.track(resolution)
        code = supervisor.run(resolution, ready=watcher.start if watcher is not None else None)
        return code
    finally:
        resolver.stopping.set()
        if watcher is not None:
            watcher.stop()
        environment.files.remove()
        resolver.close()  # may revoke leases (revoke_on_exit): their events come before the exit's
        if code is not None:
            events.emit(Event("exit", reason=str(code)))
