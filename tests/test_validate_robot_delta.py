"""A commit that changes only robot files is rechecked from the kept index, with a full check's verdict.

:func:`fleetcd.validation.incremental.recheck_content` takes :attr:`Reuse.ROBOTS` when every changed
path is a ``devices/<id>.yaml`` that loads cleanly before and after: it patches the kept
:class:`~fleetcd.validation.delta.RobotIndex` and recomputes only the parts of the cross-file checks
those robots feed. What must hold, compared after every commit with a fresh full
:func:`~fleetcd.validation.pipeline.check_content` of the same bytes:

* every part of the checks (as a set: the verdict sorts and drops repeats), the loader's findings,
  the spec (its robots in the loader's order too) and the context the trust checks read (stages,
  robots, cohorts) are the full check's, and so is the judged verdict in every report format;
* over seeded random sequences of every kind of document change (robots added, removed, renamed,
  edited, made invalid or fixed, case twins; cohorts by list and by selector; releases; rollouts
  retargeted, overlapping, with waves; config instances; withdrawals; invalid YAML and schema
  errors in any document), each way of rechecking is taken and the fleet does break;
* attacks: a robot renamed to collide with another, a robot file claiming another's id, a robot
  joining a second rollout of its app, a cohort edit or a robot removal that orphans robots, a
  stale kept check reused after the index moved on.

No gpg here (content only, the fleet is unsigned); :mod:`tests.test_validate_incremental` judges
with real gpg.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench import fleetgen
from fleetcd.errors import Diagnostic
from fleetcd.layout import (
    FileKind,
    classify,
    cohort_path,
    config_path,
    device_path,
    release_path,
    rollout_path,
)
from fleetcd.loading.fleetspec import TRUST_FILE_KINDS
from fleetcd.loading.memo import DocumentMemo
from fleetcd.reasons import Reason
from fleetcd.validation import apps, artifacts, configs, delta, noops, overlap, references, requires
from fleetcd.validation.context import Context
from fleetcd.validation.incremental import Reuse, changed_paths, recheck_content
from fleetcd.validation.pipeline import (
    APPS,
    ARTIFACTS,
    CONFIGS_RELEASES,
    CONFIGS_ROBOTS,
    OVERLAP,
    REFERENCES_DOCUMENTS,
    REFERENCES_ROBOT_CASE,
    REFERENCES_ROBOTS,
    REQUIRES_CYCLES,
    REQUIRES_RANGES,
    ContentCheck,
    check_content,
    judge,
    sort_diagnostics,
)
from fleetcd.validation.report import Format, render
from tests.fleetrepo import FleetRepoBuilder

SEEDS = tuple(range(12))
STEPS = 30
SCHEMA = {
    "type": "object",
    "properties": {"max_speed": {"type": "number", "maximum": 2.0}, "map": {"type": "string"}},
    "additionalProperties": False,
}


def assert_same_content(got: ContentCheck, want: ContentCheck) -> None:
    """Everything :func:`judge` reads, and every part of the checks, equal to the full check's."""
    assert set(got.parts) == set(want.parts)
    for name, found in want.parts.items():
        assert sort_diagnostics(got.parts[name]) == sort_diagnostics(found), name
    assert sort_diagnostics(got.checks) == sort_diagnostics(want.checks)
    assert sort_diagnostics(got.documents) == sort_diagnostics(want.documents)
    assert sort_diagnostics(got.attached) == sort_diagnostics(want.attached)
    assert got.problems == want.problems
    assert got.spec == want.spec
    assert list(got.spec.devices) == list(want.spec.devices)  # the loader's (path) order
    assert got.ctx.devices == want.ctx.devices and got.ctx.cohorts == want.ctx.cohorts
    assert got.ctx.stages == want.ctx.stages


def assert_same_verdict(got: ContentCheck, want: ContentCheck) -> None:
    for strict in (False, True):
        mine, theirs = judge(got, strict=strict), judge(want, strict=strict)
        for fmt in Format:
            assert render(mine, fmt) == render(theirs, fmt), fmt
        assert mine.diagnostics == theirs.diagnostics


def base_fleet(root: Path) -> FleetRepoBuilder:
    """Robots over two sites, cohorts by list and by selector, two apps that may share a config file."""
    fleet = FleetRepoBuilder(root)
    for index in range(1, 9):
        site = "berlin" if index % 2 else "osaka"
        fleet.device(f"amr-{index:03d}", site=site, labels={"line": str(index % 3)})
    fleet.cohort("canary", ["amr-001"], stage="canary")
    fleet.cohort("production", ["amr-002", "amr-003", "amr-004"], stage="production")
    fleet.cohort("berlin", selector={"sites": ["berlin"]}, stage="staging", devices=[])
    fleet.cohort("line-1", selector={"labels": {"line": "1"}}, stage="production", devices=[])
    fleet.release("nav", "1.0.0", config_schema=SCHEMA)
    fleet.release("arm", "1.0.0", config_schema={"type": "object"})
    fleet.config("nav", "default", {"max_speed": 1.5, "map": "hall-a"})
    fleet.config("nav", "cohort-berlin", {"max_speed": 1.8})
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["canary", "production"])
    fleet.rollout(
        "arm-1-0-0",
        app="arm",
        release="1.0.0",
        cohorts=["line-1", "berlin"],
        strategy={
            "type": "waves",
            "waves": [{"name": "first", "cohort": "line-1"}, {"name": "rest", "percent": 100}],
        },
    )
    fleet.write()
    return fleet


class Run:
    """A fleet edited commit by commit, rechecked incrementally and in full after each."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.rng = rng
        self.fleet = base_fleet(root)
        if rng.random() < 0.5:  # a second rollout of nav: robots in line-1 and canary/production overlap
            self.fleet.rollout("nav-extra", app="nav", release="1.0.0", cohorts=["line-1"])
        if rng.random() < 0.5:  # nav and arm write one file: robots that get both are refused
            for app in ("nav", "arm"):
                self.fleet.docs[release_path(app, "1.0.0")]["config"]["path"] = "/etc/shared.yaml"
        self.fleet.write()
        self.memo = DocumentMemo() if rng.random() < 0.5 else None
        self.content: ContentCheck | None = None
        self.reuses: dict[Reuse, int] = {}
        self.reasons: set[Reason] = set()
        self.fallbacks: set[str] = set()
        self.robot_reasons: set[Reason] = set()  # found on the robot path
        self.document_reasons: set[Reason] = set()  # found on the release and rollout path
        self.document_fallbacks: set[str] = set()
        self.serial = 100

    @property
    def robots(self) -> list[str]:
        return sorted(
            p.split("/")[1].removesuffix(".yaml") for p in self.fleet.docs if p.startswith("devices/")
        )

    def recheck(self) -> tuple[ContentCheck, Reuse]:
        files = self.fleet.snapshot()
        self.content, reuse = recheck_content(self.content, files, memo=self.memo)
        self.reuses[reuse] = self.reuses.get(reuse, 0) + 1
        if self.memo is not None:  # one snapshot's documents, whichever way it was rechecked
            assert self.memo.paths() == {
                p for p in files if (w := classify(p)) and w.kind not in TRUST_FILE_KINDS
            }
        want = check_content(files)
        assert_same_content(self.content, want)
        if self.rng.random() < 0.25:
            assert_same_verdict(self.content, want)
        self.reasons.update(d.reason for d in want.checks)
        if reuse is Reuse.ROBOTS and self.content.index is not None:
            self.fallbacks.update(self.content.index.fallbacks)
            self.robot_reasons.update(d.reason for d in self.content.checks)
        if reuse is Reuse.DOCUMENTS and self.content.index is not None:
            self.document_fallbacks.update(self.content.index.fallbacks)
            self.document_reasons.update(d.reason for d in self.content.checks)
        return self.content, reuse

    def commit(self) -> None:
        self.fleet.write()

    def new_id(self) -> str:
        self.serial += 1
        return f"amr-{self.serial:03d}"

    def robot_doc(self) -> dict[str, Any]:
        rng = self.rng
        return {
            "site": rng.choice(["berlin", "osaka"]),
            "labels": {"line": str(rng.randrange(3))},
            "family": rng.choice(["amr", "amr", "arm"]),
            "hardware": {"model": rng.choice(["mk2", "mk3"]), "revision": rng.randrange(1, 5)},
            "decommissioned": rng.random() < 0.15,
        }

    # --- robot files only: the ROBOTS path (or a full check when a file does not load) -------------
    def add_robot(self) -> None:
        for _ in range(self.rng.randint(1, 3)):
            self.fleet.device(self.new_id(), **self.robot_doc())
        self.commit()

    def remove_robot(self) -> None:
        for robot in self.rng.sample(self.robots, k=min(len(self.robots), self.rng.randint(1, 2))):
            self.fleet.remove(device_path(robot))
        self.commit()

    def edit_robot(self) -> None:
        robot = self.rng.choice(self.robots)
        self.fleet.device(robot, **self.robot_doc())
        self.commit()

    def rename_robot(self) -> None:
        """A robot's file moved to a new name (maybe a case twin of another robot's)."""
        robot = self.rng.choice(self.robots)
        doc = self.fleet.docs[device_path(robot)]
        self.fleet.remove(device_path(robot))
        other = self.rng.choice(self.robots)
        new = other.upper() if self.rng.random() < 0.4 and other.upper() not in self.robots else self.new_id()
        self.fleet.device(new, **{k: v for k, v in doc.items() if k not in ("id", "apiVersion", "kind")})
        self.commit()

    def break_robot(self) -> None:
        """Invalid YAML, a schema error, or an id that names another robot."""
        robot = self.rng.choice(self.robots)
        self.fleet.docs.pop(device_path(robot), None)
        broken = self.rng.choice(
            [
                "id: [unclosed\n",
                f"apiVersion: fleetcd.dev/v1\nkind: Device\nid: {robot}\nfamily: amr\nwheels: 4\n",
                self.fleet.read(device_path(self.rng.choice(self.robots))).decode(),
            ]
        )
        self.fleet.file(device_path(robot), broken)
        self.commit()

    def fix_robot(self) -> None:
        broken = [p for p in self.fleet.raw if p.startswith("devices/")]
        if not broken:
            return self.edit_robot()
        path = self.rng.choice(broken)
        self.fleet.raw.pop(path)
        self.fleet.device(path.split("/")[1].removesuffix(".yaml"), **self.robot_doc())
        self.commit()
        return None

    # --- other documents: a full check (cohorts: the DOCUMENTS path, unless one fails to load) ---------
    def edit_cohort(self) -> None:
        name = self.rng.choice(["canary", "production", "berlin", "line-1"])
        if self.rng.random() < 0.5:
            members = self.rng.sample(self.robots, k=min(len(self.robots), self.rng.randint(0, 3)))
            if self.rng.random() < 0.3:
                members.append("ghost-robot")
            self.fleet.cohort(name, members, stage=self.rng.choice(["canary", "staging", "production"]))
        else:
            selector = self.rng.choice(
                [{"sites": ["osaka"]}, {"labels": {"line": "2"}}, {"families": ["arm"]}]
            )
            self.fleet.cohort(name, [], selector=selector, stage="production")
        self.commit()

    def delete_cohort(self) -> None:
        self.fleet.remove(cohort_path(self.rng.choice(["canary", "production", "berlin", "line-1"])))
        self.commit()

    def edit_release(self) -> None:
        app = self.rng.choice(["nav", "arm"])
        path = "/etc/shared.yaml" if self.rng.random() < 0.5 else f"/etc/{app}/config.yaml"
        schema = SCHEMA if app == "nav" else {"type": "object"}
        doc = self.fleet.release(app, "1.0.0", config_schema=schema)
        doc["config"]["path"] = path
        if self.rng.random() < 0.2:
            doc["compatibility"] = {"families": ["amr"]}
        self.commit()

    def edit_rollout(self) -> None:
        choice = self.rng.randrange(4)
        if choice == 0:  # a second rollout of nav, maybe over robots nav-1-0-0 already has
            self.fleet.rollout(
                "nav-extra", app="nav", release="1.0.0", cohorts=[self.rng.choice(["berlin", "line-1"])]
            )
        elif choice == 1:
            self.fleet.remove(rollout_path("nav-extra"))
        elif choice == 2:
            self.fleet.rollout(
                "nav-1-0-0",
                app="nav",
                release="1.0.0",
                cohorts=["canary", "production"],
                devices=self.rng.sample(self.robots, k=min(2, len(self.robots))),
                paused=self.rng.random() < 0.3,
            )
        else:
            self.fleet.rollout(
                "arm-1-0-0", app="arm", release=self.rng.choice(["1.0.0", "9.9.9"]), cohorts=["berlin"]
            )
        self.commit()

    def edit_config(self) -> None:
        choice = self.rng.randrange(4)
        if choice == 3:
            configs = [p for p in self.fleet.docs if p.startswith("configs/")]
            if configs:
                self.fleet.remove(self.rng.choice(configs))
        elif choice == 0:
            self.fleet.config("nav", "cohort-berlin", {"max_speed": self.rng.choice([1.0, 9.0])})
        elif choice == 1:
            robot = self.rng.choice(self.robots)
            self.fleet.config(
                "nav", f"device-{robot}", {"max_speed": self.rng.choice([1.2, 7.0]), "map": "x"}
            )
        else:
            self.fleet.config("nav", "cohort-line-1", {"colour": "red"})
        self.commit()

    def break_document(self) -> None:
        path = self.rng.choice(
            [cohort_path("canary"), rollout_path("nav-1-0-0"), config_path("nav", "default")]
        )
        self.fleet.docs.pop(path, None)
        self.fleet.file(path, "kind: [unclosed\n")
        self.commit()

    def fix_documents(self) -> None:
        for path in [p for p in self.fleet.raw if not p.startswith("devices/")]:
            self.fleet.raw.pop(path)
            (self.fleet.root / path).unlink()
        self.commit()

    def withdraw(self) -> None:
        self.fleet.withdrawal("arm", "1.0.0", "bad build")
        self.commit()

    # --- releases added or edited, rollouts added, edited, paused or removed: the DOCUMENTS path ----
    @property
    def rollouts(self) -> list[str]:
        return sorted(
            p.split("/")[1].removesuffix(".yaml") for p in self.fleet.docs if p.startswith("rollouts/")
        )

    def versions(self, app: str) -> list[str]:
        prefix = f"releases/{app}/"
        return sorted(
            p.removeprefix(prefix).removesuffix(".yaml") for p in self.fleet.docs if p.startswith(prefix)
        )

    def maybe_robots_too(self) -> None:
        """Robot files in the same commit, sometimes: the robots are patched first."""
        if self.rng.random() < 0.3:
            for _ in range(self.rng.randint(1, 2)):
                robot = self.rng.choice(self.robots) if self.rng.random() < 0.7 else self.new_id()
                self.fleet.device(robot, **self.robot_doc())

    def release_doc(self, app: str, version: str) -> dict[str, Any]:
        """A new release of ``app``: maybe one config file with the other app, a compatibility, a
        requirement (a cycle when both apps' delivered releases require each other), a reserved
        artifact kind no adapter supports, or a broken schema."""
        rng = self.rng
        schema: dict[str, Any] = SCHEMA if app == "nav" else {"type": "object"}
        if rng.random() < 0.1:
            schema = {"type": "objekt"}
        doc = self.fleet.release(app, version, config_schema=schema)
        doc["config"]["path"] = "/etc/shared.yaml" if rng.random() < 0.3 else f"/etc/{app}/config.yaml"
        if rng.random() < 0.25:
            doc["compatibility"] = {"families": [rng.choice(["amr", "arm"])]}
        if rng.random() < 0.5:
            other = "arm" if app == "nav" else "nav"
            doc["requires"] = [
                {
                    "app": rng.choice([other, other, "lidar"]),
                    "version": rng.choice([">=1.0.0", ">=1.0.0", ">=5.0.0"]),
                }
            ]
        if rng.random() < 0.1:
            firmware = {"url": "https://artifacts.example/fw.bin", "sha256": "a" * 64, "size": 1024}
            doc["artifacts"].append(
                {"kind": "mcu_firmware", "name": "motor-fw", "target": "motor", **firmware}
            )
        return doc

    def add_release(self) -> None:
        """A new version (maybe equal but for build metadata to one on main), pointed at by a
        rollout of its app or by nobody yet."""
        app = self.rng.choice(["nav", "arm"])
        self.serial += 1
        version = f"1.{self.serial}.0" if self.rng.random() < 0.85 else f"1.0.0+build{self.serial}"
        self.release_doc(app, version)
        choice = self.rng.random()
        if choice < 0.45:
            mine = [r for r in self.rollouts if self.fleet.docs[rollout_path(r)]["app"] == app]
            if mine:
                self.fleet.docs[rollout_path(self.rng.choice(mine))]["release"] = version
        elif choice < 0.75:
            self.new_rollout(app, version)
        self.maybe_robots_too()
        self.commit()

    def new_rollout(self, app: str, version: str) -> None:
        rng = self.rng
        name = f"{app}-{rng.choice(['a', 'b', 'c'])}"
        cohorts = rng.sample(["canary", "production", "berlin", "line-1"], k=rng.randint(1, 2))
        devices = rng.sample(self.robots, k=1) if rng.random() < 0.3 else []
        if rng.random() < 0.15:
            devices.append("ghost-robot")
        strategy = None
        if rng.random() < 0.4:
            waves = [{"name": "first", "cohort": rng.choice([*cohorts, "production", "nowhere"])}]
            if rng.random() < 0.6:
                waves.append({"name": "rest", "percent": 100})
            strategy = {"type": "waves", "waves": waves}
        elif rng.random() < 0.3:
            strategy = {"type": "canary", "percent": rng.choice([10, 100])}
        extra = {"strategy": strategy} if strategy else {}
        self.fleet.rollout(name, app=app, release=version, cohorts=cohorts, devices=devices, **extra)

    def add_rollout(self) -> None:
        """A rollout of a version on main, of one that does not exist, or of a withdrawn one."""
        app = self.rng.choice(["nav", "arm"])
        version = self.rng.choice([*self.versions(app), "9.9.9"])
        if self.rng.random() < 0.15:
            self.fleet.withdrawal(app, version, "bad build")  # a withdrawal is a document: full
        self.new_rollout(app, version)
        self.maybe_robots_too()
        self.commit()

    def pause_rollout(self) -> None:
        """Paused (still owns its robots), resumed, or aborted (owns nobody)."""
        doc = self.fleet.docs[rollout_path(self.rng.choice(self.rollouts))]
        field = self.rng.choice(["paused", "paused", "aborted"])
        doc[field] = not doc.get(field, False)
        self.maybe_robots_too()
        self.commit()

    def retarget_rollout(self) -> None:
        """Other cohorts, robots or waves (robots of a second rollout of its app, maybe)."""
        rng = self.rng
        doc = self.fleet.docs[rollout_path(rng.choice(self.rollouts))]
        choice = rng.randrange(3)
        if choice == 0:
            doc["targets"]["cohorts"] = rng.sample(
                ["canary", "production", "berlin", "line-1"], k=rng.randint(0, 3)
            )
        elif choice == 1:
            doc["targets"]["devices"] = rng.sample(self.robots, k=min(len(self.robots), rng.randint(0, 3)))
        else:
            waves = [{"name": "w1", "cohort": rng.choice(["canary", "berlin", "line-1"])}]
            waves += [{"name": "rest", "percent": 100}] if rng.random() < 0.5 else []
            doc["strategy"] = {"type": "waves", "waves": waves}
        if not doc["targets"].get("cohorts") and not doc["targets"].get("devices"):
            doc["targets"]["cohorts"] = ["canary"]
        self.maybe_robots_too()
        self.commit()

    def remove_rollout(self) -> None:
        if len(self.rollouts) > 1:
            self.fleet.remove(rollout_path(self.rng.choice(self.rollouts)))
        self.maybe_robots_too()
        self.commit()

    def regroup_cohort(self) -> None:
        """A cohort's robots, selector, stage or windows changed, a new cohort (maybe named by a
        wave or a rollout in the same commit, maybe a layer's), or one removed."""
        rng = self.rng
        name = rng.choice(["canary", "production", "berlin", "line-1", "night"])
        doc = self.fleet.docs.get(cohort_path(name))
        choice = rng.randrange(5)
        if choice == 0 and doc is not None:
            doc["stage"] = rng.choice(["canary", "staging", "production"])
        elif choice == 1 and doc is not None:
            doc["maintenance_windows"] = [{"days": ["sat"], "start": "22:00", "end": "04:00"}]
        elif choice == 2 and doc is not None and name != "canary":
            self.fleet.remove(cohort_path(name))
        else:
            listed = rng.sample(self.robots, k=min(len(self.robots), rng.randint(0, 3)))
            listed += ["ghost-robot"] if rng.random() < 0.2 else []
            selector = rng.choice(
                [None, {"sites": ["osaka"]}, {"labels": {"line": "1"}}, {"families": ["arm"]}]
            )
            if selector is None and not listed:
                listed = [rng.choice(self.robots)]
            extra = {"selector": selector} if selector else {}
            self.fleet.cohort(name, listed, stage=rng.choice(["canary", "staging", "production"]), **extra)
        if rng.random() < 0.2 and self.rollouts:
            doc = self.fleet.docs[rollout_path(rng.choice(self.rollouts))]
            doc["strategy"] = {
                "type": "waves",
                "waves": [{"name": "n", "cohort": name}, {"name": "r", "percent": 100}],
            }
        if rng.random() < 0.15:
            self.fleet.config("nav", f"cohort-{name}", {"max_speed": rng.choice([1.1, 8.0])})
        self.maybe_robots_too()
        self.commit()

    def remove_release(self) -> None:
        """A version removed: maybe the one a rollout names (an unknown release then), maybe the
        app's last one (its configs are then read by nothing)."""
        app = self.rng.choice(["nav", "arm"])
        versions = self.versions(app)
        if versions:
            self.fleet.remove(release_path(app, self.rng.choice(versions)))
        self.maybe_robots_too()
        self.commit()

    def republish_release(self) -> None:
        """A release on main edited in place (signatures would no longer match; content-wise its
        schema, config path and compatibility change for every robot that receives it)."""
        app = self.rng.choice(["nav", "arm"])
        self.release_doc(app, self.rng.choice(self.versions(app)))
        self.maybe_robots_too()
        self.commit()


ROBOT_EDITS: list[Callable[[Run], None]] = [
    Run.add_robot,
    Run.add_robot,
    Run.remove_robot,
    Run.edit_robot,
    Run.edit_robot,
    Run.edit_robot,
    Run.rename_robot,
    Run.rename_robot,
    Run.break_robot,
    Run.fix_robot,
]
DOCUMENT_EDITS: list[Callable[[Run], None]] = [
    Run.edit_cohort,
    Run.delete_cohort,
    Run.edit_release,
    Run.edit_rollout,
    Run.edit_config,
    Run.break_document,
    Run.fix_documents,
    Run.withdraw,
]


ROLLOUT_EDITS: list[Callable[[Run], None]] = [
    Run.add_release,
    Run.add_release,
    Run.add_rollout,
    Run.pause_rollout,
    Run.retarget_rollout,
    Run.retarget_rollout,
    Run.remove_rollout,
    Run.republish_release,
    Run.edit_config,
    Run.regroup_cohort,
    Run.regroup_cohort,
    Run.remove_release,
]


def pick(rng: random.Random) -> Callable[[Run], None]:
    """Mostly robot files and rollout commits (the common ones), some other documents."""
    draw = rng.random()
    return rng.choice(ROBOT_EDITS if draw < 0.5 else ROLLOUT_EDITS if draw < 0.85 else DOCUMENT_EDITS)


def run_sequence(root: Path, seed: int) -> Run:
    """One seeded sequence of commits of every kind."""
    rng = random.Random(seed)
    run = Run(root, rng)
    run.recheck()
    for step in range(STEPS):
        edit = pick(rng)
        if len(run.robots) < 3:
            edit = Run.add_robot
        edit(run)
        try:
            run.recheck()
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, step {step} ({edit.__name__}): {exc}") from exc
    return run


@pytest.mark.parametrize("seeds", [SEEDS[:6], SEEDS[6:]], ids=["seeds-0-5", "seeds-6-11"])
def test_random_document_changes_recheck_as_a_full_check(tmp_path: Path, seeds: tuple[int, ...]) -> None:
    """Every commit of every sequence rechecks as a full check; together they reach the robot
    path often, every grouped robot error on it, and each grouped check's full fallback."""
    reuses: dict[Reuse, int] = {}
    for seed in seeds:
        run = run_sequence(tmp_path / str(seed), seed)
        assert run.reasons, seed  # the sequence broke the fleet, so the comparisons compared something
        for reuse, count in run.reuses.items():
            reuses[reuse] = reuses.get(reuse, 0) + count
        reach(run)
    assert reuses.get(Reuse.ROBOTS, 0) >= len(seeds) * STEPS // 5
    assert reuses.get(Reuse.DOCUMENTS, 0) >= len(seeds) * STEPS // 5
    assert reuses.get(Reuse.NONE, 0) >= len(seeds) * 2


REACHED: dict[str, set[Any]] = {
    "reasons": set(),
    "fallbacks": set(),
    "documents": set(),
    "doc-fallbacks": set(),
}


def reach(run: Run) -> None:
    REACHED["reasons"] |= run.robot_reasons
    REACHED["fallbacks"] |= run.fallbacks
    REACHED["documents"] |= run.document_reasons
    REACHED["doc-fallbacks"] |= run.document_fallbacks


def test_the_random_sequences_reach_every_grouped_robot_error_and_each_fallback(tmp_path: Path) -> None:
    """Across the seeds, the robot path met overlaps, shared config files, failing merged configs,
    case twins, unknown robots and warnings, and ran each grouped check in full at least once."""
    if not REACHED["reasons"]:  # run alone: run the sequences here
        for seed in SEEDS:
            reach(run_sequence(tmp_path / str(seed), seed))
    assert {
        Reason.ROLLOUT_OVERLAP,
        Reason.CONFIG_PATH_SHARED,
        Reason.CONFIG_INVALID,
        Reason.DUPLICATE_ID,
        Reason.UNKNOWN_DEVICE,
        Reason.NO_EFFECT,
    } <= REACHED["reasons"]
    assert {OVERLAP, APPS, CONFIGS_ROBOTS} <= REACHED["fallbacks"]


def test_the_random_sequences_reach_every_rollout_and_release_error_on_the_document_path(
    tmp_path: Path,
) -> None:
    """Across the seeds, commits of releases and rollouts rechecked from the index met every grouped
    robot error, unknown releases and robots, requirement cycles and ranges, reserved artifacts,
    broken schemas, equal versions and warnings, and ran each grouped check in full."""
    if not REACHED["documents"]:
        for seed in SEEDS:
            reach(run_sequence(tmp_path / str(seed), seed))
    assert {
        Reason.ROLLOUT_OVERLAP,
        Reason.CONFIG_PATH_SHARED,
        Reason.CONFIG_INVALID,
        Reason.UNKNOWN_REFERENCE,
        Reason.UNKNOWN_DEVICE,
        Reason.REQUIRES_CYCLE,
        Reason.REQUIRES_UNKNOWN_APP,
        Reason.REQUIRES_UNSATISFIABLE,
        Reason.UNSUPPORTED_ARTIFACT,
        Reason.DUPLICATE_ID,
        Reason.NO_EFFECT,
    } <= REACHED["documents"], REACHED["documents"]
    assert {OVERLAP, APPS, CONFIGS_ROBOTS} <= REACHED["doc-fallbacks"]


# --- attacks and named behaviours --------------------------------------------------------------------


def kept(fleet: FleetRepoBuilder, memo: DocumentMemo | None = None) -> ContentCheck:
    content, reuse = recheck_content(None, fleet.snapshot(), memo=memo)
    assert reuse is Reuse.NONE and content.index is not None
    return content


def recheck(
    content: ContentCheck, fleet: FleetRepoBuilder, memo: DocumentMemo | None = None
) -> tuple[ContentCheck, Reuse]:
    fleet.write()
    files = fleet.snapshot()
    again, reuse = recheck_content(content, files, memo=memo)
    want = check_content(files)
    assert_same_content(again, want)
    assert_same_verdict(again, want)
    return again, reuse


def errors(content: ContentCheck) -> list[tuple[str, Reason]]:
    return sorted((d.file, d.reason) for d in judge(content).errors if d.reason in ROBOT_REASONS)


ROBOT_REASONS = frozenset(
    {
        Reason.DUPLICATE_ID,
        Reason.UNKNOWN_DEVICE,
        Reason.ROLLOUT_OVERLAP,
        Reason.CONFIG_PATH_SHARED,
        Reason.CONFIG_INVALID,
        Reason.NAME_MISMATCH,
        Reason.INVALID,
    }
)


def test_a_robot_file_renamed_to_a_case_twin_of_another_robot_is_still_refused(tmp_path: Path) -> None:
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    doc = fleet.docs[device_path("amr-002")]
    fleet.remove(device_path("amr-002"))
    fleet.device("AMR-001", site=doc["site"], labels=doc["labels"])
    again, reuse = recheck(content, fleet)
    assert reuse is Reuse.ROBOTS
    assert ("devices/amr-001.yaml", Reason.DUPLICATE_ID) in errors(again)
    fleet.remove(device_path("AMR-001"))  # renamed back out of the collision: accepted again
    cleared, reuse = recheck(again, fleet)
    assert reuse is Reuse.ROBOTS and not [e for e in errors(cleared) if e[1] is Reason.DUPLICATE_ID]


def test_a_robot_file_claiming_another_robots_id_takes_a_full_check_and_is_refused(tmp_path: Path) -> None:
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    fleet.file(device_path("amr-050"), fleet.read(device_path("amr-001")))
    again, reuse = recheck(content, fleet)
    assert reuse is Reuse.NONE
    assert ("devices/amr-050.yaml", Reason.NAME_MISMATCH) in errors(again)


def test_a_robot_that_joins_a_second_rollout_of_its_app_by_its_labels_is_refused(tmp_path: Path) -> None:
    fleet = base_fleet(tmp_path)
    fleet.rollout("nav-extra", app="nav", release="1.0.0", cohorts=["line-1"])
    fleet.device("amr-001", site="berlin", labels={"line": "0"})  # canary and production: nav-1-0-0
    fleet.device("amr-004", site="osaka", labels={"line": "0"})
    fleet.write()
    content = kept(fleet)
    assert not content.parts[OVERLAP]
    fleet.device("amr-002", site="osaka", labels={"line": "1"})  # now line-1 too: nav twice
    again, reuse = recheck(content, fleet)
    assert reuse is Reuse.ROBOTS and again.index is not None and again.index.fallbacks == [OVERLAP]
    assert errors(again) == [
        ("rollouts/nav-1-0-0.yaml", Reason.ROLLOUT_OVERLAP),
        ("rollouts/nav-extra.yaml", Reason.ROLLOUT_OVERLAP),
    ]
    fleet.device("amr-004", site="osaka", labels={"line": "1"})  # a second robot joins the same group
    grouped, _ = recheck(again, fleet)
    assert any("robots amr-002, amr-004" in d.message for d in grouped.parts[OVERLAP])


def test_a_robot_removal_that_orphans_a_cohort_member_is_reported_as_a_full_check_reports_it(
    tmp_path: Path,
) -> None:
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    fleet.remove(device_path("amr-003"))
    again, reuse = recheck(content, fleet)
    assert reuse is Reuse.ROBOTS
    assert errors(again) == [("cohorts/production.yaml", Reason.UNKNOWN_DEVICE)]
    fleet.device("amr-003")  # enrolled again: the cohort is whole
    back, reuse = recheck(again, fleet)
    assert reuse is Reuse.ROBOTS and errors(back) == []


def test_a_cohort_edit_that_orphans_robots_is_reported_exactly_as_a_full_check_reports_it(
    tmp_path: Path,
) -> None:
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    fleet.cohort("production", ["amr-002", "ghost-1", "ghost-2"], stage="production")
    again, reuse = recheck(content, fleet)
    assert reuse is Reuse.DOCUMENTS  # a cohort edit: rechecked from the index
    assert errors(again) == [("cohorts/production.yaml", Reason.UNKNOWN_DEVICE)] * 2


def test_robots_moved_into_and_out_of_a_broken_cohort_config_are_grouped_as_a_full_check_groups_them(
    tmp_path: Path,
) -> None:
    fleet = base_fleet(tmp_path)
    fleet.config("nav", "cohort-production", {"max_speed": 9.0})  # over nav's limit for production
    fleet.write()
    content = kept(fleet)
    first = [d.message for d in content.parts[CONFIGS_ROBOTS]]
    assert len(first) == 1 and first[0].startswith("robots amr-002, amr-003, amr-004:")
    fleet.remove(device_path("amr-003"))
    again, reuse = recheck(content, fleet)
    assert reuse is Reuse.ROBOTS
    assert [d.message.split(":")[0] for d in again.parts[CONFIGS_ROBOTS]] == ["robots amr-002, amr-004"]


def test_a_robot_moved_onto_its_own_broken_config_is_refused_and_cleared_on_the_robot_path(
    tmp_path: Path,
) -> None:
    """The robot's own config is over nav's limit; nav reaches it only once its site is berlin.
    (Until it is enrolled, the config names an unknown robot: an error of its own.)"""
    fleet = base_fleet(tmp_path)
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["berlin"])
    fleet.config("nav", "device-amr-060", {"max_speed": 5.0})
    fleet.write()
    content = kept(fleet)
    fleet.device("amr-060", site="osaka")
    enrolled, reuse = recheck(content, fleet)
    assert reuse is Reuse.ROBOTS and not enrolled.parts[CONFIGS_ROBOTS]
    assert enrolled.index is not None and enrolled.index.fallbacks == []
    fleet.device("amr-060", site="berlin")
    moved, reuse = recheck(enrolled, fleet)
    assert reuse is Reuse.ROBOTS and moved.index is not None and moved.index.fallbacks == [CONFIGS_ROBOTS]
    assert errors(moved) == [("configs/nav/device-amr-060.yaml", Reason.CONFIG_INVALID)]
    assert moved.parts[CONFIGS_ROBOTS][0].message.startswith("robot amr-060: config for nav 1.0.0 is invalid")
    fleet.remove(device_path("amr-060"))
    gone, reuse = recheck(moved, fleet)  # its config names a robot that is not enrolled: that error only
    assert reuse is Reuse.ROBOTS and not gone.parts[CONFIGS_ROBOTS]
    assert errors(gone) == [("configs/nav/device-amr-060.yaml", Reason.UNKNOWN_DEVICE)]


def test_a_decommissioned_robot_that_empties_a_rollout_is_warned_about_as_a_full_check_warns(
    tmp_path: Path,
) -> None:
    fleet = base_fleet(tmp_path)
    fleet.rollout("nav-solo", app="nav", release="1.0.0", devices=["amr-007"])
    fleet.remove(rollout_path("nav-1-0-0"))
    fleet.write()
    content = kept(fleet)
    fleet.device("amr-007", site="berlin", labels={"line": "1"}, decommissioned=True)
    again, reuse = recheck(content, fleet)
    assert reuse is Reuse.ROBOTS
    assert any("updates no robot" in d.message for d in again.checks)


def test_only_the_changed_robot_file_is_parsed(tmp_path: Path) -> None:
    fleet = base_fleet(tmp_path)
    memo = DocumentMemo()
    content = kept(fleet, memo)
    parsed = memo.parsed
    fleet.device("amr-005", site="osaka")
    _, reuse = recheck(content, fleet, memo)
    assert reuse is Reuse.ROBOTS and memo.parsed == parsed + 1


def test_with_a_memo_a_removed_robot_file_is_rechecked_from_the_index_and_its_document_dropped(
    tmp_path: Path,
) -> None:
    """The memo holds one snapshot's documents: the removed robot's leaves it on the robot path."""
    fleet = base_fleet(tmp_path)
    memo = DocumentMemo()
    content = kept(fleet, memo)
    fleet.remove(device_path("amr-006"))
    again, reuse = recheck(content, fleet, memo)
    assert reuse is Reuse.ROBOTS and device_path("amr-006") not in memo.paths()
    assert memo.last.parsed == []
    fleet.device("amr-006", site="osaka")
    _, reuse = recheck(again, fleet, memo)  # enrolled again: the robot path
    assert reuse is Reuse.ROBOTS and memo.last.parsed == [device_path("amr-006")]
    assert memo.paths() == frozenset(p for p in fleet.snapshot() if p.endswith(".yaml"))


def test_a_kept_check_whose_index_moved_on_is_checked_in_full(tmp_path: Path) -> None:
    """The index is patched in place: the older check it was patched from must not be reused."""
    fleet = base_fleet(tmp_path)
    first = kept(fleet)
    fleet.device("amr-005", site="osaka", labels={"line": "1"})
    second, reuse = recheck(first, fleet)
    assert reuse is Reuse.ROBOTS and second.index is first.index
    fleet.device("amr-006", site="berlin", labels={"line": "2"})
    _, reuse = recheck(first, fleet)  # from the first again: its index describes the second
    assert reuse is Reuse.NONE
    _, reuse = recheck(second, fleet)  # the second is the index's own: patched again
    assert reuse is Reuse.ROBOTS


def test_robots_and_an_orphaned_signature_in_one_commit_are_rechecked_with_the_signatures_findings(
    tmp_path: Path,
) -> None:
    """Signature files are attached again on the robot path: an orphan is reported as in full."""
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    fleet.device("amr-005", site="osaka")
    orphan = release_path("nav", "9.9.9") + ".d/" + "B" * 40 + ".asc"
    fleet.file(orphan, b"not armored\n")
    again, reuse = recheck(content, fleet)
    assert reuse is Reuse.ROBOTS
    assert [d.file for d in again.attached] == [orphan]
    fleet.remove(device_path("amr-005"))
    fleet.raw.pop(orphan)
    (fleet.root / orphan).unlink()
    cleared, reuse = recheck(again, fleet)
    assert reuse is Reuse.ROBOTS and cleared.attached == ()


def test_a_robot_and_another_document_in_one_commit_take_a_full_check(tmp_path: Path) -> None:
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    fleet.device("amr-005", site="osaka")
    fleet.withdrawal("arm", "1.0.0", "bad build")  # a cohort would be rechecked from the index
    _, reuse = recheck(content, fleet)
    assert reuse is Reuse.NONE


def test_a_fleet_without_a_kept_index_or_with_a_base_is_checked_in_full(tmp_path: Path) -> None:
    fleet = base_fleet(tmp_path)
    files = fleet.snapshot()
    plain = check_content(files)  # fleetcd validate's: no index kept
    assert plain.index is None
    fleet.device("amr-005", site="osaka")
    _, reuse = recheck(plain, fleet)
    assert reuse is Reuse.NONE


def test_the_patched_selection_is_planning_s_own(tmp_path: Path) -> None:
    """After robots change, every rollout's selection from the index equals resolve_targets' anew."""
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    fleet.remove(device_path("amr-001"))  # canary lists it: unknown now
    fleet.device("amr-009", site="berlin", labels={"line": "1"}, family="arm")
    fleet.device("amr-002", decommissioned=True)
    again, reuse = recheck(content, fleet)
    assert reuse is Reuse.ROBOTS and again.index is not None
    fresh = Context(again.spec)
    mine = again.index.context(again.spec)
    assert mine.selections == fresh.selections
    assert mine.members == fresh.members and mine.memberships == fresh.memberships
    assert delta.case_errors(again.spec, again.index) == ()


# --- the patched index against planning's own answers, case by case ---------------------------------


def patched_against_fresh(
    fleet: FleetRepoBuilder, edit: Callable[[FleetRepoBuilder], object]
) -> ContentCheck:
    """``edit`` (robot files only) rechecked from the kept index; its lookups equal a fresh
    Context's (planning's cohort_members and resolve_targets) and the check equals a full one."""
    content = kept(fleet)
    edit(fleet)
    again, reuse = recheck(content, fleet)
    assert reuse is Reuse.ROBOTS and again.index is not None
    fresh = Context(again.spec)
    mine = again.index.context(again.spec)
    assert mine.members == fresh.members
    assert mine.memberships == fresh.memberships
    assert mine.stages == fresh.stages
    assert {name: (s.eligible, s.skipped, dict(s.cohorts_of)) for name, s in mine.selections.items()} == {
        name: (s.eligible, s.skipped, dict(s.cohorts_of)) for name, s in fresh.selections.items()
    }
    assert list(mine.devices) == list(fresh.devices)  # the loader's order
    assert mine.deliveries == fresh.deliveries
    return again


ROBOT_CHANGES: dict[str, Callable[[FleetRepoBuilder], object]] = {
    "joins a selector cohort by site": lambda f: f.device("amr-002", site="berlin", labels={"line": "2"}),
    "leaves a selector cohort by label": lambda f: f.device("amr-001", site="osaka", labels={"line": "0"}),
    "decommissioned": lambda f: f.device("amr-003", decommissioned=True),
    "incompatible family": lambda f: f.device("amr-004", family="arm"),
    "removed while a cohort lists it": lambda f: f.remove(device_path("amr-002")),
    "enrolled where a cohort already listed it": lambda f: f.device("amr-099", site="berlin"),
    "case twin of another robot": lambda f: f.device("AMR-002", site="osaka"),
    "id ordered apart from its path": lambda f: (
        f.device("amr-001-b"),
        f.device("amr-001.b"),
        f.device("amr-0010"),
    ),
    "several robots at once": lambda f: [f.device(f"amr-2{i:02d}", labels={"line": "1"}) for i in range(5)],
    "renamed": lambda f: (f.remove(device_path("amr-005")), f.device("amr-305", site="berlin")),
    "in a paused rollout": lambda f: f.device("amr-007", site="osaka", labels={"line": "1"}),
}


@pytest.mark.parametrize("change", list(ROBOT_CHANGES.values()), ids=list(ROBOT_CHANGES))
def test_a_robot_change_patches_memberships_and_selections_as_planning_resolves_them(
    tmp_path: Path, change: Callable[[FleetRepoBuilder], object]
) -> None:
    fleet = base_fleet(tmp_path)
    fleet.cohort("production", ["amr-002", "amr-003", "amr-004", "amr-099"], stage="production")
    fleet.release("arm", "1.0.0", config_schema={"type": "object"}, compatibility={"families": ["amr"]})
    fleet.rollout("nav-paused", app="nav", release="1.0.0", cohorts=["line-1"], paused=True)
    fleet.write()
    patched_against_fresh(fleet, change)


def test_a_paused_rollout_still_owns_a_robot_that_joins_it_so_two_rollouts_overlap(tmp_path: Path) -> None:
    """Paused rollouts keep their robots (resuming needs no approval): joining one is an overlap."""
    fleet = base_fleet(tmp_path)
    fleet.device("amr-001", site="berlin", labels={"line": "0"})
    fleet.device("amr-004", site="osaka", labels={"line": "0"})
    fleet.rollout("nav-paused", app="nav", release="1.0.0", cohorts=["line-1"], paused=True)
    fleet.write()
    again = patched_against_fresh(fleet, lambda f: f.device("amr-002", site="osaka", labels={"line": "1"}))
    assert errors(again) == [
        ("rollouts/nav-1-0-0.yaml", Reason.ROLLOUT_OVERLAP),
        ("rollouts/nav-paused.yaml", Reason.ROLLOUT_OVERLAP),
    ]


def test_the_loaders_robot_order_is_kept_when_robots_are_added() -> None:
    """Path order, not id order: 'devices/a-b.yaml' sorts before 'devices/a.yaml'."""
    devices = {"a": "A", "c": "C"}
    out = delta.patched_devices(devices, {"a-b": "AB", "b": "B"})  # type: ignore[dict-item,arg-type]
    assert list(out) == ["a-b", "a", "b", "c"]
    assert list(delta.patched_devices(out, {"b": None})) == ["a-b", "a", "c"]  # type: ignore[arg-type,dict-item]
    assert list(delta.patched_devices(out, {"c": "C2"})) == ["a-b", "a", "b", "c"]  # type: ignore[arg-type,dict-item]


def test_a_rollout_that_stops_delivering_to_anyone_drops_out_of_the_requirement_cycle(tmp_path: Path) -> None:
    """nav and arm require each other; once arm's only robots leave its cohorts, the cycle is gone."""
    fleet = base_fleet(tmp_path)
    fleet.docs[release_path("nav", "1.0.0")]["requires"] = [{"app": "arm", "version": ">=1.0.0"}]
    fleet.docs[release_path("arm", "1.0.0")]["requires"] = [{"app": "nav", "version": ">=1.0.0"}]
    fleet.rollout("arm-1-0-0", app="arm", release="1.0.0", devices=["amr-007"])
    fleet.write()
    content = kept(fleet)
    assert [d.reason for d in content.parts["requires.cycles"]] == [Reason.REQUIRES_CYCLE] * 2
    fleet.device("amr-007", decommissioned=True)
    again, reuse = recheck(content, fleet)
    assert reuse is Reuse.ROBOTS and again.parts["requires.cycles"] == ()
    fleet.device("amr-007")
    back, reuse = recheck(again, fleet)
    assert reuse is Reuse.ROBOTS and len(back.parts["requires.cycles"]) == 2


def test_robot_edits_on_a_generated_fleet_with_waves_and_canaries_recheck_as_a_full_check() -> None:
    """bench.fleetgen's fleet (selector cohorts, a waves and a canary rollout, configs): robots
    moved between sites, families and revisions, decommissioned, enrolled and removed."""
    files = dict(fleetgen.generate(240, 6).files)
    memo = DocumentMemo()
    content, _ = recheck_content(None, files, memo=memo)
    rng = random.Random(7)
    robots = sorted(p for p in files if p.startswith("devices/"))
    taken: dict[Reuse, int] = {}
    for _ in range(40):
        files = dict(files)
        path = rng.choice(robots)
        choice = rng.randrange(10)
        if choice == 0 and path in files:
            del files[path]
        elif choice == 1:
            files[path] = fleetgen.device_yaml(rng.randrange(240)).replace(
                fleetgen.device_id(0).encode(), b"x"
            )  # another robot's bytes under this name: a name mismatch unless it is its own
        else:
            index = int(path.removeprefix("devices/robot-").removesuffix(".yaml"))
            shape = rng.randrange(12) * 1000 + index % 1000  # another site, family, revision
            text = fleetgen.device_yaml(shape)
            files[path] = text.replace(fleetgen.device_id(shape).encode(), fleetgen.device_id(index).encode())
        content, reuse = recheck_content(content, files, memo=memo)
        taken[reuse] = taken.get(reuse, 0) + 1
        assert_same_content(content, check_content(files))
    assert taken.get(Reuse.ROBOTS, 0) >= 15 and taken.get(Reuse.NONE, 0) >= 2  # another robot's bytes: full


# --- the full check, split into parts, still finds what each check finds ------------------------------


def one_pass(content: ContentCheck) -> tuple[Diagnostic, ...]:
    """Every cross-file check as its module runs it whole, over a fresh context (no parts)."""
    ctx = Context(content.spec)
    found = [
        *references.check(ctx),
        *overlap.check(ctx),
        *requires.check(ctx),
        *apps.check(ctx),
        *configs.check(ctx),
        *noops.check(ctx),
    ]
    if content.spec.fleet is not None:
        found.extend(artifacts.check(ctx, content.spec.fleet.model))
    return sort_diagnostics(found)


@pytest.mark.parametrize("seed", (101, 202, 303))
def test_the_parts_of_a_full_check_are_exactly_what_each_check_finds_in_one_pass(
    tmp_path: Path, seed: int
) -> None:
    """check_content records each check's findings by part (what the robot path recomputes); over
    a random sequence the parts together are what the checks find whole, and no part is empty of
    meaning: each recorded part name is one the pipeline knows."""
    rng = random.Random(seed)
    run = Run(tmp_path, rng)
    known = {REFERENCES_ROBOTS, REFERENCES_ROBOT_CASE, REFERENCES_DOCUMENTS, OVERLAP, APPS, CONFIGS_ROBOTS}
    for _ in range(12):
        edit = pick(rng)
        if len(run.robots) < 3:
            edit = Run.add_robot
        edit(run)
        full = check_content(run.fleet.snapshot())
        assert sort_diagnostics(full.checks) == one_pass(full)
        assert known <= set(full.parts)
        assert all(name.startswith("noops/") for name in set(full.parts) - known - OTHER_PARTS)


OTHER_PARTS = {REQUIRES_RANGES, REQUIRES_CYCLES, CONFIGS_RELEASES, ARTIFACTS}


def test_changed_paths_lets_robot_files_through_only_when_asked() -> None:
    old = {"devices/a.yaml": b"a", "keys/k.asc": b"k", "cohorts/c.yaml": b"c"}
    robots = frozenset({*TRUST_FILE_KINDS, FileKind.DEVICE})
    assert changed_paths(old, {**old, "devices/a.yaml": b"b"}) is None  # the default: .asc only
    assert changed_paths(old, {**old, "devices/a.yaml": b"b"}, allow=robots) == {"devices/a.yaml"}
    assert changed_paths(old, {**old, "devices/b.yaml": b"b", "keys/k.asc": b"j"}, allow=robots) == {
        "devices/b.yaml",
        "keys/k.asc",
    }
    assert changed_paths(old, {**old, "cohorts/c.yaml": b"d"}, allow=robots) is None
    assert changed_paths(old, {**old, "devices/notes.txt": b"?"}, allow=robots) is None  # unexpected


def test_a_robot_edit_after_a_signature_only_commit_is_still_rechecked_from_the_index(tmp_path: Path) -> None:
    """The trust-files path carries the index forward: the robots and documents are the same."""
    fleet = base_fleet(tmp_path)
    content = kept(fleet)
    orphan = release_path("nav", "9.9.9") + ".d/" + "C" * 40 + ".asc"
    fleet.file(orphan, b"orphan\n")
    signed, reuse = recheck(content, fleet)
    assert reuse is Reuse.TRUST_FILES and signed.index is content.index
    fleet.device("amr-008", site="berlin", labels={"line": "1"})
    again, reuse = recheck(signed, fleet)
    assert reuse is Reuse.ROBOTS and [d.file for d in again.attached] == [orphan]
    _, reuse = recheck(content, fleet)  # the first check's index has moved on twice since
    assert reuse is Reuse.NONE


def test_a_rollout_of_a_missing_release_stays_reported_while_robots_join_its_cohorts(tmp_path: Path) -> None:
    """No release: the rollout is an error and delivers nothing; robots joining its cohort change
    neither that error nor any grouped robot error, and the robot path keeps them exactly."""
    fleet = base_fleet(tmp_path)
    fleet.rollout("arm-1-0-0", app="arm", release="9.9.9", cohorts=["berlin"])
    fleet.write()
    content = kept(fleet)
    missing = [d for d in content.parts[REFERENCES_ROBOTS] if d.file == rollout_path("arm-1-0-0")]
    assert [d.reason for d in missing] == [Reason.UNKNOWN_REFERENCE]
    for robot in ("amr-020", "amr-021"):
        fleet.device(robot, site="berlin")
        content, reuse = recheck(content, fleet)
        assert reuse is Reuse.ROBOTS and content.index is not None and content.index.fallbacks == []
    assert [d for d in content.parts[REFERENCES_ROBOTS] if d.file == rollout_path("arm-1-0-0")] == missing
