"""Rollouts that silently do nothing are warned about, and fail under ``--strict`` (issue 10, point 9).

The mistakes: a wave that selects no robot (it passes at once, nothing soaks), robots that fall in
no wave (never updated), a targeted cohort with no robots, a rollout whose every target is skipped,
a canary that takes every robot, a rolling batch that covers the whole target. Each is a warning
with ``file:line: field``; ``fleetcd validate --strict`` makes it an error. Waves come from the
planning code, so ``validate`` and ``plan`` name the same robots.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.cli.validate import validate_command as command
from fleetcd.cli.main import guarded
from fleetcd.loading.fleetspec import load_spec
from fleetcd.planning.plan import build_plan
from fleetcd.planning.render import render_text
from fleetcd.validation import validate_snapshot
from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import KeyFactory

ROLLOUT = "rollouts/nav-1-0-0.yaml"
NOTHING = ("no_effect", "warning")  # reason and severity of every warning here


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    return FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()


def waves_rollout(fleet: FleetRepoBuilder, waves: list[dict[str, Any]], **overrides: Any) -> None:
    targets = overrides.pop("cohorts", ["canary", "production"])
    strategy = {"type": "waves", "waves": waves}
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=targets, strategy=strategy, **overrides)


def issue_fleet(fleet: FleetRepoBuilder) -> None:
    """The issue's fleet: wave 1 names a cohort that matches nobody, wave 2 covers only staging."""
    for index in (5, 6):
        fleet.device(f"amr-00{index}")
    fleet.cohort("production", ["amr-002", "amr-003", "amr-004", "amr-005"], stage="production")
    fleet.cohort("staging", ["amr-006"], stage="staging")
    fleet.cohort("lab", stage="staging", devices=[], selector={"sites": ["lab"]})
    waves_rollout(
        fleet,
        [{"name": "lab", "cohort": "lab"}, {"name": "staging", "cohort": "staging"}],
        cohorts=["staging", "canary", "production"],
    )
    fleet.write()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = guarded(lambda: command.main(args=list(args), prog_name="fleetcd validate", standalone_mode=False))
    out, err = capsys.readouterr()
    return code, out + err


# --- a wave that selects no robot --------------------------------------------------------------------


def test_first_wave_matching_nobody_warns(fleet: FleetRepoBuilder) -> None:
    issue_fleet(fleet)
    result = fleet.validate()
    wave_line = fleet.line_of(ROLLOUT, "name: lab")
    assert (ROLLOUT, wave_line, "strategy.waves[0]", *NOTHING) in found(result)
    [warning] = [d for d in result.warnings if d.field == "strategy.waves[0]"]
    assert warning.message.startswith(
        "wave 1 'lab' (cohort 'lab') selects no robot: cohort 'lab' has no robots; "
        "an empty wave passes at once"
    )
    assert result.ok  # a warning, not an error


def test_wave_whose_cohort_has_robots_but_none_targeted_warns(fleet: FleetRepoBuilder) -> None:
    fleet.device("amr-009", site="lab")
    fleet.cohort("lab", ["amr-009"], stage="staging")
    waves_rollout(fleet, [{"name": "lab", "cohort": "lab"}, {"name": "rest", "percent": 100}])
    fleet.write()
    result = fleet.validate()
    assert found(result) == [(ROLLOUT, fleet.line_of(ROLLOUT, "name: lab"), "strategy.waves[0]", *NOTHING)]
    assert (
        "cohort 'lab' has 1 robot, none of them among this rollout's 4 eligible robots"
        in result.warnings[0].message
    )


def test_wave_after_a_wave_that_took_everyone_warns(fleet: FleetRepoBuilder) -> None:
    waves_rollout(fleet, [{"name": "all", "percent": 100}, {"name": "canary", "cohort": "canary"}])
    fleet.write()
    result = fleet.validate()
    assert found(result) == [(ROLLOUT, fleet.line_of(ROLLOUT, "name: canary"), "strategy.waves[1]", *NOTHING)]
    assert result.warnings[0].message.startswith(
        "wave 2 'canary' (cohort 'canary') selects no robot: "
        "every eligible robot of cohort 'canary' (1) is already in an earlier wave"
    )


def test_empty_wave_of_the_fleet_default_strategy_is_reported_in_fleet_yaml(fleet: FleetRepoBuilder) -> None:
    fleet.cohort("staging", stage="staging", devices=[], selector={"sites": ["lab"]})
    fleet.fleet["defaults"] = {
        "strategy": {
            "type": "waves",
            "waves": [{"name": "staging", "cohort": "staging"}, {"name": "rest", "percent": 100}],
        }
    }
    fleet.write()
    result = fleet.validate()
    assert found(result) == [
        ("fleet.yaml", fleet.line_of("fleet.yaml", "name: staging"), "defaults.strategy.waves[0]", *NOTHING)
    ]
    assert result.warnings[0].message.startswith(
        "rollout 'nav-1-0-0' (rollouts/nav-1-0-0.yaml) inherits this default strategy: wave 1 'staging'"
    )


# --- robots in no wave -------------------------------------------------------------------------------


def test_robots_in_no_wave_warn_with_their_count(fleet: FleetRepoBuilder) -> None:
    issue_fleet(fleet)
    result = fleet.validate()
    assert (ROLLOUT, fleet.line_of(ROLLOUT, "waves:"), "strategy.waves", *NOTHING) in found(result)
    [warning] = [d for d in result.warnings if d.field == "strategy.waves"]
    assert warning.message.startswith(
        "5 of 6 eligible robots are in no wave and never updated: "
        "amr-001, amr-002, amr-003, amr-004, amr-005;"
    )


def test_many_robots_in_no_wave_name_the_first_few_and_count_the_rest(fleet: FleetRepoBuilder) -> None:
    production = [f"amr-1{index:02d}" for index in range(12)]
    for device in production:
        fleet.device(device)
    fleet.cohort("production", production, stage="production")
    waves_rollout(fleet, [{"name": "canary", "cohort": "canary"}])
    fleet.write()
    [warning] = fleet.validate().warnings
    assert warning.message.startswith(
        "12 of 13 eligible robots are in no wave and never updated: "
        "amr-100, amr-101, amr-102, amr-103, amr-104 (+7 more);"
    )


def test_validate_and_plan_agree_on_empty_waves_and_robots_in_no_wave(fleet: FleetRepoBuilder) -> None:
    issue_fleet(fleet)
    spec, _ = load_spec(fleet.snapshot())
    [planned] = build_plan(spec).rollouts
    assert "in no wave (never updated): 5" in render_text(build_plan(spec))
    warnings = {d.field: d.message for d in fleet.validate().warnings}
    assert [w.name for w in planned.waves if w.empty] == ["lab"]
    assert "wave 1 'lab'" in warnings["strategy.waves[0]"]
    assert f"{len(planned.unplaced)} of {len(planned.eligible)} eligible robots" in warnings["strategy.waves"]
    assert ", ".join(planned.unplaced) in warnings["strategy.waves"]


# --- rollouts and strategies that update nobody or hold nobody back ------------------------------------


def test_rollout_targeting_a_cohort_with_no_devices_warns(fleet: FleetRepoBuilder) -> None:
    fleet.cohort("night-shift", stage="canary", devices=[], selector={"sites": ["moon"]})
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["canary", "production", "night-shift"])
    fleet.write()
    result = fleet.validate()
    line = fleet.line_of(ROLLOUT, "- night-shift")
    assert found(result) == [(ROLLOUT, line, "targets.cohorts[2]", *NOTHING)]
    assert result.warnings[0].message.startswith("cohort 'night-shift' has no robots")


def test_rollout_whose_every_target_is_incompatible_warns(fleet: FleetRepoBuilder) -> None:
    fleet.release("nav", "1.1.0", config_schema={"type": "object"}, compatibility={"models": ["mk3"]})
    fleet.rollout("nav-1-0-0", app="nav", release="1.1.0", cohorts=["canary"])
    fleet.write()
    result = fleet.validate()
    assert found(result) == [(ROLLOUT, fleet.line_of(ROLLOUT, "targets:"), "targets", *NOTHING)]
    assert result.warnings[0].message == (
        "updates no robot: the 1 targeted robot is skipped (incompatible_hardware: amr-001)"
    )


def test_canary_that_takes_every_robot_warns(fleet: FleetRepoBuilder) -> None:
    # 70 % of 3 rounds up to all 3: the 'rest' wave is empty and no robot is held back
    strategy = {"type": "canary", "percent": 70}
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["production"], strategy=strategy)
    fleet.write()
    result = fleet.validate()
    assert found(result) == [(ROLLOUT, fleet.line_of(ROLLOUT, "percent:"), "strategy.percent", *NOTHING)]
    assert "canary percent 70 of 3 eligible robots takes all 3" in result.warnings[0].message


def test_tiny_canary_percent_still_takes_one_robot_and_is_fine(fleet: FleetRepoBuilder) -> None:
    # "a canary percent that rounds to 0 robots" cannot happen: planning rounds up, at least 1
    strategy = {"type": "canary", "percent": 0.1}
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["production"], strategy=strategy)
    fleet.write()
    spec, _ = load_spec(fleet.snapshot())
    assert [len(w.devices) for w in build_plan(spec).rollouts[0].waves] == [1, 2]
    assert fleet.validate().diagnostics == ()


def test_rolling_batch_larger_than_the_target_warns(fleet: FleetRepoBuilder) -> None:
    strategy = {"type": "rolling", "batch_size": 25, "delay_seconds": 600}
    fleet.rollout(
        "nav-1-0-0", app="nav", release="1.0.0", cohorts=["canary", "production"], strategy=strategy
    )
    fleet.write()
    result = fleet.validate()
    line = fleet.line_of(ROLLOUT, "batch_size:")
    assert found(result) == [(ROLLOUT, line, "strategy.batch_size", *NOTHING)]
    assert result.warnings[0].message.startswith("rolling batch_size 25 covers all 4 eligible robots")


def test_fleet_default_rolling_batch_covering_the_target_is_reported_in_fleet_yaml(
    fleet: FleetRepoBuilder,
) -> None:
    fleet.fleet["defaults"] = {"strategy": {"type": "rolling", "batch_size": 10}}
    fleet.write()
    result = fleet.validate()
    line = fleet.line_of("fleet.yaml", "batch_size:")
    assert found(result) == [("fleet.yaml", line, "defaults.strategy.batch_size", *NOTHING)]
    assert result.warnings[0].message.startswith("rollout 'nav-1-0-0' (rollouts/nav-1-0-0.yaml) inherits")


def _covering_waves(fleet: FleetRepoBuilder) -> None:
    waves_rollout(fleet, [{"name": "canary", "cohort": "canary"}, {"name": "rest", "percent": 100}])


def _small_batches(fleet: FleetRepoBuilder) -> None:
    strategy = {"type": "rolling", "batch_size": 2}
    fleet.rollout(
        "nav-1-0-0", app="nav", release="1.0.0", cohorts=["canary", "production"], strategy=strategy
    )


def _one_robot(fleet: FleetRepoBuilder) -> None:
    # one robot cannot be split into batches or a canary: nothing is promised, nothing is missed
    strategy = {"type": "rolling", "batch_size": 10}
    fleet.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["canary"], strategy=strategy)


def _all_at_once(fleet: FleetRepoBuilder) -> None:
    strategy = {"type": "all_at_once"}
    fleet.rollout(
        "nav-1-0-0", app="nav", release="1.0.0", cohorts=["canary", "production"], strategy=strategy
    )


def _aborted_with_an_empty_wave(fleet: FleetRepoBuilder) -> None:
    fleet.cohort("lab", stage="staging", devices=[], selector={"sites": ["lab"]})
    waves_rollout(fleet, [{"name": "lab", "cohort": "lab"}], aborted=True)


def _built_in_default(fleet: FleetRepoBuilder) -> None:
    pass  # no strategy anywhere: rolling, batch 10, over 4 robots; nothing the operator wrote


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(_covering_waves, id="waves-cover-everyone"),
        pytest.param(_small_batches, id="rolling-batch-smaller-than-target"),
        pytest.param(_one_robot, id="single-robot"),
        pytest.param(_all_at_once, id="all-at-once"),
        pytest.param(_aborted_with_an_empty_wave, id="aborted-rollout"),
        pytest.param(_built_in_default, id="built-in-default-strategy"),
    ],
)
def test_rollouts_that_do_what_they_say_do_not_warn(
    fleet: FleetRepoBuilder, setup: Callable[[FleetRepoBuilder], None]
) -> None:
    setup(fleet)
    fleet.write()
    assert fleet.validate().diagnostics == ()


def test_paused_rollout_with_an_empty_wave_still_warns(fleet: FleetRepoBuilder) -> None:
    # resuming takes no edit (and no review), so the mistake must show while it is paused
    fleet.cohort("lab", stage="staging", devices=[], selector={"sites": ["lab"]})
    waves_rollout(fleet, [{"name": "lab", "cohort": "lab"}, {"name": "rest", "percent": 100}], paused=True)
    fleet.write()
    assert [d.field for d in fleet.validate().warnings] == ["strategy.waves[0]"]


def test_no_guessing_while_a_device_file_is_broken(fleet: FleetRepoBuilder) -> None:
    # amr-001 does not load, so cohort 'canary' looks empty: that is the device file's error only
    fleet.device("amr-001", colour="red")
    fleet.write()
    assert [(d.file, d.severity) for d in fleet.validate().diagnostics] == [("devices/amr-001.yaml", "error")]


# --- --strict ----------------------------------------------------------------------------------------


def test_strict_turns_empty_wave_warning_into_failure(fleet: FleetRepoBuilder) -> None:
    issue_fleet(fleet)
    lenient = validate_snapshot(fleet.snapshot())
    strict = validate_snapshot(fleet.snapshot(), strict=True)
    assert lenient.ok
    assert len(lenient.warnings) == 2
    assert not strict.ok
    assert strict.warnings == ()
    assert [(d.file, d.line, d.field, d.message) for d in strict.errors] == [
        (d.file, d.line, d.field, d.message) for d in lenient.warnings
    ]


def test_strict_cli_exits_1_on_an_empty_wave_that_otherwise_only_warns(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    issue_fleet(fleet)
    line = fleet.line_of(ROLLOUT, "name: lab")

    code, out = run_cli(capsys, "--repo", str(fleet.root))
    assert code == 0
    assert (
        f"{ROLLOUT}:{line}: warning: strategy.waves[0]: wave 1 'lab' (cohort 'lab') selects no robot" in out
    )
    # The file count follows the test fleet's layout (trust root, keys, signatures), not this rule.
    assert re.fullmatch(r"fleetcd validate: valid: 0 errors, 2 warnings in \d+ files", out.splitlines()[-1])

    code, out = run_cli(capsys, "--repo", str(fleet.root), "--strict")
    assert code == 1
    assert f"{ROLLOUT}:{line}: error: strategy.waves[0]: wave 1 'lab' (cohort 'lab') selects no robot" in out
    assert re.fullmatch(
        r"fleetcd validate: INVALID: 2 errors, 0 warnings in \d+ files \(strict: warnings count as errors\)",
        out.splitlines()[-1],
    )


def test_strict_cli_json_and_github_report_the_warnings_as_errors(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    issue_fleet(fleet)
    code, out = run_cli(capsys, "--repo", str(fleet.root), "--format", "github")
    assert code == 0
    assert [line.split(" ", 1)[0] for line in out.splitlines()[:-1]] == ["::warning", "::warning"]

    code, out = run_cli(capsys, "--repo", str(fleet.root), "--strict", "-o", "json")
    report = json.loads(out)
    assert (code, report["ok"], report["warnings"]) == (1, False, [])
    assert [(e["field"], e["severity"]) for e in report["errors"]] == [
        ("strategy.waves", "error"),
        ("strategy.waves[0]", "error"),
    ]


def test_strict_passes_a_clean_fleet(fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.write()
    code, out = run_cli(capsys, "--repo", str(fleet.root), "--strict")
    assert code == 0
    assert re.fullmatch(
        r"fleetcd validate: valid: 0 errors, 0 warnings in \d+ files \(strict: warnings count as errors\)\n",
        out,
    )
