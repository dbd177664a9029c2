"""Benchmark: how fast, and in how little memory, the loader rejects hostile documents.

Each hostile file (alias bombs, deep nesting, a huge scalar, duplicate keys, ambiguous versions,
binary, latin-1, unknown fields, a path-traversal id, and two files just under the size cap that ask
for the most parsing: a 520k-item flow list and an 80k-key mapping) is loaded with
``fleetcd.loading.documents.load_document`` in a FRESH child interpreter, so memory is per file. The
child imports everything and loads one valid document of the same kind first (validators compiled,
caches warm, as in a running controller), reads the hostile bytes (a caller always holds them), then
takes its baseline peak RSS; the reported memory is the peak growth past that baseline while
rejecting. Goals per file: rejected with InvalidContent, <= 100 ms, <= 50 MiB.

    python -m bench.hostile_inputs [--depth 50000] [--scalar-mb 50] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import fleetgen
from bench.common import MIB, base_parser, own_peak_rss_bytes, python_module, run_child, table, write_results

NAME = "hostile_inputs"
GOAL_MS = 100.0
GOAL_MIB = 50.0
CHILD_TIMEOUT_S = 120.0
HEAD = "apiVersion: fleetcd.dev/v1\nkind: Device\n"

BILLION_LAUGHS = b"".join(
    [b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    + [
        f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n".encode()
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    ]
)


@dataclass(frozen=True)
class Case:
    name: str
    path: str  # the repository path the loader is told the bytes came from
    kind: str  # "Device" or "Release"
    expected: str  # the Reason value(s) a correct loader gives, "a|b" when either is right
    build: Callable[[argparse.Namespace], bytes]


def _device() -> str:
    return fleetgen.device_yaml(1).decode()


def _release() -> str:
    return fleetgen.release_yaml("navigator", "1.10.0").decode()


def _duplicate_sha(_: argparse.Namespace) -> bytes:
    lines = _release().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("sha256:"))
    lines.insert(at + 1, "    sha256: " + "0" * 64 + "\n")
    return "".join(lines).encode()


def _node_flood(args: argparse.Namespace) -> bytes:
    items: int = args.fill_kib * 1024 // 2
    return (HEAD + "labels: [" + "a," * items + "a]\n").encode()


def _wide_mapping(args: argparse.Namespace) -> bytes:
    keys: int = args.fill_kib * 1024 // 14
    labels = "".join(f"  k{i:07d}: v\n" for i in range(keys))
    return _device().replace("labels:\n", "labels:\n" + labels).encode()


def _binary(_: argparse.Namespace) -> bytes:
    return random.Random(1).randbytes(4096) + b"\x00" + random.Random(2).randbytes(64)


CASES = [
    Case("billion_laughs", "devices/robot-00001.yaml", "Device", "alias_forbidden", lambda _: BILLION_LAUGHS),
    Case(
        "deep_flow_nesting",
        "devices/robot-00001.yaml",
        "Device",
        "too_deep",
        lambda a: (HEAD + "labels: " + "[" * a.depth + "]" * a.depth + "\n").encode(),
    ),
    Case(
        "deep_block_nesting",
        "devices/robot-00001.yaml",
        "Device",
        "too_deep",
        lambda a: ("- " * a.depth + "x\n").encode(),
    ),
    Case(
        "huge_scalar",
        "devices/robot-00001.yaml",
        "Device",
        "too_large",
        lambda a: (HEAD + "id: ").encode() + b"a" * (a.scalar_mb * MIB) + b"\n",
    ),
    # Not on the classic list: the most work a file under the size cap can ask for.
    Case("node_flood_under_size_cap", "devices/robot-00001.yaml", "Device", "too_large", _node_flood),
    Case(
        "wide_mapping_under_size_cap", "devices/robot-00001.yaml", "Device", "too_large|schema", _wide_mapping
    ),
    Case("duplicate_sha256", "releases/navigator/1.10.0.yaml", "Release", "duplicate_key", _duplicate_sha),
    Case(
        "version_1_10_unquoted",
        "releases/navigator/1.10.yaml",
        "Release",
        "ambiguous_scalar",
        lambda _: _release().replace("version: 1.10.0", "version: 1.10").encode(),
    ),
    Case("binary_with_nul", "devices/robot-00001.yaml", "Device", "binary", _binary),
    Case(
        "latin1_not_utf8",
        "devices/robot-00001.yaml",
        "Device",
        "not_utf8",
        lambda _: _device().replace("owner: logistics", "owner: Müller Köln").encode("latin-1"),
    ),
    Case(
        "unknown_field",
        "devices/robot-00001.yaml",
        "Device",
        "schema",
        lambda _: (_device() + "colour: red\n").encode(),
    ),
    Case(
        "path_traversal_id",
        "devices/robot-00001.yaml",
        "Device",
        "unsafe_name|schema",
        lambda _: _device().replace("id: robot-00001", "id: ../../etc/passwd").encode(),
    ),
]


def child(file: Path, path: str, kind: str, repeats: int) -> None:
    """In a fresh interpreter: reject one file, report times and peak RSS growth as one JSON line."""
    from fleetcd.errors import InvalidContent
    from fleetcd.loading.documents import load_document
    from fleetcd.models import Device, Release

    model: type[Device] | type[Release] = Device if kind == "Device" else Release
    valid = fleetgen.device_yaml(1) if kind == "Device" else fleetgen.release_yaml("navigator", "1.10.0")
    warmup_error = ""
    try:
        load_document("warm-up.yaml", valid, model)
    except InvalidContent as exc:  # the validators are warm either way; report it, it is a loader bug
        warmup_error = str(exc).splitlines()[0][:300]
    raw = file.read_bytes()
    gc.collect()
    baseline = own_peak_rss_bytes()
    times: list[float] = []
    peak = baseline
    outcome: dict[str, Any] = {}
    for attempt in range(repeats):
        start = time.perf_counter()
        try:
            load_document(path, raw, model)
            outcome = {"outcome": "accepted", "reason": "", "message": "loaded without error"}
        except InvalidContent as exc:
            first = exc.diagnostics[0]
            outcome = {"outcome": "rejected", "reason": first.reason.value, "message": str(first)[:300]}
        except Exception as exc:
            outcome = {"outcome": "crashed", "reason": type(exc).__name__, "message": str(exc)[:300]}
        times.append(time.perf_counter() - start)
        if attempt == 0:
            peak = own_peak_rss_bytes()
    report = {"times_s": times, "baseline_bytes": baseline, "peak_bytes": peak, "warmup_error": warmup_error}
    print(json.dumps({**report, **outcome}))


def run_case(case: Case, file: Path, repeats: int) -> dict[str, Any]:
    argv = python_module(f"bench.{NAME}", "--child", str(file), "--path", case.path, "--kind", case.kind)
    done = run_child([*argv, "--repeats", str(repeats)], timeout_s=CHILD_TIMEOUT_S)
    row: dict[str, Any] = {"name": case.name, "bytes": file.stat().st_size, "expected_reason": case.expected}
    if done.returncode != 0 or not done.stdout.strip():
        why = f"timed out after {CHILD_TIMEOUT_S:g} s" if done.timed_out else f"exit {done.returncode}"
        row.update(
            outcome="crashed", reason=why, message=done.stderr[-300:], ms=None, mib=None, goal_met=False
        )
        return row
    report = json.loads(done.stdout.strip().splitlines()[-1])
    ms = statistics.median(report["times_s"]) * 1000
    mib = (report["peak_bytes"] - report["baseline_bytes"]) / MIB
    row.update(
        outcome=report["outcome"],
        reason=report["reason"],
        message=report["message"],
        ms=round(ms, 2),
        first_ms=round(report["times_s"][0] * 1000, 2),
        mib=round(mib, 2),
        baseline_mib=round(report["baseline_bytes"] / MIB, 1),
        child_wall_s=round(done.wall_s, 2),
        warmup_error=report["warmup_error"],
    )
    row["expected_reason_given"] = row["reason"] in case.expected.split("|")
    row["goal_met"] = row["outcome"] == "rejected" and ms <= GOAL_MS and mib <= GOAL_MIB
    return row


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--depth", type=int, default=50_000, help="nesting depth of the deep cases")
    parser.add_argument("--scalar-mb", type=int, default=50, help="size of the huge scalar, MiB")
    parser.add_argument(
        "--fill-kib",
        type=int,
        default=1000,
        help="size of the flood cases, KiB (just under the 1 MiB file cap)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed loads per child (median reported)")
    parser.add_argument(
        "--only", action="append", choices=[c.name for c in CASES], help="run just these cases"
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.path, args.kind, args.repeats)
        return 0

    rows = []
    with tempfile.TemporaryDirectory(prefix="fleetcd-hostile-") as tmp:
        for case in CASES:
            if args.only and case.name not in args.only:
                continue
            file = Path(tmp) / f"{case.name}.yaml"
            file.write_bytes(case.build(args))
            rows.append(run_case(case, file, args.repeats))
            print(f"{NAME}: {case.name}: {rows[-1]['outcome']} {rows[-1]['reason']}", file=sys.stderr)
    results = {
        "goals": {"ms": GOAL_MS, "mib": GOAL_MIB},
        "depth": args.depth,
        "scalar_mb": args.scalar_mb,
        "fill_kib": args.fill_kib,
        "repeats": args.repeats,
        "cases": rows,
        "all_rejected": all(r["outcome"] == "rejected" for r in rows),
        "all_goals_met": all(r["goal_met"] for r in rows),
        "warmup_errors": sorted({r["warmup_error"] for r in rows if r.get("warmup_error")}),
    }
    cells = [
        [r["name"], r["bytes"], _num(r["ms"]), _num(r["mib"]), r["reason"], "yes" if r["goal_met"] else "NO"]
        for r in rows
    ]
    lines = [
        f"load_document rejecting hostile files, a fresh interpreter each; median of {args.repeats} loads; "
        f"memory = peak RSS growth past the warmed-up baseline; goals <= {GOAL_MS:g} ms, <= {GOAL_MIB:g} MiB",
        *table(["case", "bytes", "ms", "MiB", "reason", "goal met"], cells),
        f"all rejected: {results['all_rejected']}; all goals met: {results['all_goals_met']}",
        *[f"warning: a valid warm-up document was rejected: {e}" for e in results["warmup_errors"]],
    ]
    write_results(NAME, results, lines, args.out)
    print("\n".join(lines))
    return 0


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
