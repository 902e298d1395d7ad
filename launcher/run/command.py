"""Starting a command: finding it (126/127 before any secret is fetched), execve's limits, ``exec``.

``run`` and ``exec`` both find the command on the child's PATH first, and check the
environment against execve's limits before starting it (78, naming the binding), so
a failure is reported before any secret is fetched or any child runs. ``exec_command``
replaces the launcher with the command.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from typing import NoReturn

from launcher.errors import CommandError, ManifestError
from launcher.model.config import Manifest
from launcher.resolve.resolution import Resolution
from launcher.run.environment import ChildEnvironment, binding_error

log = logging.getLogger(__name__)

# Linux refuses one argv/env string longer than MAX_ARG_STRLEN (32 pages).
MAX_ARG_STRLEN = 32 * 4096
_POINTER = 8


def find_command(name: str, env: Mapping[str, str]) -> str:
    """The path ``execvpe`` would run for ``name``, searched in ``env``'s PATH.

    Raises ``CommandError``: 127 when nothing is found, 126 when only
    something that cannot be executed (a directory, a file without +x) is.
    """
    if not name:
        raise CommandError("'': command not found", 127)
    candidates = [name] if "/" in name else [os.path.join(d, name) for d in os.get_exec_path(dict(env))]
    denied = False
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        denied = denied or os.path.exists(path)
    if denied:
        raise CommandError(f"{name}: permission denied (not an executable file)", 126)
    raise CommandError(f"{name}: command not found", 127)


def exec_command(program: str, argv: list[str], env: dict[str, str]) -> NoReturn:
    """``os.execve``; 127 when the program (or its interpreter) is missing, 126 when it cannot run."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    # Python ignores SIGPIPE and SIGXFSZ for itself, and execve keeps what is ignored: the
    # command must start with them at the default, as under `run` (and Popen's restore_signals).
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execve(program, argv, env)
    except FileNotFoundError:
        raise CommandError(not_found_message(argv[0], program), 127) from None
    except PermissionError:
        raise CommandError(f"{argv[0]}: permission denied (not executable)", 126) from None
    except OSError as exc:
        if exc.errno == errno.E2BIG:
            raise ManifestError("the environment is too large for execve; use `file: true` for large values") from None
        raise CommandError(f"{argv[0]}: cannot execute ({os.strerror(exc.errno or 0)})", 126) from None


def exec_resolved(program: str, argv: list[str], environment: ChildEnvironment, resolution: Resolution) -> NoReturn:
    """``launcher exec``'s end: the child's environment built from ``resolution`` (secret files
    written), checked against execve's limits, then ``exec_command``. Nothing removes the files
    afterwards (they stay for the child, in the stable directory ``environment.files`` uses);
    if the exec fails they are removed."""
    try:
        env = environment.build(resolution)
        check_exec_limits(argv, env, resolution.where_of())
        if environment.files.directory is not None:
            log.warning("secret files left in %s for the child (the next exec of this manifest replaces them)",
                        environment.files.directory)
        exec_command(program, argv, env)
    except BaseException:
        environment.files.remove()
        raise


def not_found_message(name: str, program: str) -> str:
    """Why execve said "no such file" for a file that was found: usually its ``#!`` interpreter."""
    try:
        with open(program, "rb") as fh:
            first = fh.readline(256)
    except OSError:
        return f"{name}: command not found"
    if first.startswith(b"#!"):
        interpreter = first[2:].strip().split(b" ")[0].decode("utf-8", "replace")
        return f"{name}: bad interpreter {interpreter} (from its #! line): no such file"
    return f"{name}: cannot execute: a file it needs (its loader or interpreter) does not exist"


def no_core_dumps() -> None:
    """Start children with core dumps off (``RLIMIT_CORE`` 0; the hard limit is left alone, so a
    program may turn them on for itself): a crashing child would otherwise write the secrets in
    its memory and environment to disk. ``process.core_dumps: true`` skips this."""
    import resource  # only run and exec pay for it

    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))


def check_exec_limits(argv: Sequence[str], env: Mapping[str, str], where_of: Mapping[str, str] | None = None) -> None:
    """Raise ``ManifestError`` (78) before execve would fail with E2BIG or refuse a NUL byte.

    Names the offending variable (with its binding's file:line from
    ``where_of`` when it is a binding) and suggests ``file: true``.
    """
    where_of = where_of or {}
    biggest_name, biggest = "", 0
    total = 0
    for name, value in env.items():
        if "\x00" in value:  # execve ends a string at NUL: the child would get a cut value, so Python refuses it
            raise binding_error(f"{name} holds a NUL byte, which an environment variable cannot carry; use `file: true`",
                                name, where_of)
        size = len(name.encode()) + 1 + len(value.encode("utf-8", "surrogateescape")) + 1
        if size > MAX_ARG_STRLEN:
            raise binding_error(f"{name} is {size} bytes, over the {MAX_ARG_STRLEN}-byte limit of one environment string; use `file: true`",
                                name, where_of)
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
        raise binding_error(
            f"the environment and arguments take {total} bytes, over ARG_MAX ({arg_max}); "
            f"the largest variable is {biggest_name} ({biggest} bytes): use `file: true` for it",
            biggest_name, where_of,
        )


def exec_refusals(resolution: Resolution, manifest: Manifest, inherited: Mapping[str, str]) -> Resolution:
    """``resolution`` with what ``exec`` would refuse added, so ``check`` exits as ``exec`` would.

    ``exec`` refuses a ``path:`` it may not write (``ChildEnvironment.check_files``), a
    file over 4 MiB, a NUL byte in a variable and an environment too large for execve;
    the binding at fault becomes an ``invalid`` row with its file:line. Nothing is
    written (secret files get stand-in paths).
    """
    try:
        environment = ChildEnvironment(manifest, inherited)
        environment.check_files(resolution)
        check_exec_limits(["command"], environment.stand_in(resolution), resolution.where_of())
    except ManifestError as exc:
        return resolution.with_failure(exc)
    return resolution
