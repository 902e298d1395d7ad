"""The starter manifest ``launcher init`` writes, and the demo secrets beside it.

The manifest it writes passes ``launcher check --offline`` and offers every backend of the
source registry (commented out);  the demo secrets file is
created 0600 from its first byte, and never overwrites one that exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from launcher.errors import UsageError, WouldOverwriteError
from launcher.manifest.schema import SCHEMA_FILE, schema_text
from launcher.sources import catalog, registry

_HEAD = """\
# launcher manifest: environment variable names -> secret references.
# Reference: SOURCE://PATH[#KEY][?version=V]   (docs: docs/reference/manifest.md)
version: 1

sources:
  # A local YAML/JSON file: the offline default for demos and tests.
  dev:
    type: file
    path: ./secrets.dev.yaml
"""

_TAIL = """
env:
  DB_PASSWORD: dev://app/db#password      # the `password` field of app/db
  API_KEY: dev://app/api-key              # a single value
  LOG_LEVEL: info                         # not a reference: a literal
  # TLS_KEY: {ref: my-azure://tls-key, file: true}       # written to a 0600 file; the variable holds its path
  # FEATURE_TOKEN: {ref: my-vault://secret/app/flags#token, default: ""}

# env_from:
#   - ref: my-vault://secret/app/config
#     prefix: APP_

watch:
  enabled: false          # `launcher run --watch` turns it on
  interval: 60s
  on_change: restart      # restart | signal | exit | ignore
"""


def starter_manifest() -> str:
    """The starter manifest: a live ``file`` source, and every other backend of the registry as a
    commented example (its label, ``type:`` and the settings its ``BACKEND.starter`` shows), so a
    backend added to the registry is offered here without editing this module."""
    blocks = [_HEAD]
    for kind in registry.REGISTRY:
        if kind == "file":
            continue  # the live `dev` source above
        backend = catalog.backend(kind)  # its settings module only: an SDK loads when a source is opened
        notes = [f"built in as {kind}://" if registry.REGISTRY[kind].builtin else ""]
        notes.append(f"pip install 'secret-launcher[{backend.extra}]'" if backend.extra else "")
        note = "; ".join(n for n in notes if n)
        lines = [f"{registry.label(kind)}{f' ({note})' if note else ''}:", f"my-{kind}:", f"  type: {kind}"]
        lines += [f"  {line}" for line in backend.starter.splitlines()]
        blocks.append("".join(f"  # {line}\n" for line in lines))
    blocks.append(_TAIL)
    return "".join(blocks)


STARTER_SECRETS = """\
# Demo secrets for the `dev` file source. Never commit real secrets.
app:
  db:
    user: app
    password: change-me
  api-key: dev-api-key
"""


def write_starter(path: str, force: bool = False) -> None:
    """Write the starter manifest at ``path``, and beside it (when absent) ``secrets.dev.yaml``
    and the manifest's JSON Schema (``launcher.schema.json``), which the manifest's first line
    names for editors (yaml-language-server): completion and checking as it is typed, offline,
    and for exactly this launcher's version.

    Raises ``WouldOverwriteError`` (73) for an existing ``path`` unless ``force``, and
    ``UsageError`` (2) when a file cannot be written.
    """
    target = Path(path)
    try:
        # "x" refuses an existing file without a check-then-write race.
        with open(target, "w" if force else "x", encoding="utf-8") as fh:
            fh.write(f"# yaml-language-server: $schema={SCHEMA_FILE}\n" + starter_manifest())
    except FileExistsError:
        raise WouldOverwriteError(f"{path} already exists (use --force to overwrite)") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    _write_new(target.parent / SCHEMA_FILE, schema_text(), 0o644)
    # Demo secrets, but secrets-shaped: private from the first byte.
    _write_new(target.parent / "secrets.dev.yaml", STARTER_SECRETS, 0o600)


def _write_new(path: Path, text: str, mode: int) -> None:
    """Write ``path`` unless it exists (a file of the user's is never replaced); ``UsageError`` when it cannot be."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
