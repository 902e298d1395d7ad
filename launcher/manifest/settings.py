"""Reading settings dataclasses by their declarations (``launcher.model.settings.setting``).

Every field a manifest can set says how its YAML value is read (its ``kind``) and the
rules it obeys; ``SettingsReader`` reads sections and sources by those declarations,
so an allowed key can never drift from its field. ``READERS`` has one entry per kind
of the closed vocabulary ``Kind`` (a test keeps them equal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import yaml

from launcher.manifest.reader import Entries, Reader
from launcher.model.settings import Kind
from launcher.model.yamltext import is_null

Spec = dataclasses.Field[Any]


class SettingsReader(Reader):
    """A ``Reader`` that also reads settings dataclasses (sections, sources, variants)."""

    def settings(self, cls: type, node: yaml.Node, f: Entries, field: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """Keyword arguments for dataclass ``cls`` from the keys of ``f``, each read by its field's
        ``setting`` metadata. Unknown keys and failed values are recorded; a missing ``required``
        field is recorded at ``node``. ``skip``: keys the caller reads itself (allowed first)."""
        specs = {spec.name: spec for spec in dataclasses.fields(cls) if "kind" in spec.metadata}
        f = self.only(f, field, (*skip, *specs))
        out: dict[str, Any] = {}
        for name, spec in specs.items():
            if name not in f:
                if spec.metadata.get("required"):
                    hint = spec.metadata.get("missing")
                    self.record(self.fail(node, f"{field}.{name}", f"missing ({hint})" if hint else "missing"))
                continue
            with self.unit:
                out[name] = self.setting(spec, f[name][1], f"{field}.{name}")
        return out

    def entries(self, top: Entries, key: str) -> Entries:
        """The top-level mapping ``key`` (empty when absent or null; a problem recorded when not a mapping)."""
        if key not in top or is_null(top[key][1]):
            return {}
        with self.unit:
            return self.mapping(top[key][1], key)
        return {}

    def section(self, top: Entries, key: str, cls: type) -> Any:
        """The top-level section ``key`` as dataclass ``cls`` (its defaults when absent or null)."""
        if key not in top or is_null(top[key][1]):
            return cls()
        node = top[key][1]
        with self.unit:
            return cls(**self.settings(cls, node, self.mapping(node, key), key))
        return cls()

    def setting(self, spec: Spec, node: yaml.Node, field: str) -> Any:
        """One value, read as ``spec.metadata`` says (see ``launcher.model.settings``)."""
        kind: Kind = spec.metadata["kind"]
        return READERS[kind](self, spec, node, field)

    def variant(self, spec: dataclasses.Field[Any], node: yaml.Node, field: str) -> Any:
        """A settings dataclass whose allowed keys depend on its tag (``auth.method``): see ``kind`` variant."""
        rules = spec.metadata
        cls, tag, variants = rules["cls"], rules["tag"], rules["variants"]
        f = self.mapping(node, field)
        default = dataclasses.fields(cls)
        tag_default = next(s.default for s in default if s.name == tag)
        which = self.choice(f[tag][1], f"{field}.{tag}", tuple(variants)) if tag in f else tag_default
        kw = self.settings(cls, node, self.only(f, field, (tag, *variants[which])), field, skip=(tag,))
        kw.pop(tag, None)
        for key, hint in rules.get("needs", {}).get(which, ()):
            if key not in f:
                raise self.fail(node, f"{field}.{key}", f"missing ({hint})")
        for first, second in rules.get("exclusive", ()):
            if first in f and second in f:
                raise self.fail(node, f"{field}.{first}", f"give {first} or {second}, not both")
        return cls(**{tag: which, **kw})


def _names(r: SettingsReader, spec: Spec, node: yaml.Node, field: str) -> tuple[str, ...]:
    names = r.names(node, field)
    if not spec.metadata.get("extends"):
        return names
    made: Any = spec.default_factory  # the backends' own credentials, for process.scrub
    given: Any = made() if callable(made) else spec.default
    default: tuple[str, ...] = tuple(given)
    return default + tuple(n for n in names if n not in default)


def _text(r: SettingsReader, spec: Spec, node: yaml.Node, field: str) -> str | None:
    if spec.metadata.get("nullable") and is_null(node):
        return None
    value = r.text(node, field)
    check = spec.metadata.get("check")
    if check is not None:
        try:
            check(value)
        except ValueError as exc:
            raise r.fail(node, field, str(exc)) from None
    return value


def _section(r: SettingsReader, spec: Spec, node: yaml.Node, field: str) -> Any:
    cls = spec.metadata["cls"]
    return cls(**r.settings(cls, node, r.mapping(node, field), field))


# How each kind of setting is read: one entry per word of ``Kind``.
READERS: dict[Kind, Callable[[SettingsReader, Spec, yaml.Node, str], Any]] = {
    "text": _text,
    "path": lambda r, spec, node, field: None if is_null(node) and spec.default is None else r.path(node, field),
    "url": lambda r, spec, node, field: r.url(node, field, spec.metadata.get("scheme")),
    "bool": lambda r, spec, node, field: r.boolean(node, field),
    "duration": lambda r, spec, node, field: r.duration(node, field, minimum=0.001 if spec.metadata.get("positive") else 0.0),
    "integer": lambda r, spec, node, field: r.integer(node, field, spec.metadata.get("minimum", 0)),
    "number": lambda r, spec, node, field: r.number(node, field, spec.metadata.get("minimum", 0.0)),
    "choice": lambda r, spec, node, field: r.choice(node, field, spec.metadata["choices"]),
    "signal": lambda r, spec, node, field: r.signal(node, field),
    "names": _names,
    "section": _section,
    "variant": lambda r, spec, node, field: r.variant(spec, node, field),
}
