"""The fleet simulator (``fleetcd sim``) rehearsing rollouts on real git, real gpg and the real controller.

Twenty virtual robots poll their own desired-state refs, verify every bundle with the real
verifier and push real status commits while the controller reconciles on the simulated clock.
What the simulator reports must agree with what the controller recorded on the state branch: the
summary is the robots' side of the story, the records are the controller's.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.audit.chain import verify
from controller.cli import build
from controller.reconcile.source import Source, fetch_all, open_mirror
from controller.reconcile.statebranch import StateSnapshot, load_state
from controller.records.model import Action
from controller.sim import SimReport, SimSettings, run_simulation
from controller.state.model import RolloutPhase, WavePhase
from fleetcd.cli.main import run
from fleetcd.compat import UTC
from fleetcd.git.objects import list_refs
from fleetcd.git.refs import STATE_BRANCH, STATUS_PREFIX
from fleetcd.git.repo import open_or_init_bare
from tests.fleetrepo import FleetRepoBuilder
from tests.gitrepos import bare_repo
from tests.gpgkeys import KeyFactory

START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
ROBOTS = [f"amr-{n:02d}" for n in range(20)]
STAGING, CANARY, PRODUCTION = ROBOTS[:4], ROBOTS[4:10], ROBOTS[10:]
WAVES = [
    {"name": "staging", "cohort": "staging", "soak_seconds": 60, "failure_threshold": {"count": 4}},
    {"name": "canary", "cohort": "canary", "soak_seconds": 120, "failure_threshold": {"count": 0}},
    {"name": "production", "cohort": "production", "soak_seconds": 60},
]
COHORTS = ["staging", "canary", "production"]
FAILING_SEED = 4  # with a failure rate of 0.3, this seed fails at least one canary robot


def waves_fleet(root: Path, keys: KeyFactory) -> Path:
    """20 robots in staging/canary/production, nav 1.0.0 signed and approved, pushed to a bare server."""
    return waves_fleet_builder(root, keys)[1]


def waves_fleet_builder(root: Path, keys: KeyFactory) -> tuple[FleetRepoBuilder, Path]:
    fleet = FleetRepoBuilder(root / "work", keys=keys, name="sim-fleet")
    for device in ROBOTS:
        fleet.device(device)
    fleet.cohort("staging", STAGING, stage="staging")
    fleet.cohort("canary", CANARY, stage="canary")
    fleet.cohort("production", PRODUCTION, stage="production")
    fleet.release("nav", "1.0.0")
    fleet.rollout(
        "nav", app="nav", release="1.0.0", cohorts=COHORTS, strategy={"type": "waves", "waves": WAVES}
    )
    fleet.git_init()
    fleet.commit("nav 1.0.0 through three waves")
    server = bare_repo(root / "fleet.git")
    fleet.git("push", "-q", str(server), "main")
    return fleet, server


def rehearse(server: Path, keys: KeyFactory, workdir: Path, **overrides: Any) -> SimReport:
    settings: dict[str, Any] = {
        "url": str(server),
        "gnupghome": keys.home,
        "workdir": workdir,
        "poll_seconds": 60.0,
        "apply_seconds": 30.0,
        "controller_seconds": 30.0,
        "seed": 1,
        "start": START,
        "max_seconds": 3600.0,
    }
    return run_simulation(SimSettings(**{**settings, **overrides}))


def state_of(server: Path, cache: Path) -> StateSnapshot:
    source = Source.for_url(str(server), cache)
    repo = open_mirror(source)
    fetch_all(repo, source)
    return load_state(repo)


def record_outcomes(state: StateSnapshot) -> Counter[str]:
    """The controller's view: activity of every deploy record, counted."""
    return Counter(
        r.activity.value for f in state.devices.values() for r in f.records if r.action is Action.DEPLOY
    )


def test_rehearsal_without_failures_goes_through_every_wave_and_completes(
    tmp_path: Path, keys: KeyFactory
) -> None:
    server = waves_fleet(tmp_path, keys)

    report = rehearse(server, keys, tmp_path / "sim")

    assert report.stopped == "done"
    assert report.rollouts == {"nav": RolloutPhase.COMPLETED.value}
    assert report.summary.applied == 20 and report.summary.failed == report.summary.rolled_back == 0
    by_wave = {w.wave: w for w in report.waves}
    assert [w.wave for w in report.waves] == ["staging", "canary", "production"]
    for wave, robots in (("staging", STAGING), ("canary", CANARY), ("production", PRODUCTION)):
        timing = by_wave[wave]
        assert (timing.robots, timing.applied, timing.phase) == (
            len(robots),
            len(robots),
            WavePhase.PASSED.value,
        )
        assert timing.controller_started_s is not None and timing.first_started_s is not None
        assert timing.controller_started_s <= timing.first_started_s <= timing.merge_to_applied_p50_s  # type: ignore[operator]
    # Waves never jump the soak: each starts after the previous one's last robot applied plus its soak.
    for earlier, later, soak in (("staging", "canary", 60), ("canary", "production", 120)):
        assert by_wave[later].controller_started_s >= by_wave[earlier].last_applied_s + soak  # type: ignore[operator]
    state = state_of(server, tmp_path / "check")
    assert record_outcomes(state) == Counter({"deployed": report.summary.applied})
    verify(state.audit)
    # Real protocol: every robot pushed its own status ref; gpg ran once per distinct signature.
    status = list_refs(open_or_init_bare(server), STATUS_PREFIX)
    assert {ref.split("/")[3] for ref in status} == set(ROBOTS)
    # A change costs what it changes: every robot verified its first commit, then only the one its
    # own wave brought (staging's came with the first); no robot fetched a root that left its
    # bundle unchanged (before, each of the three roots reached every robot: 60).
    assert report.costs["verifications"] == len(ROBOTS) + len(CANARY) + len(PRODUCTION)
    assert report.costs["fetches"] == report.costs["verifications"]
    assert report.costs["gpg_checks"] < report.costs["verifications"]


def test_failures_on_the_canary_trip_its_threshold_and_the_controller_halts(
    tmp_path: Path, keys: KeyFactory
) -> None:
    server = waves_fleet(tmp_path, keys)

    report = rehearse(server, keys, tmp_path / "sim", failure_rate=0.3, seed=FAILING_SEED)

    assert report.stopped == "done"
    assert report.rollouts == {"nav": RolloutPhase.HALTED.value}
    by_wave = {w.wave: w for w in report.waves}
    assert by_wave["canary"].phase == WavePhase.FAILED.value
    assert by_wave["canary"].failed >= 1
    assert by_wave["production"].phase == WavePhase.PENDING.value
    assert by_wave["production"].first_started_s is None  # nothing reached production
    assert {t.device for t in report.traces}.isdisjoint(PRODUCTION)
    # The summary agrees with the controller's records, outcome by outcome.
    state = state_of(server, tmp_path / "check")
    outcomes = record_outcomes(state)
    summary = report.summary
    assert summary.failed >= 1 and summary.pending == 0
    assert outcomes["deployed"] == summary.applied
    assert outcomes["failed"] == summary.failed
    assert outcomes["rolled_back"] == summary.rolled_back == 0  # nothing ran before: nothing to return to
    assert summary.applied + summary.failed == len({t.device for t in report.traces})
    verify(state.audit)


def test_a_second_release_failing_on_the_canary_is_rolled_back_to_the_first(
    tmp_path: Path, keys: KeyFactory
) -> None:
    fleet, server = waves_fleet_builder(tmp_path, keys)
    first = rehearse(server, keys, tmp_path / "first")
    assert first.rollouts == {"nav": RolloutPhase.COMPLETED.value}
    fleet.release("nav", "1.1.0")
    fleet.rollout(
        "nav", app="nav", release="1.1.0", cohorts=COHORTS, strategy={"type": "waves", "waves": WAVES}
    )
    fleet.commit("nav 1.1.0 through three waves")
    fleet.git("push", "-q", str(server), "main")

    # Fresh robot repositories: each robot resumes from the report it last pushed (1.0.0 running).
    later = START + timedelta(hours=2)
    second = rehearse(server, keys, tmp_path / "second", failure_rate=0.3, seed=FAILING_SEED, start=later)

    assert second.rollouts == {"nav": RolloutPhase.HALTED.value}
    canary = next(w for w in second.waves if w.wave == "canary" and w.action == "deploy")
    assert canary.phase == WavePhase.FAILED.value
    # A robot whose 1.1.0 failed returned to the 1.0.0 it ran: rolled back, not failed.
    assert canary.rolled_back >= 1 and canary.failed == 0
    assert second.summary.rolled_back == sum(w.rolled_back for w in second.waves if w.action == "deploy")
    # on_halt: rollback_all (the default): every robot that took 1.1.0 gets 1.0.0 again, in the
    # canary wave and in the staging wave that had passed.
    rollback = next(w for w in second.waves if w.wave == "canary" and w.action == "rollback")
    assert rollback.applied == canary.applied
    staging = next(w for w in second.waves if w.wave == "staging" and w.action == "rollback")
    assert staging.applied >= 1
    assert rollback.applied + staging.applied == second.summary.rollbacks_applied
    state = state_of(server, tmp_path / "check")
    rollbacks = [r for f in state.devices.values() for r in f.records if r.action is Action.ROLLBACK]
    took_new = {t.device for t in second.traces if t.version == "1.1.0" and t.outcome == "deployed"}
    assert {r.device for r in rollbacks} == took_new
    assert {(r.version, r.activity.value) for r in rollbacks} == {("1.0.0", "deployed")}
    verify(state.audit)


def test_the_same_seed_rehearses_the_same_rollout_on_one_thread_or_several(
    tmp_path: Path, keys: KeyFactory
) -> None:
    reports = []
    for workers in (1, 4):
        server = waves_fleet(tmp_path / str(workers), keys)
        sim = tmp_path / str(workers) / "sim"
        reports.append(rehearse(server, keys, sim, failure_rate=0.3, offline_rate=0.1, workers=workers))

    first, second = reports
    assert first.summary == second.summary
    assert first.waves == second.waves
    assert [(t.device, t.outcome, t.finished_s) for t in first.traces] == [
        (t.device, t.outcome, t.finished_s) for t in second.traces
    ]


def test_sim_command_rehearses_a_copy_and_never_writes_to_the_fleet_repository(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = waves_fleet(tmp_path, keys)
    args = ["sim", "--repo", str(server), "--gnupghome", str(keys.home), "--robots", "20", "--seed", "1"]
    args += ["--poll-seconds", "60", "--controller-seconds", "30", "--virtual-time", "--until-done"]
    args += ["--skip-noop-polls", "-o", "json"]  # polls while no desired ref moved: counted, not run

    code = run(build(), [*args, "--keep", str(tmp_path / "rehearsal")])

    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["stopped"] == "done" and out["rollouts"] == {"nav": "completed"}
    assert out["summary"]["applied"] == 20
    assert [w["wave"] for w in out["waves"]] == ["staging", "canary", "production"]
    assert 0 < out["costs"]["skipped_polls"] < out["costs"]["polls"]
    untouched = open_or_init_bare(server)
    assert untouched.references.get(STATE_BRANCH) is None
    assert list_refs(untouched, STATUS_PREFIX) == {}
    kept = open_or_init_bare(tmp_path / "rehearsal" / "server.git")
    assert kept.references.get(STATE_BRANCH) is not None


def test_virtual_robots_report_their_health_watch_and_the_sim_pages_show_it(
    tmp_path: Path, keys: KeyFactory
) -> None:
    server = waves_fleet(tmp_path, keys)

    report = rehearse(server, keys, tmp_path / "sim", apply_seconds=120.0)

    assert report.stopped == "done"
    # Some reconcile landed while robots watched: its pages said so, in the agent's words.
    commits = subprocess.run(
        ["git", "-C", str(server), "rev-list", STATE_BRANCH], capture_output=True, text=True, check=True
    ).stdout.split()

    def shown(name: str) -> list[str]:
        return [
            subprocess.run(
                ["git", "-C", str(server), "show", f"{c}:{name}"], capture_output=True, text=True, check=False
            ).stdout
            for c in commits
        ]

    assert any("watching health, 30 s left" in page for page in shown("STATUS.md"))
    assert any("watching health, 30 s left" in page for page in shown("status.html"))
    # Once every robot reported its outcome, nothing says it is still watching.
    final = state_of(server, tmp_path / "check")
    assert all(f.state.progress is None for f in final.devices.values())
    assert "watching health" not in final.files["STATUS.md"].decode()
