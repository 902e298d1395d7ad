"""Issued secrets against a real OpenBao (docs/guides/issued-certificates.md): pki ``issue/ROLE`` and transit ``decrypt/KEY``.

Every command a user runs (``exec``, ``run``, ``check``, the Python API) issues **one**
certificate per distinct reference-without-key: certificate, key and CA of one answer,
counted in OpenBao's own audit log. Transit ciphertexts with ``+`` and ``/`` are sent
as written; errors have the exit codes OpenBao's answers call for. No private key ever
reaches a log line, an error, ``check`` output or the audit trail. (Renewal under
``run --watch``: test_vault_pki_watch.py.)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import launcher
from tests.helpers import HELPERS_DIR, launcher_env, run_launcher, wait_for
from tests.openbao import OpenBao, enable_pki, enable_transit, encrypt

pytestmark = pytest.mark.vault

ROOT = Path(__file__).resolve().parent.parent
READ_FILES = [sys.executable, str(HELPERS_DIR / "read_files.py")]


@pytest.fixture(scope="module")
def pki(openbao: OpenBao) -> str:
    mount = openbao.unique("pki")
    enable_pki(openbao, mount)
    return mount


@pytest.fixture(scope="module")
def transit(openbao: OpenBao) -> str:
    mount = openbao.unique("transit")
    enable_transit(openbao, mount)
    return mount


@pytest.fixture
def role(openbao: OpenBao, pki: str) -> str:
    """A role of its own for each test, so OpenBao's audit log counts this test's issues only."""
    name = openbao.unique("role")
    openbao.client.write(f"{pki}/roles/{name}", allowed_domains="internal", allow_subdomains=True, max_ttl="72h",
                         key_type="ec", key_bits=256)
    return name


def issue_ref(pki: str, role: str, key: str, cn: str = "app.internal", ttl: str = "1h") -> str:
    return f"vault://{pki}/issue/{role}?common_name={cn}&ttl={ttl}#{key}"


def manifest(tmp: Path, env: dict[str, Any], **extra: Any) -> Path:
    """A manifest whose secret files stay under ``tmp`` (``exec`` leaves them for its child)."""
    path = tmp / "launcher.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "env": env, "process": {"files_dir": str(tmp)}, **extra}))
    return path


def tls_env(pki: str, role: str, tmp: Path) -> dict[str, Any]:
    return {
        "TLS_CERT": {"ref": issue_ref(pki, role, "certificate"), "path": str(tmp / "tls.crt")},
        "TLS_KEY": {"ref": issue_ref(pki, role, "private_key"), "file": True},
        "TLS_CA": issue_ref(pki, role, "issuing_ca"),
        "TLS_CHAIN": issue_ref(pki, role, "ca_chain"),
        "SERIAL": issue_ref(pki, role, "serial_number"),
    }


def issued_by_openbao(openbao: OpenBao, pki: str, role: str) -> int:
    return openbao.requests_to(f"{pki}/issue/{role}")


def assert_one_issuance(seen: dict[str, Any], ca_pem: str) -> x509.Certificate:
    """Certificate, key, CA and chain of one answer: the key is the certificate's, the CA signed it."""
    files, env = seen["files"], seen["env"]
    cert = x509.load_pem_x509_certificate(files["TLS_CERT"].encode())
    key = serialization.load_pem_private_key(files["TLS_KEY"].encode(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    ca = x509.load_pem_x509_certificate(env["TLS_CA"].encode())
    cert.verify_directly_issued_by(ca)
    assert env["TLS_CA"].strip() == ca_pem.strip()
    assert "-----BEGIN CERTIFICATE-----" in env["TLS_CHAIN"] and "[" not in env["TLS_CHAIN"]  # joined, not JSON
    assert env["SERIAL"] == serial_text(cert)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "app.internal"
    return cert


def serial_text(cert: x509.Certificate) -> str:
    number = cert.serial_number
    return ":".join(f"{b:02x}" for b in number.to_bytes((number.bit_length() + 7) // 8, "big"))


@pytest.fixture(scope="module")
def ca_pem(openbao: OpenBao, pki: str) -> str:
    return str(openbao.client.read(f"{pki}/cert/ca")["data"]["certificate"])


@pytest.mark.parametrize("command", ["exec", "run"])
def test_one_issuance_gives_a_matching_certificate_key_and_ca(openbao: OpenBao, pki: str, role: str, ca_pem: str,
                                                              tmp_path: Path, command: str) -> None:
    path = manifest(tmp_path, tls_env(pki, role, tmp_path))
    out = tmp_path / "seen.json"
    trail = tmp_path / "audit.jsonl"
    names = ["TLS_CERT", "TLS_KEY", "TLS_CA", "TLS_CHAIN", "SERIAL"]
    proc = run_launcher(["--log-level", "debug", command, "-m", str(path), "--audit", str(trail), "--", *READ_FILES, str(out), *names],
                        env=launcher_env({**openbao.env(), "HOME": str(tmp_path)}))
    assert proc.returncode == 0, proc.stderr
    cert = assert_one_issuance(json.loads(out.read_text()), ca_pem)
    assert wait_for(lambda: issued_by_openbao(openbao, pki, role), what="the issue in OpenBao's audit log") == 1
    assert openbao.requests_to(f"sys/internal/ui/mounts/{pki}/issue/{role}") == 1  # the mount's type, asked once
    events = [json.loads(line) for line in trail.read_text().splitlines()]
    (issued,) = [e for e in events if e["event"] == "cert_issue"]
    assert issued["version"] == serial_text(cert) and issued["ref"] == f"vault://{pki}/issue/{role}?common_name=app.internal&ttl=1h"
    not_after = cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S")
    assert issued["expires_at"].startswith(not_after)
    assert issued["serial"] == issued["version"] and issued["not_after"] == issued["expires_at"]  # in its own words too
    assert "PRIVATE KEY" not in proc.stderr + trail.read_text()


def test_check_issues_once_and_shows_the_serial_and_the_expiry(openbao: OpenBao, pki: str, role: str, tmp_path: Path) -> None:
    path = manifest(tmp_path, tls_env(pki, role, tmp_path), watch={"enabled": True})
    env = launcher_env({**openbao.env(), "HOME": str(tmp_path)})
    text = run_launcher(["--log-level", "debug", "check", "-m", str(path)], env=env)
    assert text.returncode == 0, text.stderr
    header, *rows = text.stdout.splitlines()
    assert header.split() == ["NAME", "REF", "VERSION", "STATUS", "EXPIRES", "NEXT_CHECK"]
    serials = {row.split()[2] for row in rows}
    expiries = {row.split()[4] for row in rows}
    assert len(serials) == 1 and len(expiries) == 1 and ":" in next(iter(serials))
    expires = datetime.strptime(next(iter(expiries)), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert 3500 < (expires - datetime.now(timezone.utc)).total_seconds() <= 3600  # ttl=1h
    assert all(row.split()[5] == "renew~40m" for row in rows)  # 2/3 of the hour left
    as_json = run_launcher(["check", "-m", str(path), "--format", "json"], env=env)
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    jsonschema.validate(document, json.loads((ROOT / "docs" / "check-format.schema.json").read_text()))
    assert {b["expires"] for b in document["bindings"]} == {b["expires"] for b in document["bindings"] if b["version"]}
    assert len({b["version"] for b in document["bindings"]}) == 1
    assert issued_by_openbao(openbao, pki, role) == 2  # one per check
    for out in (text, as_json):
        assert "PRIVATE KEY" not in out.stdout + out.stderr


def test_the_python_api_issues_once_for_get_and_load(openbao: OpenBao, pki: str, role: str, ca_pem: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in openbao.env().items():
        monkeypatch.setenv(name, value)
    with launcher.Client(manifest(tmp_path, tls_env(pki, role, tmp_path)), environ={}) as client:
        cert_pem = client.get(issue_ref(pki, role, "certificate"))
        key_pem = client.get(issue_ref(pki, role, "private_key"))
        assert issued_by_openbao(openbao, pki, role) == 1  # the key came from the same answer, cached
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
        secrets = client.load()  # from the cache too: the certificate is far from its renewal
        assert secrets.version("TLS_CERT") == serial_text(cert)
        assert "PRIVATE KEY" not in repr(secrets)
    assert issued_by_openbao(openbao, pki, role) == 1


def test_references_that_differ_in_data_are_separate_issues(openbao: OpenBao, pki: str, role: str, tmp_path: Path) -> None:
    env = {"A": issue_ref(pki, role, "serial_number"), "B": issue_ref(pki, role, "serial_number", cn="other.internal"),
           "A_CERT": issue_ref(pki, role, "certificate")}
    proc = run_launcher(["env", "-m", str(manifest(tmp_path, env)), "--format", "json"],
                        env=launcher_env({**openbao.env(), "HOME": str(tmp_path)}))
    assert proc.returncode == 0, proc.stderr
    values = json.loads(proc.stdout)
    assert values["A"] != values["B"]
    assert values["A"] == serial_text(x509.load_pem_x509_certificate(values["A_CERT"].encode()))
    assert issued_by_openbao(openbao, pki, role) == 2


def test_revoke_on_exit_revokes_what_run_issued(openbao: OpenBao, pki: str, role: str, tmp_path: Path) -> None:
    path = manifest(tmp_path, {"SERIAL": issue_ref(pki, role, "serial_number")},
                    sources={"bao": {"type": "vault", "revoke_on_exit": True}})
    path.write_text(path.read_text().replace("vault://", "bao://"))
    out, trail = tmp_path / "seen.json", tmp_path / "audit.jsonl"
    proc = run_launcher(["run", "-m", str(path), "--audit", str(trail), "--", *READ_FILES, str(out), "SERIAL"],
                        env=launcher_env({**openbao.env(), "HOME": str(tmp_path)}))
    assert proc.returncode == 0, proc.stderr
    serial = json.loads(out.read_text())["env"]["SERIAL"]
    assert openbao.client.read(f"{pki}/cert/{serial}")["data"]["revocation_time"] > 0
    events = [json.loads(line) for line in trail.read_text().splitlines()]
    (revoked,) = [e for e in events if e["event"] == "cert_revoke"]
    assert revoked["version"] == serial and revoked["outcome"] == "ok" and revoked["expires_at"]
    assert [e["event"] for e in events].index("cert_revoke") < [e["event"] for e in events].index("exit")
    assert openbao.requests_to(f"{pki}/revoke") >= 1


@pytest.mark.parametrize(
    ("ref", "code", "words"),
    [
        ("vault://{pki}/issue/no-such-role?common_name=app.internal#certificate", 66, "unknown role"),
        ("vault://{pki}/issue/{role}?common_name=app.example.com#certificate", 78, "not allowed by this role"),
        ("vault://{pki}/issue/{role}?common_name=app.internal&no_such_field=1#certificate", 0, ""),  # OpenBao ignores it
        ("vault://secret/issue/x?common_name=app.internal#certificate", 78, "request data only goes to"),
        ("vault://no-such-mount/issue/x?common_name=app.internal#certificate", 66, "no pki or transit mount at no-such-mount/"),
        ("vault://{pki}/issue/{role}?common_name=app.internal&version=2#certificate", 78, "cannot be combined"),
        ("vault://secret/app/db?common_name=app.internal#certificate", 78, "only ?version=V is allowed"),
    ],
)
def test_issue_errors(openbao: OpenBao, pki: str, role: str, tmp_path: Path, ref: str, code: int, words: str) -> None:
    path = manifest(tmp_path, {"X": ref.format(pki=pki, role=role)}, retry={"attempts": 1})
    proc = run_launcher(["check", "-m", str(path)], env=launcher_env({**openbao.env(), "HOME": str(tmp_path)}))
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert "PRIVATE KEY" not in proc.stdout + proc.stderr


def test_a_policy_without_update_on_the_role_is_77(openbao: OpenBao, pki: str, role: str, tmp_path: Path) -> None:
    policy = openbao.unique("pol")
    openbao.policy(policy, f'path "{pki}/issue/{role}" {{ capabilities = ["read"] }}')
    token = openbao.child_token([policy])
    proc = run_launcher(["check", "-m", str(manifest(tmp_path, {"X": issue_ref(pki, role, "certificate")}))],
                        env=launcher_env({**openbao.env(), "VAULT_TOKEN": token, "HOME": str(tmp_path)}))
    assert proc.returncode == 77, proc.stderr
    assert "permission denied" in proc.stderr


def test_the_documented_policy_is_enough(openbao: OpenBao, pki: str, transit: str, role: str, tmp_path: Path) -> None:
    """The policy docs/guides/issued-certificates.md gives: update on issue/ROLE, decrypt/KEY and revoke."""
    policy = openbao.unique("pol")
    openbao.policy(policy, f'path "{pki}/issue/{role}" {{ capabilities = ["update"] }}\n'
                           f'path "{transit}/decrypt/app" {{ capabilities = ["update"] }}\n'
                           f'path "{pki}/revoke" {{ capabilities = ["update"] }}\n')
    token = openbao.child_token([policy])
    ciphertext = encrypt(openbao, transit, "app", b"s3cret-by-policy")
    path = manifest(tmp_path, {"SERIAL": issue_ref(pki, role, "serial_number").replace("vault://", "bao://"),
                               "PLAIN": f"bao://{transit}/decrypt/app?ciphertext={ciphertext}#plaintext"},
                    sources={"bao": {"type": "vault", "revoke_on_exit": True}})
    out = tmp_path / "seen.json"
    proc = run_launcher(["run", "-m", str(path), "--", *READ_FILES, str(out), "SERIAL", "PLAIN"],
                        env=launcher_env({**openbao.env(), "VAULT_TOKEN": token, "HOME": str(tmp_path)}))
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(out.read_text())["env"]
    assert seen["PLAIN"] == "s3cret-by-policy"
    assert openbao.client.read(f"{pki}/cert/{seen['SERIAL']}")["data"]["revocation_time"] > 0
    assert "warning" not in proc.stderr


# -- transit -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def awkward(openbao: OpenBao, transit: str) -> Iterator[tuple[str, bytes]]:
    """A ciphertext holding both '+' and '/' (base64's own characters), and its plaintext."""
    for n in range(500):
        plaintext = f"value-{n}-é".encode()
        ciphertext = encrypt(openbao, transit, "app", plaintext)
        if "+" in ciphertext and "/" in ciphertext:
            yield ciphertext, plaintext
            return
    pytest.fail("no ciphertext with both '+' and '/' in 500 tries")


def test_transit_decrypt_with_plus_and_slash(openbao: OpenBao, transit: str, awkward: tuple[str, bytes], tmp_path: Path) -> None:
    ciphertext, plaintext = awkward
    env = {"PLAIN": f"vault://{transit}/decrypt/app?ciphertext={ciphertext}#plaintext",
           "AGAIN": f"vault://{transit}/decrypt/app?ciphertext={ciphertext}#plaintext"}
    before = openbao.requests_to(f"{transit}/decrypt/app")
    proc = run_launcher(["env", "-m", str(manifest(tmp_path, env)), "--format", "json"],
                        env=launcher_env({**openbao.env(), "HOME": str(tmp_path)}))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"PLAIN": plaintext.decode(), "AGAIN": plaintext.decode()}
    assert openbao.requests_to(f"{transit}/decrypt/app") == before + 1


@pytest.mark.parametrize(
    ("ref", "token_policy", "code", "words"),
    [
        ("vault://{transit}/decrypt/no-such-key?ciphertext={ct}#plaintext", None, 66, "key not found"),
        ("vault://{transit}/decrypt/no-such-key?ciphertext={ct}#plaintext", "decrypt-app-only", 77, "permission denied"),
        ("vault://{transit}/decrypt/app?ciphertext=vault:v1:not-base64!#plaintext", None, 78, "rejected the request (400"),
        ("vault://{transit}/decrypt/app?ciphertext=garbage#plaintext", None, 78, "invalid ciphertext"),
    ],
)
def test_transit_errors(openbao: OpenBao, transit: str, awkward: tuple[str, bytes], tmp_path: Path, ref: str,
                        token_policy: str | None, code: int, words: str) -> None:
    env = launcher_env({**openbao.env(), "HOME": str(tmp_path)})
    if token_policy:
        policy = openbao.unique("pol")
        openbao.policy(policy, f'path "{transit}/decrypt/app" {{ capabilities = ["update"] }}')
        env["VAULT_TOKEN"] = openbao.child_token([policy])
    path = manifest(tmp_path, {"X": ref.format(transit=transit, ct=awkward[0])}, retry={"attempts": 1})
    proc = run_launcher(["check", "-m", str(path)], env=env)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_binary_plaintext_needs_a_file(openbao: OpenBao, transit: str, tmp_path: Path) -> None:
    raw = bytes(range(1, 256))  # not UTF-8, no NUL
    ciphertext = encrypt(openbao, transit, "app", raw)
    ref = f"vault://{transit}/decrypt/app?ciphertext={ciphertext}#plaintext"
    env = launcher_env({**openbao.env(), "HOME": str(tmp_path)})
    as_variable = run_launcher(["check", "-m", str(manifest(tmp_path, {"BLOB": ref}))], env=env)
    assert as_variable.returncode == 78, as_variable.stderr
    assert "env.BLOB: the value is not UTF-8 text" in as_variable.stderr and "use `file: true`" in as_variable.stderr
    target = tmp_path / "blob.bin"
    proc = run_launcher(["run", "-m", str(manifest(tmp_path, {"BLOB": {"ref": ref, "path": str(target)}})), "--",
                         sys.executable, "-c", f"import shutil; shutil.copy({str(target)!r}, {str(tmp_path / 'copy')!r})"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "copy").read_bytes() == raw  # the exact bytes
