"""The documentation: every manifest it shows is valid, its generated parts match the code,
every page is in the site's navigation, README stays a front door, and the docs cite only the
repository's own files (docs/development.md, "The documentation").

A YAML code block of README.md or docs/**/*.md whose top level has ``version:`` is a whole
manifest: it must pass ``launcher check --offline`` and the manifest's JSON Schema. The
files it names (a template, a ``file`` source's secrets) follow it as blocks with a
``title="NAME"``, up to the next manifest of the page; they are written next to it under
their titles (docs/development.md, "The documentation").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from launcher.manifest.schema import manifest_schema
from tests.helpers import launcher_env, run_launcher
from tools import docs_reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
README_MAX_LINES = 300

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")
_TITLE = re.compile(r'title="([^"]+)"')
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language, its title (Material's ``title="..."``), its text and line."""

    page: Path
    line: int
    language: str
    title: str | None
    text: str

    @property
    def is_manifest(self) -> bool:
        return self.language in ("yaml", "yml") and re.search(r"^version:", self.text, re.M) is not None

    @property
    def label(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced block of a Markdown page, nested fences (inside a longer fence) left as text."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = _FENCE.match(lines[j])
            if closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence) and not closing["info"].strip():
                break
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        words = info.split()
        title = _TITLE.search(info)
        found.append(Block(page, i + 1, words[0] if words else "", title.group(1) if title else None, "\n".join(body) + "\n"))
        i = j + 1
    return found


def manifests() -> list[tuple[Block, list[Block]]]:
    """Each manifest block with the titled blocks that follow it on its page (its companion files)."""
    out: list[tuple[Block, list[Block]]] = []
    for page in [ROOT / "README.md", *PAGES]:
        current: tuple[Block, list[Block]] | None = None
        for block in blocks(page):
            if block.is_manifest:
                current = (block, [])
                out.append(current)
            elif current is not None and block.title:
                current[1].append(block)
    return out


MANIFESTS = manifests()


def test_the_docs_show_many_manifests() -> None:
    # A parser that finds nothing would make the test below pass vacuously.
    assert len(MANIFESTS) >= 20
    assert {b.page.name for b, _ in MANIFESTS} >= {"README.md", "manifest.md", "getting-started.md", "vault.md", "failover.md"}


@pytest.mark.parametrize(("manifest", "companions"), MANIFESTS, ids=[b.label for b, _ in MANIFESTS])
def test_documented_manifest_is_valid(manifest: Block, companions: list[Block], tmp_path: Path) -> None:
    data = yaml.safe_load(manifest.text)
    assert isinstance(data, dict) and "version" in data, f"{manifest.label}: not a manifest"
    name = manifest.title or "launcher.yaml"
    (tmp_path / name).write_text(manifest.text, encoding="utf-8")
    for companion in companions:
        assert companion.title != name, f"{companion.label}: a companion file cannot replace its manifest"
        target = tmp_path / str(companion.title)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(companion.text, encoding="utf-8")
    env = launcher_env()
    for variable in _VARIABLE.findall(manifest.text):  # ${ROLE_ID} and the like: set, as a deployment would
        env.setdefault(variable, "placeholder")
    proc = run_launcher(["check", "--offline", "-m", name], env=env, cwd=tmp_path)
    assert proc.returncode == 0, f"{manifest.label}: {proc.stderr}"
    assert "valid" in proc.stdout
    errors = sorted(jsonschema.Draft202012Validator(manifest_schema()).iter_errors(data), key=str)
    assert not errors, f"{manifest.label}: {errors[0].message}"


def test_companion_convention_is_exercised() -> None:
    # At least one documented manifest needs a template and one a secrets file, and gets it.
    titles = {c.title for _, companions in MANIFESTS for c in companions}
    assert {"secrets.dev.yaml", "app.ini.tmpl"} <= titles


def test_the_block_parser_reads_titles_indents_and_nested_fences(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text('````markdown\n```yaml\nversion: 1\n```\n````\n\n- item\n\n'
                    '  ```yaml title="a.yaml"\n  version: 1\n  env: {A: b}\n  ```\n', encoding="utf-8")
    found = blocks(page)
    assert [(b.language, b.title) for b in found] == [("markdown", None), ("yaml", "a.yaml")]
    assert found[0].text == "```yaml\nversion: 1\n```\n"
    assert found[1].text == "version: 1\nenv: {A: b}\n" and found[1].is_manifest


def test_generated_reference_is_current() -> None:
    stale = docs_reference.outdated()
    assert not stale, f"out of date: {', '.join(stale)} (run: python -m tools.docs_reference)"


def test_generated_blocks_are_filled() -> None:
    manifest = (DOCS / "reference" / "manifest.md").read_text(encoding="utf-8")
    assert "| `watch.interval` | duration > 0 | `1m` |" in manifest
    assert "| `auth.role_id` | `approle` (required) |" in manifest
    cli = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    names = ("run", "exec", "check", "env", "redact", "init", "schema", "completion")
    assert all(f"### `launcher {name} --help`" in cli for name in names)


def _nav_pages(entries: list[object]) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            pages += _nav_pages(value)
        else:
            pages.append(str(value))
    return pages


def test_every_page_is_in_the_navigation_and_every_entry_exists() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(config["nav"])
    assert sorted(nav) == sorted(str(p.relative_to(DOCS)) for p in PAGES)


def test_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    for marker in ("ci:test-command", "bundle:glibc-floor"):
        assert f"<!-- {marker} -->" in readme and f"<!-- /{marker} -->" in readme
    for tool in ("envconsul", "Vault Agent", "vault-env", "tini", "dumb-init", "op run", "doppler run"):
        assert tool in readme


# A document outside the repository, or a section number of one, means nothing to a reader of the
# site: a page says the thing itself, or links to the page that does.
_OUTSIDE = re.compile(r"DESIGN(\.md| section)|\.\./shared/")


def test_the_docs_cite_only_the_repository() -> None:
    texts = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *PAGES, *sorted(ROOT.glob("examples/*/README.md"))]
    cited = [f"{path.relative_to(ROOT)}:{n}" for path in texts
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if _OUTSIDE.search(line)]
    assert not cited, cited


def test_readme_links_resolve() -> None:
    # The site's own links are checked by `mkdocs build --strict`; README is not in the site.
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text(encoding="utf-8"))
    local = [t for t in targets if "://" not in t]
    missing = [t for t in local if not (ROOT / t).exists()]
    assert local and not missing, missing
