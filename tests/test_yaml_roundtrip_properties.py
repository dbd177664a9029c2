"""Seeded generated documents through the strict loader: what the emitter writes reads back exactly,
an injected duplicate key is found wherever it sits, and every bound holds at N and fails at N+1.

Three invariants over generated cases (fixed seeds, no new dependency):

* :func:`fleetcd.loading.emit.dump_yaml` output reads back as the same data with
  :func:`~fleetcd.loading.strict_yaml.parse_strict` on both parsers and with ``yaml.safe_load``
  (what ``fleetcd robot add`` writes, a robot and any YAML 1.1 tool must read alike), and the line
  map sends every key to the line that spells it;
* a key repeated anywhere (top level, deep inside a list of mappings) is a ``duplicate_key`` error
  naming both lines, never "last one wins";
* ``YamlLimits`` bounds (bytes, depth, nodes, scalar bytes) are inclusive: a file exactly at a
  bound loads, one over it is refused with the bound's reason, on both parsers.
"""

from __future__ import annotations

import random
import string
from typing import Any

import pytest
import yaml

from fleetcd.errors import InvalidContent
from fleetcd.loading.emit import dump_yaml, plain_scalar_ok
from fleetcd.loading.strict_yaml import BACKENDS, YamlLimits, field_path, parse_strict
from fleetcd.reasons import Reason
from tests.datatree import nodes

FILE = "devices/amr-0001.yaml"
BACKEND_NAMES = sorted(BACKENDS)
SEEDS = range(40)
# Texts that look like other types to some reader: the emitter must quote each of them.
TRICKY = [
    "yes",
    "no",
    "on",
    "off",
    "NO",
    "y",
    "~",
    "null",
    "true",
    "1e3",
    "0x1F",
    "012",
    "1_000",
    "12:30",
    "1.10",
    ".inf",
    "-.nan",
    "0o17",
    "+1",
    "-",
    "- a",
    "a: b",
    "#x",
    "x #y",
    "[a]",
    "{a: 1}",
    "&a",
    "*a",
    "!tag",
    "%YAML",
    "@at",
    "`tick",
    "'q'",
    '"dq"',
    "|",
    ">",
    "?",
    ": ",
    "",
    " lead",
    "trail ",
    "a\tb",
    "é",
    "日本",
    "line\nbreak",
    "---",
    "...",
    "<<",
    "=",
    "1.0",
    "-0",
    "0",
    "00",
    "3.14159265358979",
]
KEY_ALPHABET = string.ascii_lowercase + string.digits + "-_."


def random_key(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return rng.choice([t for t in TRICKY if t and "\n" not in t and "\t" not in t])
    return rng.choice(string.ascii_lowercase) + "".join(
        rng.choice(KEY_ALPHABET) for _ in range(rng.randint(0, 12))
    )


def random_scalar(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.25:
        return rng.choice(TRICKY)
    if roll < 0.40:
        return rng.randint(-(10**12), 10**12)
    if roll < 0.50:
        return round(rng.uniform(-1000, 1000), rng.randint(1, 6))
    if roll < 0.55:
        return rng.choice([True, False, None])
    return "".join(rng.choice(string.printable[:-5]) for _ in range(rng.randint(1, 30))).strip() or "x"


def random_data(rng: random.Random, depth: int = 0) -> Any:
    if depth >= 5 or (rng.random() < 0.3 and depth > 0):
        return random_scalar(rng)
    if rng.random() < 0.6:
        out: dict[str, Any] = {}
        for _ in range(rng.randint(1, 6)):
            out[random_key(rng)] = random_data(rng, depth + 1)
        return out
    return [random_data(rng, depth + 1) for _ in range(rng.randint(1, 5))]


def reason_of(exc: InvalidContent) -> Reason:
    return exc.diagnostics[0].reason


@pytest.mark.parametrize("seed", SEEDS)
def test_what_the_emitter_writes_reads_back_the_same_on_every_reader(seed: int) -> None:
    rng = random.Random(seed)
    data = {"id": f"amr-{seed:04d}", "body": random_data(rng)}
    text = dump_yaml(data)
    assert yaml.safe_load(text) == data, text
    for backend in BACKEND_NAMES:
        parsed = parse_strict(text.encode(), FILE, backend=backend)
        assert parsed.data == data, f"{backend}:\n{text}"
        assert set(parsed.lines) == {path for path, _ in nodes(data)}, backend


@pytest.mark.parametrize("seed", SEEDS)
def test_the_line_map_sends_every_key_to_the_line_that_spells_it(seed: int) -> None:
    rng = random.Random(1000 + seed)
    data = {"body": random_data(rng)}
    text = dump_yaml(data)
    lines = text.splitlines()
    parsed = parse_strict(text.encode(), FILE)
    for path, line in parsed.lines.items():
        assert 1 <= line <= len(lines), (path, line)
        if path and isinstance(path[-1], str):
            spelled = dump_yaml({path[-1]: None}).removesuffix(": null\n")  # the key as the emitter writes it
            assert spelled in lines[line - 1], (path, lines[line - 1])


@pytest.mark.parametrize("text", TRICKY)
def test_a_tricky_text_is_quoted_exactly_when_a_reader_would_change_it(text: str) -> None:
    written = dump_yaml({"v": text})
    quoted = not written.startswith(f"v: {text}\n")
    if plain_scalar_ok(text):
        assert not quoted, written
    assert parse_strict(written.encode(), FILE).data == {"v": text}
    assert yaml.safe_load(written) == {"v": text}


def duplicate_at(rng: random.Random) -> tuple[str, int, int]:
    """A document of nested mappings and lists with one mapping given a repeated key; returns the
    text and the 1-based lines of the two spellings."""
    depth = rng.randint(0, 6)
    lines: list[str] = []
    indent = ""
    for level in range(depth):
        if rng.random() < 0.5:
            lines.append(f"{indent}k{level}:")
            indent += "  "
        else:
            lines.append(f"{indent}l{level}:")
            lines.append(f"{indent}- x: 1")
            indent += "  "
    keys = [f"f{n}" for n in range(rng.randint(2, 6))]
    twice = rng.choice(keys)
    first = second = 0
    for key in keys:
        lines.append(f"{indent}{key}: v")
        if key == twice:
            first = len(lines)
    for filler in range(rng.randint(0, 3)):
        lines.append(f"{indent}g{filler}: w")
    lines.append(f"{indent}{twice}: again")
    second = len(lines)
    return "\n".join(lines) + "\n", first, second


@pytest.mark.parametrize("seed", range(30))
def test_a_repeated_key_anywhere_names_both_lines_on_both_parsers(seed: int) -> None:
    text, first, second = duplicate_at(random.Random(seed))
    for backend in BACKEND_NAMES:
        with pytest.raises(InvalidContent) as raised:
            parse_strict(text.encode(), FILE, backend=backend)
        found = raised.value.diagnostics[0]
        assert found.reason is Reason.DUPLICATE_KEY, (backend, text)
        assert found.line == second
        assert f"first at line {first}, again at line {second}" in found.message


def nested(depth: int) -> bytes:
    """``depth`` mappings inside each other, block style."""
    return (
        "".join(f"{'  ' * level}k{level}:\n" for level in range(depth)).encode()
        + b"  " * depth
        + b"leaf: 1\n"
    )


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_depth_is_inclusive_at_the_bound_and_refused_one_over(backend: str) -> None:
    limits = YamlLimits(max_depth=8)
    parse_strict(nested(7), FILE, limits, backend=backend)  # root + 7 = 8 mappings
    with pytest.raises(InvalidContent) as raised:
        parse_strict(nested(8), FILE, limits, backend=backend)
    assert reason_of(raised.value) is Reason.TOO_DEEP


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_node_count_is_inclusive_at_the_bound_and_refused_one_over(backend: str) -> None:
    # A mapping of n keys is 1 + 2n nodes.
    def mapping(keys: int) -> bytes:
        return "".join(f"k{n}: {n}\n" for n in range(keys)).encode()

    limits = YamlLimits(max_nodes=1 + 2 * 50)
    assert len(parse_strict(mapping(50), FILE, limits, backend=backend).data) == 50
    with pytest.raises(InvalidContent) as raised:
        parse_strict(mapping(51), FILE, limits, backend=backend)
    assert reason_of(raised.value) is Reason.TOO_LARGE


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_file_size_is_inclusive_at_the_bound_and_refused_one_over(backend: str) -> None:
    body = b"note: " + b"x" * 94 + b"\n"
    limits = YamlLimits(max_bytes=len(body))
    assert parse_strict(body, FILE, limits, backend=backend).data == {"note": "x" * 94}
    with pytest.raises(InvalidContent) as raised:
        parse_strict(body + b" ", FILE, limits, backend=backend)
    assert reason_of(raised.value) is Reason.TOO_LARGE
    assert raised.value.diagnostics[0].line is None  # refused before a line was read


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("char", ["x", "é", "日", "🤖"])
def test_a_scalar_is_measured_in_utf8_bytes_not_characters(backend: str, char: str) -> None:
    width = len(char.encode())
    limits = YamlLimits(max_scalar_bytes=12 * width)
    exact = f'v: "{char * 12}"\n'.encode()
    assert parse_strict(exact, FILE, limits, backend=backend).data == {"v": char * 12}
    with pytest.raises(InvalidContent) as raised:
        parse_strict(f'v: "{char * 13}"\n'.encode(), FILE, limits, backend=backend)
    assert reason_of(raised.value) is Reason.TOO_LARGE


@pytest.mark.parametrize("seed", range(10))
def test_a_random_wide_document_has_the_same_data_on_both_parsers_and_field_paths_are_unique(
    seed: int,
) -> None:
    rng = random.Random(5000 + seed)
    data = {random_key(rng): random_data(rng) for _ in range(20)}
    text = dump_yaml(data).encode()
    parsed = {backend: parse_strict(text, FILE, backend=backend) for backend in BACKEND_NAMES}
    datas = [p.data for p in parsed.values()]
    assert all(d == datas[0] for d in datas)
    lines = [dict(p.lines) for p in parsed.values()]
    assert all(m == lines[0] for m in lines)
    shown = [field_path(path) for path in lines[0]]
    assert len(shown) == len(set(shown)), "two fields print the same path in a diagnostic"


@pytest.mark.parametrize(
    "text", ["{a", "[a", "%x", "@x", "`x", "a: b: c", "*", "&", '"a', "'a", "|x", "{&z%ur].R"]
)
def test_a_text_that_is_no_yaml_on_its_own_is_quoted_not_a_crash(text: str) -> None:
    assert not plain_scalar_ok(text)
    written = dump_yaml({"label": text})
    assert parse_strict(written.encode(), FILE).data == {"label": text}
    assert yaml.safe_load(written) == {"label": text}
