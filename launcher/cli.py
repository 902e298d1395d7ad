"""The command line: the one place that configures logging and exits.

Every ``LauncherError`` is caught in ``main`` and becomes a one-line message
and its exit code; anything else is a bug (exit 70, traceback at debug only).
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import click

from launcher import logs
from launcher.child import check_exec_limits
from launcher.config import ON_CHANGE_ACTIONS, Manifest
from launcher.errors import CommandError, LauncherError, ManifestError, UsageError, WouldOverwriteError, most_fundamental
from launcher.files import SecretFiles, private_base_dir
from launcher.manifest import load_manifest
from launcher.output import STARTER_MANIFEST, STARTER_SECRETS, check_table, format_env
from launcher.resolver import Resolution, Resolver, child_environment, inline_bindings, log_resolved

log = logging.getLogger("launcher")

DEFAULT_MANIFEST = "launcher.yaml"
_COMMAND_SETTINGS: dict[str, Any] = {"allow_interspersed_args": False}


def load(manifest_path: str | None) -> Manifest:
    """The named manifest (78 when missing), else ./launcher.yaml when it exists, else none."""
    if manifest_path is not None:
        if not os.path.exists(manifest_path):
            raise ManifestError("manifest not found", where=manifest_path)
        return load_manifest(manifest_path)
    if os.path.exists(DEFAULT_MANIFEST):
        return load_manifest(DEFAULT_MANIFEST)
    return Manifest()


def resolve(manifest: Manifest, no_inline: bool, strict: bool = True) -> tuple[Resolver, Resolution]:
    """Resolve everything once; log the one start-up line."""
    started = time.monotonic()
    resolver = Resolver(manifest)
    resolution = resolver.resolve(os.environ, inline=not no_inline)
    if resolution.errors:
        if not strict:
            return resolver, resolution  # ``check`` reports them; no "resolved" line for a failure
        for err in resolution.errors:
            log.debug("%s", err)
        resolution.raise_for_errors()
    log_resolved(resolution, started)
    return resolver, resolution


def manifest_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--no-inline", is_flag=True, help="Do not resolve references found in the environment.")(fn)
    fn = click.option(
        "-m", "--manifest", "manifest_path", envvar="LAUNCHER_MANIFEST", type=str,
        help="Manifest file (default: ./launcher.yaml when it exists).",
    )(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", envvar="LAUNCHER_LOG_LEVEL", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@click.option("--log-format", envvar="LAUNCHER_LOG_FORMAT", default="text", show_default=True,
              type=click.Choice(["text", "json"], case_sensitive=False))
@click.version_option(package_name="launcher", prog_name="launcher")
def cli(log_level: str, log_format: str) -> None:
    """Put Vault / OpenBao and Azure Key Vault secrets into a process's environment."""
    logs.configure(log_level.lower(), log_format.lower())


@cli.command(context_settings=_COMMAND_SETTINGS)
@manifest_options
@click.option("--watch/--no-watch", default=None, help="Watch secrets for rotation (default: watch.enabled).")
@click.option("--on-change", type=click.Choice(ON_CHANGE_ACTIONS), help="Action on rotation (overrides watch.on_change).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(manifest_path: str | None, no_inline: bool, watch: bool | None, on_change: str | None, command: tuple[str, ...]) -> int:
    """Resolve, start COMMAND as a supervised child, exit with its code."""
    from launcher.supervisor import supervise

    manifest = load(manifest_path)
    if watch is not None or on_change is not None:
        w = manifest.watch
        manifest = replace(manifest, watch=replace(w, enabled=w.enabled if watch is None else watch, on_change=on_change or w.on_change))
    return supervise(manifest, list(command), inline=not no_inline)


@cli.command("exec", context_settings=_COMMAND_SETTINGS)
@manifest_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(manifest_path: str | None, no_inline: bool, command: tuple[str, ...]) -> int:
    """Resolve, then replace this process with COMMAND (no supervisor left)."""
    manifest = load(manifest_path)
    resolver, resolution = resolve(manifest, no_inline)
    resolver.close()
    argv = list(command)
    # Find the command (in the child's PATH) before any secret file exists, so
    # that a typo in the command leaves nothing behind.
    program = find_command(argv[0], child_environment(os.environ, resolution.values, manifest.process))
    files = SecretFiles()
    try:
        env = child_environment(os.environ, with_files(resolution, files), manifest.process)
        check_exec_limits(argv, env)
        if files.directory is not None:
            log.warning("secret files left in %s for the child: nothing removes them after exec", files.directory)
        exec_command(program, argv, env)
    except BaseException:
        files.remove()
        raise


def with_files(resolution: Resolution, files: SecretFiles) -> dict[str, str]:
    """The bindings, with ``file: true`` values written to ``files`` and replaced by their paths."""
    values = dict(resolution.values)
    file_values = {k: v for k, v in values.items() if k in resolution.files}
    if file_values:
        paths, _ = files.write_all(file_values)
        values.update(paths)
    return values


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
    try:
        os.execve(program, argv, env)
    except FileNotFoundError:
        raise CommandError(f"{argv[0]}: command not found (or its #! interpreter is missing)", 127) from None
    except PermissionError:
        raise CommandError(f"{argv[0]}: permission denied (not executable)", 126) from None
    except OSError as exc:
        if exc.errno == errno.E2BIG:
            raise ManifestError("the environment is too large for execve; use `file: true` for large values") from None
        raise CommandError(f"{argv[0]}: cannot execute ({os.strerror(exc.errno or 0)})", 126) from None


@cli.command()
@manifest_options
@click.option("--offline", is_flag=True, help="Validate only: no authentication, no network.")
def check(manifest_path: str | None, no_inline: bool, offline: bool) -> int:
    """Validate the manifest and fetch every secret; print NAME / REF / VERSION / STATUS."""
    manifest = load(manifest_path)
    if offline:
        inline = [] if no_inline else inline_bindings(os.environ, manifest)
        count = len(manifest.env) + len(inline) + len(manifest.env_from)
        click.echo(f"{manifest.path or 'no manifest'}: valid ({_plural(count, 'binding')}, {_plural(len(manifest.sources), 'source')})")
        return 0
    resolver, resolution = resolve(manifest, no_inline, strict=False)
    resolver.close()
    extra = None
    if manifest.watch.enabled:
        from launcher.watcher import next_check

        extra = {r.name: next_check(r.keys, resolution.secrets, manifest.watch) for r in resolution.results if r.status == "ok"}
    click.echo(check_table(resolution.results, extra))
    if not resolution.errors:
        try:  # `check` exits with the code `exec` would, and exec refuses an oversized environment
            check_exec_limits(["command"], child_environment(os.environ, _with_file_paths(resolution), manifest.process))
        except ManifestError as exc:
            resolution.errors.append(exc)
    if resolution.errors:
        final = most_fundamental(resolution.errors)
        for err in resolution.errors:
            if err is not final:  # ``main`` reports the one that decides the exit code
                log.error("%s", err)
        raise final
    return 0


def _with_file_paths(resolution: Resolution) -> dict[str, str]:
    """The bindings as ``exec`` would pass them, with a stand-in path for each secret file."""
    base, _ = private_base_dir(os.environ)
    stand_in = os.path.join(base, "launcher-xxxxxxxx")
    return {k: os.path.join(stand_in, k) if k in resolution.files else v for k, v in resolution.values.items()}


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@cli.command()
@manifest_options
@click.option("--format", "fmt", type=click.Choice(["dotenv", "json", "shell"]), default="dotenv", show_default=True)
def env(manifest_path: str | None, no_inline: bool, fmt: str) -> int:
    """Print the resolved bindings (values included: the explicit "show me" command)."""
    manifest = load(manifest_path)
    resolver, resolution = resolve(manifest, no_inline)
    resolver.close()
    files = SecretFiles()
    values = with_files(resolution, files)
    if files.directory is not None:
        log.warning("secret files written to %s: nothing removes them", files.directory)
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
    except Exception as exc:
        log.debug("traceback", exc_info=True)
        _report(LauncherError(f"internal error: {exc.__class__.__name__} (a bug: please report it; --log-level debug shows the traceback)"))
        code = 70
    sys.exit(code if isinstance(code, int) else 0)


def _report(exc: LauncherError) -> None:
    if not logging.getLogger().handlers:
        logs.configure("info", os.environ.get("LAUNCHER_LOG_FORMAT", "text"))
    log.error("%s", exc.message, extra={"fields": {"exit_code": exc.exit_code}} if _json_logs() else None)


def _json_logs() -> bool:
    return any(isinstance(h.formatter, logs.JsonFormatter) for h in logging.getLogger().handlers)


