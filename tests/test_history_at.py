"""``fleetcd history ROBOT --at T``: what ran on a robot at an instant, from git alone.

One scripted timeline, built once on real git and real gpg (the controller scenario's world: a
bare server, the real controller on a virtual clock, simulated robots verifying their desired
state and pushing real status reports): navstack ``nav`` 1.0.0 through its waves, a config
change (max_speed_mps 1.2 -> 0.9) through them again, then 1.1.0, whose canary fails and is
rolled back. Each test asks the real ``fleetcd`` command about one instant of it, through its own
operator cache, and checks the answer against what happened at that instant.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.ops.asof import RanState, handed, robot_state, running_ids
from controller.ops.asof_question import parse_instant
from controller.ops.instant import brought_to_main
from controller.reconcile.steps import reconcile_once
from controller.records.model import Action, TargetStatus
from controller.records.transitions import new_deployment
from controller.state.layout import device_file
from controller.state.model import WavePhase
from fleetcd.cli.exitcodes import Exit
from fleetcd.compat import UTC
from fleetcd.desired.configset import merged_sha256
from fleetcd.git.objects import Identity, commit, read_blob, ref_target, write_tree
from fleetcd.git.refs import STATE_BRANCH, status_ref
from fleetcd.git.repo import tree_of
from fleetcd.reports import MAX_REPORT_BYTES, STATUS_FILE, DeploymentReport, StatusReport
from fleetcd.shards import shard_of
from tests.clirun import fleetcd
from tests.fleetrepo import FleetRepoBuilder
from tests.gitrepos import bare_repo, git
from tests.gpgkeys import KeyFactory, shared_keys
from tests.sim.robots import ROBOT
from tests.sim.world import CANARY, STAGING, START, WAVES, ControllerWorld, make_world, pass_wave

SCHEMA = {
    "type": "object",
    "properties": {"max_speed_mps": {"type": "number", "maximum": 2}},
    "additionalProperties": False,
}
FIRST_COMMIT = START - timedelta(hours=1)
OLDER = Identity(
    "fleetcd controller", "controller@fleetcd.invalid"
)  # main's first commit: the fleet exists from here on


def _with_config(fleet: FleetRepoBuilder) -> None:
    fleet.release("nav", "1.0.0", config_schema=SCHEMA)
    fleet.config("nav", "default", {"max_speed_mps": 1.2})


@dataclass
class Timeline:
    world: ControllerWorld
    at: dict[str, datetime] = field(default_factory=dict)  # instant name -> instant
    main: dict[str, str] = field(default_factory=dict)  # merge name -> main commit id

    def mark(self, name: str, after: float = 2) -> None:
        """An instant ``after`` seconds from now, before anything else happens."""
        self.at[name] = self.world.clock.now + timedelta(seconds=after)
        self.world.clock.tick(after * 2)


def _merge(timeline: Timeline, mp: pytest.MonkeyPatch, name: str, message: str) -> None:
    when = timeline.world.clock.now.isoformat()
    mp.setenv("GIT_AUTHOR_DATE", when)
    mp.setenv("GIT_COMMITTER_DATE", when)
    timeline.world.merge(message)
    timeline.main[name] = timeline.world.fleet.git("rev-parse", "HEAD").strip()


def _first_two_waves(world: ControllerWorld) -> None:
    """Staging and canary pass (production is not asked about: it saves reconciles)."""
    pass_wave(world, STAGING, "staging")
    pass_wave(world, CANARY, "canary")


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory, gpg_available: str) -> Iterator[Timeline]:
    keys: KeyFactory = shared_keys()
    root = tmp_path_factory.mktemp("history-at")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_AUTHOR_DATE", FIRST_COMMIT.isoformat())
        mp.setenv("GIT_COMMITTER_DATE", FIRST_COMMIT.isoformat())
        world = make_world(root, keys, configure=_with_config)
        line = Timeline(world)
        line.main["1.0.0"] = world.fleet.git("rev-parse", "HEAD").strip()
        world.reconcile()  # generation 1: stg-1 is handed 1.0.0
        line.mark("staging dispatched")
        pass_wave(world, STAGING, "staging")  # the canary wave is dispatched
        dep = world.sim.report("can-2", "nav", "downloading", world.clock.now)
        progress = {"deployment_id": dep, "phase": "downloading", "done_bytes": 1000, "total_bytes": 4000}
        world.sim.push_report("can-2", world.clock.now, progress=progress)
        line.mark("can-2 downloading")
        pass_wave(world, CANARY, "canary")
        line.mark("1.0.0 everywhere")

        world.fleet.config("nav", "default", {"max_speed_mps": 0.9})
        world.fleet.write()  # re-approved: approvals cover the config set
        _merge(line, mp, "config", "nav: max_speed_mps 1.2 -> 0.9")
        world.clock.tick(5)
        world.reconcile()  # generation 2
        _first_two_waves(world)
        line.mark("config everywhere")

        world.fleet.release("nav", "1.1.0", config_schema=SCHEMA)
        world.fleet.rollout(
            "nav",
            app="nav",
            release="1.1.0",
            cohorts=["staging", "canary", "production"],
            strategy={"type": "waves", "waves": WAVES},
        )
        _merge(line, mp, "1.1.0", "nav 1.1.0")
        world.clock.tick(5)
        world.reconcile()  # generation 3
        line.mark("1.1.0 staging dispatched")
        pass_wave(world, STAGING, "staging")
        world.report_all(["can-2"], "deployed")
        world.sim.report("can-1", "nav", "failed", world.clock.now, error="failed", message="probe failed")
        world.clock.tick(10)
        world.reconcile()  # the canary fails: halt, rollback deployments for stg-1 and can-2
        assert world.wave("canary") is WavePhase.FAILED
        line.mark("mid-rollback")
        world.sim.report("can-2", "nav", "applying", world.clock.now)
        line.mark("can-2 applying its rollback")
        world.report_all(["stg-1", "can-2"], "deployed")
        world.clock.tick(10)
        world.reconcile()
        line.mark("rolled back")

        world.fleet.release("nav", "1.2.0", config_schema=SCHEMA, signers=[])  # nobody signed it
        world.fleet.rollout("nav", app="nav", release="1.2.0", cohorts=["staging"])
        _merge(line, mp, "unsigned", "nav 1.2.0, unsigned")
        world.clock.tick(5)
        assert reconcile_once(world.settings).stalled is not None
        line.mark("stalled")
        yield line


def ask(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path, device: str, *args: str
) -> tuple[int, str, str]:
    remote = ["--repo", str(timeline.world.server), "--cache", str(tmp_path / "ops-cache")]
    return fleetcd(capsys, "history", device, *args, *remote)


def at_json(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path, device: str, instant: str
) -> dict[str, Any]:
    code, out, err = ask(
        timeline, capsys, tmp_path, device, "--at", timeline.at[instant].isoformat(), "-o", "json"
    )
    assert code == 0, err
    answer: dict[str, Any] = json.loads(out)
    return answer


def nav(answer: dict[str, Any]) -> dict[str, Any]:
    (app,) = answer["apps"]
    assert app["app"] == "nav"
    return app


def config_of(speed: float) -> str:
    sha = merged_sha256({"max_speed_mps": speed})
    assert sha is not None
    return sha


# --- the timeline -------------------------------------------------------------------------------


def test_before_the_fleet_existed_nothing_ran_and_the_answer_says_why(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    before = (FIRST_COMMIT - timedelta(days=1)).isoformat()
    code, out, err = ask(timeline, capsys, tmp_path, "can-2", "--at", before, "-o", "json")
    assert code == 0, err
    answer = json.loads(out)
    assert (answer["state_commit"], answer["apps"], answer["report"]) == (None, [], None)
    assert any("before the fleet existed" in note for note in answer["notes"])
    code, table, _ = ask(timeline, capsys, tmp_path, "can-2", "--at", before)
    assert "nothing installed yet" in table and "had not reported" in table

    between = (START - timedelta(minutes=5)).isoformat()  # main exists, the controller has not run
    answer = json.loads(ask(timeline, capsys, tmp_path, "can-2", "--at", between, "-o", "json")[1])
    assert answer["apps"] == [] and not any("before the fleet existed" in n for n in answer["notes"])
    assert any("before the controller's first state commit" in note for note in answer["notes"])


def test_a_robot_whose_wave_has_not_started_has_nothing_installed_yet(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    answer = at_json(timeline, capsys, tmp_path, "can-2", "staging dispatched")
    assert answer["state_commit"]["main_commit"] == timeline.main["1.0.0"]
    assert answer["apps"] == [] and answer["report"] is None


def test_dispatched_but_not_yet_applied_names_what_was_handed_and_who_approved_it(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    app = nav(at_json(timeline, capsys, tmp_path, "stg-1", "staging dispatched"))
    assert (app["state"], app["running"]) == ("dispatched", None)
    handed_1 = app["handed"]
    assert (handed_1["version"], handed_1["generation"], handed_1["action"]) == ("1.0.0", 1, "deploy")
    assert handed_1["requested_by"]["id"] == timeline.main["1.0.0"]
    assert handed_1["requested_by"]["subject"] == "nav 1.0.0 to the whole fleet"
    approvers = handed_1["approvals"]["approvers"]
    assert [a["name"] for a in approvers] == ["alice", "bob"]
    assert {a["commit"]["id"] for a in approvers} == {timeline.main["1.0.0"]}  # where each signature came in
    assert handed_1["approvals"]["commit"]["id"] == timeline.main["1.0.0"]
    assert (handed_1["wave"]["name"], handed_1["wave"]["phase"]) == ("staging", "running")
    assert handed_1["robot_activity"] is None  # the robot had said nothing of it


def test_applying_is_what_the_robot_reported_not_what_was_dispatched(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    answer = at_json(timeline, capsys, tmp_path, "can-2", "can-2 downloading")
    app = nav(answer)
    assert (app["state"], app["running"]) == ("applying", None)
    assert (app["handed"]["version"], app["handed"]["robot_activity"]) == ("1.0.0", "downloading")
    assert app["handed"]["wave"]["name"] == "canary"
    assert answer["report"]["deployments"][0]["activity"] == "downloading"
    progress = answer["report"]["progress"]  # a report pushed mid-download says how far it got
    assert (progress["done_bytes"], progress["total_bytes"]) == (1000, 4000)
    table = ask(timeline, capsys, tmp_path, "can-2", "--at", timeline.at["can-2 downloading"].isoformat())[1]
    assert "navstack" not in table and "nav: applying 1.0.0 (downloading); running nothing" in table
    assert "downloaded 1000 of 4000 bytes" in table


def test_running_names_version_digest_deployment_wave_gate_and_approvers(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    answer = at_json(timeline, capsys, tmp_path, "can-2", "1.0.0 everywhere")
    app = nav(answer)
    assert (app["state"], app["handed"]) == ("running", None)
    running = app["running"]
    assert (running["version"], running["rollout"], running["generation"]) == ("1.0.0", "nav", 1)
    assert running["robot_activity"] == "deployed" and running["deployment"].startswith("dep-")
    release = read_blob(
        pygit2.Repository(str(timeline.world.server)), "refs/heads/main", "releases/nav/1.0.0.yaml"
    )
    assert release is not None
    import hashlib

    assert running["release_sha256"] == hashlib.sha256(release).hexdigest()
    assert running["config_sha256"] == config_of(1.2)
    wave = running["wave"]
    assert (wave["index"], wave["name"], wave["phase"]) == (1, "canary", "passed")
    assert wave["gate"] == {
        "failure_threshold_count": 0,
        "failure_threshold_percent": None,
        "min_reported_percent": 100.0,
        "soak_seconds": 60,
        "manual_promotion": False,
    }
    assert (wave["decided_counts"]["total"], wave["decided_counts"]["succeeded"]) == (3, 3)
    assert {a["name"] for a in running["approvals"]["approvers"]} == {"alice", "bob"}
    assert answer["report"]["deployments"][0]["deployment"] == running["deployment"]


def test_a_config_change_is_a_new_deployment_of_the_same_version(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    before = nav(at_json(timeline, capsys, tmp_path, "can-2", "1.0.0 everywhere"))["running"]
    after = nav(at_json(timeline, capsys, tmp_path, "can-2", "config everywhere"))["running"]
    assert (after["version"], after["generation"]) == ("1.0.0", 2)
    assert after["deployment"] != before["deployment"]
    assert (before["config_sha256"], after["config_sha256"]) == (config_of(1.2), config_of(0.9))
    assert after["requested_by"]["id"] == timeline.main["config"]
    assert after["config_files"] == ["configs/nav/default.yaml"]


def test_mid_rollback_the_robot_still_runs_the_failed_release_and_is_handed_the_old_one(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    answer = at_json(timeline, capsys, tmp_path, "can-2", "mid-rollback")
    app = nav(answer)
    assert app["state"] == "dispatched"
    last = answer["report"]  # the robot's own last word before the instant
    assert [(d["version"], d["activity"]) for d in last["deployments"]] == [("1.1.0", "deployed")]
    assert datetime.fromisoformat(last["reported_at"]) <= timeline.at["mid-rollback"]
    running, back = app["running"], app["handed"]
    assert (running["version"], running["generation"], running["action"]) == ("1.1.0", 3, "deploy")
    assert running["rollout_state"]["phase"] == "rolling_back"
    assert (running["wave"]["phase"], running["wave"]["decided_counts"]["failed"]) == ("failed", 1)
    assert (back["version"], back["action"], back["generation"]) == ("1.0.0", "rollback", 3)
    assert back["config_sha256"] == config_of(0.9)  # what the robot ran before 1.1.0
    # The rollback restores what generation 2 put out, under generation 2's approvals.
    assert (back["approvals"]["generation"], back["approvals"]["commit"]["id"]) == (
        2,
        timeline.main["config"],
    )
    assert {a["commit"]["id"] for a in back["approvals"]["approvers"]} == {timeline.main["config"]}
    table = ask(timeline, capsys, tmp_path, "can-2", "--at", timeline.at["mid-rollback"].isoformat())[1]
    assert "rollback to 1.0.0 dispatched, not yet applied; running 1.1.0" in table


def test_mid_rollback_applying_then_rolled_back(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    applying = nav(at_json(timeline, capsys, tmp_path, "can-2", "can-2 applying its rollback"))
    assert (applying["state"], applying["running"]["version"]) == ("applying", "1.1.0")
    assert applying["handed"]["robot_activity"] == "applying"
    done = nav(at_json(timeline, capsys, tmp_path, "can-2", "rolled back"))
    assert (done["state"], done["running"]["version"], done["running"]["action"]) == (
        "rolled_back",
        "1.0.0",
        "rollback",
    )
    assert done["handed"] is None


def test_the_robot_that_failed_runs_what_it_ran_before(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    app = nav(at_json(timeline, capsys, tmp_path, "can-1", "mid-rollback"))
    assert app["state"] == "failed"
    assert (app["running"]["version"], app["running"]["generation"]) == ("1.0.0", 2)
    assert (app["handed"]["version"], app["handed"]["robot_message"]) == ("1.1.0", "probe failed")


def test_commit_answers_as_of_the_state_commit_that_processed_it(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = ask(
        timeline, capsys, tmp_path, "stg-1", "--commit", timeline.main["1.1.0"][:10], "-o", "json"
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["main_commit"] == timeline.main["1.1.0"]
    assert answer["state_commit"]["main_commit"] == timeline.main["1.1.0"]
    app = nav(answer)
    assert (app["state"], app["running"]["version"], app["running"]["generation"]) == (
        "dispatched",
        "1.0.0",
        2,
    )
    assert app["handed"]["version"] == "1.1.0"


# --- refusals -----------------------------------------------------------------------------------


def test_an_unknown_robot_exits_1_naming_it(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = ask(timeline, capsys, tmp_path, "stg-9", "--at", "-1h")
    assert (code, out) == (Exit.INVALID, "")
    assert "no robot 'stg-9'" in err


def test_an_instant_in_the_future_is_refused(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    code, out, err = ask(timeline, capsys, tmp_path, "can-2", "--at", future)
    assert (code, out) == (Exit.USAGE, "")
    assert "in the future" in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--at", "2026-05-04T09:00:00"], "no UTC offset"),
        (["--at", "yesterday"], "neither an ISO 8601 time"),
        (["--commit", "0123456789abcdef"], "names no commit"),
        (["--at", "-1h", "--commit", "HEAD"], "exclude each other"),
        (["--status-shard", "north=/nowhere.git"], "goes with --at or --commit"),
    ],
    ids=["no-offset", "not-a-time", "unknown-commit", "both", "shards-without-an-instant"],
)
def test_bad_instants_exit_2_saying_what_is_accepted(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], says: str
) -> None:
    code, out, err = ask(timeline, capsys, tmp_path, "can-2", *args)
    assert (code, out, says in err) == (Exit.USAGE, "", True), err


def test_json_and_yaml_carry_the_same_answer(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import yaml

    instant = timeline.at["mid-rollback"].isoformat()
    as_json = json.loads(ask(timeline, capsys, tmp_path, "can-2", "--at", instant, "-o", "json")[1])
    as_yaml = yaml.safe_load(ask(timeline, capsys, tmp_path, "can-2", "--at", instant, "-o", "yaml")[1])
    assert as_json == as_yaml
    assert set(as_json) == {"device", "at", "main_commit", "state_commit", "apps", "report", "notes"}
    assert set(nav(as_json)) == {"app", "state", "running", "handed"}
    assert {"version", "release_sha256", "deployment", "rollout", "generation", "wave", "approvals"} <= set(
        nav(as_json)["running"]
    )


# --- the decisions, as tables -------------------------------------------------------------------

AT = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def _record(
    action: Action = Action.DEPLOY, target: TargetStatus = TargetStatus.DEPLOYED, minute: int = 0
) -> Any:
    return new_deployment(
        rollout="nav",
        generation=1 + minute,
        device="r1",
        app="nav",
        version="1.0.0",
        release_sha256="a" * 64,
        wave=0,
        action=action,
        target_status=target,
        at=AT + timedelta(minutes=minute),
        deadline_at=None,
    )


def _said(activity: str, error: str = "none", deployment: str | None = None) -> DeploymentReport:
    return DeploymentReport.model_validate(
        {
            "deployment_id": deployment or _record().id,
            "app": "nav",
            "version": "1.0.0",
            "activity": activity,
            "error": error,
            "updated_at": AT,
        }
    )


@pytest.mark.parametrize(
    ("action", "said", "running", "state"),
    [
        (None, None, False, RanState.NOTHING_INSTALLED),
        (None, None, True, RanState.RUNNING),
        (Action.DEPLOY, None, True, RanState.DISPATCHED),
        (Action.DEPLOY, ("queued", "retrying"), False, RanState.DISPATCHED),
        (Action.DEPLOY, ("watching", "none"), True, RanState.APPLYING),
        (Action.DEPLOY, ("applying", "retrying"), True, RanState.APPLYING),
        (Action.DEPLOY, ("applying", "failed"), True, RanState.FAILED),
        (Action.DEPLOY, ("deployed", "none"), True, RanState.RUNNING),
        (Action.ROLLBACK, ("deployed", "none"), True, RanState.ROLLED_BACK),
        (Action.DEPLOY, ("rolled_back", "none"), True, RanState.ROLLED_BACK),
        (Action.DEPLOY, ("failed", "failed"), True, RanState.FAILED),
    ],
    ids=[
        "nothing",
        "running-nothing-handed",
        "handed-unmentioned",
        "deferred-by-a-gate",
        "watching-health",
        "retrying",
        "failed-while-applying",
        "deployed",
        "rollback-deployed",
        "agent-rolled-back",
        "failed",
    ],
)
def test_robot_state_decision_table(
    action: Action | None, said: tuple[str, str] | None, running: bool, state: RanState
) -> None:
    record = _record(action) if action is not None else None
    report = _said(*said) if said is not None else None
    assert robot_state(record, report, running) is state


def _report(seq: int, *said: DeploymentReport) -> StatusReport:
    return StatusReport.model_validate(
        {
            "format": "fleetcd.dev/status/v1",
            "device": "r1",
            "seq": seq,
            "agent_version": "t",
            "reported_at": AT,
            "deployments": list(said),
        }
    )


def test_a_deployment_a_later_report_rolled_back_is_not_what_runs() -> None:
    old, new = "dep-" + "1" * 24, "dep-" + "2" * 24
    newest_first = [
        _report(3, _said("rolled_back", deployment=new)),
        _report(2, _said("deployed", deployment=new)),
        _report(1, _said("deployed", deployment=old)),
    ]
    assert running_ids(newest_first, {"nav"})["nav"].deployment_id == old
    assert running_ids(newest_first[1:], {"nav"})["nav"].deployment_id == new
    assert running_ids([], {"nav"}) == {}


def test_the_handed_deployment_is_the_newest_not_archived() -> None:
    first, second = _record(minute=0), _record(minute=1, target=TargetStatus.ARCHIVED)
    assert handed([first, second], "nav") == first
    assert handed([second], "nav") is None
    assert handed([first], "other") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-04T18:05:00+09:00", datetime(2026, 5, 4, 9, 5, tzinfo=UTC)),
        ("2026-05-04T09:05:00Z", datetime(2026, 5, 4, 9, 5, tzinfo=UTC)),
        ("-2h", AT - timedelta(hours=2)),
        ("-1d12h", AT - timedelta(days=1, hours=12)),
        ("-90s", AT - timedelta(seconds=90)),
    ],
    ids=["offset", "zulu", "hours", "days-and-hours", "seconds"],
)
def test_instants_accept_an_offset_or_an_age(text: str, expected: datetime) -> None:
    assert parse_instant(text, AT) == expected


@pytest.mark.parametrize("text", ["2026-05-04 09:05", "-", "-2x", "-999999d", "+2h"], ids=str)
def test_instants_without_an_offset_or_unbounded_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(text) if text != "-" else "neither"):
        parse_instant(text, AT)


def _as_older_controllers_wrote(path: str, data: bytes) -> bytes:
    """Without what this controller adds: waves' gate numbers and decided counts, records' commit."""
    doc = json.loads(data)
    if path.startswith("rollouts/"):
        new = ("gate", "decided_counts")
        doc["waves"] = [{k: v for k, v in w.items() if k not in new} for w in doc["waves"]]
    else:
        doc["records"] = [{k: v for k, v in r.items() if k != "commit"} for r in doc["records"]]
    return json.dumps(doc).encode()


def test_states_written_before_the_fields_existed_answer_unknown(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A state commit as an older controller wrote it: no gate numbers, no decided counts, records
    without their main commit. The answer says what is unknown instead of guessing."""
    repo = pygit2.Repository(str(timeline.world.server))
    head = ref_target(repo, STATE_BRANCH)
    assert head is not None
    paths = ("rollouts/nav.json", device_file("can-2"))
    old = {path: _as_older_controllers_wrote(path, read_blob(repo, head, path) or b"") for path in paths}
    when = timeline.world.clock.now + timedelta(seconds=100)
    tree = write_tree(repo, old, tree_of(repo, head))
    commit(repo, STATE_BRANCH, tree, "as an older controller wrote it", [head], OLDER, when)

    instant = (when + timedelta(seconds=1)).isoformat()
    code, out, err = ask(timeline, capsys, tmp_path, "can-2", "--at", instant, "-o", "json")
    assert code == 0, err
    running = nav(json.loads(out))["running"]
    assert running["version"] == "1.0.0"
    assert running["wave"]["gate"].startswith("unknown (recorded before")
    assert running["wave"]["decided_counts"] is None
    assert running["commit"].startswith("unknown (recorded before")
    table = ask(timeline, capsys, tmp_path, "can-2", "--at", instant)[1]
    assert "gate: unknown (recorded before" in table


def test_an_unreadable_report_is_skipped_and_said_never_believed(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo = pygit2.Repository(str(timeline.world.server))
    ref = status_ref("can-1")
    parent = ref_target(repo, ref)
    assert parent is not None
    when = timeline.world.clock.now + timedelta(seconds=300)
    junk = write_tree(
        repo, {STATUS_FILE: b'{"format": "fleetcd.dev/status/v1", "device": "can-1", "seq": 1e999}'}
    )
    commit(repo, ref, junk, "status of can-1", [parent], ROBOT, when)

    instant = (when + timedelta(seconds=1)).isoformat()
    code, out, err = ask(timeline, capsys, tmp_path, "can-1", "--at", instant, "-o", "json")
    assert code == 0, err
    answer = json.loads(out)
    assert "1 of the robot's reports were unreadable and skipped" in answer["notes"]
    assert answer["report"]["deployments"][0]["message"] == "probe failed"  # the last readable one


def test_attack_a_report_with_a_repeated_key_that_ingest_refused_is_never_what_history_believes(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """json.loads keeps the last of a repeated key, so '"activity": "failed", ... "activity":
    "deployed"' reads as deployed; ingest refuses such a report (duplicate_key), and so must the
    answer to what ran."""
    repo = pygit2.Repository(str(timeline.world.server))
    ref = status_ref("can-1")
    parent = ref_target(repo, ref)
    assert parent is not None
    honest = read_blob(repo, parent, STATUS_FILE)
    assert honest is not None
    forged = (
        honest.decode()
        .replace('"seq":', '"seq": 999999, "seq":', 1)
        .replace('"message": "probe failed"', '"message": "probe failed", "message": "all good"', 1)
    )
    assert forged.count('"seq":') == 2
    when = timeline.world.clock.now + timedelta(seconds=300)
    commit(
        repo, ref, write_tree(repo, {STATUS_FILE: forged.encode()}), "status of can-1", [parent], ROBOT, when
    )

    instant = (when + timedelta(seconds=1)).isoformat()
    code, out, err = ask(timeline, capsys, tmp_path, "can-1", "--at", instant, "-o", "json")
    assert code == 0, err
    answer = json.loads(out)
    skipped = "of the robot's reports were unreadable and skipped"
    assert any(note.endswith(skipped) for note in answer["notes"])
    assert answer["report"]["deployments"][0]["message"] == "probe failed"  # not the forged "all good"


def _genuine_report(repo: pygit2.Repository, device: str) -> dict[str, Any]:
    """The newest report on ``device``'s status ref that parses as its own and is no forgery of
    the test below."""
    tip = ref_target(repo, status_ref(device))
    assert tip is not None
    for entry in repo.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL):
        data = read_blob(repo, entry.id, STATUS_FILE)
        try:
            StatusReport.model_validate_json(data or b"")
        except ValueError:
            continue
        report: dict[str, Any] = json.loads(data or b"")
        forged = any(d.get("message") == "forged" for d in report["deployments"])
        if report["device"] == device and not forged:
            return report
    raise AssertionError(f"no readable report of {device}")


def _forged_as_another_robot(report: dict[str, Any], when: datetime) -> bytes:
    forged = {**report, "device": "can-2", "seq": report["seq"] + 100, "reported_at": when.isoformat()}
    forged["deployments"] = [{**d, "message": "forged"} for d in report["deployments"]]
    return json.dumps(forged).encode()


def _oversized(report: dict[str, Any], when: datetime) -> bytes:
    padded = {**report, "seq": report["seq"] + 200, "reported_at": when.isoformat()}
    padded["deployments"] = [{**d, "message": "forged"} for d in report["deployments"]]
    text = json.dumps(padded).encode()
    return text[:-1] + b" " * MAX_REPORT_BYTES + b"}"  # valid JSON, a valid report: only the cap refuses it


def _dated_after_the_instant(report: dict[str, Any], when: datetime) -> bytes:
    """Committed before T, but the report itself says it was made a day after T."""
    later = {**report, "seq": report["seq"] + 300, "reported_at": (when + timedelta(days=1)).isoformat()}
    later["deployments"] = [{**d, "message": "forged"} for d in report["deployments"]]
    return json.dumps(later).encode()


@pytest.mark.parametrize(
    ("offset", "forge"),
    [(400, _forged_as_another_robot), (500, _oversized), (600, _dated_after_the_instant)],
    ids=["claims-another-robot", "over-the-size-cap", "reported-after-the-instant"],
)
def test_a_report_the_robot_could_not_have_made_then_is_never_what_history_believes(
    timeline: Timeline,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    offset: int,
    forge: Callable[[dict[str, Any], datetime], bytes],
) -> None:
    """can-1 (or whoever holds its key) appends to its own status ref: a report in another robot's
    name, one over the size cap, one whose own timestamp is after the instant asked about. None of
    them is the robot's last report as of that instant."""
    repo = pygit2.Repository(str(timeline.world.server))
    ref = status_ref("can-1")
    parent = ref_target(repo, ref)
    assert parent is not None
    genuine = _genuine_report(repo, "can-1")
    when = timeline.world.clock.now + timedelta(seconds=offset)
    commit(repo, ref, write_tree(repo, {STATUS_FILE: forge(genuine, when)}), "status", [parent], ROBOT, when)

    instant = (when + timedelta(seconds=1)).isoformat()
    code, out, err = ask(timeline, capsys, tmp_path, "can-1", "--at", instant, "-o", "json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["report"]["seq"] == genuine["seq"]
    assert all(d["message"] != "forged" for d in answer["report"]["deployments"])


def test_with_status_shards_the_reports_come_from_the_robots_own_shard(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    names = ["north", "south"]
    owner = shard_of("can-2", names)
    servers = {name: bare_repo(tmp_path / f"{name}.git") for name in names}
    ref = status_ref("can-2")
    git("-C", str(timeline.world.server), "push", "-q", str(servers[owner]), ref)
    shard = pygit2.Repository(str(servers[owner]))
    parent = ref_target(shard, ref)
    assert parent is not None
    last = StatusReport.model_validate_json(read_blob(shard, ref, STATUS_FILE) or b"")
    when = timeline.world.clock.now + timedelta(seconds=400)
    only_there = last.model_copy(update={"seq": last.seq + 100, "reported_at": when})
    tree = write_tree(shard, {STATUS_FILE: only_there.model_dump_json().encode()})
    commit(shard, ref, tree, "status of can-2", [parent], ROBOT, when)

    instant = (when + timedelta(seconds=1)).isoformat()
    flags = [f"--status-shard={name}={servers[name]}" for name in names]
    code, out, err = ask(timeline, capsys, tmp_path, "can-2", "--at", instant, *flags, "-o", "json")
    assert code == 0, err
    assert json.loads(out)["report"]["seq"] == only_there.seq  # its shard's newest, not the primary's
    primary = json.loads(ask(timeline, capsys, tmp_path, "can-2", "--at", instant, "-o", "json")[1])
    assert primary["report"]["seq"] == last.seq

    down = [f"--status-shard={name}={tmp_path / 'gone' / name}.git" for name in names]
    code, out, err = ask(timeline, capsys, tmp_path / "fresh", "can-2", "--at", instant, *down, "-o", "json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["report"] is None
    assert any(f"status shard {owner} did not answer" in note for note in answer["notes"])
    assert any("no status ref of the robot in its status shard" in note for note in answer["notes"])


def test_an_approval_is_dated_by_the_commit_that_brought_its_signature_to_main(timeline: Timeline) -> None:
    repo = pygit2.Repository(str(timeline.world.server))
    head = timeline.main["1.1.0"]
    # The release file never changed after the first commit: the walk goes back across two merges.
    assert brought_to_main(repo, head, "releases/nav/1.0.0.yaml") == timeline.main["1.0.0"]
    approvals = [e.name for e in repo.revparse_single(f"{head}:approvals/nav").peel(pygit2.Tree)]
    assert len(approvals) == 2
    for name in approvals:
        path = f"approvals/nav/{name}"
        assert brought_to_main(repo, head, path) == head  # re-signed for 1.1.0
        assert brought_to_main(repo, timeline.main["config"], path) == timeline.main["config"]
    assert brought_to_main(repo, head, "approvals/nav/0000.asc") is None


def test_a_version_the_robot_says_it_runs_without_a_deployment_in_reach_is_still_what_ran(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """prod-4 was only ever handed deployments that were superseded before it started; it says it
    runs 0.9.0 (installed before fleetcd, say). What ran is its word, with no deployment to name."""
    when = timeline.world.clock.now + timedelta(seconds=500)
    timeline.world.sim.push_report("prod-4", when, apps=[{"app": "nav", "current": "0.9.0"}])
    instant = (when + timedelta(seconds=1)).isoformat()
    code, out, err = ask(timeline, capsys, tmp_path, "prod-4", "--at", instant, "-o", "json")
    assert code == 0, err
    app = nav(json.loads(out))
    assert (app["state"], app["running"], app["handed"]) == (
        "running",
        {"version": "0.9.0", "deployment": None},
        None,
    )
    table = ask(timeline, capsys, tmp_path, "prod-4", "--at", instant)[1]
    assert "nav: running 0.9.0" in table and "no report in reach names its deployment" in table


def test_a_commit_the_controller_stalled_on_answers_as_of_the_stall(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    unsigned = timeline.main["unsigned"]
    code, out, err = ask(timeline, capsys, tmp_path, "stg-1", "--commit", unsigned, "-o", "json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["state_commit"]["main_commit"] == timeline.main["1.1.0"]  # the last one applied
    assert any(f"stalled on main commit {unsigned[:12]}" in note for note in answer["notes"])
    app = nav(answer)
    assert (app["state"], app["running"]["version"], app["handed"]) == ("rolled_back", "1.0.0", None)
    assert datetime.fromisoformat(answer["at"]) < timeline.at["stalled"]


def test_a_commit_the_controller_has_not_processed_yet_exits_1(
    timeline: Timeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    timeline.world.fleet.file("README.md", "merged, not reconciled yet\n")
    with pytest.MonkeyPatch.context() as mp:
        _merge(timeline, mp, "unprocessed", "a readme")
    new = timeline.main["unprocessed"]
    code, out, err = ask(timeline, capsys, tmp_path, "can-2", "--commit", new)
    assert (code, out) == (Exit.INVALID, "")
    assert f"no state commit has processed main commit {new[:12]} yet" in err
