"""Templates and files at fixed paths (docs/guides/files-and-templates.md).

Real processes, real files and real signals: a template rendered to a fixed path and
re-rendered atomically on rotation, an nginx-style child reloading it on SIGHUP.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HELPERS_DIR, LAUNCHER, launcher_env, run_launcher, wait_for

CANARY = "tmpl-CANARY-58c2"
WATCH = "watch: {enabled: true, interval: 100ms, debounce: 0s}\n"
TEMPLATE = "server {\n  listen 8080;\n  # the upstream's password: {{ dev://db#password }}\n  user {{ dev://db#user }};\n}\n"


def project(tmp: Path, env_yaml: str, password: str = CANARY, template: str = TEMPLATE, extra: str = "") -> Path:
    (tmp / "secrets.yaml").write_text(json.dumps({"db": {"user": "app", "password": password}}))
    (tmp / "app.conf.tmpl").write_text(template)
    manifest = tmp / "launcher.yaml"
    manifest.write_text(f"version: 1\nsources:\n  dev: {{type: file, path: secrets.yaml}}\n{extra}env:\n{env_yaml}")
    return manifest


def rendered(password: str) -> str:
    return TEMPLATE.replace("{{ dev://db#password }}", password).replace("{{ dev://db#user }}", "app")


def test_a_template_renders_to_a_private_file(tmp_path: Path) -> None:
    project(tmp_path, "  APP_CONFIG: {template: ./app.conf.tmpl, file: true}\n  INLINE: {template: ./app.conf.tmpl}\n")
    code = "import os, json; p = os.environ['APP_CONFIG']; print(json.dumps([p, open(p).read(), os.environ['INLINE']]))"
    proc = run_launcher(["exec", "--", sys.executable, "-c", code], env=launcher_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    path, content, inline = json.loads(proc.stdout)
    assert content == inline == rendered(CANARY)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    Path(path).unlink()  # exec leaves it for the child (warned)


def test_a_fixed_path_with_its_mode_is_written_and_removed_on_exit(tmp_path: Path) -> None:
    target = tmp_path / "run" / "app.conf"
    target.parent.mkdir()
    project(tmp_path, f"  APP_CONFIG: {{template: ./app.conf.tmpl, path: {target}, mode: \"0640\"}}\n"
                      f"  TLS_KEY: {{ref: dev://db#password, path: ./key.pem}}\n")
    code = "import os, json; print(json.dumps([os.environ['APP_CONFIG'], os.environ['TLS_KEY']]))"
    proc = run_launcher(["run", "--", sys.executable, "-c", code + "; import time"], env=launcher_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [str(target), str(tmp_path / "key.pem")]
    assert not target.exists() and not (tmp_path / "key.pem").exists()  # every file the launcher wrote is gone


def test_modes_and_contents_while_running(tmp_path: Path) -> None:
    target = tmp_path / "app.conf"
    out = tmp_path / "events.jsonl"
    project(tmp_path, f"  APP_CONFIG: {{template: ./app.conf.tmpl, path: {target}, mode: \"0640\"}}\n")
    proc = subprocess.Popen([LAUNCHER, "run", "--", sys.executable, str(HELPERS_DIR / "reload_on_hup.py"), str(out), str(target)],
                            env=launcher_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first = wait_for(lambda: out.exists() and json.loads(out.read_text().splitlines()[0]), what="the child's first load")
        assert first["content"] == rendered(CANARY) and first["mode"] == "0o640"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    assert not target.exists() and CANARY not in stderr


def test_rotation_rewrites_the_file_atomically_then_signals(tmp_path: Path) -> None:
    """nginx-style reload: the child sees the new file on SIGHUP, and a reader never sees half a file."""
    target = tmp_path / "app.conf"
    out = tmp_path / "events.jsonl"
    big = "x" * 200_000  # large enough that a non-atomic write could be caught half done
    project(tmp_path, f"  APP_CONFIG: {{template: ./app.conf.tmpl, path: {target}, on_change: signal}}\n",
            password="v0" + big, extra=WATCH)
    proc = subprocess.Popen([LAUNCHER, "run", "--", sys.executable, str(HELPERS_DIR / "reload_on_hup.py"), str(out), str(target)],
                            env=launcher_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def loads() -> list[dict[str, Any]]:
        return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    seen: list[str] = []
    stop = threading.Event()

    def reader() -> None:  # reads the file as fast as it can while rotations happen
        while not stop.is_set():
            try:
                seen.append(target.read_text())
            except FileNotFoundError:
                pass

    try:
        wait_for(lambda: loads(), what="the child's first load")
        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        for i in range(1, 4):
            (tmp_path / "secrets.yaml").write_text(json.dumps({"db": {"user": "app", "password": f"v{i}" + big}}))
            wait_for(lambda i=i: any(e["content"] == rendered(f"v{i}" + big) for e in loads()), timeout=10,
                     what=f"the reload of version {i}")
        wait_for(lambda: len(seen) >= 1000, timeout=20, what="1,000 reads of the file")
        stop.set()
        thread.join(timeout=5)
        assert len({e["pid"] for e in loads()}) == 1, "signalled, never restarted"
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    complete = {rendered(f"v{i}" + big) for i in range(4)}
    assert seen and all(text in complete for text in seen), "a reader saw a half-written file"


def test_a_symlink_at_the_destination_is_refused_never_followed(tmp_path: Path) -> None:
    """`path:` owns a regular file: a link there is 78 (at check --offline too), and neither it nor its target is touched."""
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    target = tmp_path / "app.conf"
    target.symlink_to(victim)
    project(tmp_path, f"  APP_CONFIG: {{template: ./app.conf.tmpl, path: {target}}}\n")
    for args in (["check", "--offline"], ["run", "--", "true"]):
        proc = run_launcher(args, env=launcher_env(), cwd=tmp_path)
        assert proc.returncode == 78, proc.stderr
        assert "launcher.yaml:5: env.APP_CONFIG.path:" in proc.stderr and "is a symbolic link" in proc.stderr
    assert target.is_symlink() and victim.read_text() == "keep me\n"


@pytest.mark.parametrize(("env_yaml", "template", "where", "says"), [
    ("  A: {template: ./nope.tmpl, file: true}\n", None, "launcher.yaml:5", "template"),
    ("  A: {template: ./app.conf.tmpl, file: true}\n", "ok line\nbad {{ prd://db#password }} here\n", "app.conf.tmpl:2",
     "unknown source 'prd'"),
    ("  A: {template: ./app.conf.tmpl, file: true}\n", "a\nb\nunbalanced {{ dev://db#user\n", "app.conf.tmpl:3", "unbalanced"),
    ("  A: {template: ./app.conf.tmpl, path: ./app.conf, mode: \"0999\"}\n", None, "launcher.yaml:5", "not a file mode"),
    ("  A: {ref: dev://db#user, template: ./app.conf.tmpl}\n", None, "launcher.yaml:5", "exactly one of"),
])
def test_template_and_path_errors_are_78_with_file_and_line(tmp_path: Path, env_yaml: str, template: str | None,
                                                            where: str, says: str) -> None:
    project(tmp_path, env_yaml, template=template or TEMPLATE)
    proc = run_launcher(["check", "--offline"], env=launcher_env(), cwd=tmp_path)
    assert proc.returncode == 78, proc.stderr
    assert where in proc.stderr and says in proc.stderr and "Traceback" not in proc.stderr


def test_a_path_in_a_missing_directory_is_78_before_the_child_starts(tmp_path: Path) -> None:
    project(tmp_path, "  A: {template: ./app.conf.tmpl, path: ./missing-dir/app.conf}\n")
    assert run_launcher(["check", "--offline"], env=launcher_env(), cwd=tmp_path).returncode == 0  # may be checked elsewhere
    for args in (["check"], ["run", "--", "touch", "started"], ["exec", "--", "touch", "started"]):
        proc = run_launcher(args, env=launcher_env(), cwd=tmp_path)
        assert proc.returncode == 78, proc.stderr
        assert "launcher.yaml:5: env.A.path:" in proc.stderr and "missing-dir does not exist" in proc.stderr
    assert not (tmp_path / "started").exists()


def test_check_shows_a_template_with_the_references_it_uses(tmp_path: Path) -> None:
    project(tmp_path, "  APP_CONFIG: {template: ./app.conf.tmpl, file: true}\n")
    proc = run_launcher(["check"], env=launcher_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("APP_CONFIG"))
    assert "app.conf.tmpl (dev://db#password, dev://db#user)" in row and row.split()[-1] == "ok"
    assert CANARY not in proc.stdout
