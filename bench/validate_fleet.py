"""Benchmark: how much validating a whole fleet repository costs over plain YAML parsing.

Generates a realistic fleet with :mod:`bench.fleetgen` (fleet.yaml, N devices, cohorts, M releases
signed with a throwaway key when gpg is there, rollouts, configs) in a temp dir. Then, in one run
and on the same bytes already in memory, it times: (a) ``yaml.load(CSafeLoader)`` of every YAML
file, the floor; (b) ``load_spec`` (strict YAML, JSON Schema, models); (c) ``validate_snapshot``
(b plus the cross-file checks; gpg stubbed out, so content only); the steps of loading one
document (strict YAML, models, the JSON Schema step and glue by difference); reading the tree from disk
(``read_directory``); and, with gpg, ``validate_snapshot`` of the signed tree (c plus every release
signature verified). Goal: (b)/(a) and (c)/(a) at most 5x. Peak memory of reading and validating
the tree is measured in a fresh interpreter. ``recheck_one_robot`` is what ``controller run`` pays
for a commit that edits one robot's file: :func:`~fleetcd.validation.incremental.recheck_content`
from the kept content check, each run editing another robot (content only, like (c)).
``recheck_new_release_rollout`` is the commonest operator commit: a new navigator release, and the
navigator rollout (waves over the staging and canary cohorts, a sixth of the fleet) pointed at it,
rechecked from the kept index (:mod:`fleetcd.validation.rollout_delta`);
``recheck_new_release_rollout_full`` is the same commits through the full content check (what
every such commit cost before; the memo still spares parsing the unchanged documents).

    python -m bench.validate_fleet [--devices 10000] [--releases 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bench import fleetgen
from bench.common import (
    MIB,
    Timing,
    base_parser,
    measure,
    own_peak_rss_bytes,
    python_module,
    run_child,
    table,
    write_results,
)
from fleetcd.errors import SetupError
from fleetcd.layout import Classified, classify
from fleetcd.loading.documents import load_document
from fleetcd.loading.fleetspec import FleetSpec, load_spec
from fleetcd.loading.memo import DocumentMemo
from fleetcd.loading.snapshot import read_directory
from fleetcd.loading.strict_yaml import parse_strict
from fleetcd.models import DOCUMENT_KINDS
from fleetcd.reasons import Reason
from fleetcd.trust.gpg import VerifyResult, gpg_binary
from fleetcd.validation import ValidationResult, validate_snapshot
from fleetcd.validation.incremental import Reuse, recheck_content
from fleetcd.validation.pipeline import check_content

NAME = "validate_fleet"
GOAL_RATIO = 5.0
Files = Mapping[str, bytes]
# What the content-only run reports by design: its releases carry no signatures.
UNSIGNED_REASONS = frozenset({Reason.SIGNATURE_MISSING, Reason.BELOW_THRESHOLD, Reason.APPROVAL_MISSING})


class NoGpgKeyring:
    """A keyring that verifies nothing, so the content-only runs never start gpg."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        self.keys = keys

    def verify_detached(self, data: bytes, signature: bytes) -> VerifyResult:
        return VerifyResult(False, None, Reason.SIGNATURE_INVALID, "not checked (content-only benchmark)")

    def close(self) -> None:
        pass


def raw_yaml(files: Files) -> None:
    """The floor: libyaml's C loader on every YAML file, no checks at all."""
    for path, data in files.items():
        if path.endswith(".yaml"):
            yaml.load(data, Loader=yaml.CSafeLoader)


def spec_only(files: Files) -> FleetSpec:
    spec, problems = load_spec(files)
    if problems:
        raise SystemExit(f"the generated fleet does not load: {[str(p) for p in problems[:5]]}")
    return spec


def content_only(files: Files) -> ValidationResult:
    return validate_snapshot(files, keyring_factory=NoGpgKeyring)


class RobotEdits:
    """Commits that each edit one robot's file, rechecked from the previous commit's content check."""

    def __init__(self, files: Files) -> None:
        self.files = dict(files)
        self.memo = DocumentMemo()
        self.content, _ = recheck_content(None, self.files, memo=self.memo)
        self.robots = sorted(p for p in files if p.startswith("devices/"))
        self.edits = 0
        self.reuses: dict[str, int] = {}

    def __call__(self) -> None:
        path = self.robots[(self.edits * 7919) % len(self.robots)]
        self.edits += 1
        files = dict(self.files)
        files[path] = files[path] + f"# edit {self.edits}\n".encode()
        self.content, reuse = recheck_content(self.content, files, memo=self.memo)
        self.reuses[reuse.value] = self.reuses.get(reuse.value, 0) + 1
        self.files = files
        if reuse is not Reuse.ROBOTS:
            raise SystemExit(f"one robot's edit was checked {reuse.value}, not from the kept index")


ROLLOUT = "rollouts/navigator-rollout.yaml"


class ReleaseRollouts:
    """Commits that each add a navigator release and point the navigator rollout at it, rechecked
    from the previous commit's content check (``full``: checked in full, as before the index)."""

    def __init__(self, files: Files, *, full: bool = False) -> None:
        self.files = dict(files)
        self.memo = DocumentMemo()
        self.content, _ = recheck_content(None, self.files, memo=self.memo)
        self.full = full
        self.edits = 0

    def __call__(self) -> None:
        self.edits += 1
        version = f"90.{self.edits}.0"
        files = dict(self.files)
        files[f"releases/navigator/{version}.yaml"] = fleetgen.release_yaml("navigator", version)
        files[ROLLOUT] = re.sub(rb"\nrelease: [^\n]*\n", f"\nrelease: {version}\n".encode(), files[ROLLOUT])
        if self.full:
            self.content = check_content(files, memo=self.memo, keep_index=True)
        else:
            self.content, reuse = recheck_content(self.content, files, memo=self.memo)
            if reuse is not Reuse.DOCUMENTS:
                raise SystemExit(
                    f"a release and rollout commit was checked {reuse.value}, not from the index"
                )
        self.files = files


STAGING = "cohorts/staging.yaml"


class CohortEdits:
    """Commits that each list five more robots in the staging cohort, or take them out again (the
    navigator rollout targets it and its first wave is it; ``big``: the canary cohort's selector
    moved to another site instead, a quarter of the fleet in and out), rechecked from the previous
    commit's content check (``full``: checked in full, as before the index)."""

    def __init__(self, files: Files, *, full: bool = False, big: bool = False) -> None:
        self.files = dict(files)
        self.memo = DocumentMemo()
        self.content, _ = recheck_content(None, self.files, memo=self.memo)
        self.full, self.big = full, big
        self.edits = 0
        self.staging = files.get(STAGING, b"")
        self.listed = re.search(rb"devices: \[([^\]]*)\]", self.staging)
        robots = sorted(p for p in files if p.startswith("devices/"))
        self.more = [robots[(i * 7919) % len(robots)].split("/")[1].removesuffix(".yaml") for i in range(5)]

    def __call__(self) -> None:
        self.edits += 1
        files = dict(self.files)
        if self.big:
            site = b"osaka-1" if self.edits % 2 else b"munich-2"
            files["cohorts/canary.yaml"] = re.sub(
                rb"sites: \[[^\]]*\]", b"sites: [" + site + b"]", files["cohorts/canary.yaml"]
            )
        elif self.listed is not None:
            listed = self.listed.group(1) + (b", " + ", ".join(self.more).encode() if self.edits % 2 else b"")
            files[STAGING] = self.staging.replace(self.listed.group(0), b"devices: [" + listed + b"]")
        if self.full:
            self.content = check_content(files, memo=self.memo, keep_index=True)
        else:
            self.content, reuse = recheck_content(self.content, files, memo=self.memo)
            if reuse is not Reuse.DOCUMENTS:
                raise SystemExit(f"a cohort commit was checked {reuse.value}, not from the index")
        self.files = files


def unexpected_errors(result: ValidationResult, signed: bool) -> list[str]:
    """Errors the generated fleet should not have (a generator or validator bug), for the report."""
    return [str(d) for d in result.errors if signed or d.reason not in UNSIGNED_REASONS]


def stage_breakdown(files: Files, runs: int) -> dict[str, Timing]:
    """load_document's steps over the same documents, to show which one dominates.

    ``schema_and_rest`` is whole-document loading minus strict YAML and models: the JSON Schema
    step (however ``documents`` does it) plus the glue, so the split never depends on internals.
    """
    docs = [(path, data, DOCUMENT_KINDS[found.kind.value]) for path, data, found in _documents(files)]
    parsed = {path: parse_strict(data, path).data for path, data, _ in docs}
    stages = {
        "strict_yaml": measure(lambda: [parse_strict(data, path) for path, data, _ in docs], runs=runs),
        "models": measure(lambda: [model.model_validate(parsed[path]) for path, _, model in docs], runs=runs),
        "load_document": measure(
            lambda: [load_document(path, data, model) for path, data, model in docs], runs=runs
        ),
    }
    rest = stages["load_document"].median_s - stages["strict_yaml"].median_s - stages["models"].median_s
    stages["schema_and_rest"] = Timing(max(rest, 0.0), ())
    return stages


def _documents(files: Files) -> list[tuple[str, bytes, Classified]]:
    found = [(path, data, classify(path)) for path, data in files.items()]
    return [
        (path, data, where) for path, data, where in found if where and where.kind.value in DOCUMENT_KINDS
    ]


def gpg_works() -> bool:
    try:
        gpg_binary()
    except SetupError:
        return False
    return True


def child_memory(root: Path) -> None:
    """In a fresh interpreter: peak RSS growth of reading and validating the whole tree (no gpg)."""
    baseline = own_peak_rss_bytes()
    files, _ = read_directory(root)
    content_only(files)
    print(json.dumps({"baseline_bytes": baseline, "peak_bytes": own_peak_rss_bytes()}))


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--releases", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child-memory", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_memory:
        child_memory(args.child_memory)
        return 0

    with tempfile.TemporaryDirectory(prefix="fleetcd-bench-") as tmp:
        work = Path(tmp)
        signed = gpg_works()
        fleet = fleetgen.generate(args.devices, args.releases, gnupghome=work / "gnupg" if signed else None)
        root = work / "repo"
        fleetgen.write_tree(root, fleet.signed_files)
        content = fleet.files
        yaml_count = sum(1 for p in content if p.endswith(".yaml"))
        yaml_bytes = sum(len(d) for p, d in content.items() if p.endswith(".yaml"))
        runs = args.runs
        print(f"{NAME}: {yaml_count} YAML files ({yaml_bytes / MIB:.1f} MiB), {runs} runs", file=sys.stderr)

        # Each slow step's warm-up run is the one whose output is checked (a 10k fleet takes a while).
        timings: dict[str, Any] = {}
        timings["raw_yaml"] = measure(lambda: raw_yaml(content), runs=runs)
        spec_only(content)
        timings["load_spec"] = measure(lambda: spec_only(content), runs=runs, warmups=0)
        errors = unexpected_errors(content_only(content), signed=False)
        timings["validate_snapshot"] = measure(lambda: content_only(content), runs=runs, warmups=0)
        timings["recheck_one_robot"] = measure(RobotEdits(content), runs=runs)
        if ROLLOUT in content:
            timings["recheck_new_release_rollout"] = measure(ReleaseRollouts(content), runs=runs)
            timings["recheck_new_release_rollout_full"] = measure(
                ReleaseRollouts(content, full=True), runs=runs
            )
        if STAGING in content:
            timings["recheck_cohort_edit"] = measure(CohortEdits(content), runs=runs)
            timings["recheck_cohort_edit_full"] = measure(CohortEdits(content, full=True), runs=runs)
        timings["read_directory"] = measure(lambda: read_directory(root), runs=runs)
        stages = stage_breakdown(content, runs)
        if signed:
            errors += unexpected_errors(validate_snapshot(fleet.signed_files), signed=True)
            timings["validate_signed"] = measure(
                lambda: validate_snapshot(fleet.signed_files), runs=runs, warmups=0
            )
        memory = run_child(python_module(f"bench.{NAME}", "--child-memory", str(root)))
        if memory.returncode != 0:
            raise SystemExit(f"memory child failed: {memory.stderr[-2000:]}")
        rss = json.loads(memory.stdout.strip().splitlines()[-1])

    base = timings["raw_yaml"].median_s
    results: dict[str, Any] = {
        "devices": args.devices,
        "releases": args.releases,
        "yaml_files": yaml_count,
        "yaml_bytes": yaml_bytes,
        "runs": runs,
        "timings": {name: t.as_dict() for name, t in timings.items()},
        "files_per_s": {name: round(yaml_count / t.median_s, 1) for name, t in timings.items()},
        "load_spec_stages": {name: t.as_dict() for name, t in stages.items()},
        "ratios": {
            f"{name}/raw_yaml": round(timings[name].median_s / base, 2)
            for name in ("load_spec", "validate_snapshot", "validate_signed")
            if name in timings
        },
        "goal_ratio": GOAL_RATIO,
        "signatures_checked": signed,
        "unexpected_errors": errors[:20],
        "peak_rss_mib": {
            "baseline_after_imports": round(rss["baseline_bytes"] / MIB, 1),
            "growth_read_and_validate": round((rss["peak_bytes"] - rss["baseline_bytes"]) / MIB, 1),
        },
    }
    results["goal_met"] = all(
        value <= GOAL_RATIO for key, value in results["ratios"].items() if key != "validate_signed/raw_yaml"
    )
    lines = summary(results, timings, stages)
    write_results(NAME, results, lines, args.out)
    print("\n".join(lines))
    return 0


def summary(
    results: Mapping[str, Any], timings: Mapping[str, Timing], stages: Mapping[str, Timing]
) -> list[str]:
    base = timings["raw_yaml"].median_s
    rows = [
        [name, f"{t.median_s:.3f}", f"{t.median_s / base:.2f}x", f"{results['files_per_s'][name]:,.0f}"]
        for name, t in timings.items()
    ]
    rows += [
        [f"  step: {name}", f"{t.median_s:.3f}", f"{t.median_s / base:.2f}x", ""]
        for name, t in stages.items()
    ]
    memory = results["peak_rss_mib"]
    return [
        f"fleet: {results['devices']} devices, {results['releases']} releases -> "
        f"{results['yaml_files']} YAML files ({results['yaml_bytes'] / MIB:.1f} MiB); "
        f"median of {results['runs']} runs after 1 warm-up",
        *table(["step", "seconds", "vs raw", "files/s"], rows),
        f"goal (b)/(a) and (c)/(a) <= {GOAL_RATIO:g}x: {'met' if results['goal_met'] else 'MISSED'}; "
        f"signatures checked (validate_signed): {results['signatures_checked']}; "
        f"unexpected errors: {len(results['unexpected_errors'])}",
        *[f"  error: {e}" for e in results["unexpected_errors"][:5]],
        f"peak RSS: {memory['baseline_after_imports']} MiB after imports, "
        f"+{memory['growth_read_and_validate']} MiB to read and validate the tree",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
