"""The manifest's own structure: version, sources, env, env_from and the sections, read into a ``Manifest``.

Values and settings are ``Reader``'s (``launcher.manifest.reader``); a source's
settings are its backend's config dataclass, found through the source catalog.
Every problem is recorded with file:line and field; see ``launcher.manifest``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import yaml

from launcher.errors import ManifestError, errors_of
from launcher.manifest import fixed_paths
from launcher.manifest.envfile import read_env_file, split_optional
from launcher.manifest.reader import Entries, FatalError, TooManyError, quoted, sub
from launcher.manifest.regular_files import NotRegularError, TooLargeError, read_regular
from launcher.manifest.settings import SettingsReader
from launcher.model.config import (
    AuditConfig,
    Binding,
    CacheConfig,
    EnvFile,
    EnvFrom,
    Manifest,
    MetricsConfig,
    ProcessConfig,
    RetryConfig,
    SourceConfig,
    WatchConfig,
)
from launcher.model.fallback import fallback_problem
from launcher.model.refs import (
    ENV_NAME_RE,
    SOURCE_NAME_RE,
    WELL_KNOWN_SCHEMES,
    RefSyntaxError,
    UnclosedPlaceholderError,
    parse_reference,
    parse_template,
    parse_value,
)
from launcher.model.vocabulary import ACTIONS
from launcher.model.yamltext import NULL, decode_text, is_null, kind_of
from launcher.sources import catalog, registry

TOP_KEYS = ("version", "sources", "env", "env_from", "env_files", "cache", "retry", "watch", "process", "audit", "metrics")
BINDING_KEYS = ("ref", "value", "template", "file", "path", "mode", "default", "optional", "on_change")
ENV_FROM_KEYS = ("ref", "prefix")


class ManifestReader(SettingsReader):
    """Reads the manifest's own structure; values and settings are ``Reader``'s."""

    def __init__(self, filename: str, environ: Mapping[str, str]) -> None:
        super().__init__(filename, environ)
        self.declared: set[str] = set()  # source names, even those whose settings are wrong

    def manifest(self, root: yaml.Node) -> Manifest:
        """The manifest, or ``ManifestError`` carrying every problem found (see module doc)."""
        manifest: Manifest | None = None
        try:
            manifest = self.read(root)
        except TooManyError:
            self.stopped = True
        except ManifestError as exc:  # a FatalError one: reading on would be meaningless
            self.problems.append(exc)
        if manifest is None or self.problems:
            raise self.combined()
        return manifest

    def read(self, root: yaml.Node) -> Manifest:
        if not isinstance(root, yaml.MappingNode):
            raise self.fatal(root, "", f"expected a mapping, got {kind_of(root)}")
        self.version(root)
        top = self.mapping(root, "", TOP_KEYS)
        sources = self.sources(top)
        self.check_fallbacks(sources, top)
        known = frozenset(self.declared) | registry.builtins()
        manifest = Manifest(
            path=self.filename,
            sources=sources,
            env=self.env(top, known),
            env_from=self.env_from(top, known),
            cache=self.section(top, "cache", CacheConfig),
            retry=self.section(top, "retry", RetryConfig),
            watch=self.section(top, "watch", WatchConfig),
            process=self.section(top, "process", ProcessConfig),
            audit=self.section(top, "audit", AuditConfig),
            metrics=self.section(top, "metrics", MetricsConfig),
        )
        self.check_references(manifest)
        manifest = dataclasses.replace(manifest, env_files=self.env_files(top, manifest))
        self.check_fixed_paths(manifest)
        return manifest

    def version(self, root: yaml.MappingNode) -> None:
        """``version: 1``, checked first: under another version nothing else can be judged."""
        found = [v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.tag != NULL and k.value == "version"]
        if not found:
            raise self.fatal(root, "version", "missing (add `version: 1`)")
        try:
            version = self.text(found[0], "version")
        except ManifestError as exc:
            raise FatalError(exc.detail, where=exc.where, field=exc.field) from None
        if version.strip() != "1":
            raise self.fatal(found[0], "version", f"unsupported version {quoted(version)} (expected 1)")

    def check_references(self, manifest: Manifest) -> None:
        """Refuse, before any fetch, references their source's type can never serve
        (``?version=`` on a file source, a malformed Key Vault secret name)."""
        located = [(b.where, f"env.{b.name}", r) for b in manifest.env for r in b.refs]
        located += [(e.where, "env_from", e.ref) for e in manifest.env_from]
        for where, field, ref in located:
            if ref.source not in manifest.known_sources:
                continue  # a declared source whose settings are wrong: already recorded
            problem = catalog.reference_problem(manifest, ref)
            if problem is not None:
                self.record(ManifestError(f"{ref}: {problem}", where=where, field=field))

    def check_fixed_paths(self, manifest: Manifest) -> None:
        """Refuse a ``path:`` that would replace a file it must not own (``fixed_paths``)."""
        for binding, problem in fixed_paths.problems(manifest):
            self.record(ManifestError(problem, where=binding.where, field=f"env.{binding.name}.path"))

    def check_fallbacks(self, sources: dict[str, SourceConfig], top: Entries) -> None:
        """Each ``fallback`` names a declared source of the same type, and no chain loops (docs/operations/failover.md)."""
        for name in sources:
            problem = fallback_problem(sources, name, self.declared)
            if problem is not None:
                node = _value_of(_value_of(top["sources"][1], name), "fallback")
                self.record(ManifestError(problem, where=self.where(node), field=f"{sub('sources', name)}.fallback"))

    def sources(self, top: Entries) -> dict[str, SourceConfig]:
        out: dict[str, SourceConfig] = {}
        for name, (key_node, node) in self.entries(top, "sources").items():
            field = sub("sources", name)
            with self.unit:
                if not SOURCE_NAME_RE.match(name):
                    raise self.fail(key_node, field, "source names must match [a-z][a-z0-9_-]*")
                if name.lower() in WELL_KNOWN_SCHEMES:
                    raise self.fail(key_node, field, f"{name!r} is a well-known URL scheme and cannot name a source")
                self.declared.add(name)
                out[name] = self.source(name, node, field)
        return out

    def source(self, name: str, node: yaml.Node, field: str) -> SourceConfig:
        """One declared source, read from its backend's config dataclass."""
        f = self.mapping(node, field)
        kinds = registry.types()
        if "type" not in f:
            raise self.fail(node, f"{field}.type", f"missing (one of: {', '.join(kinds)})")
        type_node = f["type"][1]
        kind = self.choice(type_node, f"{field}.type", kinds)
        problem = catalog.missing_requirement(kind)
        if problem is not None:
            raise self.fail(type_node, f"{field}.type", problem)
        config = catalog.backend(kind).config
        kw: dict[str, Any] = self.settings(config, node, f, field, skip=("type",))
        return config(name=name, type=kind, **kw)

    def env(self, top: Entries, known: frozenset[str]) -> tuple[Binding, ...]:
        out = []
        for name, (key_node, node) in self.entries(top, "env").items():
            field = sub("env", name)
            with self.unit:
                if not ENV_NAME_RE.match(name):
                    raise self.fail(key_node, field, "not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)")
                out.append(self.binding(name, node, field, known))
        return tuple(out)

    def binding(self, name: str, node: yaml.Node, field: str, known: frozenset[str]) -> Binding:
        where = self.where(node)
        if isinstance(node, yaml.ScalarNode):
            return Binding(name, self.parts(node, field, known), where=where)
        f = self.mapping(node, field, BINDING_KEYS)
        if sum(key in f for key in ("ref", "value", "template")) != 1:
            raise self.fail(node, field, "needs exactly one of `ref`, `value` or `template`")
        kw = self.fields(f, field, {
            "default": self.text,
            "optional": self.boolean,
            "on_change": lambda node, sub: self.choice(node, sub, ACTIONS),
            "file": self.boolean,
            "path": self.fixed_path,
            "mode": self.mode,
        })
        template = None
        if "ref" in f:
            parts = self.parts(f["ref"][1], f"{field}.ref", known)
            if len(parts) == 1 and isinstance(parts[0], str):
                raise self.fail(f["ref"][1], f"{field}.ref", "holds a literal, not a reference (use `value:` for literals)")
        elif "template" in f:
            template = self.path(f["template"][1], f"{field}.template")
            parts = self.template(template, f["template"][1], f"{field}.template", known)
        else:
            parts = (self.text(f["value"][1], f"{field}.value"),)
        if "mode" in f and "path" not in f:
            raise self.fail(f["mode"][1], f"{field}.mode", "goes with `path:` (a file in the private directory is always 0600)")
        default = kw.get("default")
        optional = bool(kw.get("optional", False)) or default is not None
        path = kw.get("path")
        file = bool(kw.get("file", False)) or path is not None
        return Binding(name, parts, file=file, default=default, optional=optional, on_change=kw.get("on_change"), where=where,
                       template=template, path=path, mode=kw.get("mode", 0o600))

    def template(self, path: str, node: yaml.Node, field: str, known: frozenset[str]) -> tuple[Any, ...]:
        """The parts of a template file: ``{{ REF }}`` placeholders as in inline templates
        (``refs.parse_template``), each on one line; a problem names the template file and
        line (and is 78). The file is a regular file of at most 4 MiB (a FIFO never blocks
        the reader; a larger file is refused, never cut)."""
        try:
            text = decode_text(read_regular(path))
        except FileNotFoundError:
            raise self.fail(node, field, f"template {path} does not exist") from None
        except (NotRegularError, TooLargeError) as exc:
            raise self.fail(node, field, f"template {path} {exc}") from None
        except (OSError, ValueError) as exc:
            cause = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else str(exc) or "not a file"
            raise self.fail(node, field, f"template {path}: cannot be read ({cause})") from None
        parts: list[Any] = []
        for number, line in enumerate(text.splitlines(keepends=True), start=1):
            try:
                found = parse_template(line, known) if "{{" in line else (line,)
            except UnclosedPlaceholderError as exc:
                raise ManifestError(f"{exc} (a placeholder opens and closes on one line)", where=f"{path}:{number}",
                                    field=field) from None
            except RefSyntaxError as exc:
                raise ManifestError(str(exc), where=f"{path}:{number}", field=field) from None
            for part in found:
                if isinstance(part, str) and parts and isinstance(parts[-1], str):
                    parts[-1] += part
                else:
                    parts.append(part)
        return tuple(parts) if parts else ("",)

    def fixed_path(self, node: yaml.Node, field: str) -> str:
        """``path:``: an absolute or manifest-relative file (its directory is checked when it is
        written, by ``run``, ``exec``, ``env`` and ``check``: a manifest may be checked elsewhere)."""
        return self.path(node, field)

    def mode(self, node: yaml.Node, field: str) -> int:
        text = self.text(node, field)
        try:
            mode = int(text, 8)
        except ValueError:
            raise self.fail(node, field, f"{quoted(text)} is not a file mode (octal, such as \"0640\")") from None
        if not 0 <= mode <= 0o777:
            raise self.fail(node, field, f"{quoted(text)} is not a file mode (0000 to 0777)")
        return mode

    def parts(self, node: yaml.Node, field: str, known: frozenset[str]) -> tuple[Any, ...]:
        text = self.text(node, field)
        try:
            return parse_value(text, known)
        except UnclosedPlaceholderError as exc:
            raise self.fail(node, field, f"{exc} (use `value:` for a literal that contains it)") from None
        except RefSyntaxError as exc:
            raise self.fail(node, field, str(exc)) from None

    def top_list(self, top: Entries, key: str) -> list[yaml.Node]:
        """The items of the top-level list ``key`` (none when absent or null; a problem recorded when not a list)."""
        if key not in top or is_null(top[key][1]):
            return []
        seq = top[key][1]
        if not isinstance(seq, yaml.SequenceNode):
            self.record(self.fail(seq, key, f"expected a list, got {kind_of(seq)}"))
            return []
        self.visit(seq)
        items: list[yaml.Node] = seq.value
        return items

    def env_from(self, top: Entries, known: frozenset[str]) -> tuple[EnvFrom, ...]:
        out = []
        for i, item in enumerate(self.top_list(top, "env_from")):
            with self.unit:
                out.append(self.env_from_entry(item, f"env_from[{i}]", known))
        return tuple(out)

    def env_files(self, top: Entries, manifest: Manifest) -> tuple[EnvFile, ...]:
        """``env_files:``: dotenv files of bindings (``launcher.manifest.envfile``), each relative to the
        manifest; a name ending in ``?`` is optional. Each problem of a file is recorded on its own."""
        out = []
        for i, item in enumerate(self.top_list(top, "env_files")):
            field = f"env_files[{i}]"
            with self.unit:
                name, optional = split_optional(self.path(item, field))
                self.named_at[name] = item.start_mark.line + 1 if item.start_mark else 0
                try:
                    out.append(read_env_file(name, optional, manifest, where=self.where(item), field=field))
                except ManifestError as exc:
                    for problem in errors_of(exc):
                        self.record(problem)
        return tuple(out)

    def env_from_entry(self, item: yaml.Node, field: str, known: frozenset[str]) -> EnvFrom:
        f = self.mapping(item, field, ENV_FROM_KEYS)
        if "ref" not in f:
            raise self.fail(item, f"{field}.ref", "missing")
        prefix = ""
        if "prefix" in f:
            with self.unit:
                prefix = self.text(f["prefix"][1], f"{field}.prefix")
                if prefix and not ENV_NAME_RE.match(prefix):
                    raise self.fail(f["prefix"][1], f"{field}.prefix", f"{quoted(prefix)} cannot start a variable name")
        ref_node = f["ref"][1]
        try:
            ref = parse_reference(self.text(ref_node, f"{field}.ref"), known)
        except RefSyntaxError as exc:
            raise self.fail(ref_node, f"{field}.ref", str(exc)) from None
        if ref.key is not None:
            raise self.fail(ref_node, f"{field}.ref", "takes a whole secret: drop the #key")
        return EnvFrom(ref, prefix, self.where(item))


def _value_of(node: yaml.Node, key: str) -> yaml.Node:
    """The value node of ``key`` in mapping ``node`` (the first: the one read), else ``node`` itself."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key and isinstance(v, yaml.Node):
                return v
    return node
