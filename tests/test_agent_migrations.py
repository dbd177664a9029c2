"""A release's ``migrations`` on the robot (agent/converge/migrate.py, agent/state/migrations.py):
ordered, once per robot, after the install and before the switch, recorded in the ledger, undone
in reverse when the deployment fails or rolls back, and resumed deterministically after a kill -9.

End to end with the real controller-written repository, real gpg and git, the real tarball executor
and real migration commands (``/bin/sh`` scripts on the robot's allowlist) that append to a "database"
file, so each test reads what ran, in which order, and which version was active when it ran.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.errors import CorruptState
from agent.state.migrations import MAX_RUNS, Ledger, MigrationLedger, MigrationRun
from fleetcd.compat import UTC
from fleetcd.models.release import Release
from fleetcd.vocabulary import Activity, MigrationState
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld
from tests.test_agent_crash import agent_killed_at

SH = "/bin/sh"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    built = AgentWorld.create(tmp_path, keys, artifacts, agent={"exec_allowlist": [SH]})
    built.publish("1.0.0")
    assert built.once().error is None
    built.reconcile()
    yield built
    built.close()


def db(world: AgentWorld) -> Path:
    return world.root / "db.log"


def lines(world: AgentWorld) -> list[str]:
    path = db(world)
    return path.read_text().split() if path.exists() else []


def step(world: AgentWorld, name: str, *, fail: bool = False, undo: bool = True) -> dict[str, Any]:
    """A migration that appends ``+<name>@<active version>`` (``-<name>@…`` when undone)."""
    active = f"$(readlink {world.paths.apps_dir / APP / 'current'} | cut -d/ -f2)"
    run = f"echo +{name}@{active} >> {db(world)}" + ("; exit 4" if fail else "")
    migration: dict[str, Any] = {"name": name, "exec": [SH, "-c", run], "timeout_seconds": 10}
    if undo:
        migration["rollback"] = [SH, "-c", f"echo -{name}@{active} >> {db(world)}"]
    return migration


def ledger(world: AgentWorld) -> MigrationLedger:
    return Ledger(world.paths.migrations(APP)).load()


def reported(world: AgentWorld, result: Any) -> list[tuple[str, str]]:
    assert result.report is not None
    (deployment,) = result.report.deployments
    return [(m.name, m.state.value) for m in deployment.migrations]


def test_migrations_run_in_order_after_the_install_and_before_the_switch(world: AgentWorld) -> None:
    world.publish("1.1.0", migrations=[step(world, "add-map-table"), step(world, "fill-map-table")])

    result = world.once()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.HEALTHY, "1.1.0")
    assert lines(world) == ["+add-map-table@1.0.0", "+fill-map-table@1.0.0"]  # the old version still ran
    assert reported(world, result) == [("add-map-table", "applied"), ("fill-map-table", "applied")]
    world.reconcile()  # the controller reads the report with its migrations (parsed strictly)
    assert world.record(entry.deployment_id).activity.value == "deployed"
    runs = ledger(world).runs
    assert [(r.name, r.version, r.state, r.committed) for r in runs] == [
        ("add-map-table", "1.1.0", MigrationState.APPLIED, True),
        ("fill-map-table", "1.1.0", MigrationState.APPLIED, True),
    ]


def test_a_migration_this_robot_already_applied_is_not_run_again(world: AgentWorld) -> None:
    world.publish("1.1.0", migrations=[step(world, "add-map-table")])
    world.once()
    world.reconcile()

    world.publish("1.2.0", migrations=[step(world, "add-map-table"), step(world, "add-index")])
    result = world.once()

    assert lines(world) == ["+add-map-table@1.0.0", "+add-index@1.1.0"]
    assert reported(world, result) == [("add-index", "applied")]


def test_a_failed_migration_fails_the_deployment_and_undoes_the_ones_that_ran_in_reverse(
    world: AgentWorld,
) -> None:
    world.publish(
        "1.1.0", migrations=[step(world, "one"), step(world, "two", fail=True), step(world, "three")]
    )

    result = world.once()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.FAILED, "1.1.0")
    assert "migration two" in (entry.reason or "") and "exit code 4" in (entry.reason or "")
    assert lines(world) == ["+one@1.0.0", "+two@1.0.0", "-two@1.0.0", "-one@1.0.0"]
    assert world.executor().active(APP) == "1.0.0" and world.answer() == "1.0.0"
    assert reported(world, result) == [("one", "rolled_back"), ("two", "rolled_back")]


def test_a_failed_health_watch_undoes_the_migrations_before_the_old_version_starts(world: AgentWorld) -> None:
    world.publish("1.1.0", "unhealthy", migrations=[step(world, "one"), step(world, "two")])

    result = world.once()

    entry = world.entry()
    assert entry is not None and entry.state is Activity.ROLLED_BACK
    # undone newest first, while the failed version was still the active one
    assert lines(world) == ["+one@1.0.0", "+two@1.0.0", "-two@1.1.0", "-one@1.1.0"]
    assert world.answer("1.0.0") == "1.0.0"
    assert reported(world, result) == [("one", "rolled_back"), ("two", "rolled_back")]
    assert ledger(world).applied() == set()


def test_an_irreversible_migration_stays_applied_when_its_deployment_rolls_back(world: AgentWorld) -> None:
    world.publish("1.1.0", "unhealthy", migrations=[step(world, "one", undo=False), step(world, "two")])

    result = world.once()

    assert lines(world) == ["+one@1.0.0", "+two@1.0.0", "-two@1.1.0"]
    assert reported(world, result) == [("one", "applied"), ("two", "rolled_back")]
    assert ledger(world).applied() == {"one"}


def test_a_committed_deployments_migrations_survive_a_later_rollback(world: AgentWorld) -> None:
    world.publish("1.1.0", migrations=[step(world, "one")])
    world.once()
    world.reconcile()

    world.publish("1.2.0", "unhealthy", migrations=[step(world, "one"), step(world, "two")])
    world.once()

    assert lines(world) == ["+one@1.0.0", "+two@1.1.0", "-two@1.2.0"]
    assert ledger(world).applied() == {"one"}
    assert world.answer("1.1.0") == "1.1.0"


def test_a_staged_blue_green_install_migrates_only_when_it_is_switched_to(world: AgentWorld) -> None:
    world.strategy = {"type": "blue_green", "min_staged_percent": 100}
    world.publish("1.1.0", migrations=[step(world, "one")])

    world.once()

    entry = world.entry()
    assert entry is not None and entry.state is Activity.STAGED
    assert lines(world) == []
    world.reconcile()
    world.once()
    entry = world.entry()
    assert entry is not None and entry.state is Activity.HEALTHY
    assert lines(world) == ["+one@1.0.0"]


# --- kill -9 in the middle of a migration --------------------------------------------------------------


def killing_step(world: AgentWorld, name: str, *, undo: bool = True) -> dict[str, Any]:
    """A migration that, the first time, does half its work and SIGKILLs the agent that runs it."""
    mark = world.root / f"{name}.killed"
    run = (
        f"if [ ! -e {mark} ]; then touch {mark}; echo +{name}-half >> {db(world)}; "
        "kill -9 $PPID; sleep 5; fi; "
        f"echo +{name} >> {db(world)}"
    )
    migration: dict[str, Any] = {"name": name, "exec": [SH, "-c", run], "timeout_seconds": 20}
    if undo:
        migration["rollback"] = [SH, "-c", f"echo -{name} >> {db(world)}"]
    return migration


def agent_killed_by_its_migration(world: AgentWorld) -> None:
    script = "import sys; from tests.test_agent_crash import crash_main; crash_main(sys.argv[1:])"
    args = [str(world.config_file), world.now.isoformat(), "no-checkpoint"]
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -9, (done.returncode, done.stderr[-3000:])


def test_kill_9_mid_migration_undoes_the_cut_short_one_and_runs_it_again_on_restart(
    world: AgentWorld,
) -> None:
    world.publish("1.1.0", migrations=[step(world, "one"), killing_step(world, "two"), step(world, "three")])

    agent_killed_by_its_migration(world)

    assert lines(world) == ["+one@1.0.0", "+two-half"]
    assert [(r.name, r.state) for r in ledger(world).runs] == [
        ("one", MigrationState.APPLIED),
        ("two", MigrationState.RUNNING),
    ]
    assert world.executor().active(APP) == "1.0.0" and world.answer() == "1.0.0"

    result = world.once()

    assert lines(world) == ["+one@1.0.0", "+two-half", "-two", "+two", "+three@1.0.0"]
    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.HEALTHY, "1.1.0")
    assert reported(world, result) == [("one", "applied"), ("two", "applied"), ("three", "applied")]


def test_kill_9_mid_irreversible_migration_runs_it_again_on_restart(world: AgentWorld) -> None:
    world.publish("1.1.0", migrations=[killing_step(world, "one", undo=False)])

    agent_killed_by_its_migration(world)
    world.once()

    assert lines(world) == ["+one-half", "+one"]
    entry = world.entry()
    assert entry is not None and entry.state is Activity.HEALTHY


# --- the format ---------------------------------------------------------------------------------------


def release(**fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "Release",
        "app": "web",
        "version": "1.0.0",
        "artifacts": [
            {"kind": "app_tarball", "name": "app", "url": "https://x/a.tgz", "sha256": "a" * 64, "size": 1}
        ],
        **fields,
    }


def test_two_migrations_of_one_name_are_refused_naming_the_field() -> None:
    one = {"name": "one", "exec": [SH]}
    with pytest.raises(ValidationError) as refused:
        Release.model_validate(release(migrations=[one, one]))
    assert "migrations: names must be unique (a robot applies each once), repeated: one" in str(refused.value)


def test_a_preflight_step_has_no_rollback_only_a_migration_does() -> None:
    step = {"name": "one", "exec": [SH], "rollback": [SH]}
    Release.model_validate(release(migrations=[step]))
    with pytest.raises(ValidationError) as refused:
        Release.model_validate(release(preflight=[step]))
    assert [e["loc"] for e in refused.value.errors()] == [("preflight", 0, "rollback")]


def test_a_release_with_too_many_migrations_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        Release.model_validate(release(migrations=[{"name": f"m{i}", "exec": [SH]} for i in range(33)]))
    assert refused.value.errors()[0]["loc"] == ("migrations",)


# --- the ledger ---------------------------------------------------------------------------------------


def run(name: str, deployment: str, state: MigrationState, *, committed: bool = False) -> MigrationRun:
    return MigrationRun(
        name=name,
        version="1.0.0",
        deployment_id=deployment,
        rollback=[SH],
        timeout_seconds=1,
        state=state,
        committed=committed,
        at=datetime(2026, 5, 4, tzinfo=UTC),
    )


def test_the_ledger_stays_bounded_and_drops_only_committed_runs_first(tmp_path: Path) -> None:
    book = MigrationLedger()
    for i in range(MAX_RUNS):
        book = book.with_run(run(f"m{i}", "dep-old", MigrationState.APPLIED, committed=True))
    book = book.with_run(run("new", "dep-new", MigrationState.RUNNING))

    assert len(book.runs) == MAX_RUNS
    assert book.runs[0].name == "m1" and book.runs[-1].name == "new"
    Ledger(tmp_path / "web.json").save(book)
    assert Ledger(tmp_path / "web.json").load() == book


def test_work_of_a_dropped_deployment_is_found_and_a_rerun_replaces_its_record() -> None:
    book = MigrationLedger().with_run(run("one", "dep-a", MigrationState.APPLIED))
    book = book.with_run(run("two", "dep-b", MigrationState.APPLIED, committed=True))

    assert book.open_elsewhere("dep-c") == ["dep-a"]
    book = book.with_run(run("one", "dep-a", MigrationState.ROLLED_BACK))
    assert book.open_elsewhere("dep-c") == []
    assert [(r.name, r.state) for r in book.runs] == [
        ("one", MigrationState.ROLLED_BACK),
        ("two", MigrationState.APPLIED),
    ]
    assert book.applied() == {"two"}


def test_a_corrupt_ledger_is_corrupt_state_never_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "web.json"
    path.write_bytes(b'{"format": 1, "runs": [{"name": "x"}]}')
    with pytest.raises(CorruptState):
        Ledger(path).load()


def test_migrations_of_a_deployment_dropped_before_its_switch_are_undone_before_the_next_ones_run(
    world: AgentWorld,
) -> None:
    world.publish("1.1.0", migrations=[step(world, "one")])
    agent_killed_at(world, "before-switched")  # migrated, never switched to
    assert lines(world) == ["+one@1.0.0"]
    world.publish("1.2.0", migrations=[step(world, "two")])  # 1.1.0 is no longer desired

    world.once()

    assert lines(world) == ["+one@1.0.0", "-one@1.0.0", "+two@1.0.0"]
    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.2.0", Activity.HEALTHY)
    assert ledger(world).applied() == {"two"}


def test_a_corrupt_ledger_holds_the_migrations_back_retrying_and_names_the_file(world: AgentWorld) -> None:
    path = world.paths.migrations(APP)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0\0\0")  # a lost write
    world.publish("1.1.0", migrations=[step(world, "one")])

    result = world.once()

    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.APPLYING)
    assert str(path) in (entry.reason or "")
    assert lines(world) == [] and world.answer() == "1.0.0"
    assert result.report is not None
    (deployment,) = result.report.deployments
    assert (deployment.activity, deployment.error) == ("applying", "retrying")
