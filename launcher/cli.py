"""The command line: the one place that configures logging and exits.

Every ``LauncherError`` is caught in ``main`` and becomes a one-line message
and its exit code; anything else is a bug (exit 70, traceback at debug only).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
import types
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

import click

from launcher import logs
from launcher.errors import LauncherError, errors_of
from launcher.events import Broadcast, EventSink
from launcher.manifest import DEFAULT_MANIFEST, find
from launcher.manifest.envfile import with_env_files
from launcher.model.config import Manifest, listen_address
from launcher.model.vocabulary import ACTIONS
from launcher.resolve.bindings import BindingResult
from launcher.resolve.resolution import Resolution
from launcher.resolve.resolver import Resolver, inline_bindings, log_resolved
from launcher.run.command import exec_refusals, exec_resolved, find_command, no_core_dumps
from launcher.run.environment import ChildEnvironment, env_values
from launcher.run.files import stable_files
from launcher.run.linux import make_undumpable
from launcher.sources.registry import described

if TYPE_CHECKING:
    from launcher.observe.observers import Observers  # imported when something asks to observe

log = logging.getLogger("launcher")

AUDIT_VARIABLE = "LAUNCHER_AUDIT"  # names the audit trail; wins over the manifest's audit.path

_COMMAND_SETTINGS: dict[str, Any] = {"allow_interspersed_args": False}


def load(manifest_path: str | None, env_files: tuple[str, ...] = ()) -> Manifest:
    """The named manifest (78 when missing), else ./launcher.yaml when it exists, else none;
    with the ``--env-file`` files after its own ``env_files`` (78 for one missing, unless NAME?)."""
    return with_env_files(find(manifest_path), env_files)


def resolve(manifest: Manifest, no_inline: bool, observers: Observing, strict: bool = True) -> tuple[Resolver, Resolution]:
    """Resolve everything once; the verdict is ``Resolution.failure``.

    With ``strict`` (run, exec, env) a failure is raised: one failing binding's own
    error, or every failing binding in manifest order with the exit code of the most
    fundamental. ``check`` passes ``strict=False`` and reports them itself. The
    observers hear of every read, and of each failing binding (``error``) when strict.
    """
    started = time.monotonic()
    resolver = Resolver(manifest, events=observers.events)
    try:
        resolution = resolver.resolve(os.environ, inline=not no_inline)
    except BaseException:
        resolver.close()
        raise
    failure = resolution.failure()
    if failure is not None and strict:
        resolver.close()
        observers.binding_failure(resolution.results, failure)
        raise failure
    if failure is None:
        log_resolved(resolution, started)
    return resolver, resolution


def manifest_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--no-inline", is_flag=True, help="Do not resolve references found in the environment.")(fn)
    fn = click.option("--env-file", "env_files", multiple=True, metavar="PATH",
                      help="A dotenv file of bindings (references, templates, literals); repeatable; PATH? if optional.")(fn)
    fn = click.option(
        "-m", "--manifest", "manifest_path", envvar="LAUNCHER_MANIFEST", type=str,
        help="Manifest file (default: ./launcher.yaml when it exists).",
    )(fn)
    return global_options(fn)


class Observing:
    """The observers of one command, made (``launcher.observe.observers.Observers``) only once
    something asks to observe: ``--audit`` / ``$LAUNCHER_AUDIT`` at once (so even a manifest that
    fails to load is audited), else the manifest's ``audit.path`` or metrics when ``open`` reads
    them. A command nobody observes never loads ``launcher.observe``; its events go nowhere."""

    def __init__(self, audit: str | None, reports_exit: bool) -> None:
        self.events = Broadcast()  # what the resolver and the rest tell; the real observers listen to it
        self._reports_exit = reports_exit
        self._real: Observers | None = self._make(audit) if audit else None
        self.reported: BaseException | None = None  # a resolution failure already reported per binding

    def _make(self, audit: str | None = None) -> Observers:
        from launcher.observe.observers import Observers

        return Observers(audit, reports_exit=self._reports_exit, events=self.events)

    def open(self, manifest: Manifest, metrics: str | None = None, *, serve: bool = False) -> EventSink:
        """Open what ``manifest`` asks for (see ``Observers.open``); the sink to pass on."""
        if self._real is None and (manifest.audit.path or (serve and (metrics or manifest.metrics.listen))):
            self._real = self._make()
        if self._real is not None:
            self._real.open(manifest, metrics, serve=serve)
        return self.events

    def binding_failure(self, results: Iterable[BindingResult], failure: LauncherError) -> None:
        self.reported = failure
        if self._real is not None:
            self._real.binding_failure(results, failure)

    def __enter__(self) -> Observing:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None) -> None:
        if self._real is not None:
            self._real.__exit__(kind, exc, tb)


def audit_option(reports_exit: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--audit PATH`` (env ``LAUNCHER_AUDIT``; it wins over ``audit.path``). The command gets
    ``observers`` (``Observing``) in its place; leaving them writes the ``error`` and ``exit``
    events only the command knows about (``reports_exit=False``: it reports its own exit)."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def command(*args: Any, audit: str | None, **kwargs: Any) -> Any:
            with Observing(audit, reports_exit) as observers:
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


SHELLS = ("bash", "zsh", "fish")  # what click completes
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


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the version, and from a bundle ``(bundle, glibc >= 2.xx)`` (docs/guides/images-without-python.md)."""
    if value and not ctx.resilient_parsing:
        from launcher.bundle import version_text  # only --version pays for it

        click.echo(version_text())
        ctx.exit()


# The sources named in the help are the registry's: a backend added there is listed here too.
@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             help=f"Put secrets from {described()} into a process's environment, and supervise it.")
@click.option("--log-level", envvar="LAUNCHER_LOG_LEVEL", default="info", show_default=True, type=_LEVELS)
@click.option("--log-format", envvar="LAUNCHER_LOG_FORMAT", default="text", show_default=True, type=_FORMATS)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version (and, from a bundle, its C library floor) and exit.")
@click.pass_context
def cli(ctx: click.Context, log_level: str, log_format: str) -> None:
    ctx.meta["launcher.logging"] = {"log_level": log_level.lower(), "log_format": log_format.lower()}
    logs.configure(log_level.lower(), log_format.lower())


@cli.command(context_settings=_COMMAND_SETTINGS)
@manifest_options
@click.option("--watch/--no-watch", default=None, help="Watch secrets for rotation (default: watch.enabled).")
@click.option("--on-change", type=click.Choice(ACTIONS), help="Action on rotation (overrides watch.on_change).")
@click.option("--mask/--no-mask", default=None, help="Conceal secret values in the child's output (default: process.mask).")
@click.option("--metrics", metavar="ADDR", callback=_listen, help="Serve /metrics and /healthz on HOST:PORT (default: metrics.listen).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@audit_option(reports_exit=False)  # the supervisor writes the exit event
def run(manifest_path: str | None, no_inline: bool, env_files: tuple[str, ...], watch: bool | None, on_change: str | None,
        mask: bool | None, metrics: str | None, command: tuple[str, ...], observers: Observing) -> int:
    """Resolve, start COMMAND as a supervised child, exit with its code."""
    from launcher.run.supervisor import supervise

    manifest = load(manifest_path, env_files)
    if watch is not None or on_change is not None:
        w = manifest.watch
        action = ACTIONS[ACTIONS.index(on_change)] if on_change else w.on_change  # click's choice, as the vocabulary's word
        manifest = replace(manifest, watch=replace(w, enabled=w.enabled if watch is None else watch, on_change=action))
    if mask is not None:
        manifest = replace(manifest, process=replace(manifest.process, mask=mask))
    events = observers.open(manifest, metrics, serve=True)  # a port in use is 78 before any secret is fetched
    argv = list(command)
    find_command(argv[0], ChildEnvironment(manifest, os.environ).preview())  # 126/127 before any secret is fetched
    if not manifest.process.core_dumps:
        no_core_dumps()
    resolver, resolution = resolve(manifest, no_inline, observers)
    return supervise(manifest, argv, resolver, resolution, inline=not no_inline, events=events)


@cli.command("exec", context_settings=_COMMAND_SETTINGS)
@manifest_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@audit_option()
def exec_(manifest_path: str | None, no_inline: bool, env_files: tuple[str, ...], command: tuple[str, ...],
          observers: Observing) -> int:
    """Resolve, then replace this process with COMMAND (no supervisor left)."""
    manifest = load(manifest_path, env_files)
    observers.open(manifest)
    argv = list(command)
    files = stable_files(os.environ, manifest.process.files_dir, manifest.path)  # nothing removes them after execve
    environment = ChildEnvironment(manifest, os.environ, files)
    program = find_command(argv[0], environment.preview())  # 126/127 before any secret is fetched
    if not manifest.process.core_dumps:
        no_core_dumps()
    resolver, resolution = resolve(manifest, no_inline, observers)
    resolver.close()
    exec_resolved(program, argv, environment, resolution)


@cli.command()
@manifest_options
@click.option("--offline", is_flag=True, help="Validate only: no authentication, no network.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one object per binding and a summary, for programs (docs/check-format.schema.json).")
@audit_option()
def check(manifest_path: str | None, no_inline: bool, env_files: tuple[str, ...], offline: bool, fmt: str,
          observers: Observing) -> int:
    """Validate the manifest and fetch every secret; print NAME / REF / VERSION / STATUS."""
    from launcher.output import check_json

    try:
        return _check(load(manifest_path, env_files), no_inline, offline, fmt, observers)
    except LauncherError as exc:
        if fmt == "json" and exc is not observers.reported:  # a failure of the bindings is printed with them already
            click.echo(check_json([], manifest=manifest_path, exit_code=exc.exit_code, problems=[str(e) for e in errors_of(exc)]))
        raise


def _check(manifest: Manifest, no_inline: bool, offline: bool, fmt: str, observers: Observing) -> int:
    """``check`` proper; ``check`` prints a failure that belongs to no binding as JSON when asked."""
    from launcher.output import check_json, check_table, offline_summary

    observers.open(manifest)
    if offline:
        inline = [] if no_inline else inline_bindings(os.environ, manifest)
        count = len(manifest.bindings) + len(inline) + len(manifest.env_from)
        if fmt == "json":
            click.echo(check_json([], manifest=manifest.path, exit_code=0, offline=count))
        else:
            click.echo(offline_summary(manifest.path, count, len(manifest.sources)))
        return 0
    resolver, resolution = resolve(manifest, no_inline, observers, strict=False)
    resolver.close()
    if not resolution.errors:
        resolution = exec_refusals(resolution, manifest, os.environ)
    extra = None
    if manifest.watch.enabled:
        from launcher.resolve.schedule import next_check

        extra = {r.name: next_check(r.keys, resolution.secrets, manifest.watch) for r in resolution.results if r.status == "ok"}
    failure = resolution.failure()
    if fmt == "json":
        click.echo(check_json(resolution.results, extra, manifest=manifest.path, exit_code=failure.exit_code if failure else 0))
    else:
        click.echo(check_table(resolution.results, extra))
    if failure is not None:
        observers.binding_failure(resolution.results, failure)
        raise failure
    return 0


@cli.command()
@manifest_options
@click.option("--format", "fmt", type=click.Choice(["dotenv", "json", "shell"]), default="dotenv", show_default=True)
@audit_option()
def env(manifest_path: str | None, no_inline: bool, env_files: tuple[str, ...], fmt: str, observers: Observing) -> int:
    """Print the resolved bindings (values included: the explicit "show me" command)."""
    from launcher.output import format_env

    manifest = load(manifest_path, env_files)
    observers.open(manifest)
    resolver, resolution = resolve(manifest, no_inline, observers)
    resolver.close()
    text = format_env(env_values(manifest, resolution, os.environ), fmt)
    if text:
        click.echo(text)
    return 0


@cli.command()
@manifest_options
@click.argument("files", nargs=-1, metavar="[FILE]...")
@audit_option()
def redact(manifest_path: str | None, no_inline: bool, env_files: tuple[str, ...], files: tuple[str, ...], observers: Observing) -> int:
    """Copy FILEs (or stdin) to stdout with the manifest's secret values concealed, as `run --mask` does."""
    from launcher.run import redact as redacting

    with redacting.opened(files) as inputs:  # 66 / 77 / 2 before any secret is fetched
        manifest = load(manifest_path, env_files)
        observers.open(manifest)
        resolver, resolution = resolve(manifest, no_inline, observers)
        resolver.close()
        redacting.redact(inputs, resolution.secret_values())
    return 0


@cli.command()
@click.argument("path", default=DEFAULT_MANIFEST, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: str, force: bool) -> int:
    """Write a commented starter manifest (and demo secrets for its file source)."""
    from launcher.manifest.starter import write_starter

    write_starter(path, force)
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


@cli.command()
def schema() -> int:
    """Print the manifest's JSON Schema (for editors: docs/manifest.schema.json is this output)."""
    from launcher.manifest.schema import schema_text

    click.echo(schema_text(), nl=False)
    return 0


@cli.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> int:
    """Print the shell completion script for SHELL (bash: eval "$(launcher completion bash)")."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # SHELLS are click's own
    click.echo(completer(cli, {}, "launcher", "_LAUNCHER_COMPLETE").source())
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the CLI and turn its outcome into an exit code."""
    # First: the launcher will hold secret values and its own token for its whole run, and its
    # environment holds that token already (docs/reference/security.md).
    make_undumpable()
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
        logs.report(exc)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except Exception:
        log.debug("traceback", exc_info=True)
        logs.report(LauncherError("internal error (a bug: please report it; --log-level debug shows the traceback)"))
        code = 70
    sys.exit(code if isinstance(code, int) else 0)
