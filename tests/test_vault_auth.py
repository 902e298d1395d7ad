"""Vault auth methods and the token lifecycle, against the real OpenBao dev server.

AppRole, JWT and "kubernetes" logins go through the CLI. No Kubernetes API is
available here, so the ``kubernetes`` method is exercised by mounting OpenBao's
``jwt`` method at the path ``kubernetes``: that covers what the launcher does
(read ``jwt_file``, POST ``{role, jwt}`` to ``auth/<mount>/login``, use the
token) but not OpenBao's TokenReview call to a cluster. Renewal and re-login
are unit-level: ``VaultSource`` with an injected clock, or a real short TTL
polled with a deadline.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from launcher.clock import Clock
from launcher.errors import AuthError
from launcher.sources.vault import VaultAuth, VaultSourceConfig
from launcher.sources.vault.source import VaultSource
from tests.fakes import ManualClock
from tests.helpers import launcher_env, run_launcher, wait_for
from tests.openbao import OpenBao, write_kv2

pytestmark = pytest.mark.vault
AUDIENCE = "launcher-tests"


@dataclass
class Auth:
    """Mounts, roles and a secret readable by the ``reader`` policy."""

    path: str  # KV v2 path under secret/
    value: str
    approle: str  # approle mount
    jwt: str  # jwt mount
    private_key: Any

    def jwt_token(self, subject: str = "app") -> str:
        now = int(time.time())
        claims = {"sub": subject, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + 600}
        return pyjwt.encode(claims, self.private_key, algorithm="RS256")


@pytest.fixture(scope="module")
def auth(openbao: OpenBao) -> Auth:
    path, value = openbao.unique("auth") + "/db", f"canary-auth-{secrets.token_hex(6)}"
    write_kv2(openbao, path, {"password": value})
    openbao.policy("reader", f'path "secret/data/{path}" {{ capabilities = ["read"] }}')
    client = openbao.client
    approle, jwt_mount = openbao.unique("approle"), openbao.unique("jwt")
    client.sys.enable_auth_method("approle", path=approle)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    # The same JWT validation at two paths: "jwt" for the jwt method, "kubernetes" standing in for Kubernetes.
    for mount in (jwt_mount, "kubernetes"):
        client.sys.enable_auth_method("jwt", path=mount)
        client.adapter.post(f"/v1/auth/{mount}/config", json={"jwt_validation_pubkeys": [pem]})
        client.adapter.post(f"/v1/auth/{mount}/role/app", json={
            "role_type": "jwt", "user_claim": "sub", "bound_audiences": [AUDIENCE], "token_policies": ["reader"], "token_ttl": "5m",
        })
    return Auth(path, value, approle, jwt_mount, key)


def approle(openbao: OpenBao, mount: str, **params: Any) -> tuple[str, str]:
    """Create a role on ``mount`` (params: token_ttl, token_type...); return (role_id, secret_id)."""
    name = openbao.unique("role")
    openbao.client.adapter.post(f"/v1/auth/{mount}/role/{name}", json={"token_policies": ["reader"], **params})
    role_id = openbao.client.adapter.get(f"/v1/auth/{mount}/role/{name}/role-id")["data"]["role_id"]
    secret_id = openbao.client.adapter.post(f"/v1/auth/{mount}/role/{name}/secret-id")["data"]["secret_id"]
    return role_id, secret_id


def run_with_source(tmp_path: Path, openbao: OpenBao, auth: Auth, source_yaml: str, **env: str) -> Any:
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(f"version: 1\nsources:\n  bao:\n    type: vault\n    address: {openbao.addr}\n{source_yaml}"
                        f"env:\n  X: bao://secret/{auth.path}#password\n")
    # No VAULT_ADDR / VAULT_TOKEN: the manifest's address and login must do it all.
    return run_launcher(["env", "-m", str(manifest), "--format", "json"], env=launcher_env({"HOME": str(tmp_path), **env}))


def test_approle_login_with_secret_id_file(openbao: OpenBao, auth: Auth, tmp_path: Path) -> None:
    role_id, secret_id = approle(openbao, auth.approle)
    (tmp_path / "sid").write_text(secret_id + "\n")
    src = f'    auth: {{method: approle, role_id: "${{ROLE_ID}}", secret_id_file: ./sid, mount: {auth.approle}}}\n'
    proc = run_with_source(tmp_path, openbao, auth, src, ROLE_ID=role_id)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"X": auth.value}


def test_approle_wrong_secret_id_is_77(openbao: OpenBao, auth: Auth, tmp_path: Path) -> None:
    role_id, _ = approle(openbao, auth.approle)
    (tmp_path / "sid").write_text("00000000-0000-0000-0000-000000000000")
    src = f'    auth: {{method: approle, role_id: "{role_id}", secret_id_file: ./sid, mount: {auth.approle}}}\n'
    proc = run_with_source(tmp_path, openbao, auth, src)
    assert proc.returncode == 77, proc.stderr
    assert "approle login" in proc.stderr and "0000-0000" not in proc.stderr


@pytest.mark.parametrize("method", ["jwt", "kubernetes"])
def test_jwt_and_kubernetes_login(openbao: OpenBao, auth: Auth, tmp_path: Path, method: str) -> None:
    (tmp_path / "token.jwt").write_text(auth.jwt_token())
    mount = f", mount: {auth.jwt}" if method == "jwt" else ""  # kubernetes: the default mount path
    src = f"    auth: {{method: {method}, role: app, jwt_file: ./token.jwt{mount}}}\n"
    proc = run_with_source(tmp_path, openbao, auth, src)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"X": auth.value}


def test_jwt_for_the_wrong_audience_is_77(openbao: OpenBao, auth: Auth, tmp_path: Path) -> None:
    now = int(time.time())
    token = pyjwt.encode({"sub": "app", "aud": "someone-else", "iat": now, "exp": now + 600}, auth.private_key, algorithm="RS256")
    (tmp_path / "token.jwt").write_text(token)
    proc = run_with_source(tmp_path, openbao, auth, f"    auth: {{method: jwt, role: app, jwt_file: ./token.jwt, mount: {auth.jwt}}}\n")
    assert proc.returncode == 77, proc.stderr
    assert token not in proc.stderr


def source_for(openbao: OpenBao, clock: Any = time.monotonic, token: str | None = None, **auth: Any) -> VaultSource:
    environ = {"VAULT_ADDR": openbao.addr, "HOME": "/nonexistent"}
    if token:
        environ["VAULT_TOKEN"] = token
    return VaultSource(VaultSourceConfig(name="vault", auth=VaultAuth(**auth)), environ=environ, clock=Clock(monotonic=clock))


def test_renewable_token_is_renewed_after_two_thirds_of_its_ttl(openbao: OpenBao, auth: Auth) -> None:
    token = openbao.child_token(["reader"], ttl="60s", renewable=True)
    clock = ManualClock()
    source = source_for(openbao, clock, token=token)
    try:
        ttl = source.token_ttl()
        assert ttl is not None and 50 < ttl <= 60
        source.maintain_token()  # too early: nothing happens
        assert not openbao.client.auth.token.lookup(token)["data"].get("last_renewal_time")
        clock.now += 41  # past 2/3 of 60 s
        source.maintain_token()
        assert openbao.client.auth.token.lookup(token)["data"].get("last_renewal_time")
        assert source.token_ttl() == pytest.approx(60, abs=2)
        assert source.fetch(f"secret/{auth.path}", None).fields == {"password": auth.value}
    finally:
        source.close()


def test_non_renewable_login_token_is_replaced_by_a_new_login(openbao: OpenBao, auth: Auth) -> None:
    role_id, secret_id = approle(openbao, auth.approle, token_type="batch", token_ttl="60s")  # batch: never renewable
    clock = ManualClock()
    source = source_for(openbao, clock, method="approle", role_id=role_id, secret_id=secret_id, mount=auth.approle)
    logins = f"auth/{auth.approle}/login"
    try:
        before = openbao.requests_to(logins)
        assert source.fetch(f"secret/{auth.path}", None).fields == {"password": auth.value}
        assert openbao.requests_to(logins) == before + 1
        clock.now += 41
        source.maintain_token()
        assert openbao.requests_to(logins) == before + 2
        assert source.token_ttl() == pytest.approx(60, abs=2)
        assert source.fetch(f"secret/{auth.path}", None).fields == {"password": auth.value}
    finally:
        source.close()


def test_login_token_near_its_max_ttl_is_replaced(openbao: OpenBao, auth: Auth) -> None:
    # Real time: the server caps the renewal at the max TTL (3 s), which is what we react to.
    role_id, secret_id = approle(openbao, auth.approle, token_ttl="2s", token_max_ttl="3s")
    source = source_for(openbao, method="approle", role_id=role_id, secret_id=secret_id, mount=auth.approle)
    logins = f"auth/{auth.approle}/login"
    try:
        before = openbao.requests_to(logins)
        source.maintain_token()  # logs in
        assert openbao.requests_to(logins) == before + 1

        def relogged() -> bool:
            source.maintain_token()
            return openbao.requests_to(logins) == before + 2

        wait_for(relogged, timeout=10, interval=0.1, what="a second AppRole login")
        assert source.fetch(f"secret/{auth.path}", None).fields == {"password": auth.value}
    finally:
        source.close()


def test_token_method_without_any_token_is_an_auth_error(openbao: OpenBao) -> None:
    source = source_for(openbao)
    try:
        with pytest.raises(AuthError, match="no token"):
            source.fetch("secret/anything", None)
    finally:
        source.close()
