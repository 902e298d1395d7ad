"""Files that must be regular files: opened without blocking, judged on the descriptor, never cut.

A template is read and the audit trail appended to; both are named by the
user, so either may turn out to be something else. A FIFO blocks ``open`` (no
writer, or no reader) or ``read`` forever, a device may never end, and a
symbolic link at the audit path lets whoever placed it choose which file the
launcher appends to (as root, any file). So these files are opened with
``O_NONBLOCK`` (``open`` of a FIFO returns or fails at once) and ``O_NOCTTY``,
the audit file with ``O_NOFOLLOW`` too, and judged by ``fstat`` on the
descriptor just opened: a stat before the open could be answered by another
file than the one opened.

Errors are ``NotRegularError`` (a ``ValueError`` whose message says what the
path is, in plain words) and ``TooLargeError``, besides the ``OSError`` of
``open`` itself (a missing file, no permission); a path holding a NUL byte is
``ValueError``, as from ``os.open``.
"""

from __future__ import annotations

import errno
import os
import stat

from launcher.manifest.textfile import MAX_MANIFEST_BYTES

MAX_REGULAR_BYTES = MAX_MANIFEST_BYTES
"""Templates and the files the launcher writes hold at most this much (docs/guides/files-and-templates.md)."""
_LIMIT_TEXT = f"{MAX_REGULAR_BYTES // (1024 * 1024)} MiB"

_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class NotRegularError(ValueError):
    """The path names something other than a regular file (a FIFO, a device, a directory, a link)."""


class TooLargeError(ValueError):
    """A regular file larger than the limit: refused whole, never cut."""


def kind_of(mode: int) -> str:
    """What a file of ``mode`` is, in words: ``a FIFO``, ``a directory``, ``a regular file``..."""
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
                        (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def read_regular(path: str) -> bytes:
    """The whole content of the regular file ``path``, at most ``MAX_REGULAR_BYTES``.

    Never blocks on a FIFO or reads a device. Raises ``NotRegularError``,
    ``TooLargeError`` (the file is larger than that, even if it grew
    while being read), ``OSError`` from ``open``/``read``, ``ValueError`` for a NUL byte.
    """
    fd = os.open(path, _READ)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularError(f"is {kind_of(info.st_mode)}, not a regular file")
        if info.st_size > MAX_REGULAR_BYTES:
            raise TooLargeError(f"is {info.st_size} bytes, over the limit of {_LIMIT_TEXT}")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_REGULAR_BYTES:
            chunk = os.read(fd, MAX_REGULAR_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_REGULAR_BYTES:
            raise TooLargeError(f"is over the limit of {_LIMIT_TEXT} (it grew while being read)")
        return b"".join(chunks)
    finally:
        os.close(fd)


def open_append(path: str, mode: int = 0o600) -> int:
    """A descriptor appending to the regular file ``path`` (created with ``mode``); never through a link.

    Raises ``NotRegularError`` for a symbolic link (dangling or not), a FIFO,
    a device or a directory, ``OSError`` when it cannot be opened.
    """
    try:
        fd = os.open(path, _APPEND, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularError("is a symbolic link (the audit file is never opened through a link)") from None
        if exc.errno == errno.ENXIO:  # O_WRONLY|O_NONBLOCK on a FIFO that no one reads
            raise NotRegularError("is a FIFO (named pipe), not a regular file") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularError(f"is {kind_of(info.st_mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd

