"""``launcher redact``: copy files (or stdin) to stdout with the manifest's secret values concealed.

For CI logs and support bundles. The engine and the rules are ``run --mask``'s
(docs/guides/masking.md): every text of a secret a child of this manifest could see
(``launcher.resolve.visible``: fields, ``env_from``, templates' parts, strings inside
JSON), each line of a multi-line value, the JSON-escaped forms, and the hold
rule, so a live stream (``app | launcher redact``) shows a prompt within 50 ms
and never more than the first 3 characters of a value. The values are the
ones the secrets hold now: a log older than the last rotation may hold a
previous version, which only a running ``run --mask`` (that saw it) conceals.

Each input is its own stream (a value split across two files is not joined);
an input that cannot be opened is reported before any secret is fetched. When
the reader of our stdout goes away (``| head``), copying stops quietly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import stat
import time
from collections.abc import Iterable, Iterator, Mapping

from launcher.errors import AuthError, NotFoundError, UsageError, one_line
from launcher.run.masking import CHUNK, LATENCY, Masker, Piece, StreamMasker
from launcher.run.pump import hold_timer

log = logging.getLogger(__name__)


@contextlib.contextmanager
def opened(names: Iterable[str]) -> Iterator[list[tuple[str, int]]]:
    """(name, fd) of each input (``-`` or none: stdin), opened now; closed on leaving.

    Raises ``NotFoundError`` (66) for a file that does not exist, ``AuthError``
    (77) for one we may not read, ``UsageError`` (2) for a directory or any other
    file that cannot be opened, naming it.
    """
    inputs: list[tuple[str, int]] = []
    try:
        for name in list(names) or ["-"]:
            inputs.append((name, 0 if name == "-" else _open(name)))
        yield inputs
    finally:
        for _, fd in inputs:
            if fd != 0:
                os.close(fd)


def _open(name: str) -> int:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(f"{one_line(name)}: no such file") from None
    except PermissionError:
        raise AuthError(f"{one_line(name)}: permission denied") from None
    except OSError as exc:
        raise UsageError(f"{one_line(name)}: cannot read ({os.strerror(exc.errno or 0).lower()})") from None
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{one_line(name)}: is a directory")
    return fd


def redact(inputs: Iterable[tuple[str, int]], values: Mapping[tuple[str, ...], str], out_fd: int = 1,
           latency: float = LATENCY) -> None:
    """Copy each input to ``out_fd`` with ``values`` concealed, one stream after the other.

    Raises ``UsageError`` (2) when an input cannot be read (a read error other
    than the end of the file), naming it.
    """
    masker = Masker(set(values.values()))
    if not masker.patterns:
        log.warning("no secret values to conceal (no binding, or none of 4 characters or more): copying as it is")
    for name, fd in inputs:
        try:
            if not _copy(fd, out_fd, StreamMasker(masker), latency):
                return  # nobody reads our output any more
        except OSError as exc:
            raise UsageError(f"{'stdin' if fd == 0 else one_line(name)}: cannot read ({os.strerror(exc.errno or 0).lower()})") from None


def _copy(fd: int, out_fd: int, stream: StreamMasker, latency: float) -> bool:
    """Copy one input to its end through ``stream``, with the hold rule's timing; False if ``out_fd`` is gone."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    held_since: float | None = None
    while True:
        wait = None if held_since is None else max(0, round((held_since + latency - time.monotonic()) * 1000))
        if poller.poll(wait):  # readable (or its end): a read now does not block
            size = os.readv(fd, [stream.reserve(CHUNK)])
            if size == 0:
                return _write(out_fd, [stream.flush()])
            if not _write(out_fd, stream.commit(size)):
                return False
            held_since = hold_timer(stream, held_since, size, time.monotonic())
        elif held_since is not None:  # a short start of a value waited long enough
            held_since = None
            if not _write(out_fd, [stream.release()]):
                return False


def _write(fd: int, pieces: list[Piece]) -> bool:
    data = b"".join(pieces)
    try:
        while data:
            data = data[os.write(fd, data):]
    except BrokenPipeError:
        return False
    return True
