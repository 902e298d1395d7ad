"""The bundle (packaging/bundle.sh) in a root filesystem with no Python: busybox, the C library, the bundle.

What the build holds and needs is read from the files (objdump, the build's record);
what it does is run for real in the image (tests/bundle_image.py): every command, the
backends against real servers (OpenBao plain and TLS, moto, the Key Vault emulator), as
PID 1 in a PID namespace of its own, and ``launcher copy``.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
import yaml

from tests.bundle_image import INNER_LAUNCHER, ROOT, Image, bundle_info, glibc_needed, version_tuple
from tests.helpers import wait_for
from tests.openbao import OpenBao, running_openbao, write_kv2

if TYPE_CHECKING:
    from tests.gcp_emulator import SecretManagerEmulator
    from tests.keyvault_emulator import KeyVaultEmulator
    from tests.moto_server import MotoServer

pytest_plugins = ["tests.moto_server"]
pytestmark = pytest.mark.slow

CANARY = "s3cret-CANARY-" + secrets.token_hex(4)
MIB = 1024 * 1024
BOTOCORE_SERVICES = {"secretsmanager", "ssm", "sts", "sso", "sso-oidc"}
FILE_MANIFEST = """version: 1
sources:
  dev: {type: file, path: secrets.yaml}
env:
  DB_PASSWORD: dev://app/db#password
"""


def stated_glibc_floor() -> tuple[int, ...]:
    """The glibc floor README.md states, between its ``bundle:glibc-floor`` markers."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"<!-- bundle:glibc-floor -->(.*?)<!-- /bundle:glibc-floor -->", readme, re.S)
    assert section, "README.md has no bundle:glibc-floor section"
    match = re.search(r"glibc (\d+\.\d+)", section.group(1))
    assert match, "the bundle:glibc-floor section names no glibc version"
    return version_tuple(match.group(1))


def file_source(image: Image, value: str = CANARY) -> str:
    """A work directory holding the file-source manifest and its secrets file."""
    work = image.workdir()
    image.write(f"{work}/launcher.yaml", FILE_MANIFEST)
    image.write(f"{work}/secrets.yaml", f"app:\n  db: {{password: {value}}}\n", mode=0o600)
    return work


# -- what the build holds --------------------------------------------------------------


def test_backends_metrics_and_roots_in_and_pydantic_out(bundle: Path) -> None:
    internal = bundle / "_internal"
    assert (internal / "certifi" / "cacert.pem").stat().st_size > 100_000
    assert {p.name for p in (internal / "botocore" / "data").iterdir() if p.is_dir()} == BOTOCORE_SERVICES
    assert not list(internal.glob("pydantic*")), "pydantic serves the Python API, not the bundle"
    assert (bundle / "launcher").stat().st_mode & 0o111


def test_needed_glibc_is_at_most_the_one_readme_states(bundle: Path) -> None:
    needed = glibc_needed(bundle)
    assert needed <= stated_glibc_floor(), f"the bundle needs glibc {'.'.join(map(str, needed))}; README states less"
    assert version_tuple(bundle_info(bundle)["glibc"]) == needed  # what --version shows


# -- commands in an image without Python -------------------------------------------------


def test_the_image_has_no_python(image: Image) -> None:
    assert not [p for p in image.root.rglob("python*") if p.is_file() and not str(p).startswith(str(image.host_path("/opt")))]
    assert image.run(["sh", "-c", "command -v python3 python"]).returncode != 0


def test_version_names_the_bundle_and_its_glibc_floor(image: Image, bundle: Path) -> None:
    info = bundle_info(bundle)
    done = image.run([INNER_LAUNCHER, "--version"])
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"launcher, version {info['version']} (bundle, glibc >= {info['glibc']})\n"


def test_from_any_directory_and_through_a_symlink(image: Image) -> None:
    image.host_path("/bin/launcher").unlink(missing_ok=True)
    image.host_path("/bin/launcher").symlink_to(INNER_LAUNCHER)
    for argv, cwd in ((["launcher", "--version"], "/tmp"), (["./launcher/launcher", "--version"], "/opt"),
                      (["../opt/launcher/launcher", "--version"], "/work")):
        done = image.run(argv, cwd=cwd)
        assert done.returncode == 0 and "(bundle, glibc >= " in done.stdout, (argv, done.stderr)


def test_exec_gives_the_child_the_callers_environment_and_the_secret(image: Image) -> None:
    work = file_source(image)
    show = 'echo "DB=$DB_PASSWORD"; env | grep -E "^(LD_|_PYI)" | sort'
    done = image.run([INNER_LAUNCHER, "exec", "--", "sh", "-c", show], cwd=work)
    assert done.returncode == 0, done.stderr
    # Nothing of PyInstaller's bootloader reaches the child: no library path of ours, no markers.
    assert done.stdout == f"DB={CANARY}\n"
    done = image.run([INNER_LAUNCHER, "exec", "--", "sh", "-c", show], cwd=work, env={"LD_LIBRARY_PATH": "/usr/local/lib"})
    assert done.stdout == f"DB={CANARY}\nLD_LIBRARY_PATH=/usr/local/lib\n"
    assert CANARY not in done.stderr


def test_init_check_and_env(image: Image) -> None:
    work = image.workdir()
    init = image.run([INNER_LAUNCHER, "init"], cwd=work)
    assert init.returncode == 0 and init.stdout.startswith("wrote launcher.yaml"), init.stderr
    offline = image.run([INNER_LAUNCHER, "check", "--offline"], cwd=work)
    assert offline.returncode == 0 and "valid" in offline.stdout, offline.stderr
    check = image.run([INNER_LAUNCHER, "check", "--format", "json"], cwd=work)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["summary"]["status"] == "ok"
    env = image.run([INNER_LAUNCHER, "env", "--format", "shell"], cwd=work)
    assert env.returncode == 0 and env.stdout, env.stderr
    assert image.run([INNER_LAUNCHER, "init"], cwd=work).returncode == 73


def test_run_with_mask_audit_and_a_template(image: Image) -> None:
    work = file_source(image)
    image.write(f"{work}/app.conf.tmpl", "password={{ dev://app/db#password }}\n")
    manifest = FILE_MANIFEST + f"  APP_CONF: {{template: ./app.conf.tmpl, path: {work}/app.conf}}\n"
    image.write(f"{work}/launcher.yaml", manifest)
    script = 'echo "db $DB_PASSWORD"; cat "$APP_CONF"; exit 3'
    done = image.run([INNER_LAUNCHER, "run", "--mask", "--audit", f"{work}/audit.log", "--", "sh", "-c", script], cwd=work)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "db <concealed>\npassword=<concealed>\n"
    assert not image.host_path(f"{work}/app.conf").exists(), "run removes the files it wrote"
    audit_text = image.host_path(f"{work}/audit.log").read_text()
    events = [json.loads(line)["event"] for line in audit_text.splitlines()]
    assert events[0] == "fetch" and events[-1] == "exit"
    assert CANARY not in audit_text + done.stderr


def test_run_serves_metrics(image: Image) -> None:
    work = file_source(image)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    go = f"{work}/go"
    wait = f'i=0; while [ ! -e {go} ]; do i=$((i+1)); [ $i -gt 3000 ] && exit 90; usleep 10000; done'
    proc = image.popen([INNER_LAUNCHER, "run", "--metrics", f"127.0.0.1:{port}", "--", "sh", "-c", wait], cwd=work)
    try:
        text = wait_for(lambda: scrape(port), timeout=30, what="/metrics")
        assert re.search(r"^launcher_child_up 1\.0$", text, re.M), text
        assert CANARY not in text
    finally:
        image.write(go, "")
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            body: str = resp.read().decode()
    except OSError:
        return None
    return body if "launcher_child_up 1.0" in body else None


# -- as PID 1 -------------------------------------------------------------------------


def test_pid_1_forwards_sigterm(image: Image) -> None:
    work = file_source(image)
    script = (f'trap "echo TERM > {work}/signals; exit 7" TERM; echo $$ > {work}/ready; '
              "while :; do usleep 20000; done")
    proc = image.popen([INNER_LAUNCHER, "run", "--", "sh", "-c", script], cwd=work, pid1=True)
    try:
        wait_for(lambda: image.host_path(f"{work}/ready").exists(), timeout=30, what="the child to start")
        launcher = wait_for(lambda: psutil.Process(proc.pid).children(), what="the launcher")[0]
        assert launcher.cmdline()[:2] == [INNER_LAUNCHER, "run"]
        launcher.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 7, err
    assert image.host_path(f"{work}/signals").read_text() == "TERM\n"


def test_pid_1_reaps_an_orphan(image: Image) -> None:
    work = file_source(image)
    # The subshell starts a process and exits at once: the process is adopted by PID 1 (the
    # launcher), says so, and exits; the child then waits for its /proc entry to go, which
    # happens only once PID 1 has reaped it (a zombie keeps its entry).
    script = f"""
        echo $$ > {work}/child
        (sh -c 'while [ "$(cut -d" " -f4 /proc/$$/stat)" != 1 ]; do usleep 10000; done; echo $$ > {work}/adopted' &)
        i=0; while [ ! -s {work}/adopted ]; do i=$((i+1)); [ $i -gt 3000 ] && exit 90; usleep 10000; done
        orphan=$(cat {work}/adopted)
        i=0; while [ -e /proc/$orphan ]; do i=$((i+1)); [ $i -gt 3000 ] && exit 91; usleep 10000; done
    """
    done = image.run([INNER_LAUNCHER, "run", "--", "sh", "-c", script], cwd=work, pid1=True)
    assert done.returncode == 0, f"{done.returncode}: {done.stderr}"  # 90: never adopted, 91: never reaped
    assert image.host_path(f"{work}/child").read_text() == "2\n"  # the launcher is 1


# -- backends -----------------------------------------------------------------------


def env_json(image: Image, manifest: str, env: dict[str, str], files: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``launcher env --format json`` in the image, with ``manifest`` and ``files`` in a work directory."""
    work = image.workdir()
    image.write(f"{work}/launcher.yaml", manifest)
    for name, text in (files or {}).items():
        image.write(f"{work}/{name}", text)
    done = image.run([INNER_LAUNCHER, "env", "--format", "json"], cwd=work, env=env)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def tls_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    with running_openbao(tmp_path_factory.mktemp("openbao-tls"), tls=True, audit=False) as server:
        yield server


@pytest.mark.vault
def test_vault(image: Image, openbao: OpenBao) -> None:
    path = openbao.unique("bundle")
    write_kv2(openbao, path, {"password": CANARY})
    manifest = f"version: 1\nenv:\n  DB: vault://secret/{path}#password\n"
    code, out, err = env_json(image, manifest, {"VAULT_ADDR": openbao.addr, "VAULT_TOKEN": openbao.token})
    assert code == 0, err
    assert json.loads(out) == {"DB": CANARY}


@pytest.mark.vault
def test_vault_over_tls_with_the_systems_roots_and_the_bundled_ones(image: Image, tls_bao: OpenBao) -> None:
    assert tls_bao.ca_cert is not None
    write_kv2(tls_bao, "bundle/db", {"password": CANARY})
    # The image's own trust store, holding the CA that signed the server's certificate.
    image.write("/etc/ssl/certs/ca-certificates.crt", Path(tls_bao.ca_cert).read_text())
    manifest = ("version: 1\nenv:\n  DB: vault://secret/bundle/db#password\n"
                "retry: {attempts: 2, initial_delay: 10ms, deadline: 5s}\n")
    env = {"VAULT_ADDR": tls_bao.addr, "VAULT_TOKEN": tls_bao.token}
    code, out, err = env_json(image, manifest, {**env, "VAULT_CACERT": "/etc/ssl/certs/ca-certificates.crt"})
    assert code == 0, err
    assert json.loads(out) == {"DB": CANARY}
    # Without it, the bundled roots (certifi's) are used: they load, and do not know a dev CA.
    code, out, err = env_json(image, manifest, env)
    assert code == 77 and "not trusted" in err, err


@pytest.mark.parametrize("credentials", ["keys", "web identity"])
def test_aws(image: Image, moto_server: MotoServer, credentials: str) -> None:
    name = moto_server.unique("bundle/db")
    moto_server.client.create_secret(Name=name, SecretString=json.dumps({"password": CANARY}))
    env = moto_server.env()
    files = {}
    if credentials == "web identity":  # as on EKS with IRSA: the role is assumed through STS
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        files["token"] = "a-projected-service-account-token"
        env |= {"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/app", "AWS_WEB_IDENTITY_TOKEN_FILE": "token"}
    code, out, err = env_json(image, f"version: 1\nenv:\n  DB: aws://{name}#password\n", env, files)
    assert code == 0, err
    assert json.loads(out) == {"DB": CANARY}


def test_azure(image: Image, keyvault: KeyVaultEmulator) -> None:
    keyvault.set_secret("db-password", CANARY)
    source = keyvault.source(tls={"ca_cert": "./ca.pem"})
    manifest = yaml.safe_dump({"version": 1, "sources": {"corp": source}, "env": {"DB": "corp://db-password"}})
    code, out, err = env_json(image, manifest, {"AZURE_CLIENT_SECRET": keyvault.client_secret},
                              files={"ca.pem": keyvault.ca_file.read_text()})
    assert code == 0, err
    assert json.loads(out) == {"DB": CANARY}
    assert keyvault.client_secret not in err


# -- launcher copy ----------------------------------------------------------------------


def test_copy_then_run_from_the_copy(image: Image) -> None:
    work = file_source(image)
    shared = image.workdir()
    done = image.run([INNER_LAUNCHER, "copy", shared])
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"copied the launcher to {shared}/launcher\n"
    copy = f"{shared}/launcher/launcher"
    ran = image.run([copy, "run", "--", "sh", "-c", 'echo "$DB_PASSWORD"'], cwd=work)
    assert (ran.returncode, ran.stdout) == (0, f"{CANARY}\n"), ran.stderr

    again = image.run([copy, "copy", shared])  # the copy is a bundle too
    assert again.returncode == 73
    assert again.stderr.strip() == f"launcher: error: {shared}/launcher already exists (use --force to replace it)"
    forced = image.run([INNER_LAUNCHER, "copy", "--force", shared])
    assert forced.returncode == 0, forced.stderr
    assert [p.name for p in image.host_path(shared).iterdir()] == ["launcher"]  # nothing left beside it
    assert image.run([copy, "--version"]).returncode == 0


def test_copy_to_a_noexec_mount_warns_and_the_copy_cannot_run(image: Image) -> None:
    shared = image.workdir()
    script = (f"mount -t tmpfs -o noexec tmpfs {shared} && {INNER_LAUNCHER} copy {shared} && "
              f"{{ {shared}/launcher/launcher --version; echo \"exit $?\"; }}")
    done = image.run(["sh", "-c", script], mounts=True)
    assert done.returncode == 0, done.stderr
    assert f"{shared} is mounted noexec: the launcher copied there cannot be run from it" in done.stderr
    assert done.stdout.splitlines() == [f"copied the launcher to {shared}/launcher", "exit 126"]


def test_ssm(image: Image, moto_server: MotoServer) -> None:
    name = "/" + moto_server.unique("bundle/ssm").replace("/", "-")
    moto_server.ssm.put_parameter(Name=name, Value=CANARY, Type="SecureString", Overwrite=True)
    code, out, err = env_json(image, f"version: 1\nenv:\n  DB: ssm://{name}\n", moto_server.env())
    assert code == 0, err
    assert json.loads(out) == {"DB": CANARY}


def test_google_secret_manager(image: Image, gcp: SecretManagerEmulator) -> None:
    gcp.add_version("bundle-db", CANARY)
    manifest = yaml.safe_dump({"version": 1, "sources": {"g": {"type": "gcp", "project": "launcher-test", "credentials": "none",
                                                                "endpoint": gcp.url}}, "env": {"DB": "g://bundle-db"}})
    code, out, err = env_json(image, manifest, {})
    assert code == 0, err
    assert json.loads(out) == {"DB": CANARY}
