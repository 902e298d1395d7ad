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
the supervisor. The hold rule (``launcher.run.masking``): bytes that are the
start of a value of 4 characters or more wait for the bytes that decide;
anything else held is let through ``LATENCY`` (50 ms) after it arrived, the
added latency bound. If the destination is gone (EPIPE), output is dropped
and the pipe still drained, so the child never blocks on it.

``make_pipe`` makes the pipe (close-on-exec, with a larger buffer where the
kernel allows); the supervisor hands its write end to the child as stdout or
stderr and gives the read end to an ``OutputPump``; ``launcher.run.output_masking``
holds them for the supervisor. See docs/guides/masking.md.
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

from launcher.run.masking import CHUNK, LATENCY, Masker, Piece, StreamMasker

log = logging.getLogger(__name__)

_IOV_MAX = 1024  # iovecs per writev


class OutputPump:
    """Copies one pipe to one file descriptor through a ``StreamMasker``, on its own daemon thread.

    Owns ``read_fd`` (made non-blocking, closed by ``close``); ``dest_fd`` stays
    the caller's and is written as it is, blocking or not. Use: ``start()``,
    ``pause(n)`` and ``update(masker, n)`` on rotation, ``finish(timeout)`` once
    the child has exited, ``close()``. Output order is kept; bytes that are not
    the firm start of a value are held back at most ``latency`` seconds. When
    the destination is gone (EPIPE or another write error), output is dropped
    (counted in ``dropped``) and the pipe is still drained.
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
        self._lock = threading.Lock()  # guards what other threads set: _next, _generations, _finish
        self._next: tuple[Masker | None] | None = None  # the masker to switch to (None inside: masking failed)
        self._generations = (0, 0)  # (the masker generation output waits for, the one given): paused while the first is ahead
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

    def pause(self, generation: int) -> None:
        """Hold all output (read nothing) until ``update`` gives a masker of ``generation`` or later; safe from any thread."""
        with self._lock:
            wanted, given = self._generations
            self._generations = (max(wanted, generation), given)
        self._wake()

    def update(self, masker: Masker | None, generation: int = 0) -> None:
        """Mask with ``masker`` from now on (what is held included); safe from any thread.

        ``None``: building the masker failed, so output is dropped from now on
        (never written unmasked). ``generation`` ends a ``pause`` that asked for it.
        """
        with self._lock:
            self._next = (masker,)
            wanted, given = self._generations
            self._generations = (wanted, max(given, generation))
        self._wake()

    def finish(self, timeout: float, limit: float | None = None) -> None:
        """Copy until end of file, or until ``timeout`` seconds pass without data; flush; stop.

        For after the child exited: a grandchild may still hold the pipe open,
        hence the timeout; ``limit`` also bounds the whole wait, for a writer
        that never pauses. A paused pump first waits for its masker. Returns
        once the thread has written everything it read. A destination that
        accepts nothing keeps it waiting, as it would keep a child writing to
        it directly.
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
        poller.register(self._wake_r, select.POLLIN)
        reading = False  # read_fd registered with the poller
        held_since: float | None = None  # since when bytes that may be let through have been held
        last_data = time.monotonic()
        while True:
            paused = self._paused()
            if reading == paused:  # a paused pump reads nothing, so the child's next output waits in the pipe
                if paused:
                    poller.unregister(self.read_fd)
                else:
                    poller.register(self.read_fd, select.POLLIN)
                reading = not paused
            stop_at = None if paused else self._stop_at(last_data)
            if stop_at is not None and time.monotonic() >= stop_at:
                self._drain_and_flush()
                return
            release_at = None if paused or held_since is None else held_since + self.latency
            ready = {fd for fd, _ in poller.poll(_wait_ms(stop_at, release_at))}
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
                if not self._paused():
                    self._take_update()  # at once: the masker it replaces is freed now, not at the next output
            if self.read_fd in ready and not self._paused():
                size = self._copy()
                if size == 0:  # end of file: every writer has closed its end
                    self._flush()
                    return
                if size is not None:
                    last_data = time.monotonic()
                    held_since = hold_timer(self._stream, held_since, size, last_data)
            # held_since as updated by what was just read: bytes that became a firm start stay held
            if held_since is not None and time.monotonic() >= held_since + self.latency and not self._paused():
                self._take_update()
                self._release()
                held_since = None

    def _drain_and_flush(self) -> None:
        """Copy what the pipe holds now (bounded: the writer may never pause), then flush what is held."""
        for _ in range(64):
            if not self._copy():
                break
        self._flush()

    def _paused(self) -> bool:
        with self._lock:
            wanted, given = self._generations
        return wanted > given

    def _stop_at(self, last_data: float) -> float | None:
        with self._lock:
            finish = self._finish
        if finish is None:
            return None
        asked, timeout, limit = finish
        quiet = max(asked, last_data) + timeout
        return quiet if limit is None else min(quiet, asked + limit)

    def _take_update(self) -> None:
        with self._lock:
            update, self._next = self._next, None
        if update is None or self._failed:
            return
        masker = update[0]
        if masker is None:  # the masker could not be built: never write unmasked
            self._failed = True
            return
        try:
            self._stream.update(masker)
        except Exception:
            self._fail(0)

    def _copy(self) -> int | None:
        """Read one chunk and write its masked bytes; its size, 0 at end of file, None if nothing was there."""
        self._take_update()
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

    def _release(self) -> None:
        if self._stream.pending and not self._stream.firm and not self._failed:
            try:
                out = self._stream.release()
            except Exception:
                self._fail(0)
                return
            self._write([out])

    def _flush(self) -> None:
        self._take_update()
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


def _wait_ms(*deadlines: float | None) -> int | None:
    """Milliseconds until the soonest of ``deadlines`` (monotonic), for ``poll``; None without one."""
    due = [d for d in deadlines if d is not None]
    return max(0, math.ceil((min(due) - time.monotonic()) * 1000)) if due else None


def hold_timer(stream: StreamMasker, held_since: float | None, size: int, now: float) -> float | None:
    """After ``size`` new bytes at ``now``: since when the bytes held may be let through after ``LATENCY``.

    None when nothing is held, or when what is held is the firm start of a
    value (it waits for the bytes that decide, however long). Otherwise the
    time the oldest of them arrived, or ``now`` when all are new or were firm
    until now.
    """
    pending = stream.pending
    if not pending or stream.firm:
        return None
    if held_since is None or pending <= size:
        return now
    return held_since


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
