"""The idle fast path under a seeded random life of a fleet's server: never idle over a change it
must read, idle again right after a full reconcile that left nothing to do.

Events are what a server sees over months: robots reporting (honest, or a hostile ref at a blob),
a desired-state ref deleted by hand, a branch no one reads created, ``git pack-refs`` run by a
housekeeping job, a stale ``.lock`` left by a killed ``git`` process, main moved away and back,
and the clock running. After each event one reconcile runs against the real server, then:

* **safety**: when a ref the controller reads (main, the state branch, status or desired refs)
  differs from how the last full reconcile left it, the reconcile is not idle;
* **liveness**: a full reconcile, run again at once with nothing new, is idle (what an idle fleet
  pays every tick);
* no event stalls main: none of them is a bad commit.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from controller.delivery import delivery_ref
from controller.reconcile.steps import reconcile_once
from fleetcd.git.refs import (
    DESIRED_PREFIX,
    MAIN_BRANCH,
    NAMESPACES_PREFIX,
    STATE_BRANCH,
    STATUS_PREFIX,
    status_ref,
)
from tests.gitrepos import git
from tests.gpgkeys import KeyFactory
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, make_world

READ = (MAIN_BRANCH, STATE_BRANCH, STATUS_PREFIX, NAMESPACES_PREFIX, DESIRED_PREFIX)
ROBOTS = STAGING + CANARY + PRODUCTION
STEPS = 14
EVENTS = (
    "report",
    "report",
    "hostile",
    "desired-deleted",
    "branch",
    "pack",
    "lock",
    "main-away-and-back",
    "tick",
)


def read_refs(server: Path) -> dict[str, str]:
    """The refs the controller reads on the server, as git lists them."""
    listed = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=server)
    pairs = (line.split(" ", 1) for line in listed.splitlines())
    return {
        ref: oid
        for oid, ref in pairs
        if ref in (MAIN_BRANCH, STATE_BRANCH)
        or ref.startswith((STATUS_PREFIX, NAMESPACES_PREFIX, DESIRED_PREFIX))
    }


def happen(world: ControllerWorld, event: str, rng: random.Random, step: int) -> None:
    server = world.server
    robot = rng.choice(ROBOTS)
    if event == "report":
        kind = git("cat-file", "-t", status_ref(robot), cwd=server, check=False).strip()
        if kind and kind != "commit":  # the robot's next report replaces what was put there
            git("update-ref", "-d", status_ref(robot), cwd=server)
        world.sim.push_report(robot, world.clock.now)
    elif event == "hostile":  # a robot without the server hook points its ref at a blob
        git("update-ref", status_ref(robot), _blob(server, step), cwd=server)
    elif event == "desired-deleted":
        ref = delivery_ref(robot, namespaces=True)
        if git("rev-parse", "--verify", "-q", ref, cwd=server, check=False).strip():
            git("update-ref", "-d", ref, cwd=server)
    elif event == "branch":
        git("update-ref", f"refs/heads/topic-{step}", MAIN_BRANCH, cwd=server)
    elif event == "pack":
        git("pack-refs", "--all", cwd=server)
    elif event == "lock":
        (server / "refs" / "heads" / f"stale-{step}.lock").write_text("killed mid-write\n")
    elif event == "main-away-and-back":
        main = git("rev-parse", MAIN_BRANCH, cwd=server).strip()
        git("update-ref", MAIN_BRANCH, STATE_BRANCH, cwd=server)
        git("update-ref", MAIN_BRANCH, main, cwd=server)
    world.clock.tick(rng.choice((1, 5, 30)))


def _blob(server: Path, step: int) -> str:
    done = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"],
        cwd=server,
        input=f"not a report {step}\n".encode(),
        capture_output=True,
        check=True,
    )
    return done.stdout.decode().strip()


@pytest.mark.parametrize("seed", [11, 12])
def test_an_idle_reconcile_never_skips_a_change_and_a_settled_fleet_goes_idle(
    tmp_path: Path, keys: KeyFactory, seed: int
) -> None:
    rng = random.Random(seed)
    world = make_world(tmp_path, keys)
    world.reconcile()
    settled = read_refs(world.server)
    kinds: dict[str, int] = {}
    for step in range(STEPS):
        event = EVENTS[step] if step < len(EVENTS) else rng.choice(EVENTS)  # every kind at least once
        happen(world, event, rng, step)
        changed = read_refs(world.server) != settled
        result = reconcile_once(world.settings)
        where = f"step {step}: {event}"
        assert result.stalled is None, where
        if changed:
            kinds["changed"] = kinds.get("changed", 0) + 1
            assert not result.idle, f"{where}: idle over a change to the refs it reads"
        if result.idle:
            kinds["idle"] = kinds.get("idle", 0) + 1
            continue
        kinds["full"] = kinds.get("full", 0) + 1
        settled = read_refs(world.server)
        again = reconcile_once(world.settings)  # nothing new since: the fast path
        assert again.idle, f"{where}: a settled fleet was reconciled in full again"
        assert read_refs(world.server) == settled, f"{where}: an idle reconcile wrote to the server"
    assert min(kinds.get("idle", 0), kinds.get("full", 0), kinds.get("changed", 0)) >= 3, kinds
