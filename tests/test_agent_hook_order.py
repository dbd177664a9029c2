"""The order and phase in which converge calls the customer hooks, seen by real executables.

Every hook is a recording executable that answers "not handled" (exit 3), so the real tarball
executor does the work and the log shows exactly which hook converge called, in which state, for
which version and previous version. A ``report_health`` veto (exit 1) is one more way to fail.
Real controller-written repository, real gpg and git, real app processes (tests/sim/agent.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.hooks import HOOK_NAMES
from fleetcd.vocabulary import Activity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import AgentWorld

RECORDER = """#!{python}
import json, pathlib, sys
d = json.load(sys.stdin)
pathlib.Path({log!r}).open("a").write(f"{{d['hook']}} {{d['phase']}} {{d['version']}} {{d['previous']}}\\n")
veto = d["hook"] == "report_health" and pathlib.Path({veto!r}).exists()
sys.exit(1 if veto else 3)
"""


@pytest.fixture
def recorded(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    hook = tmp_path / "record-hook"
    log, veto = tmp_path / "hooks.log", tmp_path / "veto"
    hook.write_text(RECORDER.format(python=sys.executable, log=str(log), veto=str(veto)))
    hook.chmod(0o755)
    hooks = {name: {"exec": [str(hook)], "timeout_seconds": 30} for name in HOOK_NAMES}
    built = AgentWorld.create(tmp_path, keys, artifacts, agent={"hooks": hooks})
    yield built
    built.close()


def calls(world: AgentWorld) -> list[str]:
    log = world.root / "hooks.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def test_a_healthy_install_then_a_failed_one_call_the_hooks_in_converge_order(recorded: AgentWorld) -> None:
    world = recorded
    world.publish("1.0.0")
    assert world.once().error is None
    assert calls(world) == [
        "run_preflight applying 1.0.0 None",
        "install_artifact applying 1.0.0 None",
        "switch_slot switched 1.0.0 None",
        "report_health watching 1.0.0 None",
    ]
    world.reconcile()

    world.publish("1.1.0", "unhealthy")
    world.once()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.ROLLED_BACK, "1.1.0")
    # The watch failed: report_health is never asked; rollback is told where it goes back to.
    assert calls(world) == [
        "run_preflight applying 1.1.0 1.0.0",
        "install_artifact applying 1.1.0 1.0.0",
        "switch_slot switched 1.1.0 1.0.0",
        "rollback rolling_back 1.1.0 1.0.0",
    ]
    assert world.answer("1.0.0") == "1.0.0"


def test_a_report_health_veto_after_a_good_watch_rolls_the_version_back(recorded: AgentWorld) -> None:
    world = recorded
    world.publish("1.0.0")
    assert world.once().error is None
    world.reconcile()
    calls(world)
    (world.root / "veto").touch()

    world.publish("1.1.0")
    world.once()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.ROLLED_BACK, "1.1.0")
    assert entry.reason is not None and "report_health" in entry.reason
    assert calls(world)[-2:] == ["report_health watching 1.1.0 1.0.0", "rollback rolling_back 1.1.0 1.0.0"]
    assert world.answer("1.0.0") == "1.0.0"
