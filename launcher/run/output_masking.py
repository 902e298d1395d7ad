"""What the supervisor holds for ``process.mask``: the pipes, the pumps, the versions of the values, the masker builder.

``Masking`` makes one pipe per output stream that is not a terminal (one for
both when they are the same file), hands their write ends to each child, and
gives each update of the values to a thread of its own that folds them into
the versions kept (``launcher.run.mask_versions``) and builds the new masker, so the
supervisor's loop never waits for a build (2 s for 30,000 values before) while
signals queue. Until the new masker is in place the pumps hold all output: a
child started after an update never has a new value written in clear. See
docs/guides/masking.md.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping

from launcher.resolve.visible import Slot
from launcher.run.mask_versions import Versions
from launcher.run.masking import Masker
from launcher.run.pump import OutputPump, make_pipe

log = logging.getLogger(__name__)


class Masking:
    """The child's stdout and stderr through pumps that conceal secret values (``process.mask``).

    A stream that is a terminal stays attached to the child directly (a pipe
    would break its line editing and colours), with one warning that it is not
    masked. When stdout and stderr are the same file (same device and inode:
    ``>log 2>&1``, one pipe, one socket), the child gets one pipe for both,
    copied by one pump, so their order is the order the child wrote them in.
    The pipes are made once and outlive restarts: each new child gets the same
    write ends. What is masked: the current and the two previous versions of
    each text the child can see (``launcher.run.mask_versions``); each ``update``
    folds new values in and builds the new masker on a thread of its own.
    """

    def __init__(self, streams: tuple[int, ...] = (1, 2)) -> None:
        self._pumps: list[OutputPump] = []
        self._write_ends: dict[int, int] = {}
        self._versions = Versions()
        self._lock = threading.Lock()  # guards the queue below, and _closing
        self._more = threading.Condition(self._lock)
        self._queued: list[Callable[[], Mapping[Slot, str]]] = []
        self._submitted = 0  # the generation of the last update asked for
        self._closing = False
        self._builder: threading.Thread | None = None
        self.built = (0, 0.0)  # (generation, seconds) of the last masker built: for tests and benchmarks
        by_file: dict[tuple[int, int], OutputPump] = {}
        for fd in streams:
            name = {1: "stdout", 2: "stderr"}.get(fd, f"fd {fd}")
            if os.isatty(fd):
                log.warning("%s is a terminal: the child's output there is not masked (process.mask)", name)
                continue
            identity = _file_of(fd)
            same = by_file.get(identity) if identity is not None else None
            if same is not None:  # one pipe for both: the child's interleaving is kept
                same.name += f" and {name}"
                self._write_ends[fd] = self._write_ends[same.dest_fd]
                continue
            read_end, write_end = make_pipe()
            pump = OutputPump(read_end, fd, Masker(()), name)
            self._pumps.append(pump)
            self._write_ends[fd] = write_end
            if identity is not None:
                by_file[identity] = pump

    def outputs(self) -> dict[int, int]:
        """The child's fd -> the pipe end to give it there."""
        return dict(self._write_ends)

    def update(self, values: Callable[[], Mapping[Slot, str]]) -> None:
        """Mask ``values()`` too from now on, with the versions kept from before; returns at once.

        ``values`` is called, and the masker built, on the masking thread, so
        the caller (the supervisor's loop) stays free for signals; output is
        held from this call until that masker is in place, so a child started
        after it never has a new value written in clear.
        """
        if not self._pumps:
            return  # both streams are terminals: nothing to mask
        with self._lock:  # one step: whatever the builder takes, every update up to its generation is in it
            self._submitted += 1
            for pump in self._pumps:
                pump.pause(self._submitted)
            self._queued.append(values)
            self._more.notify()
            if self._builder is None:
                self._builder = threading.Thread(target=self._build, name="mask-build", daemon=True)
                self._builder.start()

    def _build(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            with self._lock:
                while not self._queued and not self._closing:
                    self._more.wait()
                if not self._queued:
                    return
                batch, self._queued = self._queued, []
                generation = self._submitted
            started = time.monotonic()
            masker: Masker | None
            try:
                for values in batch:
                    self._versions.add(values())
                masker = Masker(self._versions.texts())
            except Exception:
                log.error("building the output masker failed (a bug: please report it): the child's output is dropped from now on")
                log.debug("traceback", exc_info=True)
                masker = None
            self.built = (generation, time.monotonic() - started)
            if masker is not None:
                log.debug("output masking: %d patterns for %d values and their versions, built in %.0f ms",
                          len(masker.patterns), len(self._versions), self.built[1] * 1000)
            for pump in self._pumps:
                pump.update(masker, generation)

    def start(self) -> None:
        for pump in self._pumps:
            pump.start()

    def finish(self, timeout: float = 0.5, limit: float = 10.0) -> None:
        """After the last child: let go of our write ends, copy what is left, stop.

        Copying goes on until every writer closed the pipe, or ``timeout``
        passes without data (a grandchild may hold it open), at most ``limit``
        (after the masker being built, if any, is in place).
        """
        for fd in set(self._write_ends.values()):
            os.close(fd)
        self._write_ends.clear()
        with self._lock:
            self._closing = True
            self._more.notify()
        for pump in self._pumps:
            pump.finish(timeout, limit)
            if pump.dropped:
                log.warning("%d bytes of the child's %s could not be written", pump.dropped, pump.name)
            pump.close()


def _file_of(fd: int) -> tuple[int, int] | None:
    """(device, inode) of what ``fd`` is open on; None when it is not open."""
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return info.st_dev, info.st_ino
