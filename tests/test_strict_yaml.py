"""Strict YAML loading of untrusted repository bytes: attacks, ambiguous scalars, line map, fallback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
import yaml

from fleetcd.errors import Diagnostic, InvalidContent
from fleetcd.loading import strict_yaml
from fleetcd.loading.strict_yaml import ParsedYaml, YamlLimits, field_path, parse_strict
from fleetcd.reasons import Reason

FILE = "releases/nav/1.10.0.yaml"


def doc(text: str) -> bytes:
    return textwrap.dedent(text).lstrip("\n").encode()


def parse(data: bytes, limits: YamlLimits | None = None) -> ParsedYaml:
    return parse_strict(data, FILE, limits or YamlLimits())


def reject(data: bytes, limits: YamlLimits | None = None) -> Diagnostic:
    """The one diagnostic parse_strict raises for ``data``; it always names the file."""
    with pytest.raises(InvalidContent) as info:
        parse(data, limits)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.file == FILE
    return diagnostic


def scalar(text: str) -> Any:
    return parse(f"value: {text}\n".encode()).data["value"]


# --- attacks --------------------------------------------------------------------------------------

BILLION_LAUGHS = doc(
    """
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    """
)


def test_billion_laughs_is_rejected_at_the_first_anchor() -> None:
    assert len(BILLION_LAUGHS) < 400
    diagnostic = reject(BILLION_LAUGHS)
    assert diagnostic.reason is Reason.ALIAS_FORBIDDEN
    assert (diagnostic.line, diagnostic.field) == (1, "a")
    assert "&a" in diagnostic.message


def test_alias_without_anchor_is_rejected() -> None:
    diagnostic = reject(doc("name: app\nimage: *base\n"))
    assert (diagnostic.reason, diagnostic.line, diagnostic.field) == (Reason.ALIAS_FORBIDDEN, 2, "image")
    assert "*base" in diagnostic.message


def test_merge_key_is_rejected() -> None:
    data = doc(
        """
        base: {watch_seconds: 30}
        health:
          <<: {watch_seconds: 5}
        """
    )
    diagnostic = reject(data)
    assert (diagnostic.reason, diagnostic.line, diagnostic.field) == (Reason.MERGE_KEY_FORBIDDEN, 3, "health")


# Block mappings need one more space of indentation per level, so 50,000 levels would take 1.25 GB;
# the indented case goes as deep as the 1 MB file limit allows (~40x max_depth).
DEEP_DOCUMENTS = {
    "flow-sequences": "b'[' * 50_000 + b']' * 50_000",
    "flow-mappings-in-block-mapping": "b'a: ' + b'{a: ' * 50_000 + b'1' + b'}' * 50_000",
    "block-sequences": "b'- ' * 50_000 + b'x'",
    "indented-block-mappings": "b''.join(b' ' * i + b'a:\\n' for i in range(1_300)) + b' ' * 1_300 + b'x'",
}


@pytest.mark.parametrize("backend", sorted(strict_yaml.BACKENDS))
@pytest.mark.parametrize("kind", list(DEEP_DOCUMENTS), ids=list(DEEP_DOCUMENTS))
def test_deep_nesting_is_too_deep_and_does_not_crash(kind: str, backend: str) -> None:
    """The contract, whatever the parser: refused with a clean error naming the file and a line.

    Which check trips first (fleetcd's depth limit, or a parser's own nesting limit such as
    libyaml's in PyYAML 6.0.4) is the parser's business, so neither the reason nor the wording is
    pinned here; tests/test_yaml_backends.py checks both parsers give the same one.
    """
    # A subprocess, so a segfault in a recursive composer fails this test instead of killing pytest.
    script = textwrap.dedent(
        f"""
        from fleetcd.errors import InvalidContent
        from fleetcd.loading.strict_yaml import parse_strict
        data = {DEEP_DOCUMENTS[kind]}
        try:
            parse_strict(data, "deep.yaml", backend={backend!r})
        except InvalidContent as exc:
            (found,) = exc.diagnostics
            print(found.file, found.line, found.reason.value, bool(found.message))
        else:
            print("accepted")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"crashed with {done.returncode}: {done.stderr[-2000:]}"
    file, line, reason, has_message = done.stdout.split()
    assert (file, has_message) == ("deep.yaml", "True")
    assert int(line) >= 1
    assert Reason(reason) in set(Reason)


def test_depth_limit_counts_every_mapping_and_sequence() -> None:
    limits = YamlLimits(max_depth=3)
    assert parse(b"a: {b: [1]}", limits).data == {"a": {"b": [1]}}
    diagnostic = reject(b"a: {b: [[1]]}", limits)
    assert (diagnostic.reason, diagnostic.field) == (Reason.TOO_DEEP, "a.b[0]")


def test_fifty_megabyte_scalar_is_rejected_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_parser(_data: bytes) -> None:
        raise AssertionError("the parser must not see an oversized file")

    monkeypatch.setattr(strict_yaml, "_LOADER", no_parser)
    diagnostic = reject(b"notes: " + b"x" * (50 * 1024 * 1024))
    assert diagnostic.reason is Reason.TOO_LARGE
    assert str(1024 * 1024) in diagnostic.message


def test_node_count_and_scalar_size_are_bounded_while_streaming() -> None:
    many = reject(b"gates: [" + b"g, " * 50 + b"g]", YamlLimits(max_nodes=20))
    assert (many.reason, many.field) == (Reason.TOO_LARGE, "gates[17]")  # root, key, list, 17 items
    long = reject(b"notes: '" + b"x" * 200 + b"'", YamlLimits(max_scalar_bytes=100))
    assert (long.reason, long.field) == (Reason.TOO_LARGE, "notes")


def test_huge_integer_is_rejected_not_converted() -> None:
    diagnostic = reject(b"size: " + b"9" * 5_000)
    assert diagnostic.reason is Reason.TOO_LARGE
    assert len(diagnostic.message) < 200


# --- structure ------------------------------------------------------------------------------------


def test_duplicate_sha256_key_names_the_key_and_both_lines() -> None:
    data = doc(
        """
        app: nav
        artifacts:
          - kind: app_tarball
            name: nav
            sha256: 1111111111111111111111111111111111111111111111111111111111111111
            size: 10
            sha256: 2222222222222222222222222222222222222222222222222222222222222222
        """
    )
    diagnostic = reject(data)
    assert diagnostic.reason is Reason.DUPLICATE_KEY
    assert (diagnostic.line, diagnostic.field) == (7, "artifacts[0].sha256")
    assert "'sha256'" in diagnostic.message
    assert "line 5" in diagnostic.message and "line 7" in diagnostic.message


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"a: !!python/object/apply:os.system ['true']\n", Reason.TAG_FORBIDDEN),
        (b"a: !!str 1.10\n", Reason.TAG_FORBIDDEN),
        (b"a: !custom x\n", Reason.TAG_FORBIDDEN),
        (b"a: !!map {b: 1}\n", Reason.TAG_FORBIDDEN),
        (b"a: 1\n---\na: 2\n", Reason.INVALID),
        (b"%YAML 1.1\n---\na: yes\n", Reason.INVALID),
        (b"1: one\n", Reason.INVALID),
        (b"true: yes\n", Reason.INVALID),
        (b"null: x\n", Reason.INVALID),
        (b"[a, b]: x\n", Reason.INVALID),
        (b"? {a: 1}\n: x\n", Reason.INVALID),
        (b"a: [1, 2\n", Reason.YAML_SYNTAX),
        (b"a: b: c\n", Reason.YAML_SYNTAX),
    ],
    ids=[
        "python-tag",
        "str-tag",
        "local-tag",
        "map-tag",
        "multi-document",
        "yaml-directive",
        "integer-key",
        "bool-key",
        "null-key",
        "sequence-key",
        "mapping-key",
        "unclosed-flow",
        "nested-plain-mapping",
    ],
)
def test_forbidden_structure_is_rejected(data: bytes, reason: Reason) -> None:
    diagnostic = reject(data)
    assert diagnostic.reason is reason
    assert diagnostic.line is not None and diagnostic.line >= 1
    assert diagnostic.message


def test_multi_document_error_points_at_the_second_document() -> None:
    diagnostic = reject(b"a: 1\nb: [2]\n---\nc: 3\n")
    assert (diagnostic.line, diagnostic.field) == (3, None)


@pytest.mark.parametrize(
    ("data", "root_line"),
    [(b"", 1), (b"# nothing yet\n", 1), (b"\xef\xbb\xbf", 1), (b"---\n", 2)],
    ids=["empty", "comment", "bom", "marker-then-empty-node"],
)
def test_empty_document_is_none_for_the_caller_to_judge(data: bytes, root_line: int) -> None:
    parsed = parse(data)
    assert parsed.data is None
    assert parsed.line_of(()) == root_line


# --- bytes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason", "line"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", Reason.BINARY, 2),
        (b"a: 1\nb: x\x00y\n", Reason.BINARY, 2),
        (b'a: "bell \\a"\n', Reason.BINARY, 1),
        ("a: 1\nb: x\u2028y\n".encode(), Reason.BINARY, 2),
        ("id: robot\nsite: Köln\n".encode("latin-1"), Reason.NOT_UTF8, 2),
        ("a: b\n".encode("utf-16"), Reason.BINARY, 1),
        ("a: 1\nb: \u0080\n".encode(), Reason.BINARY, 2),
    ],
    ids=["png-header", "nul-byte", "escaped-control", "line-separator", "latin-1", "utf-16", "c1-control"],
)
def test_non_text_bytes_are_rejected(data: bytes, reason: Reason, line: int) -> None:
    diagnostic = reject(data)
    assert (diagnostic.reason, diagnostic.line) == (reason, line)


def test_latin1_error_names_the_offset_and_byte() -> None:
    message = reject("site: Köln\n".encode("latin-1")).message
    assert "0xF6" in message and "offset 7" in message


def test_utf8_bom_is_stripped() -> None:
    assert parse(b"\xef\xbb\xbfid: robot-1\n").data == {"id": "robot-1"}


# --- scalars --------------------------------------------------------------------------------------

RESOLVED: list[tuple[str, Any]] = [
    ("NO", "NO"),
    ("yes", "yes"),
    ("on", "on"),
    ("off", "off"),
    ("12:30", "12:30"),
    ("2026-01-01", "2026-01-01"),
    ("1.2.3", "1.2.3"),
    ("inf", "inf"),
    ("'1.10'", "1.10"),
    ('"012"', "012"),
    ("'true'", "true"),
    ("''", ""),
    ("|\n  line\n", "line\n"),
    ("", None),
    ("~", None),
    ("null", None),
    ("NULL", None),
    ("true", True),
    ("True", True),
    ("FALSE", False),
    ("0", 0),
    ("42", 42),
    ("-7", -7),
    ("+3", 3),
    ("1.5", 1.5),
    ("-0.25", -0.25),
    ("+2.5", 2.5),
    ("100.0", 100.0),
]


@pytest.mark.parametrize(("text", "expected"), RESOLVED, ids=[f"{t!r}" for t, _ in RESOLVED])
def test_scalar_resolves_without_changing_what_was_written(text: str, expected: Any) -> None:
    value = scalar(text)
    assert type(value) is type(expected)
    assert value == expected


AMBIGUOUS = [
    "1.10",
    "012",
    "-012",
    "0x1F",
    "0o17",
    "0b101",
    "1e3",
    "1e+16",
    ".5",
    "1.",
    ".inf",
    "-.Inf",
    ".nan",
    "1_000",
    "0.10",
]


@pytest.mark.parametrize("text", AMBIGUOUS, ids=AMBIGUOUS)
def test_numbers_yaml_readers_disagree_on_must_be_quoted(text: str) -> None:
    diagnostic = reject(f"app: nav\nvalue: {text}\n".encode())
    assert (diagnostic.reason, diagnostic.line, diagnostic.field) == (Reason.AMBIGUOUS_SCALAR, 2, "value")
    assert f"quote it: '{text}'" in diagnostic.message


def test_version_1_10_explains_what_it_would_become() -> None:
    diagnostic = reject(doc("kind: Release\nversion: 1.10\n"))
    assert str(diagnostic) == f"{FILE}:2: version: 1.10 would be read as the number 1.1; quote it: '1.10'"


def test_long_bad_value_is_truncated_in_the_message() -> None:
    message = reject(b"value: 0" + b"7" * 500 + b"\n").message
    assert "..." in message and len(message) < 250


# --- line map -------------------------------------------------------------------------------------

RELEASE = doc(
    """
    apiVersion: fleetcd.dev/v1
    kind: Release
    artifacts:
      - kind: app_tarball
        name: nav
        sha256: "ab"
      - kind: config
        path: /etc/nav.yaml
    health:
      probes:
        - type: exec
          argv: [nav-check,
                 --fast]
    """
)


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ((), 1),
        (("kind",), 2),
        (("artifacts",), 3),
        (("artifacts", 0), 4),
        (("artifacts", 0, "sha256"), 6),
        (("artifacts", 1), 7),
        (("artifacts", 1, "path"), 8),
        (("health", "probes"), 10),
        (("health", "probes", 0, "argv", 0), 12),
        (("health", "probes", 0, "argv", 1), 13),
    ],
    ids=lambda value: field_path(value) or "root" if isinstance(value, tuple) else str(value),
)
def test_line_map_points_at_nested_fields(path: tuple[str | int, ...], line: int) -> None:
    parsed = parse(RELEASE)
    assert parsed.lines[path] == line
    assert parsed.line_of(path) == line


def test_line_of_a_missing_field_is_its_nearest_ancestor() -> None:
    parsed = parse(RELEASE)
    assert parsed.line_of(("artifacts", 1, "sha256")) == 7
    assert parsed.line_of(("rollback", "target")) == 1


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (("artifacts", 0, "sha256"), "artifacts[0].sha256"),
        ((), ""),
        ((0, "id"), "[0].id"),
        (("labels", "app.kubernetes.io/name"), 'labels["app.kubernetes.io/name"]'),
        (("values", "0"), 'values["0"]'),
    ],
    ids=["nested", "root", "top-level-list", "dotted-key", "numeric-text-key"],
)
def test_field_path_is_unambiguous(path: tuple[str | int, ...], text: str) -> None:
    assert field_path(path) == text


# --- agreement with yaml.safe_load on safe input --------------------------------------------------

SAFE_DOCUMENTS = {
    "device": """
        apiVersion: fleetcd.dev/v1
        kind: Device
        id: robot-0042
        hardware: {model: tb4, revision: 3}
        labels:
          zone: north
          dock: "7"
        maintenance_windows:
          - days: [mon, tue]
            start: "22:00"
            end: "04:00"
        decommissioned: false
        """,
    "release": """
        kind: Release
        version: "1.10.0"
        notes: |
          Faster planner.
          Fixes dock timeouts.
        summary: >
          folded
          text
        artifacts:
          - kind: container_image
            image: "registry.local/nav@sha256:0123"
            env: {LOG: debug, "QUOTED KEY": 'it''s'}
            ports: {http: 8080}
        health:
          watch_seconds: 30
          probes: []
        rollback: {target: previous, automatic: true, checks: []}
        """,
    "scalars": """
        text: "tab\\tand \\u00fc"
        unicode: Köln 🤖
        negative: -12
        fraction: 0.5
        nothing: ~
        empty:
        multi word plain: a b  c
        nested: [[1, 2], {a: [], b: {}}]
        """,
}


@pytest.mark.parametrize("name", list(SAFE_DOCUMENTS), ids=list(SAFE_DOCUMENTS))
def test_safe_document_matches_safe_load(name: str) -> None:
    data = doc(SAFE_DOCUMENTS[name])
    assert parse(data).data == yaml.safe_load(data)


# --- pure-Python fallback (PyYAML built without libyaml) ------------------------------------------

FALLBACK_CASES = {
    "billion-laughs": (BILLION_LAUGHS, Reason.ALIAS_FORBIDDEN),
    "merge-key": (b"a: {<<: {b: 1}}\n", Reason.MERGE_KEY_FORBIDDEN),
    "deep": (b"[" * 50_000 + b"]" * 50_000, Reason.TOO_DEEP),
    "duplicate": (b"a: 1\na: 2\n", Reason.DUPLICATE_KEY),
    "ambiguous": (b"version: 1.10\n", Reason.AMBIGUOUS_SCALAR),
    "tag": (b"a: !!str x\n", Reason.TAG_FORBIDDEN),
    "syntax": (b"a: [1\n", Reason.YAML_SYNTAX),
    "c1-control": ("a: \u0080\n".encode(), Reason.BINARY),
}


@pytest.mark.parametrize("case", list(FALLBACK_CASES), ids=list(FALLBACK_CASES))
def test_pure_python_fallback_gives_the_same_verdicts(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strict_yaml, "_LOADER", yaml.SafeLoader)
    data, reason = FALLBACK_CASES[case]
    assert reject(data).reason is reason


def test_pure_python_fallback_builds_the_same_data(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = parse(RELEASE)
    monkeypatch.setattr(strict_yaml, "_LOADER", yaml.SafeLoader)
    fallback = parse(RELEASE)
    assert fallback.data == expected.data
    assert dict(fallback.lines) == dict(expected.lines)


def test_wide_mapping_just_under_the_size_cap_is_rejected_by_the_node_cap() -> None:
    labels = b"".join(b"  k%d: v\n" % i for i in range(30_000))
    raw = b"id: amr-1\nlabels:\n" + labels
    assert len(raw) < YamlLimits().max_bytes
    rejected = reject(raw)
    assert rejected.reason is Reason.TOO_LARGE
    assert "YAML nodes" in rejected.message
