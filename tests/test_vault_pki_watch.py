"""Certificates renewed under ``launcher run --watch`` against a real OpenBao (docs/guides/issued-certificates.md).

A certificate that lives 9 s is issued again at 2/3 of its life (about 6 s), its files are
replaced, and the child gets one SIGHUP per renewal, after every file of the renewal is in
place. While OpenBao is cut off (a TCP proxy), each failed attempt is warned about, the old
certificate stays, ``/healthz`` names it expired once it has, and the first attempt after
the recovery issues a new one.
"""

from __future__ import annotations

import calendar
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.helpers import HELPERS_DIR, Running, free_port, health, scrape, wait_for
from tests.openbao import OpenBao, enable_pki
from tests.tcp_proxy import tcp_proxy

pytestmark = [pytest.mark.vault, pytest.mark.slow]


@pytest.fixture(scope="module")
def pki(openbao: OpenBao) -> str:
    mount = openbao.unique("pki")
    enable_pki(openbao, mount)
    return mount


def manifest(pki: str, tmp: Path, ttl: str, **extra: Any) -> str:
    issue = f"vault://{pki}/issue/web?common_name=app.internal&ttl={ttl}"
    doc = {
        "version": 1,
        "env": {
            "TLS_CERT": {"ref": f"{issue}#certificate", "path": str(tmp / "tls.crt"), "on_change": "signal"},
            "TLS_KEY": {"ref": f"{issue}#private_key", "path": str(tmp / "tls.key"), "on_change": "signal"},
            "TLS_CA": {"ref": f"{issue}#issuing_ca", "path": str(tmp / "ca.crt"), "on_change": "signal"},
            # Certificate and key in one file, for a program that may read at any moment.
            "TLS_PEM": {"template": "./tls.pem.tmpl", "path": str(tmp / "tls.pem"), "on_change": "signal"},
        },
        "watch": {"enabled": True, "interval": "1s", "debounce": "0s"},
        "process": {"stop_timeout": "2s"},
        **extra,
    }
    (tmp / "tls.pem.tmpl").write_text(f"{{{{ {issue}#certificate }}}}\n{{{{ {issue}#private_key }}}}\n")
    return yaml.safe_dump(doc)


def child(tmp: Path) -> list[str]:
    return [sys.executable, str(HELPERS_DIR / "tls_reload.py"), str(tmp / "events.jsonl")]


def pair_matches(cert_pem: bytes, key_pem: bytes) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


class Reader(threading.Thread):
    """Reads the files in a loop, as a program may at any moment: each file must always be whole
    (a certificate or key that parses), and the combined file's key must always be its certificate's."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(daemon=True)
        self.tmp, self.reads, self.torn, self.mismatched = tmp, 0, 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                cert, key, both = ((self.tmp / n).read_bytes() for n in ("tls.crt", "tls.key", "tls.pem"))
            except FileNotFoundError:  # before the launcher wrote them, or after it removed them
                continue
            try:
                x509.load_pem_x509_certificate(cert)
                serialization.load_pem_private_key(key, password=None)
                ok = pair_matches(both, both)
            except ValueError:
                self.torn += 1
                continue
            self.reads += 1
            self.mismatched += not ok


def audit(run: Running, kind: str) -> list[dict[str, Any]]:
    return run.audit(kind)


def test_a_short_certificate_is_renewed_before_expiry_and_the_child_signalled_once_each(
        openbao: OpenBao, pki: str, tmp_path: Path) -> None:
    before = openbao.requests_to(f"{pki}/issue/web")
    seen_before = len(openbao.audit_entries())
    reader = Reader(tmp_path)
    with Running(tmp_path, manifest(pki, tmp_path, "9s"), [], env={**openbao.env(), "HOME": str(tmp_path)},
                 child=child(tmp_path)) as run:
        reader.start()
        run.wait_events("start", 1)
        run.wait_events("SIGHUP", 2, timeout=25)  # two renewals: at about 6 s and 12 s
        assert run.stop() == 0
    reader.stop.set()
    reader.join()
    issued, renewed = audit(run, "cert_issue"), audit(run, "cert_renew")
    loads = run.events()
    assert len(issued) == 1 and len(renewed) >= 2
    # One SIGHUP per renewal, each loading the certificate of that renewal, with its own key.
    assert [e["serial"] for e in loads] == [c["version"] for c in issued + renewed][:len(loads)]
    assert len(loads) == 1 + len(renewed) and all(e["ok"] for e in loads), loads
    assert [e["event"] for e in loads] == ["start"] + ["SIGHUP"] * len(renewed)
    assert len(run.audit("signal")) == len(renewed)
    # Each new certificate was issued before the one it replaces expired, at about 2/3 of its life.
    for old, new in zip(issued + renewed, renewed, strict=False):
        lived = stamp(new["time"]) - (stamp(old["expires_at"]) - 9)
        assert 5.0 < lived < 8.5, (old, new)
    assert openbao.requests_to(f"{pki}/issue/web") - before == 1 + len(renewed)
    # Nothing but the issues reached the mount: no version check, no read of the issue path.
    assert {(e["request"]["path"], e["request"]["operation"]) for e in openbao.audit_entries()[seen_before:]
            if e.get("type") == "request" and e["request"]["path"].startswith(f"{pki}/")} == {(f"{pki}/issue/web", "update")}
    # Every file read whole; the combined file never held a key of another certificate.
    assert reader.reads > 50 and reader.torn == 0 and reader.mismatched == 0
    assert "PRIVATE KEY" not in run.log() + run.trail.read_text()


def stamp(text: str) -> float:
    """Unix time of an audit line's ``2026-01-31T12:00:00.123Z``."""
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + text[19:-1])


def test_an_outage_during_renewal_keeps_the_old_certificate_until_it_expires_then_recovers(
        openbao: OpenBao, pki: str, tmp_path: Path) -> None:
    port = free_port()
    with tcp_proxy("127.0.0.1", int(openbao.addr.rsplit(":", 1)[1])) as proxy:
        text = manifest(pki, tmp_path, "9s", retry={"attempts": 2, "initial_delay": "100ms", "max_delay": "200ms",
                                                     "deadline": "1s"})
        env = {**openbao.env(), "VAULT_ADDR": proxy.addr, "HOME": str(tmp_path)}
        with Running(tmp_path, text, [], env=env, child=child(tmp_path), args=("--metrics", str(port))) as run:
            (first,) = run.wait_events("start", 1)
            (issued,) = run.wait_audit("cert_issue")
            ref = issued["ref"]
            proxy.down()
            expires = stamp(issued["expires_at"])
            assert health(port)[1]["expired_certificates"] == []
            # Failed attempts from 2/3 of its life on, each warned about; the child keeps the certificate.
            wait_for(lambda: run.log().count("could not issue a new certificate") >= 2, timeout=15, what="two warned attempts")
            assert time.time() < expires and health(port)[1]["status"] == "stale"  # the outage, before the expiry
            wait_for(lambda: time.time() > expires + 0.5, timeout=15, what="the expiry")
            body = health(port)[1]
            assert body["status"] == "stale" and body["expired_certificates"] == [ref], body
            wait_for(lambda: "the current one expired" in run.log(), timeout=5, what="a warning after the expiry")
            assert len(run.events()) == 1 and serial_in(tmp_path / "tls.crt") == first["serial"]  # the old one stays
            proxy.back_up()
            (reload,) = run.wait_events("SIGHUP", 1, timeout=10)
            assert reload["ok"] and reload["serial"] != first["serial"]
            assert wait_for(lambda: health(port)[1]["status"] == "ok", what="/healthz ok again")
            assert health(port)[1]["expired_certificates"] == []
            samples = scrape(port, absent=("PRIVATE KEY",))
            assert samples[("launcher_certificate_issues_total", (("source", "vault"),))] == 1
            assert samples[("launcher_certificate_renewals_total", (("source", "vault"),))] == 1
            assert samples[("launcher_certificate_next_expiry_timestamp_seconds", ())] > expires + 5
            assert run.stop() == 0
    (renewed,) = run.audit("cert_renew")
    assert renewed["version"] == reload["serial"]
    assert "PRIVATE KEY" not in run.log() + run.trail.read_text()


def serial_in(path: Path) -> str:
    number = x509.load_pem_x509_certificate(path.read_bytes()).serial_number
    return ":".join(f"{b:02x}" for b in number.to_bytes((number.bit_length() + 7) // 8, "big"))


def test_the_reload_uses_ssl_as_a_server_does(tmp_path: Path) -> None:
    """The helper child's check is the real one: ``load_cert_chain`` refuses a key of another certificate."""
    import trustme

    ca = trustme.CA()
    a, b = ca.issue_cert("a.internal"), ca.issue_cert("b.internal")
    a.cert_chain_pems[0].write_to_path(str(tmp_path / "a.crt"))
    b.private_key_pem.write_to_path(str(tmp_path / "b.key"))
    with pytest.raises(ssl.SSLError):
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(tmp_path / "a.crt"), str(tmp_path / "b.key"))
