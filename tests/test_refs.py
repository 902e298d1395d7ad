"""Reference grammar: a pure parser, tested as tables."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launcher.model.refs import FetchKey, Reference, RefSyntaxError, is_reference_text, parse_reference, parse_value, render

KNOWN = frozenset({"vault", "azure", "dev", "prod", "my-src", "s_2"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vault://secret/app/db#password", Reference("vault", "secret/app/db", "password")),
        ("vault://secret/app/db", Reference("vault", "secret/app/db")),
        ("prod://secret/app/db?version=3#password", Reference("prod", "secret/app/db", "password", "3")),
        ("prod://secret/app/db#password?version=3", Reference("prod", "secret/app/db", "password", "3")),
        ("azure://corp-kv/api-key?version=0f3c9a", Reference("azure", "corp-kv/api-key", None, "0f3c9a")),
        ("dev://a%23b/c#k%3Fey", Reference("dev", "a#b/c", "k?ey")),
        ("dev://a%3fb#k%23", Reference("dev", "a?b", "k#")),
        ("dev://path%23x?version=2#key%3Fy", Reference("dev", "path#x", "key?y", "2")),
        ("dev:///leading/slash/", Reference("dev", "leading/slash")),
        ("my-src://x#y", Reference("my-src", "x", "y")),
        ("s_2://x", Reference("s_2", "x")),
        ("  dev://x#y  ", Reference("dev", "x", "y")),
        # A label moves, so it is part of the path (PATH:L, SSM's selector form), not a pinned version.
        ("prod:///app/db?label=prod#password", Reference("prod", "app/db:prod", "password")),
        ("prod:///app/db/#password?label=Blue-2.x_y", Reference("prod", "app/db:Blue-2.x_y", "password")),
    ],
)
def test_parse_reference(text: str, expected: Reference) -> None:
    assert parse_reference(text, KNOWN) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prd://secret/x#y",
         "unknown source 'prd' (did you mean 'prod'?) (declared: dev, my-src, prod, s_2; built-in: aws, azure, gcp, ssm, vault)"),
        ("Vault://x", "unknown source 'Vault' (did you mean 'vault'?) (declared:"),
        ("zzz://x", "unknown source 'zzz' (declared: dev, my-src, prod, s_2; built-in: aws, azure, gcp, ssm, vault)"),
        ("Vault://x", "unknown source 'Vault'"),
        ("https://example.com", "is a URL, not a secret reference"),
        ("dev://", "empty path"),
        ("dev:///#k", "empty path"),
        ("dev://x#", "empty #key"),
        ("dev://x?flag", "unsupported query 'flag'"),
        ("dev://x?=1", "unsupported query"),
        ("dev://x?a=1&a=2", "'a' is given twice"),
        ("dev://x?a=1&version=2", "cannot be combined with request data"),
        ("dev://x?a=%ff", "not UTF-8"),
        ("dev://x?version=", "invalid version"),
        ("dev://x?version=1&b=2", "invalid version"),
        ("dev://x?version=1?x", "invalid version"),
        ("dev://x?label=", "invalid label"),
        ("dev://x?label=a&version=2", "invalid label"),
        ("dev://x?label=a:b", "invalid label"),
        ("dev://x?label=a/b", "invalid label"),
        ("dev://x?label=a%3Fb", "invalid label"),
        ("dev://x?a=1&label=2", "?label= cannot be combined with request data"),
        ("hunter2", "not a reference"),
    ],
)
def test_parse_reference_errors(text: str, message: str) -> None:
    with pytest.raises(RefSyntaxError) as info:
        parse_reference(text, KNOWN)
    assert message in str(info.value)


def test_not_a_reference_does_not_echo_the_text() -> None:
    with pytest.raises(RefSyntaxError) as info:
        parse_reference("s3cr3t-value", KNOWN)
    assert "s3cr3t-value" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "info",
        "",
        "http://example.com/x#frag",
        "HTTPS://example.com",
        "Postgres://u:p@db/app",
        "postgresql://db/app?sslmode=require",
        "mongodb+srv://cluster/db",
        "redis://cache:6379/0",
        "file:///etc/passwd",
        "s3://bucket/key",
        "not a ref: x://y",
        " dev://x",  # a leading space: the value is not a NAME:// prefix
        "a $b c",
    ],
)
def test_literals(text: str) -> None:
    assert parse_value(text, KNOWN) == (text,)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("dev://app/db#user", (Reference("dev", "app/db", "user"),)),
        (
            "postgres://{{ prod://db#user }}:{{prod://db#password}}@db/app",
            ("postgres://", Reference("prod", "db", "user"), ":", Reference("prod", "db", "password"), "@db/app"),
        ),
        ("{{ dev://a }}", (Reference("dev", "a"),)),
        ("x{{ dev://a?version=2#k }}y", ("x", Reference("dev", "a", "k", "2"), "y")),
        # `}}` outside a placeholder is text: one-line JSON needs no escaping (issue 27.11).
        ('{"pw": "{{ dev://app#pw }}"}', ('{"pw": "', Reference("dev", "app", "pw"), '"}')),
        ('{"a": {"pw": "{{ dev://app#pw }}"}}', ('{"a": {"pw": "', Reference("dev", "app", "pw"), '"}}')),
        ('{"n": {{ dev://app#n }}}', ('{"n": ', Reference("dev", "app", "n"), "}")),
        ("a }} {{ dev://x }} }}", ("a }} ", Reference("dev", "x"), " }}")),
        # A run of braces opens with its last two and closes with its first two.
        ("{{{ dev://x }}}", ("{", Reference("dev", "x"), "}")),
        ("{{{{dev://x}}}}", ("{{", Reference("dev", "x"), "}}")),
    ],
)
def test_templates(text: str, parts: tuple[object, ...]) -> None:
    assert parse_value(text, KNOWN) == parts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prd://x#y", "unknown source 'prd'"),
        ("{{ hello }}", "does not hold a reference"),
        ("a {{ dev://x", "unbalanced"),
        ("a {{ dev://x }} {{ dev://y", "never closed"),
        ("{{{{ hello }}", "does not hold a reference"),
        ("{{ prd://x }}", "unknown source 'prd'"),
    ],
)
def test_parse_value_errors(text: str, message: str) -> None:
    with pytest.raises(RefSyntaxError) as info:
        parse_value(text, KNOWN)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dev://x", True),
        ("vault://secret/x#y", True),
        ("foo://x", False),
        ("https://x", False),
        ("plain", False),
        (" dev://x", False),
    ],
)
def test_is_reference_text(text: str, expected: bool) -> None:
    assert is_reference_text(text, KNOWN) is expected


def test_fetch_key_ignores_the_key() -> None:
    a = parse_reference("prod://db#user", KNOWN)
    b = parse_reference("prod://db#password", KNOWN)
    c = parse_reference("prod://db?version=2#user", KNOWN)
    assert a.fetch_key == b.fetch_key == FetchKey("prod", "db")
    assert c.fetch_key != a.fetch_key
    labelled = parse_reference("prod://db?label=live#user", KNOWN)
    assert labelled.fetch_key == FetchKey("prod", "db:live")  # no version: watched like an unpinned reference
    assert parse_reference("prod://db:live#password", KNOWN).fetch_key == labelled.fetch_key


@pytest.mark.parametrize(
    "text",
    ["dev://a%23b/c?version=2#k%3Fey", "dev://x#y", "prod://db", "azure://kv/name?version=abc", "prod://db?label=live#k"],
)
def test_str_round_trips(text: str) -> None:
    ref = parse_reference(text, KNOWN)
    assert parse_reference(str(ref), KNOWN) == ref


# -- request data (docs/guides/issued-certificates.md) ------------------------------------------------------

PKI = "vault://pki/issue/web?common_name=app.internal&ttl=24h"


def test_a_query_other_than_version_is_request_data() -> None:
    ref = parse_reference(f"{PKI}#certificate", KNOWN)
    assert ref == Reference("vault", "pki/issue/web", "certificate", None, (("common_name", "app.internal"), ("ttl", "24h")))
    assert parse_reference("vault://pki/issue/web#private_key?ttl=24h&common_name=app.internal", KNOWN).data == ref.data


def test_request_data_values_are_percent_decoded_and_plus_stays_plus() -> None:
    ciphertext = "vault:v1:ab+c/d=="  # base64: '+' is a plus, '/' a slash, '=' padding
    ref = parse_reference(f"vault://transit/decrypt/app?ciphertext={ciphertext}#plaintext", KNOWN)
    assert dict(ref.data) == {"ciphertext": ciphertext}
    escaped = parse_reference("vault://pki/issue/web?alt_names=a%26b%2Cc&common_name=x%23y%20z#certificate", KNOWN)
    assert dict(escaped.data) == {"alt_names": "a&b,c", "common_name": "x#y z"}
    assert dict(parse_reference("vault://x/issue/r?a=b=c", KNOWN).data) == {"a": "b=c"}  # only the first '=' splits


def test_references_that_differ_only_in_key_are_one_fetch_and_in_data_two() -> None:
    cert = parse_reference(f"{PKI}#certificate", KNOWN)
    key = parse_reference("vault://pki/issue/web?ttl=24h&common_name=app.internal#private_key", KNOWN)  # pairs in another order
    other = parse_reference("vault://pki/issue/web?common_name=other.internal&ttl=24h#certificate", KNOWN)
    plain = parse_reference("vault://pki/issue/web#certificate", KNOWN)
    assert cert.fetch_key == key.fetch_key
    assert len({cert.fetch_key, other.fetch_key, plain.fetch_key}) == 3
    assert str(cert.fetch_key) == PKI


@pytest.mark.parametrize("value", ["a&b", "a#b", "a%26b", "100%", "x=y", "+/=", "é ü"])
def test_request_data_round_trips(value: str) -> None:
    ref = Reference("vault", "transit/decrypt/k", "plaintext", None, (("ciphertext", value), ("con=text", "c")))
    assert parse_reference(str(ref), KNOWN) == ref


def test_a_query_error_does_not_echo_a_value() -> None:
    with pytest.raises(RefSyntaxError) as info:
        parse_reference("vault://transit/decrypt/k?ciphertext=s3cr3t-ish&bogus", KNOWN)
    assert "s3cr3t-ish" not in str(info.value) and "'bogus'" in str(info.value)


def test_render_shows_references_not_values() -> None:
    parts = parse_value("x{{ dev://a#b }}y", KNOWN)
    assert render(parts) == "x{{ dev://a#b }}y"
    assert render(parse_value("dev://a#b", KNOWN)) == "dev://a#b"


def test_a_long_list_of_declared_sources_is_shortened() -> None:
    known = frozenset({f"src{i:02d}" for i in range(30)}) | {"vault", "azure"}
    with pytest.raises(RefSyntaxError) as info:
        parse_reference("nope://x", known)
    assert "declared: src00, src01," in str(info.value) and "src09, ... (20 more); built-in: aws, azure, gcp, ssm, vault" in str(info.value)


def test_no_suggestion_for_a_far_or_very_long_name() -> None:
    for name in ("qqqq", "p" * 5000):
        with pytest.raises(RefSyntaxError) as info:
            parse_reference(f"{name}://x", KNOWN)
        assert "did you mean" not in str(info.value)


# -- templates: a linear scanner, with the results of the regex it replaced -----------------------

# The rule as a regex: a placeholder opens at the last two braces of a run of `{` and
# closes at the first `}}`; text after the last placeholder may not hold a `{{` (unclosed).
_OLD_TEMPLATE_RE = re.compile(r"\{\{(?!\{)(.*?)\}\}", re.DOTALL)


def old_parse_value(text: str) -> tuple[object, ...]:
    """A regex-based template parser: the oracle for results and messages."""
    parts: list[object] = []
    pos = 0

    def literal(chunk: str) -> str:
        if "{{" in chunk:
            raise RefSyntaxError("unbalanced '{{': it is never closed by '}}'")
        return chunk

    for m in _OLD_TEMPLATE_RE.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])  # braces before a placeholder's last two are text
        inner = m.group(1).strip()
        if not re.match(r"[A-Za-z][A-Za-z0-9+._-]*://", inner):
            raise RefSyntaxError("a {{ }} in the template does not hold a reference (SOURCE://PATH)")
        parts.append(parse_reference(inner, KNOWN))
        pos = m.end()
    if pos < len(text):
        parts.append(literal(text[pos:]))
    return tuple(parts)


def outcome(fn: object, text: str) -> object:
    try:
        return fn(text)  # type: ignore[operator]
    except RefSyntaxError as exc:
        return ("error", str(exc))


@settings(max_examples=500, deadline=None, database=None)
@given(st.lists(st.sampled_from(["{{", "}}", "{", "}", " ", "dev://a", "#k", "prd://x", "x", "vault://s/p", "\n"]), max_size=14))
def test_template_scanner_matches_the_old_regex(pieces: list[str]) -> None:
    text = "{{" + "".join(pieces)  # templates are what contains "{{"
    assert outcome(lambda t: parse_value(t, KNOWN), text) == outcome(old_parse_value, text)


@pytest.mark.parametrize(
    ("text", "message", "count"),
    [
        ("{" * 100_000, "unbalanced", 0),
        ("{{ vault://x" * 10_000, "unbalanced", 0),
        ("{{ vault://x }}" + "}" * 100_000, "", 2),  # a placeholder, then text
        ("{{" + "}" * 100_000, "does not hold a reference", 0),
        ("{{ dev://x }}" * 7_000, "", 7_000),
    ],
)
def test_huge_templates_take_linear_time(text: str, message: str, count: int) -> None:
    # The regex scan restarted at every unclosed "{{": 100 KB took over a minute. CPU seconds of
    # this thread, which a busy machine does not inflate: a guard against going quadratic again.
    started = time.thread_time()
    if message:
        with pytest.raises(RefSyntaxError, match=message):
            parse_value(text, KNOWN)
    else:
        assert len(parse_value(text, KNOWN)) == count
    assert time.thread_time() - started < 1.0
