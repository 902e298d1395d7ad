"""The suite's own programs and servers do what the tests assume of them (issue 27.15).

Two tests failed now and then: a test child lost SIGHUP when SIGTERM's Python
handler ran inside SIGHUP's, and the Key Vault emulator recorded a request only
after answering it, so a test that read the log as soon as its client had the
answer could miss it. These tests pin the fixes down without depending on luck.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import HELPERS_DIR, wait_for
from tests.keyvault_emulator import KeyVaultEmulator, Request

SIGNAL_PROGRAMS = [
    ("print_signals.py", lambda out: [str(out)], (signal.SIGHUP, signal.SIGTERM)),
    ("record_env.py", lambda out: [str(out), "HOME"], (signal.SIGHUP, signal.SIGTERM)),
    ("reload_on_hup.py", lambda out: [str(out), str(out.with_name("app.conf"))], (signal.SIGHUP, signal.SIGTERM)),
]


def caught(pid: int) -> set[int]:
    """The signals ``pid`` has handlers for (SigCgt; Python's own SIGINT handler included)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


@pytest.mark.parametrize(("program", "args", "signals"), SIGNAL_PROGRAMS, ids=[p[0] for p in SIGNAL_PROGRAMS])
def test_signal_programs_take_their_signals_in_order_not_in_handlers(tmp_path: Path, program: str,
                                                                      args: Callable[[Path], list[str]],
                                                                      signals: tuple[int, ...]) -> None:
    """Blocked and taken with sigwaitinfo: one at a time, each finished before the next, none lost."""
    out = tmp_path / "out"
    (tmp_path / "app.conf").write_text("listen 8080;\n")
    proc = subprocess.Popen([sys.executable, str(HELPERS_DIR / program), *args(out)])
    try:
        # Ready: its first line written (print_signals: the .ready file) after the signals were blocked.
        wait_for(lambda: out.exists() or Path(f"{out}.ready").exists(), what=f"{program} to be ready")
        assert not set(signals) & caught(proc.pid), "no Python handler may take these signals"
        for sig in signals:  # back to back: the second arrives while the first is being handled
            os.kill(proc.pid, sig)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
    text = out.read_text()
    if program == "print_signals.py":
        assert text.split() == ["SIGHUP", "SIGTERM"]
    else:
        # The start (or first load), then the SIGHUP's: never lost to the TERM.
        assert len([json.loads(line)["event"] for line in text.splitlines()]) == 2


def test_print_signals_keeps_the_order_of_a_burst(tmp_path: Path) -> None:
    """Twenty runs of HUP then TERM sent back to back: HUP is written first every time."""
    for i in range(20):
        out = tmp_path / f"signals-{i}"
        proc = subprocess.Popen([sys.executable, str(HELPERS_DIR / "print_signals.py"), str(out), "7"])
        try:
            wait_for(lambda out=out: Path(f"{out}.ready").exists(), what="ready")
            os.kill(proc.pid, signal.SIGHUP)
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=10) == 7
        finally:
            proc.kill()
            proc.wait()
        assert out.read_text().split() == ["SIGHUP", "SIGTERM"], i


def test_the_key_vault_emulator_records_a_request_before_answering_it(keyvault: KeyVaultEmulator,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """With recording made slow, a client that has its answer must find its request in the log already."""
    record = keyvault.record

    def slow_record(request: Request) -> None:
        time.sleep(0.3)  # widens the window a late record would leave open; not a synchronisation
        record(request)

    monkeypatch.setattr(keyvault, "record", slow_record)
    ctx = ssl.create_default_context(cafile=str(keyvault.ca_file))
    for path, scope in (("/secrets/nope?api-version=7.4", "vault"), ("/common/v2.0/.well-known/openid-configuration", "openid")):
        before = keyvault.count(scope)
        conn = http.client.HTTPSConnection("127.0.0.1", keyvault.port, context=ctx, timeout=10)
        try:
            conn.request("GET", path)
            conn.getresponse().read()
        finally:
            conn.close()
        assert keyvault.count(scope) == before + 1, scope
