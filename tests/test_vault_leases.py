"""Leased (dynamic) secrets, version checks and error mapping of the vault source.

Dynamic secrets come from OpenBao's real ``rabbitmq`` engine; the RabbitMQ
management API it calls to create and delete users is a small fake HTTP server
in this process, so lease ids, durations, renewal and revocation are all
OpenBao's own. A second fake answers like a sealed or rate-limited Vault.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from launcher.errors import AuthError, ManifestError, NotFoundError, TransientError
from launcher.sources.base import Lease
from launcher.sources.vault import VaultSourceConfig
from launcher.sources.vault.http import VaultAnswerError, VaultTransportError, vault_errors
from launcher.sources.vault.source import VaultSource
from tests.helpers import FakeHTTP, launcher_env, run_launcher
from tests.openbao import OpenBao, write_kv2

pytestmark = pytest.mark.vault


@pytest.fixture(scope="module")
def rabbit(openbao: OpenBao) -> Iterator[tuple[str, FakeHTTP]]:
    fake = FakeHTTP(status=201)
    mount = openbao.unique("rabbitmq")
    client = openbao.client
    client.sys.enable_secrets_engine("rabbitmq", path=mount)
    client.adapter.post(f"/v1/{mount}/config/connection",
                        json={"connection_uri": fake.url, "username": "guest", "password": "guest", "verify_connection": False})
    client.adapter.post(f"/v1/{mount}/config/lease", json={"ttl": 60, "max_ttl": 600})
    client.adapter.post(f"/v1/{mount}/roles/app", json={"vhosts": '{"/": {"configure": ".*", "write": ".*", "read": ".*"}}'})
    yield mount, fake
    fake.stop()


def source(openbao: OpenBao, **config: Any) -> VaultSource:
    return VaultSource(VaultSourceConfig(name="vault", **config), environ={**openbao.env(), "HOME": "/nonexistent"})


def test_leased_read_keeps_its_lease(openbao: OpenBao, rabbit: tuple[str, FakeHTTP]) -> None:
    mount, _ = rabbit
    src = source(openbao)
    try:
        secret = src.fetch(f"{mount}/creds/app", None)
        assert secret.fields is not None and set(secret.fields) == {"username", "password"}
        assert secret.version is None and secret.lease is not None
        assert secret.lease.duration == 60 and secret.lease.renewable
        assert secret.lease.lease_id not in repr(secret) and secret.fields["password"] not in repr(secret)
        assert src.current_version(f"{mount}/creds/app") is None  # no version checks on leased secrets
        renewed = src.renew_lease(secret.lease)
        assert renewed is not None and renewed.lease_id == secret.lease.lease_id and renewed.duration > 0
        src.revoke_lease(secret.lease.lease_id)
        assert src.renew_lease(secret.lease) is None  # gone: not renewable any more
        assert src.renew_lease(Lease("x", 10, renewable=False)) is None
        with pytest.raises(ManifestError, match="KV v2"):
            src.fetch(f"{mount}/creds/app", "1")
    finally:
        src.close()


def test_revoke_on_exit_revokes_every_lease(openbao: OpenBao, rabbit: tuple[str, FakeHTTP]) -> None:
    mount, fake = rabbit
    src = source(openbao, revoke_on_exit=True)
    users = [src.fetch(f"{mount}/creds/app", None).fields["username"] for _ in range(2)]  # type: ignore[index]
    src.close()
    deleted = {path for method, path in fake.seen if method == "DELETE"}
    assert {f"/api/users/{u}" for u in users} <= deleted


def test_leased_secret_through_the_cli(openbao: OpenBao, rabbit: tuple[str, FakeHTTP], tmp_path: Path) -> None:
    mount, _ = rabbit
    manifest = tmp_path / "launcher.yaml"
    # Both keys come from one read, hence one lease: the user and password match.
    manifest.write_text(f"version: 1\nenv:\n  URL: \"amqp://{{{{ vault://{mount}/creds/app#username }}}}:"
                        f"{{{{ vault://{mount}/creds/app#password }}}}@mq/\"\n")
    proc = run_launcher(["check", "-m", str(manifest)], env=launcher_env({**openbao.env(), "HOME": str(tmp_path)}))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split()[-2:] == ["-", "ok"]


def test_current_version_kv2_kv1_and_missing(openbao: OpenBao) -> None:
    base = openbao.unique("cv")
    write_kv2(openbao, f"{base}/db", {"a": "1"})
    write_kv2(openbao, f"{base}/db", {"a": "2"})
    kv1 = openbao.unique("kv1")
    openbao.client.sys.enable_secrets_engine("kv", path=kv1, options={"version": "1"})
    openbao.client.secrets.kv.v1.create_or_update_secret(path="x", secret={"a": "1"}, mount_point=kv1)
    src = source(openbao)
    try:
        assert src.current_version(f"secret/{base}/db") == "2"
        assert src.current_version(f"{kv1}/x") == src.fetch(f"{kv1}/x", None).version
        openbao.client.secrets.kv.v2.delete_latest_version_of_secret(path=f"{base}/db", mount_point="secret")
        with pytest.raises(NotFoundError, match="latest version"):
            src.current_version(f"secret/{base}/db")
        with pytest.raises(NotFoundError):
            src.current_version(f"secret/{base}/nope")
    finally:
        src.close()


def test_current_version_falls_back_to_a_data_read_without_metadata_access(openbao: OpenBao) -> None:
    base = openbao.unique("nometa")
    write_kv2(openbao, f"{base}/db", {"a": "1"})
    openbao.policy(f"{base}-data", f'path "secret/data/{base}/*" {{ capabilities = ["read"] }}')
    token = openbao.child_token([f"{base}-data"])
    src = VaultSource(VaultSourceConfig(name="vault"), environ={"VAULT_ADDR": openbao.addr, "VAULT_TOKEN": token})
    try:
        assert src.current_version(f"secret/{base}/db") == "1"
    finally:
        src.close()


@pytest.mark.parametrize(("status", "retry_after", "expected"), [(503, "7", 7.0), (429, None, None), (500, "2", 2.0)])
def test_sealed_or_busy_vault_is_transient_with_retry_after(status: int, retry_after: str | None, expected: float | None) -> None:
    fake = FakeHTTP(status=status, headers={"Retry-After": retry_after} if retry_after else {})
    src = VaultSource(VaultSourceConfig(name="vault"), environ={"VAULT_ADDR": fake.url, "VAULT_TOKEN": "t"})
    try:
        with pytest.raises(TransientError) as info:
            src.fetch("secret/app/db", None)
        assert info.value.retry_after == expected
        assert str(status) in info.value.message
    finally:
        src.close()
        fake.stop()


def _transport(cause: BaseException) -> VaultTransportError:
    return VaultTransportError(cause, 10.0)


_CONNECT_TIMEOUT = urllib3.exceptions.ConnectTimeoutError(None, "timed out")
_READ_TIMEOUT = urllib3.exceptions.ReadTimeoutError(None, "/v1/x", "timed out")  # type: ignore[arg-type]
# Every request of a Vault source (reads and hvac's logins, renewals and lease calls alike) fails as
# one of the transport's two exceptions; ``vault_errors`` maps both, once.
ERRORS = [
    (VaultAnswerError(400, {"errors": ["bad parameter"]}), ManifestError),
    (VaultAnswerError(401, {}), AuthError),
    (VaultAnswerError(403, {}), AuthError),
    (VaultAnswerError(404, {}), NotFoundError),
    (VaultAnswerError(429, {}), TransientError),
    (VaultAnswerError(503, {}), TransientError),
    (VaultAnswerError(502, {}), TransientError),
    (_transport(_CONNECT_TIMEOUT), TransientError),
    (_transport(_READ_TIMEOUT), TransientError),
    (_transport(urllib3.exceptions.NewConnectionError(None, "refused")), TransientError),  # type: ignore[arg-type]
    (_transport(urllib3.exceptions.SSLError("EOF occurred in violation of protocol")), TransientError),
    (_transport(urllib3.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")), AuthError),
    (_transport(urllib3.exceptions.LocationValueError("no host")), ManifestError),
    (VaultTransportError(None, detail="the answer is not Vault's (not a JSON object)"), TransientError),  # a proxy answering for Vault
]


@pytest.mark.parametrize(("raised", "mapped"), ERRORS, ids=[f"{type(e).__name__}-{i}" for i, (e, _) in enumerate(ERRORS)])
def test_error_mapping_table(raised: Exception, mapped: type[Exception]) -> None:
    with pytest.raises(mapped) as info, vault_errors("vault://secret/app/db", "http://127.0.0.1:8200"):
        raise raised
    cause = raised.cause if isinstance(raised, VaultTransportError) else raised
    assert type(info.value) is mapped and (cause is None or info.value.__cause__ is cause)
    assert str(info.value).startswith("vault://secret/app/db: ")


def test_login_rejected_is_auth_error() -> None:
    errors = vault_errors("source 'vault': approle login", "http://127.0.0.1:8200", login=True)
    with pytest.raises(AuthError, match="login rejected"), errors:
        raise VaultAnswerError(400, {"errors": ["invalid role or secret ID"]})
