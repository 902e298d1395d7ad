"""Write the generated parts of the reference pages from the code, so that they cannot drift.

    python -m tools.docs_reference           # rewrite the generated blocks in docs/
    python -m tools.docs_reference --check   # exit 1 if a block is out of date (tests/test_docs.py)

A generated block sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``
in a page; everything outside the markers is written by hand. The blocks:

- ``sections`` (docs/reference/manifest.md): one table per manifest section (cache, retry,
  watch, process, audit, metrics), from the config dataclasses' ``setting()`` declarations:
  the same declarations the manifest reader and ``launcher schema`` read;
- ``sources`` (docs/reference/manifest.md): one table per source ``type``, nested sections
  (``tls``, Vault's ``auth`` by method) included;
- ``cli`` (docs/reference/cli.md): ``launcher --help`` and each command's ``--help``, as
  click prints them at a fixed width.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HELP_WIDTH = 88  # the width the CLI page shows, whatever the terminal that regenerates it

KIND_WORDS = {
    "text": "string", "path": "path", "url": "URL", "bool": "boolean", "duration": "duration", "integer": "integer",
    "number": "number", "signal": "signal", "names": "list of variable names", "section": "mapping",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _duration(seconds: float) -> str:
    """28800.0 -> ``8h``, 90.0 -> ``1m30s``, 0.5 -> ``500ms``: the manifest's own spelling."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    out, left = "", int(seconds)
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            out += f"{left // size}{unit}"
            left %= size
    return out


def _default(spec: dataclasses.Field[Any]) -> str:
    value = spec.default_factory() if callable(spec.default_factory) else spec.default
    kind = spec.metadata["kind"]
    if spec.metadata.get("required"):
        return "(required)"
    if value is dataclasses.MISSING or value == "":
        return ""
    if value is None or dataclasses.is_dataclass(value):
        return ""
    if kind == "duration":
        return f"`{_duration(float(value))}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, signal.Signals):
        return f"`{value.name}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(value) + "]`" if value else "`[]`"
    return f"`{value}`"


def _type(spec: dataclasses.Field[Any]) -> str:
    rules = spec.metadata
    kind = rules["kind"]
    if kind == "choice":
        return "one of " + ", ".join(f"`{word}`" for word in rules["choices"])
    if kind == "variant":
        return f"mapping, by `{rules['tag']}`"
    words = KIND_WORDS[kind]
    if kind == "names" and rules.get("extends"):
        words += " (added to the default)"
    if kind in ("integer", "number") and rules.get("minimum"):
        words += f" >= {rules['minimum']:g}"
    if kind == "duration" and rules.get("positive"):
        words += " > 0"
    return words


def _settings(cls: type, skip: tuple[str, ...] = ()) -> Iterator[dataclasses.Field[Any]]:
    for spec in dataclasses.fields(cls):
        if "kind" in spec.metadata and spec.name not in skip:
            yield spec


def settings_table(cls: type, prefix: str = "", skip: tuple[str, ...] = ()) -> str:
    """A Markdown table of ``cls``'s settings; nested sections get tables of their own below it."""
    rows = ["| setting | type | default | meaning |", "|---|---|---|---|"]
    nested: list[str] = []
    for spec in _settings(cls, skip):
        rows.append(f"| `{prefix}{spec.name}` | {_cell(_type(spec))} | {_cell(_default(spec))} | {_cell(spec.metadata.get('help', ''))} |")
        if spec.metadata["kind"] == "section":
            nested.append(f"`{prefix}{spec.name}`:\n\n" + settings_table(spec.metadata["cls"], f"{prefix}{spec.name}."))
        elif spec.metadata["kind"] == "variant":
            nested.append(variant_table(spec, f"{prefix}{spec.name}."))
    return "\n\n".join(["\n".join(rows), *nested])


def variant_table(spec: dataclasses.Field[Any], prefix: str) -> str:
    """A section whose keys depend on its tag (Vault's ``auth.method``): which keys each word allows."""
    rules = spec.metadata
    cls, tag, variants = rules["cls"], rules["tag"], rules["variants"]
    needs = {word: [key for key, _ in pairs] for word, pairs in rules.get("needs", {}).items()}
    rows = [f"| setting | `{tag}` | default | meaning |", "|---|---|---|---|"]
    for field in _settings(cls):
        if field.name == tag:
            rows.append(f"| `{prefix}{tag}` | {_cell(_type(field))} | {_cell(_default(field))} | {_cell(field.metadata.get('help', ''))} |")
            continue
        words = [w for w, keys in variants.items() if field.name in keys]
        shown = ", ".join(f"`{w}`" + (" (required)" if field.name in needs.get(w, ()) else "") for w in words)
        rows.append(f"| `{prefix}{field.name}` | {shown} | {_cell(_default(field))} | {_cell(field.metadata.get('help', ''))} |")
    exclusive = "; ".join(f"`{a}` and `{b}` exclude each other" for a, b in rules.get("exclusive", ()))
    title = f"`{prefix.rstrip('.')}` (the keys allowed depend on `{tag}`" + (f"; {exclusive}" if exclusive else "") + "):"
    return title + "\n\n" + "\n".join(rows)


def sections_block() -> str:
    from launcher.manifest.schema import SECTIONS

    parts = []
    for name, cls in SECTIONS.items():
        parts.append(f"### `{name}`\n\n" + settings_table(cls, f"{name}."))
    return "\n\n".join(parts)


def sources_block() -> str:
    from launcher.model.config import SourceConfig
    from launcher.sources import catalog, registry

    common = [spec.name for spec in _settings(SourceConfig)]
    parts = ["### Every source\n\n" + settings_table(SourceConfig)]
    for kind in registry.types():
        config = catalog.backend(kind).config
        parts.append(f"### `type: {kind}`\n\n" + settings_table(config, skip=tuple(common)))
    return "\n\n".join(parts)


def cli_block() -> str:
    import click

    from launcher.cli import cli

    def help_of(command: click.Command, name: str, parent: click.Context | None) -> tuple[str, click.Context]:
        settings = {**command.context_settings, "terminal_width": HELP_WIDTH, "max_content_width": HELP_WIDTH}
        ctx = click.Context(command, info_name=name, parent=parent, **settings)
        return command.get_help(ctx), ctx

    text, root = help_of(cli, "launcher", None)
    parts = ["### `launcher --help`\n\n```text\n" + text + "\n```"]
    for name in sorted(cli.commands):
        text, _ = help_of(cli.commands[name], name, root)
        parts.append(f"### `launcher {name} --help`\n\n```text\n{text}\n```")
    return "\n\n".join(parts)


BLOCKS: dict[str, tuple[str, Callable[[], str]]] = {
    "sections": ("docs/reference/manifest.md", sections_block),
    "sources": ("docs/reference/manifest.md", sources_block),
    "cli": ("docs/reference/cli.md", cli_block),
}


def render(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` replaced by ``body``; ValueError if the markers are missing."""
    pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no generated:{name} markers")
    return pattern.sub(lambda m: m.group(1) + body.strip() + "\n" + m.group(2), text, count=1)


def outdated(root: Path = ROOT) -> dict[str, tuple[str, str]]:
    """Each page whose generated blocks differ from the code: path -> (text now, text wanted)."""
    pages: dict[str, tuple[str, str]] = {}
    for name, (page, make) in BLOCKS.items():
        now, wanted = pages.get(page, (None, None))
        if now is None:
            now = wanted = (root / page).read_text(encoding="utf-8")
        assert wanted is not None
        pages[page] = (now, render(wanted, name, make()))
    return {page: pair for page, pair in pages.items() if pair[0] != pair[1]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only report out-of-date pages (exit 1)")
    opts = ap.parse_args(argv)
    stale = outdated()
    for page, (_, wanted) in stale.items():
        if opts.check:
            print(f"{page}: generated blocks are out of date (run: python -m tools.docs_reference)", file=sys.stderr)
        else:
            (ROOT / page).write_text(wanted, encoding="utf-8")
            print(f"wrote {page}")
    return 1 if stale and opts.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
