"""A throwaway PostgreSQL cluster on a loopback port (the ``postgres`` fixture, registered in conftest.py).

Uses Debian's server binaries (/usr/lib/postgresql/*/bin; ``.ci/run`` installs
the package). initdb refuses to run as root, so as root the cluster runs as
the ``postgres`` user in a directory it owns. Password authentication on TCP
is on, so a test can prove that credentials work (or no longer do).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import wait_for


def server_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


@dataclass
class Postgres:
    port: int
    admin: str
    password: str
    bindir: Path

    def psql(self, sql: str, user: str | None = None, password: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``sql`` over TCP with password authentication; never raises on failure."""
        env = {"PGPASSWORD": password or self.password, "PATH": os.environ.get("PATH", ""), "PGCONNECT_TIMEOUT": "5"}
        return subprocess.run(
            [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", user or self.admin,
             "-d", "postgres", "-tAc", sql],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )

    def roles(self) -> set[str]:
        result = self.psql("SELECT rolname FROM pg_roles")
        return set(result.stdout.split())


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    bindir = server_bin()
    if bindir is None:
        pytest.skip("needs PostgreSQL server binaries (apt-get install postgresql)")
    as_root = os.geteuid() == 0
    run_as = pwd.getpwnam("postgres") if as_root else pwd.getpwuid(os.geteuid())
    base = Path(tempfile.mkdtemp(prefix="launcher-pg-", dir="/tmp"))
    os.chown(base, run_as.pw_uid, run_as.pw_gid)
    password = secrets.token_hex(12)
    pwfile = base / "pw"
    pwfile.write_text(password)
    os.chown(pwfile, run_as.pw_uid, run_as.pw_gid)
    user_kw = {"user": run_as.pw_uid, "group": run_as.pw_gid} if as_root else {}
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(base / "data"), "-U", "admin", f"--pwfile={pwfile}",
         "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True, timeout=120, **user_kw,  # type: ignore[arg-type]
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(base / "server.log", "w") as server_log:
        proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(base / "data"), "-p", str(port), "-k", str(base),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "dynamic_shared_memory_type=mmap"],  # in the data directory, not /dev/shm
            stdout=subprocess.DEVNULL, stderr=server_log, **user_kw,  # type: ignore[arg-type]
        )
    server = Postgres(port, "admin", password, bindir)
    try:
        wait_for(lambda: proc.poll() is not None or server.psql("SELECT 1").returncode == 0, timeout=60, what="PostgreSQL")
        if proc.poll() is not None:
            raise RuntimeError(f"PostgreSQL did not start: {(base / 'server.log').read_text()[-2000:]}")
        yield server
    finally:
        proc.send_signal(signal.SIGINT)  # "fast" shutdown: OpenBao keeps pooled connections open
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)
