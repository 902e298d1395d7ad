"""Malformed manifests, generated: every outcome is a manifest or a one-line 78 naming file:line.

Runs what ``launcher check --offline`` runs, in process: ``load_manifest`` on a
file, then ``inline_bindings`` with a small random environment. Each case must
end within a second; no input may crash (exit 70), hang, or produce a message
that spans lines or names a Python exception.

``LAUNCHER_FUZZ_EXAMPLES`` sets the number of cases (default 2000, about 20 s).
"""

from __future__ import annotations

import builtins
import json
import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from launcher.errors import LauncherError, ManifestError, errors_of
from launcher.manifest import load_manifest
from launcher.model.config import Manifest
from launcher.resolve.resolver import inline_bindings

EXAMPLES = int(os.environ.get("LAUNCHER_FUZZ_EXAMPLES", "2000"))
# A guard against inputs that make the reader loop or go quadratic, in CPU seconds of this thread
# (which other processes on a busy machine do not inflate, unlike the wall clock). How long
# adversarial manifests take is measured by benchmarks/bench_parser.py.
CPU_LIMIT = 1.0

EXCEPTION_NAMES = sorted(
    {n for n in dir(builtins) if n.endswith(("Error", "Exception", "Warning", "Exit", "Interrupt"))}
    | {"YAMLError", "MarkedYAMLError", "ScannerError", "ParserError", "ComposerError", "ConstructorError", "ReaderError",
       "RepresenterError", "EmitterError", "RefSyntaxError", "LauncherError", "ManifestError", "Traceback"}
)

TOP_KEYS = ["version", "sources", "env", "env_from", "env_files", "cache", "retry", "watch", "process"]
SECTION_FIELDS = {
    "cache": ["ttl", "max_entries"],
    "retry": ["attempts", "initial_delay", "max_delay", "multiplier", "jitter", "deadline"],
    "watch": ["enabled", "interval", "on_change", "signal", "signal_target", "debounce", "splay", "on_error", "max_restarts",
              "restart_window"],
    "process": ["stop_signal", "stop_timeout", "pristine", "inherit", "scrub", "passthrough", "signal_target", "files_dir"],
}
SOURCE_FIELDS = {
    "vault": ["address", "namespace", "auth", "tls", "revoke_on_exit"],
    "azure": ["vault_url", "credential", "tenant_id", "client_id", "client_secret_file", "authority", "tls",
              "verify_challenge_resource"],
    "file": ["path"],
}
AUTH_FIELDS = ["method", "token_file", "role_id", "secret_id", "secret_id_file", "role", "jwt_file", "mount"]
BINDING_FIELDS = ["ref", "value", "file", "default", "optional", "on_change"]
SOURCE_NAMES = ["dev", "prod", "corp", "vault", "azure", "prd", "https", "Prod", "a_b-c", "1x", "file"]
ALL_FIELDS = sorted({f for fs in (*SECTION_FIELDS.values(), *SOURCE_FIELDS.values()) for f in fs}
                    | {*AUTH_FIELDS, *BINDING_FIELDS, *TOP_KEYS, "type", "prefix", "method", "ca_cert", "skip_verify"})

WORDS = [  # plain or quoted scalars, right and wrong for some field
    "1", "0", "-1", "2", "3.5", "1e3", "0755", "0x1F", ".inf", ".nan", "true", "no", "on", "null", "~", "''", '""',
    "5m", "1h30m", "500ms", "30 s", "1d", "SIGHUP", "HUP", "SIGKILL", "BOGUS", "restart", "signal", "exit", "ignore",
    "keep", "group", "child", "full", "none", "vault", "azure", "file", "token", "approle", "kubernetes", "jwt",
    "default", "managed_identity", "cli", "2024-01-01", "2024-13-45", "https://vault:8200", "http://x",
    "https://kv.vault.azure.net/", "./secrets.yaml", "/dev/null", "~/x", "$$", "$x", "${HOME}", "${UNSET}",
    "${UNSET:-d}", "${1BAD}", "${", "!!binary aGk=", "!custom x", "!!str 1", "!!int x", "[]", "{}", "'a''b'",
    "\"a\\tb\"", "\"\\x00\"", "\"\\u202e\\u2028\"", "\"\\U0001F600\"", "\"a\\0b\"", "=", "A-B", "PATH",
    "VAULT_TOKEN", "x", "y", "x y", "a:b", "secret/x", "hunter2",
]
BREAKING = ["|", ">", "- x", "? x", "%", "@", "`", "#c", "\"\\ud800\"", "<<", "*a0", "*a1", "*l3", "*nope", "&", "!", "'"]


def quoted(text: str, ascii_only: bool) -> str:
    """``text`` as a YAML double-quoted scalar; with ``ascii_only`` every other character is escaped
    (``\\x``, ``\\u``, ``\\U``: YAML has no surrogate pairs), else only what JSON escapes."""
    if not ascii_only:
        return json.dumps(text, ensure_ascii=False)
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


any_text = st.text(max_size=24)  # all of Unicode: astral, RTL, NUL, controls, BOM
any_quoted = st.builds(quoted, any_text, st.sampled_from([True, True, False]))
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
keys = st.one_of(st.sampled_from(ALL_FIELDS), names, any_quoted, st.sampled_from(["1", "true", "null", "~", "[a]", "? x", "<<"]))


@st.composite
def references(draw: st.DrawFn) -> str:
    source = draw(st.one_of(st.sampled_from(SOURCE_NAMES), st.from_regex(r"[A-Za-z][A-Za-z0-9+._-]{0,8}", fullmatch=True)))
    path = draw(st.one_of(st.sampled_from(["secret/app/db", "a/b", "", "/", "kv/name", "bad_name", "a%23b", "x?y"]),
                          st.text(alphabet="abc/#?%=&-_ ", max_size=12)))
    key = draw(st.one_of(st.none(), st.sampled_from(["", "k", "password", "a%3Fb"])))
    version = draw(st.one_of(st.none(), st.sampled_from(["", "3", "0f3c9a", "x&y", "a=b"])))
    ref = f"{source}://{path}"
    if version is not None and draw(st.booleans()):
        ref += f"?version={version}"
    if key is not None:
        ref += f"#{key}"
    if version is not None and "?" not in ref:
        ref += f"?version={version}"
    return ref


@st.composite
def templates(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(st.one_of(
        references().map(lambda r: "{{ " + r + " }}"),
        st.sampled_from(["{{", "}}", "{", "}", "x", "postgres://", "{{ }}", "{{ hello }}", "@db"]),
    ), min_size=1, max_size=6))
    return "".join(pieces)


@st.composite
def interpolations(draw: st.DrawFn) -> str:
    depth = draw(st.one_of(st.integers(0, 40), st.integers(900, 3_000)))  # Python's stack: about 1,000 frames
    inner = draw(st.sampled_from(["x", "${B}", "", "$$", "${", "}"]))
    closing = "}" * draw(st.sampled_from([depth, depth, max(depth - 1, 0), depth + 1]))
    name = draw(st.sampled_from(["U", "HOME", "A", "1BAD", "", "A B"]))
    return f"${{{name}:-" * depth + inner + closing


@st.composite
def big(draw: st.DrawFn) -> str:
    """A long value, built by repetition (cheap to draw): up to 120 KB."""
    unit = draw(st.sampled_from(["x", "{{", "}}", "${", "{{ vault://x", "}}{{", "$", "a: ", "\u00e9", "\U0001f600", "\u05d0\u202e"]))
    count = draw(st.integers(1_000, 40_000))
    return quoted(unit * count, ascii_only=draw(st.booleans()))


@st.composite
def deep(draw: st.DrawFn) -> str:
    depth = draw(st.integers(1, 3_000))
    shape = draw(st.sampled_from(["list", "map", "mixed"]))
    if shape == "list":
        return "[" * depth + "]" * depth
    if shape == "map":
        return "{a: " * depth + "x" + "}" * depth
    return "[{a: " * (depth // 2) + "x" + "}]" * (depth // 2)


scalars = st.one_of(
    st.sampled_from(WORDS),
    any_quoted,
    references(),
    references().map(lambda r: quoted(r, True)),
    templates().map(lambda t: quoted(t, True)),
    interpolations().map(lambda t: quoted(t, True)),
    st.sampled_from(BREAKING),
)

flow = st.recursive(
    scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(st.tuples(keys, kids), max_size=4).map(lambda kvs: "{" + ", ".join(f"{k}: {v}" for k, v in kvs) + "}"),
        st.tuples(st.sampled_from(["&a0 ", "&a1 ", "&x "]), kids).map("".join),
    ),
    max_leaves=8,
)

values = st.one_of(scalars, flow, big(), deep())


@st.composite
def block(draw: st.DrawFn, fields: list[str], indent: str = "  ") -> str:
    """A block mapping of known fields (wrong or right values) and a few unknown ones."""
    pairs = draw(st.lists(st.tuples(st.one_of(st.sampled_from(fields), keys), values), max_size=5))
    return "".join(f"\n{indent}{k}: {v}" for k, v in pairs)


@st.composite
def source_entry(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from([*SOURCE_FIELDS, "consul", None]))
    body = draw(block([*SOURCE_FIELDS.get(kind or "", []), "type"], indent="    "))
    if kind is not None:
        body = f"\n    type: {kind}" + body
    if kind == "vault" and draw(st.booleans()):
        body += "\n    auth:" + draw(block(AUTH_FIELDS, indent="      "))
    name = draw(st.one_of(st.sampled_from(SOURCE_NAMES), keys))
    return f"\n  {name}:{body}" if body else f"\n  {name}: {draw(values)}"


@st.composite
def env_entry(draw: st.DrawFn) -> str:
    name = draw(st.one_of(names, keys, st.just('"A\\nlauncher: resolved 3 variables"')))
    shape = draw(st.sampled_from(["scalar", "scalar", "ref", "template", "mapping", "any"]))
    if shape == "scalar":
        value = draw(scalars)
    elif shape == "ref":
        value = draw(references())
    elif shape == "template":
        value = quoted(draw(templates()), True)
    elif shape == "mapping":
        return f"\n  {name}:" + draw(block(BINDING_FIELDS, indent="    "))
    else:
        value = draw(values)
    return f"\n  {name}: {value}"


@st.composite
def sections(draw: st.DrawFn) -> str:
    """A manifest-shaped text: right sections with wrong values, wrong sections, anchors, bombs."""
    parts: list[str] = []
    version = draw(st.sampled_from(["version: 1"] * 20 + ["version: '1'", "version: 2", "version: true", "version:",
                                                          "version: [1]", "version: *a0", ""]))
    if version:
        parts.append(version)
    if draw(st.integers(0, 2)) == 2:  # anchors (an unknown top key, reported, but the nodes exist)
        parts.append(f"a0: &a0 {draw(values)}\na1: &a1 {draw(values)}")
    if draw(st.integers(0, 9)) == 9:  # billion laughs
        width = draw(st.integers(2, 12))
        lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, 4)]
        parts.append("\n".join(lines))
    chosen = draw(st.lists(st.sampled_from([*TOP_KEYS[1:], "other", "envv"]), max_size=6))
    for key in chosen:
        if key == "sources":
            parts.append("sources:" + "".join(draw(st.lists(source_entry(), max_size=4))))
        elif key == "env":
            parts.append("env:" + "".join(draw(st.lists(env_entry(), max_size=6))))
        elif key == "env_from":
            items = draw(st.lists(block(["ref", "prefix"], indent="    "), max_size=3))
            parts.append("env_from:" + "".join(f"\n  - {item[5:]}" if item else "\n  - {}" for item in items))
        elif key in SECTION_FIELDS and draw(st.booleans()):
            parts.append(f"{key}:" + draw(block(SECTION_FIELDS[key])))
        else:
            parts.append(f"{key}: {draw(values)}")
    return "\n".join(parts) + "\n"


STRAYS = ["\t", "\x00", "\ufeff", "\r", "\u2028", "\x85", ":", "- ", "&", "*"]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(sections())
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 1, 2]))):
        at = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["insert", "truncate", "tabs", "cut"]))
        if how == "insert":
            text = text[:at] + draw(st.one_of(any_text, st.sampled_from(STRAYS))) + text[at:]
        elif how == "truncate":
            text = text[:at]
        elif how == "tabs":
            text = text.replace("  ", "\t", 1)
        else:
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
    return text


@st.composite
def manifest_bytes(draw: st.DrawFn) -> bytes:
    # Hypothesis favours small integers: the common case is the small one.
    kind = draw(st.integers(0, 19))
    if kind == 19:
        return draw(st.binary(max_size=200))
    if kind == 18:
        return draw(any_text).encode("utf-8")
    text = draw(mutated())
    encoding = draw(st.sampled_from(["utf-8"] * 20 + ["utf-8-sig", "utf-16", "utf-16-le", "utf-32"]))
    data = text.encode(encoding)
    if draw(st.integers(0, 29)) == 29:  # a stray byte that is not UTF-8
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"])) + data[at:]
    return data


environments = st.dictionaries(
    st.one_of(names, st.sampled_from(["A", "1X", "x-y", "DB_PASSWORD", "HOME", "U"])),
    st.one_of(references(), st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=16)),
    max_size=4,
)


def _kind_of(detail: str) -> str:
    """A problem's first words, for the statistics (``--hypothesis-show-statistics``)."""
    return " ".join(re.sub(r"'.*?'|\(.*", "", detail).split()[:3])


def assert_well_formed(message: str, prefixes: tuple[str, ...], source_text: str) -> None:
    assert message.startswith(prefixes), message
    assert len(message.splitlines()) == 1 and "\n" not in message and "\r" not in message, message
    for name in EXCEPTION_NAMES:
        assert name not in message or name in source_text, (name, message)


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "launcher.yaml"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(data=manifest_bytes(), environ=environments)
def test_check_offline_never_crashes(manifest_path: Path, data: bytes, environ: dict[str, str]) -> None:
    manifest_path.write_bytes(data)
    elapsed = check_offline(manifest_path, data, environ)
    assert elapsed < CPU_LIMIT, f"took {elapsed:.2f}s of CPU: an input the reader handles in more than linear time?"


def check_offline(manifest_path: Path, data: bytes, environ: dict[str, str]) -> float:
    """What ``check --offline`` runs, with every outcome checked; returns the seconds it took."""
    name = str(manifest_path)
    source_text = data.decode("utf-8", "replace") + repr(environ)
    file_prefix = re.compile(re.escape(name) + r":(\d+:)? ")
    started = time.thread_time()
    outcome: Manifest | LauncherError
    try:
        outcome = load_manifest(manifest_path, environ)
    except LauncherError as exc:
        outcome = exc
    if isinstance(outcome, Manifest):
        event("a manifest")
        try:
            bindings = inline_bindings(environ, outcome)
        except LauncherError as exc:
            event("an inline reference error")
            assert isinstance(exc, ManifestError) and exc.exit_code == 78
            assert_well_formed(str(exc), ("<environment>: ",), source_text)
        else:
            assert all(b.name in environ for b in bindings)
    else:
        assert isinstance(outcome, ManifestError) and outcome.exit_code == 78, repr(outcome)
        problems = errors_of(outcome)
        event(f"{min(len(problems), 3)}{'+' if len(problems) > 3 else ''} problem(s); first: {_kind_of(outcome.detail)}")
        assert 1 <= len(problems) <= 21 and str(problems[0]) == str(outcome)
        for problem in problems:
            assert file_prefix.match(str(problem)), str(problem)
            assert_well_formed(str(problem), (name + ":",), source_text)
    return time.thread_time() - started
