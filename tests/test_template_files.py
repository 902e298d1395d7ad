"""Template files are regular files of at most 4 MiB, read whole or refused (docs/guides/files-and-templates.md), and `}}` is text.

Issue 27: a template over 4 MiB was silently cut at 4,194,305 bytes; a FIFO as
`template:` hung every command, `check --offline` included; one-line JSON with
`}}` right after a placeholder was refused with a hint that did not apply.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.helpers import launcher_env, run_launcher

MiB = 1024 * 1024
CANARY = "tmplfile-CANARY-3c9a"


def project(tmp: Path, env_yaml: str, template: str | None = None) -> None:
    (tmp / "secrets.json").write_text(json.dumps({"app": {"pw": CANARY, "user": "app", "port": "5432"}}))
    if template is not None:
        (tmp / "app.tmpl").write_text(template)
    (tmp / "launcher.yaml").write_text(f"version: 1\nsources:\n  dev: {{type: file, path: secrets.json}}\nenv:\n{env_yaml}")


def test_a_template_over_4_mib_is_78_never_cut(tmp_path: Path) -> None:
    # The password line comes after 4 MiB: cutting the file would lose it and still exit 0.
    project(tmp_path, "  CONF: {template: ./app.tmpl, file: true}\n", template="#" * (4 * MiB - 1) + "\npassword = {{ dev://app#pw }}\n")
    for args in (["check", "--offline"], ["check"], ["run", "--", "true"], ["exec", "--", "true"]):
        proc = run_launcher(args, env=launcher_env(), cwd=tmp_path)
        assert proc.returncode == 78, (args, proc.stderr)
        assert "launcher.yaml:5: env.CONF.template:" in proc.stderr and "app.tmpl" in proc.stderr and "4 MiB" in proc.stderr


def test_a_template_of_exactly_4_mib_is_read_whole(tmp_path: Path) -> None:
    tail = "user = {{ dev://app#user }}\n"  # the rendered file is smaller: "app" replaces the placeholder
    project(tmp_path, "  CONF: {template: ./app.tmpl, file: true}\n", template="#" * (4 * MiB - len(tail) - 1) + "\n" + tail)
    assert (tmp_path / "app.tmpl").stat().st_size == 4 * MiB
    code = "import os; p = os.environ['CONF']; t = open(p).read(); os.unlink(p); print(t.splitlines()[-1])"
    proc = run_launcher(["exec", "--", sys.executable, "-c", code], env=launcher_env({"XDG_RUNTIME_DIR": str(tmp_path)}), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "user = app\n"


def test_a_rendered_file_over_4_mib_is_78_in_check_and_run(tmp_path: Path) -> None:
    """The template fits, but with the value in it the file would not: refused before anything is written."""
    project(tmp_path, "  CONF: {template: ./app.tmpl, path: ./app.conf}\n",
            template="#" * (4 * MiB - 40) + "\n{{ dev://app#pw }}{{ dev://app#pw }}\n")
    assert run_launcher(["check", "--offline"], env=launcher_env(), cwd=tmp_path).returncode == 0
    for args in (["check"], ["run", "--", "true"], ["exec", "--", "true"]):
        proc = run_launcher(args, env=launcher_env(), cwd=tmp_path)
        assert proc.returncode == 78, (args, proc.stderr)
        assert "launcher.yaml:5: env.CONF:" in proc.stderr and "4 MiB" in proc.stderr and CANARY not in proc.stderr
    assert not (tmp_path / "app.conf").exists()


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_template_that_is_not_a_regular_file_is_78_at_once(tmp_path: Path, kind: str) -> None:
    project(tmp_path, "  CONF: {template: TEMPLATE, file: true}\n")
    if kind == "fifo":
        os.mkfifo(tmp_path / "app.tmpl")  # no writer: opening it for reading would block forever
        template, says = "./app.tmpl", "is a FIFO"
    elif kind == "device":
        template, says = "/dev/zero", "is a character device"
    else:
        (tmp_path / "app.tmpl").mkdir()
        template, says = "./app.tmpl", "is a directory"
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(manifest.read_text().replace("TEMPLATE", template))
    for args in (["check", "--offline"], ["run", "--", "true"]):
        proc = run_launcher(args, env=launcher_env(), cwd=tmp_path, timeout=20)
        assert proc.returncode == 78, (args, proc.stderr)
        assert "launcher.yaml:5: env.CONF.template:" in proc.stderr and says in proc.stderr


TEMPLATES = [
    ('{"pw": "{{ dev://app#pw }}"}\n', {"pw": CANARY}),
    ('{"db": {"user": "{{ dev://app#user }}", "pw": "{{ dev://app#pw }}"}}\n', {"db": {"user": "app", "pw": CANARY}}),
    ('{"db": {"port": {{ dev://app#port }}}}\n', {"db": {"port": 5432}}),
    ('{"nested": {"deeper": {"pw": "{{dev://app#pw}}"}}}\n', {"nested": {"deeper": {"pw": CANARY}}}),
]


@pytest.mark.parametrize(("template", "expected"), TEMPLATES)
def test_one_line_json_templates_render(tmp_path: Path, template: str, expected: object) -> None:
    """`}}` right after a placeholder closes it and the rest is text (issue 27.11)."""
    project(tmp_path, "  CONF: {template: ./app.tmpl, file: true}\n  INLINE: {template: ./app.tmpl}\n", template=template)
    assert run_launcher(["check", "--offline"], env=launcher_env(), cwd=tmp_path).returncode == 0
    code = "import os, json; p = os.environ['CONF']; print(json.dumps([open(p).read(), os.environ['INLINE']])); os.unlink(p)"
    proc = run_launcher(["exec", "--", sys.executable, "-c", code], env=launcher_env({"XDG_RUNTIME_DIR": str(tmp_path)}), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    from_file, inline = json.loads(proc.stdout)
    assert json.loads(from_file) == json.loads(inline) == expected


def test_a_line_that_looks_like_a_reference_is_text_in_a_template(tmp_path: Path) -> None:
    """Only `{{ }}` makes a reference in a template file: a line `dev://app#pw }}` is text."""
    project(tmp_path, "  INLINE: {template: ./app.tmpl}\n", template="dev://app#pw }}\n{{ dev://app#user }}\n")
    proc = run_launcher(["exec", "--", sys.executable, "-c", "import os; print(repr(os.environ['INLINE']))"], env=launcher_env(),
                        cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr("dev://app#pw }}\napp\n")


def test_an_unclosed_placeholder_names_the_line_and_no_hint_that_does_not_apply(tmp_path: Path) -> None:
    project(tmp_path, "  CONF: {template: ./app.tmpl, file: true}\n", template='{"a": 1}\n{"pw": "{{ dev://app#pw"}\n')
    proc = run_launcher(["check", "--offline"], env=launcher_env(), cwd=tmp_path)
    assert proc.returncode == 78
    assert "app.tmpl:2" in proc.stderr and "never closed" in proc.stderr and "value:" not in proc.stderr
