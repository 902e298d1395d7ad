"""Copying the child's output through a masker: one pipe, one destination, one thread.

``OutputPump`` copies one pipe to one destination on its own daemon
thread, blocked in ``poll`` when idle. The supervisor's loop thread never
touches child output, so forwarding signals and reaping never wait on a slow
reader or a scan; they share only the GIL, which a waiting thread gets within
the switch interval (5 ms) or one C call on one chunk (at most a few ms, on
the crowded path). Non-blocking I/O inside the
supervisor's loop would put every scan on that thread; one thread per stream
(not one for both) keeps a stalled destination of one stream from stalling
the other. The pump blocks every signal, so process-directed signals reach
the supervisor. A byte is held back at most ``LATENCY`` (50 ms): the added
latency bound, and why pieces of a value written further apart are not
caught. If the destination is gone (EPIPE), output is dropped and the pipe
still drained, so the child never blocks on it.

``make_pipe`` makes the pipe (close-on-exec, with a larger buffer where the
kernel allows); the supervisor hands its write end to the child as stdout or
stderr and gives the read end to an ``OutputPump``. See README "Output masking".
"""

from __future__ import annotations

import errno
import fcntl
import logging
import math
import os
import select
import signal
import threading
import time
from collections.abc import Iterable

from launcher.run.masking import CHUNK, LATENCY, Masker, Piece, StreamMasker

log = logging.getLogger(__name__)

_IOV_MAX = 1024  # iovecs per writev


class OutputPump:
    """Copies one pipe to one file descriptor through a ``StreamMasker``, on its own daemon thread.

    Owns ``read_fd`` (made non-blocking, closed by ``close``); ``dest_fd`` stays
    the caller's and is written as it is, blocking or not. Use: ``start()``,
    ``update(masker)`` on rotation, ``finish(timeout)`` once the child has
    exited, ``close()``. Output order is kept; a byte is held back at most
    ``latency`` seconds. When the destination is gone (EPIPE or another write error),
    output is dropped (counted in ``dropped``) and the pipe is still drained.
    """

    def __init__(
        self, read_fd: int, dest_fd: int, masker: Masker, name: str = "output", latency: float = LATENCY, chunk: int = CHUNK
    ) -> None:
        self.read_fd = read_fd
        self.dest_fd = dest_fd
        self.name = name  # for log messages: "stdout", "stderr"
        self.latency = latency
        self.chunk = chunk  # bytes per read
        self.dropped = 0  # bytes not written: the destination was gone, or masking failed
        self._stream = StreamMasker(masker)
        self._lock = threading.Lock()  # guards _next and _finish, set from other threads
        self._next: Masker | None = None
        self._finish: tuple[float, float, float | None] | None = None  # (asked at, quiet timeout, limit)
        self._dest_gone = False
        self._failed = False
        self._closed = False
        os.set_blocking(read_fd, False)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name=f"mask-{name}", daemon=True)

    @property
    def masker(self) -> Masker:
        """The masker in use: the last one given, re-anchored for this output."""
        return self._stream.masker

    def start(self) -> None:
        """Start copying."""
        self._thread.start()

    def update(self, masker: Masker) -> None:
        """Mask with ``masker`` from the next chunk read on (and what is held); safe from any thread."""
        with self._lock:
            self._next = masker

    def finish(self, timeout: float, limit: float | None = None) -> None:
        """Copy until end of file, or until ``timeout`` seconds pass without data; flush; stop.

        For after the child exited: a grandchild may still hold the pipe open,
        hence the timeout; ``limit`` also bounds the whole wait, for a writer
        that never pauses. Returns once the thread has written everything it
        read. A destination that accepts nothing keeps it waiting, as it would
        keep a child writing to it directly.
        """
        with self._lock:
            self._finish = (time.monotonic(), timeout, limit)
        self._wake()
        if self._thread.is_alive():
            self._thread.join()

    def close(self) -> None:
        """Stop (copying what the pipe already holds) and close the pipe's read end."""
        if self._closed:
            return
        if self._thread.is_alive():
            self.finish(0.0, 0.0)
        self._closed = True
        for fd in (self.read_fd, self._wake_r, self._wake_w):
            os.close(fd)

    # -- the thread -----------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:
            pass  # a wake-up is already pending

    def _run(self) -> None:
        # Process-directed signals must reach the supervisor's thread, never this one.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self._loop()
        except Exception:  # e.g. someone closed our descriptors: nothing left to copy
            log.exception("copying the child's %s stopped", self.name)

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self.read_fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        held_since: float | None = None  # when the oldest byte held back arrived
        last_data = time.monotonic()
        while True:
            stop_at = self._stop_at(last_data)
            now = time.monotonic()
            if stop_at is not None and now >= stop_at:
                for _ in range(64):  # what the pipe holds now; bounded, as the writer may never pause
                    if not self._copy():
                        break
                self._flush()
                return
            deadlines = [d for d in (stop_at, None if held_since is None else held_since + self.latency) if d is not None]
            wait = max(0, math.ceil((min(deadlines) - now) * 1000)) if deadlines else None
            ready = {fd for fd, _ in poller.poll(wait)}
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
            if self.read_fd in ready:
                size = self._copy()
                if size == 0:  # end of file: every writer has closed its end
                    self._flush()
                    return
                if size is not None:
                    last_data = time.monotonic()
                    pending = self._stream.pending
                    if not pending:
                        held_since = None
                    elif held_since is None or pending <= size:  # all held bytes are new
                        held_since = last_data
            if held_since is not None and time.monotonic() >= held_since + self.latency:
                self._flush()
                held_since = None

    def _stop_at(self, last_data: float) -> float | None:
        with self._lock:
            finish = self._finish
        if finish is None:
            return None
        asked, timeout, limit = finish
        quiet = max(asked, last_data) + timeout
        return quiet if limit is None else min(quiet, asked + limit)

    def _copy(self) -> int | None:
        """Read one chunk and write its masked bytes; its size, 0 at end of file, None if nothing was there."""
        with self._lock:
            masker, self._next = self._next, None
        if masker is not None and not self._failed:
            try:
                self._stream.update(masker)
            except Exception:
                self._fail(0)
        try:
            if self._failed:
                size = len(os.read(self.read_fd, self.chunk))
                self.dropped += size
                return size
            size = os.readv(self.read_fd, [self._stream.reserve(self.chunk)])
        except BlockingIOError:
            return None
        if size:
            try:
                pieces = self._stream.commit(size)
            except Exception:
                return self._fail(size)
            self._write(pieces)
        return size

    def _flush(self) -> None:
        if self._stream.pending and not self._failed:
            try:
                out = self._stream.flush()
            except Exception:
                self._fail(0)
                return
            self._write([out])

    def _fail(self, size: int) -> int:
        # A bug in masking must neither leak output nor stall the child on a full pipe: drop from now on.
        self._failed = True
        self.dropped += size
        log.exception("masking the child's %s failed: dropping it from now on", self.name)
        return size

    def _write(self, pieces: list[Piece]) -> None:
        pending = [p for p in pieces if len(p)]
        while pending:
            if self._dest_gone:
                self.dropped += sum(len(p) for p in pending)
                return
            try:
                written = os.writev(self.dest_fd, pending[:_IOV_MAX])
            except BlockingIOError:  # a non-blocking destination that is full: wait for room
                room = select.poll()
                room.register(self.dest_fd, select.POLLOUT)
                room.poll()
                continue
            except OSError as exc:
                self._dest_gone = True
                if exc.errno != errno.EPIPE:
                    log.warning("cannot write the child's masked %s (%s): dropping it", self.name, exc)
                continue
            done = 0
            while written >= len(pending[done]):
                written -= len(pending[done])
                done += 1
                if done == len(pending):
                    return
            pending = [memoryview(pending[done])[written:], *pending[done + 1:]]


def make_pipe(size: int = CHUNK) -> tuple[int, int]:
    """A close-on-exec pipe (read end, write end), its buffer raised to ``size`` bytes where allowed.

    A bigger buffer means fewer, larger reads for the pump and fewer stalls for
    the child; Linux caps it at /proc/sys/fs/pipe-max-size (1 MiB by default).
    """
    read_fd, write_fd = os.pipe()
    try:
        fcntl.fcntl(read_fd, fcntl.F_SETPIPE_SZ, size)
    except (OSError, AttributeError):
        pass  # over the limit, or not Linux: the default buffer works, only slower
    return read_fd, write_fd


class Masking:
    """The child's stdout and stderr through pumps that conceal secret values (``process.mask``).

    A stream that is a terminal stays attached to the child directly (a pipe
    would break its line editing and colours), with one warning that it is not
    masked. The pipes are made once and outlive restarts: each new child gets
    the same write ends. Every value ever seen stays masked (current and
    previous versions), so an old value printed late is concealed too.
    """

    def __init__(self, streams: tuple[int, ...] = (1, 2)) -> None:
        self._pumps: list[OutputPump] = []
        self._write_ends: dict[int, int] = {}
        self._values: set[str] = set()
        for fd in streams:
            name = {1: "stdout", 2: "stderr"}.get(fd, f"fd {fd}")
            if os.isatty(fd):
                log.warning("%s is a terminal: the child's output there is not masked (process.mask)", name)
                continue
            read_end, write_end = make_pipe()
            self._pumps.append(OutputPump(read_end, fd, Masker(()), name))
            self._write_ends[fd] = write_end

    def outputs(self) -> dict[int, int]:
        """The child's fd -> the pipe end to give it there."""
        return dict(self._write_ends)

    def update(self, values: Iterable[str]) -> None:
        """Mask ``values`` from now on, with every value masked before."""
        fresh = set(values) - self._values
        if fresh or not self._values:
            self._values |= fresh
            masker = Masker(self._values)
            for pump in self._pumps:
                pump.update(masker)

    def start(self) -> None:
        for pump in self._pumps:
            pump.start()

    def finish(self, timeout: float = 0.5, limit: float = 10.0) -> None:
        """After the last child: let go of our write ends, copy what is left, stop.

        Copying goes on until every writer closed the pipe, or ``timeout``
        passes without data (a grandchild may hold it open), at most ``limit``.
        """
        for fd in self._write_ends.values():
            os.close(fd)
        self._write_ends.clear()
        for pump in self._pumps:
            pump.finish(timeout, limit)
            if pump.dropped:
                log.warning("%d bytes of the child's %s could not be written", pump.dropped, pump.name)
            pump.close()
