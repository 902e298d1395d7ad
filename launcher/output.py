"""Everything ``check``, ``env`` and ``init`` print on stdout."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from launcher.resolve.resolver import BindingResult


def check_table(results: Iterable[BindingResult], extra: Mapping[str, str] | None = None) -> str:
    """NAME / REF / VERSION / STATUS (plus EXPIRES when a binding uses an issued certificate, and
    NEXT_CHECK when watching); never a value."""
    results = list(results)  # read twice below: a generator would leave the extra column empty
    header = ["NAME", "REF", "VERSION", "STATUS"]
    rows = [[r.name, r.ref, r.version or "-", _status(r)] for r in results]
    if any(r.expires_at is not None for r in results):
        header.append("EXPIRES")
        for row, r in zip(rows, results, strict=True):
            row.append(expiry_text(r.expires_at) if r.expires_at is not None else "-")
    if extra is not None:
        header.append("NEXT_CHECK")
        for row, r in zip(rows, results, strict=True):
            row.append(extra.get(r.name, "-"))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def _status(result: BindingResult) -> str:
    """The STATUS cell: ``ok (fallback: dr)`` when a fallback answered for the source the reference names."""
    return f"{result.status} (fallback: {result.answered_by})" if result.answered_by else result.status


def expiry_text(timestamp: float) -> str:
    """``2026-01-31T12:00:00Z``: when an issued certificate expires, UTC, to the second."""
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def offline_summary(path: str | None, bindings: int, sources: int) -> str:
    """``check --offline``'s line: ``launcher.yaml: valid (3 bindings, 1 source)``."""
    return f"{path or 'no manifest'}: valid ({_plural(bindings, 'binding')}, {_plural(sources, 'source')})"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


_NOTES = {"default": "missing: its default is used", "optional": "missing: optional, left unset"}


def check_json(results: Iterable[BindingResult], extra: Mapping[str, str] | None = None, *, manifest: str | None,
               exit_code: int, problems: Iterable[str] = (), offline: int | None = None) -> str:
    """``check --format json``: one object per binding and a summary (docs/check-format.schema.json).

    ``next_check`` is there when watching (``extra``), ``expires`` for a binding that uses an
    issued certificate (its not_after, RFC 3339); ``message`` is the failure (or what
    was done about a missing optional secret), null when all is well; ``answered_by`` the
    fallback source that answered for an unavailable one (null when none had to); ``problems``
    are failures that belong to no binding (a manifest that cannot be read). ``offline``: the
    number of bindings ``check --offline`` validated (none is listed: nothing was fetched). Never a value.
    """
    bindings = []
    for r in results:
        item: dict[str, object] = {"name": r.name, "ref": r.ref, "version": r.version, "status": r.status,
                                   "message": str(r.error) if r.error is not None else _NOTES.get(r.status),
                                   "answered_by": r.answered_by}
        if extra is not None:
            item["next_check"] = extra.get(r.name, "-")
        if r.expires_at is not None:
            item["expires"] = expiry_text(r.expires_at)
        bindings.append(item)
    counts: dict[str, int] = {}
    for item in bindings:
        counts[str(item["status"])] = counts.get(str(item["status"]), 0) + 1
    summary = {"manifest": manifest, "status": "ok" if exit_code == 0 else "failed", "exit_code": exit_code,
               "offline": offline is not None, "bindings": len(bindings) if offline is None else offline, "counts": counts,
               "answered_by_fallback": sum(1 for item in bindings if item["answered_by"]), "problems": list(problems)}
    import json

    return json.dumps({"bindings": bindings, "summary": summary}, indent=2)


def format_env(values: Mapping[str, str], fmt: str) -> str:
    """The bindings as dotenv, JSON or shell, each safe to consume as its users do.

    ``shell`` is for ``eval``; ``dotenv`` for ``set -a; . ./file`` in sh and for
    python-dotenv. Both single-quote every value, so sourcing or evaluating the
    output never runs or expands anything inside a value (``$(id)``, backticks,
    ``$HOME`` come back byte for byte); a single quote inside a value is written
    ``'\\''`` (close, escaped quote, reopen), which sh reads exactly.
    """
    if fmt == "json":
        import json

        return json.dumps(dict(values), indent=2, ensure_ascii=False)
    if fmt == "dotenv":
        odd = [name for name, value in values.items() if dotenv_differs(value)]
        if odd:
            logging.getLogger("launcher").warning(
                "python-dotenv reads %s differently from sh (a single quote, backslashes or ${...}): use --format json for programs",
                ", ".join(odd))
    if fmt == "shell":
        return "\n".join(f"export {name}={_single_quoted(value)}" for name, value in values.items())
    return "\n".join(f"{name}={_single_quoted(value)}" for name, value in values.items())


def _single_quoted(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def dotenv_differs(value: str) -> bool:
    """True when python-dotenv would read this value's dotenv line differently from sh: it
    treats ``\\'`` and ``\\\\`` inside single quotes as escapes, cannot read ``'\\''``, and
    expands ``${VAR}`` inside any quotes unless loaded with ``interpolate=False``."""
    return "'" in value or "\\\\" in value or value.endswith("\\") or "${" in value
