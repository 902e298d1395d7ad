"""Bindings -> values, given what was read: selection of keys, templates, defaults, env_from.

The resolver reads secrets; this module turns what it read into each
variable's value, status and error, as ``check`` shows them: ``#KEY``
selection (``select``), templates, ``default`` and ``optional``, ``env_from``
(with key collisions refused), and the references found in the launcher's own
environment (``inline_bindings``). Nothing here does I/O.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import field

from launcher.errors import LauncherError, ManifestError, NotFoundError, Status
from launcher.model.config import Binding, EnvFrom, Manifest
from launcher.model.refs import (
    ENV_NAME_RE,
    WELL_KNOWN_SCHEMES,
    FetchKey,
    Reference,
    RefSyntaxError,
    is_reference_text,
    parse_reference,
    scheme_of,
)
from launcher.record import record
from launcher.sources.base import Secret, to_text
from launcher.sources.catalog import reference_problem

log = logging.getLogger("launcher.resolve.resolver")
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_]")


@record
class BindingResult:
    """The outcome for one variable (or one ``env_from`` entry), as ``check`` shows it."""

    name: str
    ref: str
    status: Status
    version: str | None = None
    value: str | None = field(default=None, repr=False)
    file: bool = False
    error: LauncherError | None = None
    keys: tuple[FetchKey, ...] = ()  # the secrets it was built from (for ``check``'s NEXT CHECK)
    where: str = "<manifest>"  # file:line of the binding, to report failures in manifest order
    answered_by: str | None = None  # the fallback source(s) that answered for the one named (comma-separated)
    expires_at: float | None = None  # when the soonest issued secret it uses expires (a certificate), Unix time
    # (label, value) of each piece the value took from a secret: a template's parts, not its
    # literal text; each variable of an ``env_from``. What output masking must conceal (visible.py).
    from_secrets: tuple[tuple[str, str], ...] = field(default=(), repr=False)


def inline_bindings(environ: Mapping[str, str], manifest: Manifest, *, warn: bool = True) -> list[Binding]:
    """Variables of our own environment whose whole value references a known source.

    Manifest bindings (and env files') win, so their names are skipped. Anything else in the
    environment (URLs, unknown ``NAME://`` values, names that are not valid
    variable names) is left as it is; one that looks like a misspelt reference is warned
    about unless ``warn`` is False (a second look at an environment already read).
    """
    known = manifest.known_sources
    taken = {b.name for b in manifest.bindings}
    out = []
    for name, value in sorted(environ.items()):
        if name in taken or not ENV_NAME_RE.match(name):
            continue
        if not is_reference_text(value, known):
            if warn:
                _warn_if_typo(name, value, known)
            continue
        try:
            ref = parse_reference(value, known)
        except RefSyntaxError as exc:
            raise ManifestError(str(exc), where="<environment>", field=name) from None
        problem = reference_problem(manifest, ref)
        if problem is not None:
            raise ManifestError(f"{ref}: {problem}", where="<environment>", field=name)
        out.append(Binding(name, (ref,), where="<environment>"))
    return out


def _warn_if_typo(name: str, value: str, known: frozenset[str]) -> None:
    """Warn when a variable looks like a reference to a misspelt source (``vualt://``).

    It is left as it is (any program may keep a URL of its own scheme in the
    environment); the warning names the variable and the scheme, never the value.
    """
    scheme = scheme_of(value)
    if scheme is None or scheme.lower() in WELL_KNOWN_SCHEMES:
        return
    import difflib  # only a suspicious variable pays for it

    close = difflib.get_close_matches(scheme, sorted(known), n=1, cutoff=0.75)
    if close:
        log.warning("%s looks like a reference to %s://, but no source is called %r (did you mean %r?): left as it is",
                    name, scheme, scheme, close[0])


def binding_uses(bindings: Iterable[Binding], env_from: Iterable[EnvFrom]) -> dict[FetchKey, tuple[str, ...]]:
    """Each secret, with the names of the variables it is read for (``PREFIX*`` for ``env_from``),
    in manifest order: what fetch, check and renewal events name as ``bindings``."""
    uses: dict[FetchKey, list[str]] = {}
    for binding in bindings:
        for ref in binding.refs:
            uses.setdefault(ref.fetch_key, []).append(binding.name)
    for entry in env_from:
        uses.setdefault(entry.ref.fetch_key, []).append(f"{entry.prefix}*")
    return {key: tuple(dict.fromkeys(names)) for key, names in uses.items()}


def env_from_name(prefix: str, key: str) -> str:
    """``APP_`` + ``db.host`` -> ``APP_DB_HOST``; a leading digit gets ``_`` when unprefixed."""
    name = prefix + _INVALID_NAME_CHARS.sub("_", key.upper())
    if name[:1].isdigit() or not name:
        name = "_" + name
    return name


def select(secret: Secret, ref: Reference) -> str:
    """Pick ``ref.key`` out of ``secret`` (or the single value when no key is given).

    Raises ``NotFoundError`` for a missing key or a #key into a non-JSON value,
    and ``ManifestError`` when the key is omitted on a multi-field secret.
    """
    fields = secret_fields(secret, ref, for_key=ref.key is not None)
    if ref.key is None:
        if secret.value is not None:
            return secret.value
        if not fields:
            raise NotFoundError(f"{ref}: the secret is empty")
        if len(fields) == 1:
            return next(iter(fields.values()))
        names = ", ".join(sorted(fields))
        raise ManifestError(f"{ref}: the secret has several fields, add #KEY (fields: {names})")
    if fields is None:
        raise NotFoundError(f"{ref}: the secret is empty")
    if ref.key not in fields:
        names = ", ".join(sorted(fields)) or "none"
        raise NotFoundError(f"{ref}: no key {ref.key!r} (fields: {names})")
    return fields[ref.key]


def secret_fields(secret: Secret, ref: Reference, for_key: bool = True) -> Mapping[str, str] | None:
    """The fields of a secret; a scalar value is parsed as a JSON object when asked."""
    if secret.fields is not None:
        return secret.fields
    if not for_key:
        return None
    try:
        import json  # only #KEY into a JSON value pays for it

        data = json.loads(secret.value or "")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        what = f"#{ref.key} needs a JSON object value" if ref.key else "needs a JSON object value"
        raise NotFoundError(f"{ref}: {what}, and this secret is not one")
    return {str(k): to_text(v) for k, v in data.items()}


def evaluate(binding: Binding, outcomes: Mapping[FetchKey, Secret | LauncherError]) -> BindingResult:
    ref_text = binding.shown
    pieces: list[str] = []
    versions: list[str] = []
    fallbacks: list[str] = []
    expiries: list[float] = []
    from_secrets: list[tuple[str, str]] = []
    try:
        for index, part in enumerate(binding.parts):
            if isinstance(part, str):
                pieces.append(part)
                continue
            outcome = outcomes[part.fetch_key]
            if isinstance(outcome, LauncherError):
                raise outcome
            pieces.append(select(outcome, part))
            from_secrets.append((str(index), pieces[-1]))
            if outcome.version and outcome.version not in versions:
                versions.append(outcome.version)
            if outcome.answered_by and outcome.answered_by not in fallbacks:
                fallbacks.append(outcome.answered_by)
            if outcome.expires_at is not None:
                expiries.append(outcome.expires_at)
        value = "".join(pieces)
        if not binding.file:
            _environment_text(value)
    except NotFoundError as exc:
        keys = tuple(r.fetch_key for r in binding.refs)  # watched, so the secret is noticed once it exists
        if binding.default is not None:
            return BindingResult(binding.name, ref_text, "default", None, binding.default, binding.file, keys=keys, where=binding.where)
        if binding.optional:
            return BindingResult(binding.name, ref_text, "optional", None, None, binding.file, keys=keys, where=binding.where)
        return BindingResult(binding.name, ref_text, "missing", error=exc.with_context(_binding_context(binding)), where=binding.where)
    except LauncherError as exc:
        return BindingResult(binding.name, ref_text, exc.status, error=exc.with_context(_binding_context(binding)), where=binding.where)
    keys = tuple(r.fetch_key for r in binding.refs)
    return BindingResult(binding.name, ref_text, "ok", ",".join(versions) or None, value, binding.file, keys=keys, where=binding.where,
                         answered_by=",".join(fallbacks) or None, expires_at=min(expiries, default=None),
                         from_secrets=tuple(from_secrets))


def _environment_text(value: str) -> None:
    """``ManifestError`` when ``value`` holds bytes that are not UTF-8 text (a decrypted binary,
    kept with ``surrogateescape``): a file can hold them exactly, an environment variable cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestError("the value is not UTF-8 text, which an environment variable cannot hold; "
                            "use `file: true` (the file holds the exact bytes)") from None


def _binding_context(binding: Binding) -> str:
    if binding.where == "<environment>":
        return f"<environment>: {binding.name}"
    return f"{binding.where}: {binding.field or f'env.{binding.name}'}"


def expand_env_from(entry: EnvFrom, outcome: Secret | LauncherError) -> tuple[BindingResult, dict[str, str]]:
    label = f"{entry.prefix}*"
    ref_text = str(entry.ref)
    if isinstance(outcome, LauncherError):
        error = outcome.with_context(f"{entry.where}: env_from")
        return BindingResult(label, ref_text, outcome.status, error=error, where=entry.where), {}
    try:
        fields = secret_fields(outcome, entry.ref)
    except NotFoundError:
        err = ManifestError(f"{entry.ref} is a single value, not a set of keys", where=entry.where, field="env_from")
        return BindingResult(label, ref_text, "invalid", error=err, where=entry.where), {}
    assert fields is not None
    found: dict[str, str] = {}
    key_of: dict[str, str] = {}
    for key, value in fields.items():
        name = env_from_name(entry.prefix, key)
        if name in key_of:
            # Two keys, one variable (``a-b`` and ``a_b``, or non-ASCII keys that both become
            # ``_``): which value the child would get is an accident of order, so refuse.
            err = ManifestError(f"{entry.ref}: keys {key_of[name]!r} and {key!r} both become {name}; rename one",
                                where=entry.where, field="env_from")
            return BindingResult(label, ref_text, "invalid", error=err, where=entry.where), {}
        key_of[name] = key
        found[name] = value
    return BindingResult(label, ref_text, "ok", outcome.version, keys=(entry.ref.fetch_key,), where=entry.where,
                         answered_by=outcome.answered_by, from_secrets=tuple(found.items())), found
