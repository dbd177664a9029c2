"""The controller loop survives every content error and every bug, and records each on the state branch.

Each test breaks one reconcile the way it breaks in the field — a cut audit log, an illegal record
transition from the plan, a bundle naming the wrong rollout (``rollout_mismatch`` from the real
:func:`~controller.delivery.bundles.bundle_for`), a bug in a step — and runs the real loop
(:func:`controller.runner.run_forever`) for a few iterations on real git and gpg: it keeps going,
backs off only where it should, the rollout's status and ``state.json`` carry the reason, and
``fleetcd controller reconcile --once`` exits with the code docs/cli.md documents.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.cli import build
from controller.delivery import bundles
from controller.errors import IllegalTransition
from controller.reconcile import steps
from controller.reconcile.due import FULL_RECONCILE_EVERY
from controller.reconcile.result import ReconcileResult, StepResult
from controller.records.model import DeploymentRecord
from controller.runner import MAX_BACKOFF_SECONDS, backoff_seconds, run_forever
from controller.state.model import RolloutPhase
from fleetcd.cli.exitcodes import Exit
from fleetcd.cli.main import run
from fleetcd.git.objects import Identity, commit, list_refs, read_blob, ref_target, write_tree
from fleetcd.git.refs import NAMESPACES_PREFIX, STATE_BRANCH
from fleetcd.git.repo import tree_of
from tests.gpgkeys import KeyFactory
from tests.sim.world import STAGING, ControllerWorld, audit_lines, make_world

INTERVAL = 30.0


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    """Staging deployed and soaking: the next reconcile has work to do (and an audit log to keep)."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    world.reconcile()
    world.clock.tick(61)
    return world


class Loop:
    """The real loop, ``iterations`` times, with the waits and results it produced."""

    def __init__(self, world: ControllerWorld) -> None:
        self.world = world
        self.results: list[ReconcileResult] = []
        self.waits: list[float] = []

    def run(self, iterations: int) -> None:
        def wait(seconds: float) -> None:
            self.waits.append(seconds)
            self.world.clock.tick(5)

        run_forever(
            self.world.settings, INTERVAL, iterations=iterations, report=self.results.append, wait=wait
        )


def once(world: ControllerWorld, tmp_path: Path, keys: KeyFactory) -> int:
    """``fleetcd controller reconcile --once`` against the world's server, in this process."""
    argv = ["controller", "reconcile", "--once", "--repo", str(world.server)]
    argv += ["--cache", str(tmp_path / "cli-cache"), "--gnupghome", str(keys.home)]
    return run(build(), argv)


def assert_recorded(world: ControllerWorld, text: str) -> None:
    state = world.state()
    assert state.meta.stalled_reason is not None and text in state.meta.stalled_reason
    rollout = state.rollouts["nav"]
    assert rollout.phase is RolloutPhase.STALLED
    assert rollout.reason is not None and text in rollout.reason


def break_plan_with(error: Exception) -> Callable[..., Any]:
    def advance_rollout(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    return advance_rollout


def test_a_cut_audit_log_stalls_every_pass_and_the_loop_keeps_going(
    world: ControllerWorld, tmp_path: Path, keys: KeyFactory
) -> None:
    server = pygit2.Repository(str(world.server))
    meta = world.state().meta
    assert meta.audit_file is not None
    lines = (read_blob(server, STATE_BRANCH, meta.audit_file) or b"").splitlines(keepends=True)
    head = ref_target(server, STATE_BRANCH)
    assert head is not None
    tree = write_tree(server, {meta.audit_file: b"".join(lines[:-1])}, tree_of(server, head))
    commit(server, STATE_BRANCH, tree, "drop a line", [head], Identity("mallory", "m@x"), world.clock.now)

    loop = Loop(world)
    loop.run(3)

    assert [r.stalled is not None and "cut from the end" in r.stalled for r in loop.results] == [True] * 3
    assert loop.waits == [INTERVAL, INTERVAL]  # content is not retried faster: it waits for a commit
    assert_recorded(world, "cut from the end")
    state = world.state()
    assert b"".join(lines[:-1]) == state.audit[meta.audit_file]  # nothing appended to a broken log
    assert (state.meta.audit_seq, state.meta.audit_head) == (meta.audit_seq, meta.audit_head)
    assert once(world, tmp_path, keys) == Exit.INVALID


def test_an_illegal_transition_from_the_plan_stalls_and_the_loop_keeps_going(
    world: ControllerWorld, tmp_path: Path, keys: KeyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    illegal = IllegalTransition(
        "nav-g1-stg-1", "target_status", "archived", "deployed", "it only moves forward"
    )
    monkeypatch.setattr(steps, "advance_rollout", break_plan_with(illegal))

    loop = Loop(world)
    loop.run(3)

    assert len(loop.results) == 3 and all(r.stalled for r in loop.results)
    assert loop.waits == [INTERVAL, INTERVAL]
    assert_recorded(world, "cannot move from 'archived' to 'deployed'")
    assert [line["event"]["kind"] for line in audit_lines(world.state())].count("stalled") == 1
    assert once(world, tmp_path, keys) == Exit.INVALID

    monkeypatch.undo()  # a fixed controller picks up where the plan left off once it looks again
    world.clock.tick(FULL_RECONCILE_EVERY.total_seconds())
    fixed = world.reconcile()
    assert fixed.desired_refs > 0
    assert world.state().meta.stalled_reason is None
    assert world.state().rollouts["nav"].phase is RolloutPhase.PROGRESSING


def test_a_bundle_naming_the_wrong_rollout_stalls_and_the_loop_keeps_going(
    world: ControllerWorld, tmp_path: Path, keys: KeyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real delivery refuses a record whose version the rollout file does not name: the
    records a bundle carries are read through ``delivered_records``, by the inputs digest
    (controller.delivery.inputs) and by ``bundle_for`` alike."""
    real = bundles.delivered_records

    def mismatched(device: str, records: Sequence[DeploymentRecord]) -> list[DeploymentRecord]:
        chosen = real(device, records)
        if device == "stg-1":
            chosen = [r.model_copy(update={"version": "0.9.0"}) for r in chosen]
        return chosen

    monkeypatch.setattr(bundles, "delivered_records", mismatched)
    before = list_refs(pygit2.Repository(str(world.server)), NAMESPACES_PREFIX)

    loop = Loop(world)
    loop.run(2)

    assert len(loop.results) == 2 and all(
        r.stalled and "needs the approved rollout" in r.stalled for r in loop.results
    )
    assert all(r.desired_refs == 0 for r in loop.results)
    assert_recorded(world, "needs the approved rollout")
    assert once(world, tmp_path, keys) == Exit.INVALID
    after = list_refs(pygit2.Repository(str(world.server)), NAMESPACES_PREFIX)
    assert after == before  # no robot's desired state moved: nothing partial is applied


def test_a_bug_in_a_step_is_recorded_logged_and_retried_with_backoff(
    world: ControllerWorld,
    tmp_path: Path,
    keys: KeyFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def plan(ctx: Any) -> StepResult:
        calls.append(ctx.main)
        raise ValueError("wave 7 of 3")

    monkeypatch.setattr(steps, "STEPS", tuple(plan if s is steps.plan else s for s in steps.STEPS))

    loop = Loop(world)
    with caplog.at_level(logging.ERROR, logger="fleetcd.controller"):
        loop.run(3)

    assert len(calls) == 3 and loop.results == []  # every pass ran the steps again
    assert len(loop.waits) == 2 and all(w > INTERVAL for w in loop.waits)  # backed off
    assert sum("a bug in fleetcd" in r.message and r.exc_info is not None for r in caplog.records) == 3
    assert_recorded(world, "internal error in step plan, retried with backoff: ValueError: wave 7 of 3")
    assert [line["event"]["kind"] for line in audit_lines(world.state())].count("stalled") == 1
    assert once(world, tmp_path, keys) == Exit.INTERNAL

    monkeypatch.undo()
    world.clock.tick(5)
    fixed = world.reconcile()  # no idle mark was left: the next pass runs in full
    assert fixed.desired_refs > 0 and world.state().meta.stalled_reason is None


def test_an_unreachable_server_is_retried_with_backoff_and_nothing_is_recorded(
    world: ControllerWorld, tmp_path: Path, keys: KeyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    moved = world.server.with_name("away.git")
    shutil.move(world.server, moved)
    loop = Loop(world)
    with caplog.at_level(logging.WARNING, logger="fleetcd.controller"):
        loop.run(3)
    assert loop.results == [] and len(loop.waits) == 2 and all(w > INTERVAL for w in loop.waits)
    assert once(world, tmp_path, keys) == Exit.TRANSPORT
    shutil.move(moved, world.server)
    assert world.state().meta.stalled_reason is None


@pytest.mark.parametrize(("failures", "full"), [(1, 60.0), (3, 240.0), (10, 300.0), (5000, 300.0)])
def test_backoff_doubles_and_stays_capped_after_days_of_failures(failures: int, full: float) -> None:
    delay = backoff_seconds(INTERVAL, failures)
    assert full / 2 <= delay <= full <= MAX_BACKOFF_SECONDS
