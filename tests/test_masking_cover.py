"""What `launcher run --mask` conceals: every value the child can see (docs/guides/masking.md), through the real command.

A field picked from a JSON secret, ``env_from`` over it, a template's parts,
each string inside a nested JSON value, and the JSON-escaped forms common
encoders write; against a file source and against AWS (moto's HTTP server),
whose SecretString is the README's own example.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from tests.helpers import LAUNCHER, launcher_env

if TYPE_CHECKING:  # imported by pytest as a plugin, so that its asserts are rewritten
    from tests.moto_server import MotoServer

pytest_plugins = ["tests.moto_server"]

PASSWORD = "pw-FIELD-7c21e9d4"
USER = "usr-FIELD-3b8f"
DEEP = "deep-NESTED-5e0a91"
LISTED = "listed-NESTED-a4c2"
ESCAPED = "\u00c4rger</a>&co/x-91f3"  # non-ASCII, an HTML tag and a slash: every encoder writes it differently

# The child prints each value the way a program would: raw, parsed out of JSON, re-encoded.
PRINT = r"""
import json, os
print("password", os.environ["DB_PASSWORD"])
print("url", os.environ["DATABASE_URL"])
print("env_from", os.environ["APP_PASSWORD"], os.environ["APP_USER"])
nested = json.loads(os.environ["NESTED"])
print("deep", nested["inner"]["deep"], "listed", nested["list"][0])
e = os.environ["ESCAPED"]
py = json.dumps(e)[1:-1]
print("python", py)
print("upper", py.replace("\\u00c4", "\\u00C4"))
print("go", json.dumps(e, ensure_ascii=False)[1:-1].replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
print("php", py.replace("/", "\\/"))
print("php-unicode", json.dumps(e, ensure_ascii=False)[1:-1].replace("/", "\\/"))
print("dotnet", py.replace("\\u00c4", "\\u00C4").replace("<", "\\u003C").replace(">", "\\u003E").replace("&", "\\u0026"))
"""


def check_masked(proc: subprocess.CompletedProcess[bytes], *secrets: str) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    for secret in secrets:
        assert secret not in out, (secret, out)
    return out.splitlines()


def test_fields_env_from_templates_nested_and_escapes_from_a_file_source(tmp_path: Path) -> None:
    secrets = {
        "db": json.dumps({"user": USER, "password": PASSWORD}),  # JSON text, as an AWS SecretString holds it
        "nested": {"cfg": {"inner": {"deep": DEEP}, "list": [LISTED, 5432]}, "port": 5432},  # fields; nested ones as JSON
        "escaped": ESCAPED,
    }
    (tmp_path / "secrets.json").write_text(json.dumps(secrets))
    (tmp_path / "launcher.yaml").write_text(
        "version: 1\nsources:\n  dev: {type: file, path: secrets.json}\n"
        "env:\n"
        "  DB_PASSWORD: dev://db#password\n"
        '  DATABASE_URL: "postgres://{{ dev://db#user }}:{{ dev://db#password }}@db.internal/app"\n'
        "  NESTED: dev://nested#cfg\n"
        "  ESCAPED: dev://escaped\n"
        "env_from:\n  - {ref: dev://db, prefix: APP_}\n")
    proc = subprocess.run([LAUNCHER, "run", "--mask", "--", sys.executable, "-c", PRINT], cwd=tmp_path, env=launcher_env(),
                          capture_output=True, timeout=60, check=False)
    lines = check_masked(proc, PASSWORD, USER, DEEP, LISTED, "rger", "\\/x-91f3", "003c/a", "003C/a")
    assert lines[:4] == [
        "password <concealed>",
        "url postgres://<concealed>:<concealed>@db.internal/app",  # the template's literal text stays
        "env_from <concealed> <concealed>",
        "deep <concealed> listed <concealed>",
    ]
    assert lines[4:] == [f"{name} <concealed>" for name in ("python", "upper", "go", "php", "php-unicode", "dotnet")]


def test_aws_json_field_as_in_the_readme(moto_server: MotoServer, tmp_path: Path) -> None:
    name = moto_server.unique("prod/app/db")
    moto_server.client.create_secret(Name=name, SecretString=json.dumps({"user": USER, "password": PASSWORD,
                                                                         "replica": {"password": DEEP}}))
    manifest = {
        "version": 1,
        "sources": {"aws": {"type": "aws", "region": "us-east-1", "endpoint_url": moto_server.url}},
        "env": {"DB_PASSWORD": f"aws://{name}#password",
                "DATABASE_URL": f"postgres://{{{{ aws://{name}#user }}}}:{{{{ aws://{name}#password }}}}@db/app"},
        "env_from": [{"ref": f"aws://{name}", "prefix": "DB_"}],
    }
    (tmp_path / "launcher.yaml").write_text(yaml.safe_dump(manifest))
    script = 'import json, os; print(os.environ["DB_PASSWORD"], os.environ["DATABASE_URL"], os.environ["DB_USER"], ' \
             'json.loads(os.environ["DB_REPLICA"])["password"])'
    env = launcher_env({**moto_server.env()}, drop=[k for k in launcher_env() if k.startswith("AWS_")])
    proc = subprocess.run([LAUNCHER, "run", "--mask", "--", sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, timeout=60, check=False)
    assert check_masked(proc, PASSWORD, USER, DEEP) == ["<concealed> postgres://<concealed>:<concealed>@db/app <concealed> <concealed>"]
