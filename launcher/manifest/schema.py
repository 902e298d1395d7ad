"""The manifest's JSON Schema (2020-12), generated from the same declarations the reader reads.

``launcher schema`` prints it and ``docs/manifest.schema.json`` is its published copy,
so editors (through yaml-language-server's ``# yaml-language-server: $schema=...`` line)
complete and check manifests as they are typed. Every section and every source type is
made from its config dataclass: each ``setting`` gives its type (by its ``kind``), its
default, its help text as the description, and the words of its closed vocabulary as
an ``enum``; a mapping the reader refuses unknown keys of has ``additionalProperties:
false``. What the schema cannot say (a reference to a source that is not declared, a
template file's content) ``launcher check --offline`` still says, with file:line.
"""

from __future__ import annotations

import dataclasses
import json
import signal
from collections.abc import Callable
from typing import Any

from launcher.manifest.document import BINDING_KEYS, ENV_FROM_KEYS, TOP_KEYS
from launcher.model.config import AuditConfig, CacheConfig, MetricsConfig, ProcessConfig, RetryConfig, WatchConfig
from launcher.model.refs import WELL_KNOWN_SCHEMES
from launcher.model.settings import Kind
from launcher.model.vocabulary import ACTIONS
from launcher.sources import catalog, registry

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILE = "launcher.schema.json"  # what `launcher init` writes beside the manifest, for editors
ENV_NAME = "^[A-Za-z_][A-Za-z0-9_]*$"
SOURCE_NAME = "^[a-z][a-z0-9_-]*$"
REFERENCE = r"^\s*[A-Za-z][A-Za-z0-9+._-]*://|\{\{"  # a reference, or a template holding some
_DURATION = r"^\s*(?:\d+(?:\.\d+)?|(?:\d+(?:\.\d+)?(?:ms|s|m|h))+)\s*$"
_WORDS_TRUE_FALSE = ["true", "false", "yes", "no", "on", "off", "1", "0", "True", "False", "TRUE", "FALSE", "Yes", "No"]
SECTIONS = {"cache": CacheConfig, "retry": RetryConfig, "watch": WatchConfig, "process": ProcessConfig,
            "audit": AuditConfig, "metrics": MetricsConfig}

Schema = dict[str, Any]


def manifest_schema() -> Schema:
    """The whole schema, as a JSON-ready dict (stable order: the same text for the same launcher)."""
    kinds = registry.types()
    sources: Schema = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": list(kinds), "description": "the backend: " + ", ".join(kinds)}},
        "allOf": [{"if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                   "then": {"$ref": f"#/$defs/source-{kind}"}} for kind in kinds],
    }
    defs: Schema = {"source": sources, "binding": _binding(), "env_from": _env_from()}
    for kind in kinds:
        defs[f"source-{kind}"] = _settings(catalog.backend(kind).config, extra={"type": {"const": kind}}, skip=("name",))
    properties: Schema = {
        "version": {"enum": [1, "1"], "description": "the manifest format: 1"},
        "sources": {"type": ["object", "null"], "description": "named backends (a built-in needs no declaration)",
                    "propertyNames": {"pattern": SOURCE_NAME, "not": {"enum": sorted(WELL_KNOWN_SCHEMES)}},
                    "additionalProperties": {"$ref": "#/$defs/source"}},
        "env": {"type": ["object", "null"], "description": "variable name -> a literal, a reference or a binding",
                "propertyNames": {"pattern": ENV_NAME}, "additionalProperties": {"$ref": "#/$defs/binding"}},
        "env_from": {"type": ["array", "null"], "description": "every key of a secret, as PREFIX + KEY",
                     "items": {"$ref": "#/$defs/env_from"}},
        "env_files": {"type": ["array", "null"], "description": "dotenv files of bindings (relative to the manifest; "
                      "a name ending in ? is optional); env wins over them, they over inline references",
                      "items": {"type": "string", "minLength": 1}},
        **{name: _settings(cls, nullable=True) for name, cls in SECTIONS.items()},
    }
    missing = [key for key in TOP_KEYS if key not in properties]
    if missing:  # a top-level key the reader knows and this schema does not describe: a bug, found by the tests
        raise ValueError(f"the schema does not describe: {', '.join(missing)}")
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "launcher manifest",
        "description": "Environment variable names -> secret references, and how the launcher fetches, watches and runs.",
        "type": "object",
        "required": ["version"],
        "additionalProperties": False,
        "properties": {key: properties[key] for key in TOP_KEYS},
        "$defs": defs,
    }


def schema_text() -> str:
    """``manifest_schema()`` as the text ``launcher schema`` prints and docs/ publishes."""
    return json.dumps(manifest_schema(), indent=2, ensure_ascii=False) + "\n"


def _settings(cls: type, *, extra: Schema | None = None, skip: tuple[str, ...] = (), nullable: bool = False) -> Schema:
    """An object with one property per ``setting`` field of dataclass ``cls``, and no other."""
    properties: Schema = dict(extra or {})
    required: list[str] = []
    for spec in dataclasses.fields(cls):
        if "kind" not in spec.metadata or spec.name in skip:
            continue
        properties[spec.name] = _setting(spec)
        if spec.metadata.get("required"):
            required.append(spec.name)
    out: Schema = {"type": ["object", "null"] if nullable else "object", "properties": properties, "additionalProperties": False}
    doc = cls.__doc__ or ""
    if doc and not doc.startswith(f"{cls.__name__}("):  # not the signature dataclasses puts there without one
        out["description"] = " ".join(doc.split())
    if required:
        out["required"] = required
    return out


def _setting(spec: dataclasses.Field[Any]) -> Schema:
    rules = spec.metadata
    kind: Kind = rules["kind"]
    out = dict(KIND_SCHEMAS[kind](spec))
    if rules.get("help"):
        out["description"] = rules["help"]
    default = _default(spec)
    if default is not None:
        out["default"] = default
    return out


def _default(spec: dataclasses.Field[Any]) -> Any:
    """The field's default as JSON shows it (durations in seconds, signals by name), or None."""
    value = spec.default_factory() if callable(spec.default_factory) else spec.default
    if value is dataclasses.MISSING or value is None or dataclasses.is_dataclass(value):
        return None
    if isinstance(value, signal.Signals):
        return value.name
    if isinstance(value, tuple):
        return list(value)
    return value


def _or_null(schema: Schema, spec: dataclasses.Field[Any]) -> Schema:
    """``schema``, or null where the reader takes null as "not set" (a default of None)."""
    return {"anyOf": [schema, {"type": "null"}]} if spec.default is None else schema


def _text(spec: dataclasses.Field[Any]) -> Schema:
    # Numbers keep their source text (`0755` stays `0755`); booleans and null are refused (quote them).
    schema: Schema = {"type": ["string", "number"]}
    if spec.metadata.get("pattern"):
        schema = {"type": "string", "pattern": spec.metadata["pattern"]}
    return _or_null(schema, spec) if spec.metadata.get("nullable") else schema


def _signal(spec: dataclasses.Field[Any]) -> Schema:
    names = sorted(s.name for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP) and not s.name.startswith("SIG_"))
    any_case = "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in "|".join(n[3:] for n in names))
    return {"anyOf": [{"enum": names}, {"type": "string", "pattern": f"^\\s*(?:[Ss][Ii][Gg])?(?:{any_case})\\s*$"}]}


def _variant(spec: dataclasses.Field[Any]) -> Schema:
    """A section whose allowed keys depend on its tag (``auth.method``): one rule per word of the tag."""
    rules = spec.metadata
    cls, tag, variants = rules["cls"], rules["tag"], rules["variants"]
    out = _settings(cls)
    out.pop("additionalProperties")
    tag_default = next(f.default for f in dataclasses.fields(cls) if f.name == tag)
    cases = []
    for word, keys in variants.items():
        chosen: Schema = {"properties": {tag: {"const": word}}, "required": [tag]}
        if word == tag_default:
            chosen = {"anyOf": [chosen, {"not": {"required": [tag]}}]}
        then: Schema = {"propertyNames": {"enum": [tag, *keys]}}
        needed = [key for key, _ in rules.get("needs", {}).get(word, ())]
        if needed:
            then["required"] = needed
        cases.append({"if": chosen, "then": then})
    for first, second in rules.get("exclusive", ()):
        cases.append({"not": {"required": [first, second]}})
    out["allOf"] = cases
    return out


# How each kind of setting is described: one entry per word of ``Kind`` (as the reader's READERS).
KIND_SCHEMAS: dict[Kind, Callable[[dataclasses.Field[Any]], Schema]] = {
    "text": _text,
    "path": lambda spec: _or_null({"type": ["string", "number"], "minLength": 1}, spec),
    "url": lambda spec: {"type": "string", "pattern": f"^{spec.metadata.get('scheme') or '[a-z]+'}://"},
    "bool": lambda spec: _or_null({"anyOf": [{"type": "boolean"}, {"enum": [*_WORDS_TRUE_FALSE, 0, 1]}]}, spec),
    "duration": lambda spec: {"anyOf": [
        {"type": "number", **({"exclusiveMinimum": 0} if spec.metadata.get("positive") else {"minimum": 0})},
        {"type": "string", "pattern": _DURATION}]},
    "integer": lambda spec: {"anyOf": [{"type": "integer", "minimum": spec.metadata.get("minimum", 0)},
                                       {"type": "string", "pattern": r"^\s*\d+\s*$"}]},
    "number": lambda spec: {"anyOf": [{"type": "number", "minimum": spec.metadata.get("minimum", 0.0)},
                                      {"type": "string", "pattern": r"^\s*\d+(?:\.\d+)?\s*$"}]},
    "choice": lambda spec: {"enum": list(spec.metadata["choices"])},
    "signal": _signal,
    "names": lambda spec: {"type": ["array", "null"], "items": {"type": "string", "pattern": ENV_NAME}},
    "section": lambda spec: _settings(spec.metadata["cls"], nullable=True),
    "variant": _variant,
}


def _binding() -> Schema:
    """One variable: a literal or reference as a scalar, or a mapping with exactly one of ref/value/template."""
    one_of = ("ref", "value", "template")
    keys: Schema = {
        "ref": {"type": "string", "pattern": REFERENCE, "description": "a reference (SOURCE://PATH[#KEY]) or a template"},
        "value": {"type": ["string", "number"], "description": "a literal, always"},
        "template": {"type": ["string", "number"], "minLength": 1, "description": "a file whose {{ REF }} are rendered"},
        "file": {"anyOf": [{"type": "boolean"}, {"enum": [*_WORDS_TRUE_FALSE, 0, 1]}],
                 "description": "the child gets a private 0600 file holding the value; the variable holds its path"},
        "path": {"type": ["string", "number"], "minLength": 1, "description": "write the value to this exact path (implies file)"},
        "mode": {"type": ["string", "integer"], "pattern": "^0?[0-7]{3}$", "description": "of the file at path (default 0600)"},
        "default": {"type": ["string", "number"], "description": "used when the secret or key is missing"},
        "optional": {"anyOf": [{"type": "boolean"}, {"enum": [*_WORDS_TRUE_FALSE, 0, 1]}],
                     "description": "a missing secret leaves the variable unset"},
        "on_change": {"enum": list(ACTIONS), "description": "what a rotation of this variable does"},
    }
    if sorted(keys) != sorted(BINDING_KEYS):  # found by the tests, should the reader learn a key
        raise ValueError("the schema's binding keys differ from the reader's")
    return {
        "anyOf": [
            {"type": ["string", "number"]},
            {"type": "object", "properties": keys, "additionalProperties": False,
             "oneOf": [{"required": [key]} for key in one_of], "dependentRequired": {"mode": ["path"]}},
        ]
    }


def _env_from() -> Schema:
    keys: Schema = {"ref": {"type": "string", "pattern": REFERENCE, "description": "a whole secret (no #KEY)"},
                    "prefix": {"type": "string", "pattern": "^(?:[A-Za-z_][A-Za-z0-9_]*)?$", "description": "put before each key"}}
    if sorted(keys) != sorted(ENV_FROM_KEYS):
        raise ValueError("the schema's env_from keys differ from the reader's")
    return {"type": "object", "properties": keys, "required": ["ref"], "additionalProperties": False}
