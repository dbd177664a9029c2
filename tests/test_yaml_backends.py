"""The same file gets the same verdict and the same data from libyaml and from the pure-Python parser.

A controller and CI parse with libyaml (``CSafeLoader``); a robot whose PyYAML was built without it
(or Debian's python3-yaml) parses with PyYAML's pure-Python ``SafeLoader``. If they disagreed, a file
CI passed could be refused on the robot, or the robot could read other values than were reviewed.
Each case runs through :func:`parse_strict` on both backends: accepted on both with equal data and
line maps, or refused on both with the same reason, line and message (the wording of a syntax error
both parsers find is the library's own; reason and line still match). A corpus per class of edge
case, then a seeded random differential run over short YAML-ish texts and mutated real documents.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from fleetcd.errors import InvalidContent
from fleetcd.loading import strict_yaml
from fleetcd.loading.strict_yaml import parse_strict
from fleetcd.reasons import Reason

FILE = "devices/amr-01.yaml"
ROOT = Path(__file__).resolve().parent.parent
BOTH = pytest.mark.skipif(
    "libyaml" not in strict_yaml.BACKENDS, reason="this PyYAML has no libyaml: nothing to compare"
)
SYNTAX_PREFIX = "YAML syntax error:"

Outcome = tuple[Any, ...]


def outcome(data: bytes, backend: str) -> Outcome:
    """("accepted", data, line map) or ("refused", reason, line, message); never an exception."""
    try:
        parsed = parse_strict(data, FILE, backend=backend)
    except InvalidContent as exc:
        (found,) = exc.diagnostics
        assert found.file == FILE
        assert found.line is not None and 1 <= found.line <= data.count(b"\n") + 1, found
        assert found.message
        return ("refused", found.reason, found.line, found.message)
    return ("accepted", parsed.data, dict(parsed.lines))


def same(libyaml: Outcome, python: Outcome) -> bool:
    if libyaml[0] == python[0] == "refused" and libyaml[3].startswith(SYNTAX_PREFIX):
        return libyaml[:3] == python[:3] and python[3].startswith(SYNTAX_PREFIX)
    return libyaml == python


def both(data: bytes) -> Outcome:
    """The outcome both backends agree on; fails the test, showing both, when they do not."""
    libyaml, python = outcome(data, "libyaml"), outcome(data, "python")
    assert same(libyaml, python), f"{data!r}\n  libyaml: {libyaml}\n  python:  {python}"
    return libyaml


# --- the corpus: (id, text), grouped by class -----------------------------------------------------

CORPUS: dict[str, list[tuple[str, bytes]]] = {
    "tabs": [
        ("after-value", b"name: navstack\t\n"),
        ("before-comment", b"a: 1\t# c\n"),
        ("inside-comment", b"a: 1 # c\td\n"),
        ("after-colon", b"a:\tb\n"),
        ("inside-plain", b"a: b\tc\n"),
        ("indentation", b"a:\n\tb: 1\n"),
        ("after-indentation", b"a:\n  \tb: 1\n"),
        ("in-flow", b"a: [b,\tc]\n"),
        ("in-flow-mapping", b"a: {b:\tc}\n"),
        ("in-double-quotes", b'a: "x\ty"\n'),
        ("in-single-quotes", b"a: 'x\ty'\n"),
        ("quoted-continuation", b'a: "x\n\ty"\n'),
        ("block-content", b"a: |\n  x\ty\n"),
        ("block-first-line", b"a: |\n  \tx\n"),
        ("block-explicit-indent", b"a: |2\n  \tx\n"),
        ("block-indentation", b"a: |\n  x\n \ty\n"),
        ("block-blank-line", b"a: |\n  x\n \t\n  y\n"),
        ("block-header", b"a: |\t# c\n  x\n"),
        ("after-dash", b"-\ta\n"),
        ("key-then-tab", b"a\t: b\n"),
    ],
    "comments": [
        ("after-space", b"a: b # c\n"),
        ("hash-in-plain", b"a: b#c\n"),
        ("after-quoted", b'a: "b"#c\n'),
        ("after-flow", b"a: [b]#c\n"),
        ("in-flow-after-comma", b"a: [b,#c\n  d]\n"),
        ("own-line", b"# c\na: 1\n  # indented\nb: 2\n"),
        ("between-plain-lines", b"a: b\n# c\n  d\n"),
        ("in-quotes", b"a: 'b #c'\n"),
        ("modeline", b"# yaml-language-server: $schema=https://fleetcd.dev/schemas/v1/device.json\nid: x\n"),
    ],
    "flow-collections": [
        ("question-mark-in-text", b"k: [a?b]\n"),
        ("question-mark-key", b"k: {? a: b}\n"),
        ("question-mark-end", b"k: [a?]\n"),
        ("colon-before-bracket", b"k: [a, b:]\n"),
        ("colon-before-comma", b"k: [a:, b]\n"),
        ("colon-before-brace", b"k: {a: b:}\n"),
        ("colon-in-text", b"k: [http://x/y, a:b]\n"),
        ("single-pair", b"k: [a: b]\n"),
        ("json-style", b'k: {"a":b, "c":"d"}\n'),
        ("colon-first", b"k: [:a]\n"),
        ("dash-entry", b"k: [- a]\n"),
        ("multi-line", b"k: [a,\n  b c,\n  d]\n"),
        ("multi-line-plain", b"k: [a\n  b]\n"),
        ("multi-line-key", b"k: {a\n  b: c}\n"),
        ("nested", b"k: [[1, 2], {a: [], b: {}}]\n"),
        ("unclosed", b"k: [1, 2\n"),
        ("unclosed-then-key", b"?\n\n{\n"),
        ("extra-close", b"k: [1]]\n"),
        ("block-scalar-inside", b"k: [|\n  x\n]\n"),
        ("deep", b"k: " + b"[" * 40 + b"]" * 40 + b"\n"),
        ("collection-key", b"[a, b]: x\n"),
    ],
    "block-scalars": [
        ("literal", b"a: |\n  x\n  y\n"),
        ("folded", b"a: >\n  x\n  y\n\n  z\n"),
        ("strip", b"a: |-\n  x\n"),
        ("keep", b"a: |+\n  x\n\n"),
        ("no-final-newline", b"a: |\n  x"),
        ("indent-indicator", b"a: |2\n   x\n"),
        ("indicators-both-orders", b"a: |2-\n   x\nb: >-2\n   y\n"),
        ("comment-after-header", b"a: | # c\n  x\n"),
        ("hash-right-after-header", b"a: |#c\n  x\n"),
        ("hash-after-indicator", b"a: |-#c\n  x\n"),
        ("text-after-header", b"a: | x\n"),
        ("empty-then-key", b"a: |\nb: 1\n"),
        ("less-indented-end", b"a:\n  b: |\n    x\n  c: 1\n"),
        ("in-sequence", b"- |\n  x\n- >\n  y\n"),
        ("compact-mapping", b"- a: |\n    x\n  b: 1\n"),
        ("own-line-header", b"a:\n  |\n x\n"),
        ("leading-blank-wider", b"a: |\n\n     \n  x\n"),
        ("root", b"|\n x\n"),
        ("crlf", b"a: |\r\n  x\r\n  y\r\nb: 1\r\n"),
        ("trailing-spaces", b"a: |  \n  x  \n  \n"),
        ("explicit-key", b"? |\n  a\n: b\n"),
    ],
    "document-markers": [
        ("leading-marker", b"---\na: 1\n"),
        ("marker-only", b"---\n"),
        ("marker-no-newline", b"---"),
        ("marker-then-comment", b"--- # c\na: 1\n"),
        ("comment-then-marker", b"# c\n---\na: 1\n"),
        ("content-on-marker-line", b"--- {a: 1}\n"),
        ("second-document", b"a: 1\n---\na: 2\n"),
        ("two-markers", b"---\n---\n"),
        ("end-marker", b"a: 1\n...\n"),
        ("end-marker-in-quotes", b'a: "x\n...\ny"\n'),
        ("marker-in-quotes", b"a: 'x\n--- y'\n"),
        ("dashes-text", b"---x: 1\n"),
        ("yaml-directive", b"%YAML 1.1\n---\na: yes\n"),
        ("tag-directive", b"%TAG ! tag:x,2000:\n---\na: 1\n"),
        ("percent-in-value", b"a: 50%\n"),
        ("empty", b""),
        ("blank-lines", b"\n\n"),
        ("comment-only", b"# nothing yet\n"),
    ],
    "unicode": [
        ("bom-at-start", b"\xef\xbb\xbfa: 1\n"),
        ("bom-after-start", "a: 1\n\ufeffb: 2\n".encode()),
        ("bom-in-value", "a: x\ufeffy\n".encode()),
        ("bom-then-marker", b"\xef\xbb\xbf---\na: 1\n"),
        ("nel", "a: 1\u0085b: 2\n".encode()),
        ("line-separator", "a: 1\u2028b: 2\n".encode()),
        ("paragraph-separator", "a: x\u2029\n".encode()),
        ("no-break-space", "a: x\u00a0y\n\u00a0b: 1\n".encode()),
        ("em-space", "a:\u2003b\n".encode()),
        ("ideographic-space", "a: \u3000\n".encode()),
        ("emoji", "a: robot \U0001f916\n".encode()),
        ("c1-control", "a: \u0080\n".encode()),
        ("nul", b"a: x\x00\n"),
        ("noncharacter", "a: \ufffe\n".encode()),
        ("lone-cr", b"a: 1\rb: 2\n"),
        ("crlf", b"a: 1\r\nb: [2,\r\n  3]\r\n"),
        ("escape-surrogate", b'a: "\\uD800"\n'),
        ("escape-surrogate-pair", b'a: "\\ud83e\\udd16"\n'),
        ("escape-past-unicode", b'a: "\\U00110000"\n'),
        ("escape-astral", b'a: "\\U0001F916"\n'),
        ("escape-line-breaks", b'a: "\\N\\L\\P\\_"\n'),
        ("escape-nul", b'a: "\\0"\n'),
        ("escaped-backslash-then-u", b'a: "\\\\uD800"\n'),
    ],
    "keys": [
        ("long-implicit-key", b"k" * 1100 + b": v\n"),
        ("key-at-limit", b"k" * 1000 + b": v\n"),
        ("long-quoted-key", b'"' + b"k" * 1100 + b'": v\n'),
        ("long-flow-key", b"{" + b"k" * 1100 + b": v}\n"),
        ("long-value", b"k: " + b"v" * 5000 + b"\n"),
        ("multi-line-quoted-key", b'"a\n b": c\n'),
        ("multi-line-plain-key", b"a\nb: c\n"),
        ("explicit-key", b"? a\n: b\n"),
        ("duplicate", b"a: 1\na: 2\n"),
        ("quoted-after-plain", b"labels:\n  zone: north\n  'app.kubernetes.io/name': nav\n"),
        ("plain-continues", b"a: b\n  c\n  'd'\n"),
        ("nested-plain-mapping", b"a: b: c\n"),
    ],
    "tags-anchors-aliases": [
        ("tag", b"a: !!str x\n"),
        ("local-tag", b"a: !x y\n"),
        ("tag-in-flow", b"a: [!x]\n"),
        ("tag-odd-chars", b"a: !]x\n"),
        ("tag-uri", b"a: !!python/object/apply:os.system ['true']\n"),
        ("non-specific-tag", b"a: ! x\n"),
        ("anchor", b"a: &x 1\n"),
        ("anchor-in-flow", b"a: [&x]\n"),
        ("alias", b"a: *x\n"),
        ("alias-in-flow", b"a: [*x, *y]\n"),
        ("anchor-odd-chars", b"a: &x% 1\n"),
        ("merge-key", b"a: {<<: {b: 1}}\n"),
        ("reserved-at", b"a: @x\n"),
        ("reserved-backtick", b"a: `x\n"),
    ],
}

CASES = [(f"{group}/{name}", data) for group, cases in CORPUS.items() for name, data in cases]


@BOTH
@pytest.mark.parametrize("data", [data for _, data in CASES], ids=[name for name, _ in CASES])
def test_corpus_case_has_one_verdict_on_both_backends(data: bytes) -> None:
    both(data)


# --- the examples from the issue, with what each must be ------------------------------------------

EXPECTED: list[tuple[str, bytes, Outcome]] = [
    ("tab-after-value", b"name: navstack\t\n", ("refused", Reason.YAML_SYNTAX, 1)),
    ("tab-before-comment", b"id: x\na: 1\t# c\n", ("refused", Reason.YAML_SYNTAX, 2)),
    ("question-mark-in-flow", b"k: [a?b]\n", ("refused", Reason.YAML_SYNTAX, 1)),
    ("colon-bracket-in-flow", b"k: [a, b:]\n", ("refused", Reason.YAML_SYNTAX, 1)),
    ("hash-after-block-header", b"a: |#c\n  x\n", ("refused", Reason.YAML_SYNTAX, 1)),
    ("block-first-line-tab", b"a: |\n  \tx\n", ("refused", Reason.YAML_SYNTAX, 2)),
    ("escape-past-unicode", b'a: "\\U00110000"\n', ("refused", Reason.YAML_SYNTAX, 1)),
    ("bom-after-start", "a: 1\n\ufeffb: 2\n".encode(), ("refused", Reason.BINARY, 2)),
    ("second-document", b"a: 1\n---\na: 2\n", ("refused", Reason.INVALID, 2)),
    ("long-key", b"k" * 1100 + b": v\n", ("refused", Reason.INVALID, 1)),
    ("tag-before-bracket", b"a: [!x]\n", ("refused", Reason.TAG_FORBIDDEN, 1)),
    ("deep-flow", b"a: " + b"[" * 50_000 + b"]" * 50_000 + b"\n", ("refused", Reason.TOO_DEEP, 1)),
    ("tab-in-quotes", b'a: "x\ty"\n', ("accepted", {"a": "x\ty"})),
    ("tab-in-block", b"a: |\n  x\ty\n", ("accepted", {"a": "x\ty\n"})),
    ("marker-no-newline", b"---", ("accepted", None)),
]


@BOTH
@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in EXPECTED], ids=[c[0] for c in EXPECTED])
def test_issue_example_gets_the_same_verdict_on_both_backends(data: bytes, expected: Outcome) -> None:
    assert both(data)[: len(expected)] == expected


def test_the_pure_python_backend_is_always_there() -> None:
    """A robot without libyaml still parses: the fallback is part of every PyYAML."""
    assert "python" in strict_yaml.BACKENDS
    assert parse_strict(b"id: amr-01\n", FILE, backend="python").data == {"id": "amr-01"}


def test_the_refusal_names_file_and_line_for_the_author() -> None:
    with pytest.raises(InvalidContent) as info:
        parse_strict(b"id: amr-01\nsite: berlin\t\n", FILE, backend="python")
    assert str(info.value) == f"{FILE}:2: a tab outside quoted text; use spaces or quote the text"


# --- seeded random differential run ---------------------------------------------------------------

ALPHABET = [
    *"abk1 :?#[]{},-'\"|>&*!%@`\\\n\t",
    "  ",
    "\r\n",
    "\r",
    "x: ",
    "- ",
    ": ",
    "\n  ",
    "\n- ",
    "---",
    "...",
    "|-\n",
    "|2\n",
    "\\u",
    "é",
    "\u00a0",
    "\u2003",
    "\u0085",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\x00",
]
SEED = 20_261_206
SHORT_DOCUMENTS = 3_000
MUTATED_DOCUMENTS = 400
TIME_BUDGET_S = 10.0


def short_documents(rng: random.Random, count: int) -> list[bytes]:
    return [
        "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 14))).encode("utf-8") for _ in range(count)
    ]


def mutated_documents(rng: random.Random, count: int) -> list[bytes]:
    """Real documents (the fleet template) with one to three random edits each."""
    seeds = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "fleet-repo-template").rglob("*.yaml"))]
    seeds += [
        "a: |\n  x\nb: >-\n   z\n\n   w\nc: [1,\n  2]\nd: 'e\n  f'\n",
        "- a: 1\n  b: |2\n     x\n- c d\n  e\n",
    ]
    out = []
    for _ in range(count):
        text = rng.choice(seeds)
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(0, len(text))
            if rng.random() < 0.7:
                text = text[:at] + rng.choice(ALPHABET) + text[at:]
            else:
                text = text[:at] + text[at + rng.randint(1, 3) :]
        out.append(text.encode("utf-8"))
    return out


@BOTH
def test_random_documents_get_one_verdict_on_both_backends() -> None:
    rng = random.Random(SEED)
    documents = short_documents(rng, SHORT_DOCUMENTS) + mutated_documents(rng, MUTATED_DOCUMENTS)
    started = time.monotonic()
    disagreements = []
    accepted = 0
    for data in documents:
        libyaml, python = outcome(data, "libyaml"), outcome(data, "python")
        accepted += libyaml[0] == "accepted"
        if not same(libyaml, python):
            disagreements.append(f"{data!r}\n  libyaml: {libyaml}\n  python:  {python}")
    assert disagreements == [], f"{len(disagreements)} disagreements, first:\n" + "\n".join(disagreements[:5])
    assert accepted > len(documents) // 10  # the generator reaches the parsers, not only the refusals
    assert time.monotonic() - started < TIME_BUDGET_S
