"""The command line: the one place that configures logging and exits.

Every ``LauncherError`` is caught in ``main`` and becomes a one-line message
and its exit code; anything else is a bug (exit 70, traceback at debug only).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import click

from launcher import logs
from launcher.bundle import version_message
from launcher.child import check_exec_limits, not_found_message
from launcher.config import ON_CHANGE_ACTIONS, Manifest, listen_address
from launcher.environment import ChildEnvironment
from launcher.errors import (
    CommandError,
    CompoundError,
    LauncherError,
    ManifestError,
    UsageError,
    WouldOverwriteError,
    errors_of,
)
from launcher.events import NOTHING, EventSink
from launcher.files import SecretFiles, stable_env_dir
from launcher.manifest import DEFAULT_MANIFEST, find
from launcher.observe import AUDIT_VARIABLE, Observers, binding_errors
from launcher.output import STARTER_MANIFEST, STARTER_SECRETS, check_json, check_table, dotenv_differs, format_env
from launcher.resolver import Resolution, Resolver, inline_bindings, log_resolved

log = logging.getLogger("launcher")

_COMMAND_SETTINGS: dict[str, Any] = {"allow_interspersed_args": False}


def load(manifest_path: str | None) -> Manifest:
    """The named manifest (78 when missing), else ./launcher.yaml when it exists, else none."""
    return find(manifest_path)


def resolve(manifest: Manifest, no_inline: bool, strict: bool = True, events: EventSink = NOTHING) -> tuple[Resolver, Resolution]:
    """Resolve everything once: the one place that turns failed bindings into an error.

    With ``strict`` (run, exec, env) any failure raises ``CompoundError``: every
    failing binding in manifest order, the exit code of the most fundamental.
    ``check`` passes ``strict=False`` and reports them itself. ``events`` hears of every
    read, and of each failing binding (``error``) when strict.
    """
    started = time.monotonic()
    resolver = Resolver(manifest, events=events)
    try:
        resolution = resolver.resolve(os.environ, inline=not no_inline)
    except BaseException:
        resolver.close()
        raise
    if resolution.errors and strict:
        resolver.close()
        binding_errors(events, resolution.results)
        raise CompoundError(resolution.errors_in_order())
    if not resolution.errors:
        log_resolved(resolution, started)
    return resolver, resolution


def manifest_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--no-inline", is_flag=True, help="Do not resolve references found in the environment.")(fn)
    fn = click.option(
        "-m", "--manifest", "manifest_path", envvar="LAUNCHER_MANIFEST", type=str,
        help="Manifest file (default: ./launcher.yaml when it exists).",
    )(fn)
    return global_options(fn)


def audit_option(reports_exit: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--audit PATH`` (env ``LAUNCHER_AUDIT``; it wins over ``audit.path``). The command gets
    ``observers`` (``launcher.observe``) in its place; leaving them writes the ``error`` and
    ``exit`` events only the command knows about (``reports_exit=False``: it reports its own exit)."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def command(*args: Any, audit: str | None, **kwargs: Any) -> Any:
            with Observers(audit, reports_exit=reports_exit) as observers:
                return fn(*args, observers=observers, **kwargs)

        return click.option("--audit", envvar=AUDIT_VARIABLE, type=str, metavar="PATH",
                            help="Append the audit trail (JSON lines) to PATH (default: audit.path).")(command)

    return decorate


def _listen(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            listen_address(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)
_FORMATS = click.Choice(["text", "json"], case_sensitive=False)


def _relog(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """A global option given after the command: reconfigure logging with it."""
    if value is None:
        return
    settings = ctx.find_root().meta.setdefault("launcher.logging", {})
    settings[param.name or ""] = value.lower()
    logs.configure(settings.get("log_level", "info"), settings.get("log_format", "text"))


def global_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--log-level`` and ``--log-format`` after the command too (``launcher run --log-level debug -- app``)."""
    fn = click.option("--log-format", type=_FORMATS, default=None, expose_value=False, is_eager=True, callback=_relog,
                      help="Same as the global option.")(fn)
    fn = click.option("--log-level", type=_LEVELS, default=None, expose_value=False, is_eager=True, callback=_relog,
                      help="Same as the global option.")(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", envvar="LAUNCHER_LOG_LEVEL", default="info", show_default=True, type=_LEVELS)
@click.option("--log-format", envvar="LAUNCHER_LOG_FORMAT", default="text", show_default=True, type=_FORMATS)
@click.version_option(package_name="secret-launcher", prog_name="launcher", message=version_message())
@click.pass_context
def cli(ctx: click.Context, log_level: str, log_format: str) -> None:
    """Put Vault / OpenBao and Azure Key Vault secrets into a process's environment."""
    ctx.meta["launcher.logging"] = {"log_level": log_level.lower(), "log_format": log_format.lower()}
    logs.configure(log_level.lower(), log_format.lower())


@cli.command(context_settings=_COMMAND_SETTINGS)
@manifest_options
@click.option("--watch/--no-watch", default=None, help="Watch secrets for rotation (default: watch.enabled).")
@click.option("--on-change", type=click.Choice(ON_CHANGE_ACTIONS), help="Action on rotation (overrides watch.on_change).")
@click.option("--mask/--no-mask", default=None, help="Conceal secret values in the child's output (default: process.mask).")
@click.option("--metrics", metavar="ADDR", callback=_listen, help="Serve /metrics and /healthz on HOST:PORT (default: metrics.listen).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@audit_option(reports_exit=False)  # the supervisor writes the exit event
def run(manifest_path: str | None, no_inline: bool, watch: bool | None, on_change: str | None, mask: bool | None,
        metrics: str | None, command: tuple[str, ...], observers: Observers) -> int:
    """Resolve, start COMMAND as a supervised child, exit with its code."""
    from launcher.supervisor import supervise

    manifest = load(manifest_path)
    if watch is not None or on_change is not None:
        w = manifest.watch
        manifest = replace(manifest, watch=replace(w, enabled=w.enabled if watch is None else watch, on_change=on_change or w.on_change))
    if mask is not None:
        manifest = replace(manifest, process=replace(manifest.process, mask=mask))
    events = observers.open(manifest, metrics, serve=True)  # a port in use is 78 before any secret is fetched
    argv = list(command)
    find_command(argv[0], ChildEnvironment(manifest, os.environ).preview())  # 126/127 before any secret is fetched
    resolver, resolution = resolve(manifest, no_inline, events=events)
    return supervise(manifest, argv, resolver, resolution, inline=not no_inline, events=events)


@cli.command("exec", context_settings=_COMMAND_SETTINGS)
@manifest_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@audit_option()
def exec_(manifest_path: str | None, no_inline: bool, command: tuple[str, ...], observers: Observers) -> int:
    """Resolve, then replace this process with COMMAND (no supervisor left)."""
    manifest = load(manifest_path)
    events = observers.open(manifest)
    argv = list(command)
    environment = ChildEnvironment(manifest, os.environ)
    program = find_command(argv[0], environment.preview())  # 126/127 before any secret is fetched
    resolver, resolution = resolve(manifest, no_inline, events=events)
    resolver.close()
    try:
        env = environment.build(resolution)
        check_exec_limits(argv, env, resolution.where_of())
        if environment.files.directory is not None:
            log.warning("secret files left in %s for the child: nothing removes them after exec", environment.files.directory)
        exec_command(program, argv, env)
    except BaseException:
        environment.files.remove()
        raise


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


@cli.command()
@manifest_options
@click.option("--offline", is_flag=True, help="Validate only: no authentication, no network.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one object per binding and a summary, for programs (docs/check-format.schema.json).")
@audit_option()
def check(manifest_path: str | None, no_inline: bool, offline: bool, fmt: str, observers: Observers) -> int:
    """Validate the manifest and fetch every secret; print NAME / REF / VERSION / STATUS."""
    try:
        return _check(manifest_path, no_inline, offline, fmt, observers)
    except LauncherError as exc:
        if fmt == "json" and not isinstance(exc, CompoundError):  # a CompoundError's bindings are printed already
            click.echo(check_json([], manifest=manifest_path, exit_code=exc.exit_code, problems=[str(e) for e in errors_of(exc)]))
        raise


def _check(manifest_path: str | None, no_inline: bool, offline: bool, fmt: str, observers: Observers) -> int:
    """``check`` proper; ``check`` prints a failure that belongs to no binding as JSON when asked."""
    manifest = load(manifest_path)
    events = observers.open(manifest)
    if offline:
        inline = [] if no_inline else inline_bindings(os.environ, manifest)
        count = len(manifest.env) + len(inline) + len(manifest.env_from)
        if fmt == "json":
            click.echo(check_json([], manifest=manifest.path, exit_code=0, offline=count))
        else:
            click.echo(f"{manifest.path or 'no manifest'}: valid ({_plural(count, 'binding')}, {_plural(len(manifest.sources), 'source')})")
        return 0
    resolver, resolution = resolve(manifest, no_inline, strict=False, events=events)
    resolver.close()
    if not resolution.errors:
        _check_exec_limits(resolution, manifest)
    extra = None
    if manifest.watch.enabled:
        from launcher.watcher import next_check

        extra = {r.name: next_check(r.keys, resolution.secrets, manifest.watch) for r in resolution.results if r.status == "ok"}
    failure = CompoundError(resolution.errors_in_order()) if resolution.errors else None
    if fmt == "json":
        click.echo(check_json(resolution.results, extra, manifest=manifest.path, exit_code=failure.exit_code if failure else 0))
    else:
        click.echo(check_table(resolution.results, extra))
    if failure is not None:
        binding_errors(events, resolution.results)
        raise failure
    return 0


def _check_exec_limits(resolution: Resolution, manifest: Manifest) -> None:
    """`check` exits with the code `exec` would: `exec` refuses a ``path:`` in a directory that
    does not exist and an oversized environment. The binding at fault becomes an ``invalid``
    row with its file:line."""
    try:
        environment = ChildEnvironment(manifest, os.environ)
        environment.check_paths()
        check_exec_limits(["command"], environment.stand_in(resolution), resolution.where_of())
    except ManifestError as exc:
        resolution.errors.append(exc)
        at_fault = (exc.field or "").split(".")[1:2]  # env.NAME or env.NAME.path
        resolution.results[:] = [replace(r, status="invalid", version=None, error=exc) if [r.name] == at_fault else r
                                 for r in resolution.results]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@cli.command()
@manifest_options
@click.option("--format", "fmt", type=click.Choice(["dotenv", "json", "shell"]), default="dotenv", show_default=True)
@audit_option()
def env(manifest_path: str | None, no_inline: bool, fmt: str, observers: Observers) -> int:
    """Print the resolved bindings (values included: the explicit "show me" command)."""
    manifest = load(manifest_path)
    resolver, resolution = resolve(manifest, no_inline, events=observers.open(manifest))
    resolver.close()
    values = dict(resolution.values)
    if resolution.files:
        # One stable directory per user and manifest, overwritten on each call: the
        # printed paths must outlive this process, and a new directory per call would pile up.
        directory = stable_env_dir(os.environ, manifest.process.files_dir, manifest.path)
        values = ChildEnvironment(manifest, os.environ, SecretFiles(directory=directory)).bindings(resolution)
        log.debug("secret files written to %s (reused by every `launcher env` of this manifest)", directory)
    if fmt == "dotenv":
        odd = [name for name, value in values.items() if dotenv_differs(value)]
        if odd:
            log.warning("python-dotenv reads %s differently from sh (a single quote, backslashes or ${...}): "
                        "use --format json for programs", ", ".join(odd))
    text = format_env(values, fmt)
    if text:
        click.echo(text)
    return 0


@cli.command()
@click.argument("path", default=DEFAULT_MANIFEST, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: str, force: bool) -> int:
    """Write a commented starter manifest (and demo secrets for its file source)."""
    target = Path(path)
    try:
        # "x" refuses an existing file without a check-then-write race.
        with open(target, "w" if force else "x", encoding="utf-8") as fh:
            fh.write(STARTER_MANIFEST)
    except FileExistsError:
        raise WouldOverwriteError(f"{path} already exists (use --force to overwrite)") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    secrets = target.parent / "secrets.dev.yaml"
    try:
        # Demo secrets, but secrets-shaped: private from the first byte.
        fd = os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise UsageError(f"cannot write {secrets}: {exc.strerror}") from None
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(STARTER_SECRETS)
    click.echo(f"wrote {path}; try: launcher check -m {path}")
    return 0


@cli.command()
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing DEST/launcher.")
def copy(dest: str, force: bool) -> int:
    """Copy the bundle this runs from into DEST/launcher/ (for an init container to stage)."""
    from launcher.bundle.copy import copy_bundle
    click.echo(f"copied the launcher to {copy_bundle(dest, force)}")
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the CLI and turn its outcome into an exit code."""
    try:
        code = cli.main(args=argv, prog_name="launcher", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.Abort:
        code = 130
    except LauncherError as exc:
        _report(exc)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except Exception:
        log.debug("traceback", exc_info=True)
        _report(LauncherError("internal error (a bug: please report it; --log-level debug shows the traceback)"))
        code = 70
    sys.exit(code if isinstance(code, int) else 0)


def _report(exc: LauncherError) -> None:
    """Every problem on its own line (one error, each failing binding, each manifest problem)."""
    if not logging.getLogger().handlers:
        logs.configure("info", os.environ.get("LAUNCHER_LOG_FORMAT", "text"))
    problems = errors_of(exc)
    for problem in problems:
        fields = {"exit_code": exc.exit_code} if problem is problems[-1] and _json_logs() else None
        log.error("%s", problem.message, extra={"fields": fields} if fields else None)


def _json_logs() -> bool:
    return any(isinstance(h.formatter, logs.JsonFormatter) for h in logging.getLogger().handlers)


