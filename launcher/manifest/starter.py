"""The starter manifest ``launcher init`` writes, and the demo secrets beside it.

The manifest it writes passes ``launcher check --offline``; the demo secrets file is
created 0600 from its first byte, and never overwrites one that exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from launcher.errors import UsageError, WouldOverwriteError

STARTER_MANIFEST = """\
# launcher manifest: environment variable names -> secret references.
# Reference: SOURCE://PATH[#KEY][?version=V]   (docs: README.md, "The manifest")
version: 1

sources:
  # A local YAML/JSON file: the offline default for demos and tests.
  dev:
    type: file
    path: ./secrets.dev.yaml
  # HashiCorp Vault / OpenBao (address defaults to $VAULT_ADDR, token to $VAULT_TOKEN):
  # prod:
  #   type: vault
  #   address: https://vault.example.com:8200
  #   auth: {method: approle, role_id: "${ROLE_ID}", secret_id_file: /run/secrets/sid}
  # Azure Key Vault:
  # corp:
  #   type: azure
  #   vault_url: https://corp-kv.vault.azure.net/
  #   credential: default

env:
  DB_PASSWORD: dev://app/db#password      # the `password` field of app/db
  API_KEY: dev://app/api-key              # a single value
  LOG_LEVEL: info                         # not a reference: a literal
  # TLS_KEY: {ref: corp://tls-key, file: true}       # written to a 0600 file; the variable holds its path
  # FEATURE_TOKEN: {ref: prod://secret/app/flags#token, default: ""}

# env_from:
#   - ref: prod://secret/app/config
#     prefix: APP_

watch:
  enabled: false          # `launcher run --watch` turns it on
  interval: 60s
  on_change: restart      # restart | signal | exit | ignore
"""

STARTER_SECRETS = """\
# Demo secrets for the `dev` file source. Never commit real secrets.
app:
  db:
    user: app
    password: change-me
  api-key: dev-api-key
"""


def write_starter(path: str, force: bool = False) -> None:
    """Write the starter manifest at ``path`` and ``secrets.dev.yaml`` beside it (when absent).

    Raises ``WouldOverwriteError`` (73) for an existing ``path`` unless ``force``, and
    ``UsageError`` (2) when a file cannot be written.
    """
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
        return
    except OSError as exc:
        raise UsageError(f"cannot write {secrets}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(STARTER_SECRETS)
