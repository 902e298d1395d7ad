"""Env files: dotenv files of bindings (``env_files:`` in the manifest, ``--env-file`` on the command line).

``op run --env-file``'s shape: each ``NAME=VALUE`` line is a binding whose value is a
literal, a reference or a ``{{ }}`` template, read with the rules of ``env`` (an unknown
``NAME://`` is an error, a well-known URL scheme a literal) and resolved with the rest.
Manifest bindings win over an env file's, a later file over an earlier one, and every
file over inline references (``Manifest.bindings``).

The file is parsed by python-dotenv's parser (quotes, ``export``, comments, multi-line
values, as python-dotenv reads them), with nothing expanded: ``${VAR}`` stays as written
(python-dotenv's ``interpolate=False``). A line without ``=`` binds nothing (the variable
is left to the environment, as docker compose reads it). A file that does not exist is
78 unless its name ends in ``?`` (``.env.local?``). Every problem names the file and
line, and the variable; never a value.
"""

from __future__ import annotations

import dataclasses
import io

from launcher.errors import ManifestError
from launcher.manifest import fixed_paths
from launcher.manifest.textfile import MAX_MANIFEST_BYTES, read_capped
from launcher.model.config import Binding, EnvFile, Manifest
from launcher.model.refs import ENV_NAME_RE, RefSyntaxError, parse_value, references
from launcher.model.yamltext import decode_text
from launcher.sources import catalog

COMMAND_LINE = "--env-file"


def split_optional(spec: str) -> tuple[str, bool]:
    """``(name, optional)``: a trailing ``?`` makes the file optional (``.env.local?``)."""
    return (spec[:-1], True) if spec.endswith("?") else (spec, False)


def with_env_files(manifest: Manifest, specs: tuple[str, ...] | list[str]) -> Manifest:
    """``manifest`` with the command line's ``--env-file`` files added after its own (so theirs win),
    each relative to the current directory. Raises ``ManifestError`` (78) with every problem found."""
    if not specs:
        return manifest
    read: list[EnvFile] = []
    problems: list[ManifestError] = []
    for spec in specs:
        path, optional = split_optional(spec)
        try:
            read.append(read_env_file(path, optional, manifest, where=COMMAND_LINE))
        except ManifestError as exc:
            problems += [exc, *exc.more]
    merged = dataclasses.replace(manifest, env_files=(*manifest.env_files, *read))
    if not problems:  # the manifest's own `path:` bindings were checked when it was read: only the new files can clash
        problems = [ManifestError(problem, where=binding.where, field=f"env.{binding.name}.path")
                    for binding, problem in fixed_paths.problems(merged)]
    if problems:
        raise ManifestError(problems[0].detail, where=problems[0].where, field=problems[0].field, more=problems[1:])
    return merged


def read_env_file(path: str, optional: bool, manifest: Manifest, *, where: str, field: str | None = None) -> EnvFile:
    """Read the dotenv file at ``path`` into bindings, checked against ``manifest``'s sources.

    ``where``/``field`` name the place that named the file (for a missing or unreadable
    one). Raises ``ManifestError`` (78): the first problem, carrying the others (``more``).
    """
    try:
        data = read_capped(path, MAX_MANIFEST_BYTES)
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"env file {path} is larger than 4 MiB", where=where, field=field)
        text = decode_text(data)
    except FileNotFoundError:
        if optional:
            return EnvFile(path, optional, (), where)
        raise ManifestError(f"env file {path} does not exist (a name ending in ? is optional)", where=where, field=field) from None
    except IsADirectoryError:
        raise ManifestError(f"env file {path} is a directory", where=where, field=field) from None
    except OSError as exc:
        raise ManifestError(f"env file {path}: cannot be read ({(exc.strerror or 'read error').lower()})",
                            where=where, field=field) from None
    except ValueError as exc:  # not UTF-8, or a NUL in the name
        raise ManifestError(f"env file {path}: {exc}", where=where, field=field) from None
    bindings, problems = _bindings(text, path, manifest)
    if problems:
        raise ManifestError(problems[0].detail, where=problems[0].where, field=problems[0].field, more=problems[1:20])
    return EnvFile(path, optional, tuple(bindings.values()), where)


def _bindings(text: str, path: str, manifest: Manifest) -> tuple[dict[str, Binding], list[ManifestError]]:
    """The file's bindings by name (a later line wins, as in python-dotenv) and its problems, in file order."""
    from dotenv.parser import parse_stream  # only a run with an env file pays for it

    known = manifest.known_sources
    bindings: dict[str, Binding] = {}
    problems: list[ManifestError] = []
    for line in parse_stream(io.StringIO(text)):
        where = f"{path}:{line.original.line}"
        if line.error:
            problems.append(ManifestError("not a NAME=VALUE line (python-dotenv cannot read it)", where=where))
            continue
        if line.key is None or line.value is None:  # a comment, a blank line, or a name alone
            continue
        name = line.key
        if not ENV_NAME_RE.match(name):
            problems.append(ManifestError("not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)", where=where, field=name))
            continue
        try:
            parts = parse_value(line.value, known)
            for ref in references(parts):
                problem = catalog.reference_problem(manifest, ref)
                if problem is not None:
                    raise RefSyntaxError(f"{ref}: {problem}")
        except RefSyntaxError as exc:
            problems.append(ManifestError(str(exc), where=where, field=name))
            continue
        if "\x00" in line.value:
            problems.append(ManifestError("holds a NUL character, which no variable can contain", where=where, field=name))
            continue
        bindings.pop(name, None)  # a repeated name takes its last line's place too
        bindings[name] = Binding(name, parts, where=where, field=name)
    return bindings, problems
