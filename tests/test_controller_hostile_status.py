"""Hostile status refs at the reconcile level (issue 10): one robot must not stop the controller.

A robot (or anyone with its key, on a server without the ``pre-receive`` hook of
docs/git-server.md) can point its own ``refs/fleetcd/status/<id>/report`` at anything gitolite's
``RW refs/fleetcd/status/USER/`` lets through: a blob, a tree, a tag object, a symbolic ref, or a
commit whose ``status.json`` is a symlink, a submodule, a directory, huge, not UTF-8, not JSON,
nested deeply or carrying a ``seq`` no agent reaches. The objects are written straight into the
real bare server as such a robot would push them; the other robots report through
:class:`tests.sim.robots.SimFleet`, and the real ``reconcile_once`` (and ``controller run``'s loop)
runs over it all, with real gpg.

Every attack must end the same way: the reconcile is not an error, the honest robots' records
advance, the hostile robot's ref is named in an audit line with the reason, and the robot is
heard again as soon as it reports honestly (a planted ``seq`` must not freeze it). The hook itself
is run for real at the end: a bare repository with it installed refuses each of those pushes.

The seeded fuzz mixes all of it across several robots over several reconciles (bounded in time);
``FLEETCD_FUZZ_SEED`` replays a failing seed.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest
from pygit2.enums import FileMode, ObjectType, ReferenceType

from controller.reconcile.result import ReconcileResult
from controller.reconcile.source import fetch_all, open_mirror, publish
from controller.reconcile.statebranch import dump, load_state, write_state
from controller.reconcile.steps import reconcile_once
from controller.runner import run_forever
from controller.state.layout import device_file as device_path
from controller.state.model import DeviceFile
from fleetcd.compat import UTC
from fleetcd.git.objects import ref_target
from fleetcd.git.refs import status_ref
from fleetcd.git.remote import SshKey, ssh_command
from fleetcd.git.robotgit import RobotRepository
from fleetcd.models.trustroot import MAX_TRUST_VERSION
from fleetcd.reports import MAX_REPORT_BYTES, MAX_SEQ, STATUS_FILE
from tests.conftest import require_service
from tests.gitolite import Gitolite, GitoliteUnavailable
from tests.gitrepos import bare_repo, install_hook
from tests.gpgkeys import KeyFactory
from tests.sim.robots import ROBOT, SimRobot
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, audit_lines, make_world

ROOT = Path(__file__).resolve().parent.parent
SIGNATURE = pygit2.Signature("hostile robot", "robot@fleetcd.invalid", 1_700_000_000, 0)
HOSTILE = "can-1"
FUZZ_BUDGET_S = 45.0  # the fuzz stops starting rounds after this (issue 10: at most 60 s)
FUZZ_ROUNDS = 30


# --- what a hostile robot writes ---------------------------------------------------------------


def honest_json(device: str, seq: int, at: str = "2026-05-04T09:00:00+00:00") -> dict[str, Any]:
    return {
        "format": "fleetcd.dev/status/v1",
        "device": device,
        "seq": seq,
        "agent_version": "hostile",
        "reported_at": at,
    }


def dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def tree(repo: pygit2.Repository, entries: dict[str, tuple[pygit2.Oid, int]]) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    for name, (oid, mode) in entries.items():
        builder.insert(name, oid, mode)
    return builder.write()


def status_commit(
    repo: pygit2.Repository, entries: dict[str, tuple[pygit2.Oid, int]], message: str = "status"
) -> pygit2.Oid:
    return repo.create_commit(None, SIGNATURE, SIGNATURE, message, tree(repo, entries), [])


def file_commit(repo: pygit2.Repository, data: bytes) -> pygit2.Oid:
    return status_commit(repo, {STATUS_FILE: (repo.create_blob(data), FileMode.BLOB)})


TAGS = itertools.count()  # tag objects need a tag ref name, unique per planted tag
Target = pygit2.Oid | str  # an object id, or the name a symbolic ref points at


@dataclass(frozen=True)
class Attack:
    plant: Callable[[pygit2.Repository, str], Target]
    says: str  # what the audit line's reason must contain besides the ref


def _blob(repo: pygit2.Repository, device: str) -> Target:
    return repo.create_blob(dumps(honest_json(device, 50)))


def _tree(repo: pygit2.Repository, device: str) -> Target:
    return tree(repo, {STATUS_FILE: (repo.create_blob(dumps(honest_json(device, 50))), FileMode.BLOB)})


def _tag_of_a_good_commit(repo: pygit2.Repository, device: str) -> Target:
    good = file_commit(repo, dumps(honest_json(device, 50)))
    return repo.create_tag(f"t{next(TAGS)}", good, ObjectType.COMMIT, SIGNATURE, "tagged")


def _tag_of_a_blob(repo: pygit2.Repository, device: str) -> Target:
    blob = repo.create_blob(dumps(honest_json(device, 50)))
    return repo.create_tag(f"b{next(TAGS)}", blob, ObjectType.BLOB, SIGNATURE, "tagged")


def _seq(value: bytes) -> Callable[[pygit2.Repository, str], Target]:
    def plant(repo: pygit2.Repository, device: str) -> Target:
        return file_commit(repo, dumps(honest_json(device, 7)).replace(b'"seq": 7', b'"seq": ' + value))

    return plant


def _trust_version(value: bytes) -> Callable[[pygit2.Repository, str], Target]:
    def plant(repo: pygit2.Repository, device: str) -> Target:
        honest = dumps(honest_json(device, 7))
        return file_commit(repo, honest.replace(b'"seq": 7', b'"seq": 7, "trust_version": ' + value))

    return plant


def _bytes(data: bytes) -> Callable[[pygit2.Repository, str], Target]:
    return lambda repo, device: file_commit(repo, data)


def _huge_file(repo: pygit2.Repository, device: str) -> Target:
    return file_commit(repo, dumps(honest_json(device, 50)) + b" " * MAX_REPORT_BYTES)


def _huge_commit(repo: pygit2.Repository, device: str) -> Target:
    blob = repo.create_blob(dumps(honest_json(device, 50)))
    return status_commit(repo, {STATUS_FILE: (blob, FileMode.BLOB)}, "x" * 200_000)


def _symlink(repo: pygit2.Repository, device: str) -> Target:
    return status_commit(repo, {STATUS_FILE: (repo.create_blob(b"../../../etc/passwd"), FileMode.LINK)})


def _gitlink(repo: pygit2.Repository, device: str) -> Target:
    return status_commit(repo, {STATUS_FILE: (pygit2.Oid(hex="5" * 40), FileMode.COMMIT)})


def _directory(repo: pygit2.Repository, device: str) -> Target:
    inner = tree(repo, {STATUS_FILE: (repo.create_blob(dumps(honest_json(device, 50))), FileMode.BLOB)})
    return status_commit(repo, {STATUS_FILE: (inner, FileMode.TREE)})


def _symbolic(repo: pygit2.Repository, device: str) -> Target:
    return "refs/heads/main"


def _other_device(repo: pygit2.Repository, device: str) -> Target:
    return file_commit(repo, dumps(honest_json("prod-4" if device != "prod-4" else "stg-1", 50)))


ATTACKS: dict[str, Attack] = {
    "blob": Attack(_blob, "points at a blob"),
    "tree": Attack(_tree, "points at a tree"),
    "tag-of-a-good-commit": Attack(_tag_of_a_good_commit, "points at a tag object"),
    "tag-of-a-blob": Attack(_tag_of_a_blob, "points at a tag object"),
    "seq-above-max": Attack(_seq(str(MAX_SEQ + 1).encode()), "seq: Input should be less than or equal"),
    "seq-10**30": Attack(_seq(b"1" + b"0" * 30), "an integer of 31 digits"),
    "seq-of-5000-digits": Attack(_seq(b"9" * 5000), "an integer of 5000 digits"),
    "seq-a-float": Attack(_seq(b"3.0"), "seq: Input should be a valid integer"),
    "trust-version-above-max": Attack(
        _trust_version(str(MAX_TRUST_VERSION + 1).encode()), "trust_version: Input should be less than"
    ),
    "trust-version-0": Attack(_trust_version(b"0"), "trust_version: Input should be greater than or equal"),
    "bad-json": Attack(_bytes(b'{"format": "fleetcd.dev/status/v1", "seq": '), "not JSON"),
    "deep-json": Attack(_bytes(b"[" * 200_000 + b"]" * 200_000), "too large"),
    "deep-json-under-the-size-cap": Attack(_bytes(b"[" * 100_000 + b"]" * 100_000), "nested too deeply"),
    "huge-file": Attack(_huge_file, "bytes; at most 262144"),
    "huge-commit": Attack(_huge_commit, "-byte object; at most"),
    "not-utf8": Attack(_bytes(b'{"seq": "\xff\xfe"}'), "not UTF-8"),
    "symlink": Attack(_symlink, "status.json is a symlink"),
    "gitlink": Attack(_gitlink, "status.json is a submodule"),
    "directory": Attack(_directory, "status.json is a directory"),
    "symbolic-ref": Attack(_symbolic, "the commit holds no status.json"),
    "speaks-for-another-robot": Attack(_other_device, "report names device "),
}
# deep-json over MAX_REPORT_BYTES is refused for its size before it is parsed: both are kept.
ATTACKS["deep-json"] = Attack(ATTACKS["deep-json"].plant, "bytes; at most 262144")


def plant(world: ControllerWorld, device: str, attack: Attack) -> None:
    server = pygit2.Repository(str(world.server))
    target = attack.plant(server, device)
    server.references.create(status_ref(device), target, force=True)


def report_honestly(world: ControllerWorld, device: str, seq: int | None = None) -> int:
    """The robot reports again as its agent would (``seq`` given: as a reflashed one, from there).
    A hostile target cannot be a parent, so it is deleted first. Returns the seq reported."""
    robot = world.sim.robots.setdefault(device, SimRobot(device))
    if seq is not None:
        robot.seq = seq - 1
    server = pygit2.Repository(str(world.server))
    ref = server.references.get(status_ref(device))
    if ref is not None and (
        ref.type != ReferenceType.DIRECT or not isinstance(server.get(ref.target), pygit2.Commit)
    ):
        server.references.delete(status_ref(device))
    world.sim.push_report(device, world.clock.now)
    return robot.seq


def commit_to_main(world: ControllerWorld, message: str) -> None:
    """What reviewers saw break every reconcile: the next commit to main forces a full fetch."""
    world.fleet.git("commit", "--allow-empty", "-qm", message)
    world.fleet.git("push", "-q", str(world.server), "main")


def refusals(events: list[dict[str, Any]], device: str) -> list[str]:
    return [
        e["reason"]
        for e in events
        if e.get("kind") == "device_report" and e.get("device") == device and e.get("reason")
    ]


def logged(world: ControllerWorld, device: str) -> list[str]:
    return refusals([line["event"] for line in audit_lines(world.state())], device)


def device_file(world: ControllerWorld, device: str) -> DeviceFile:
    return world.state().devices[device]


# --- one hostile robot, the others honest ------------------------------------------------------


@pytest.mark.parametrize("attack", list(ATTACKS.values()), ids=list(ATTACKS))
def test_a_hostile_status_ref_is_refused_by_name_and_every_other_robot_is_ingested(
    tmp_path: Path, keys: KeyFactory, attack: Attack
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()  # the rollout starts: stg-1 is dispatched
    report_honestly(world, HOSTILE)  # seq 1 before the attack
    plant(world, HOSTILE, attack)
    world.report_all(STAGING, "downloading")
    commit_to_main(world, "an unrelated change")
    world.clock.tick(10)

    first = world.reconcile()
    (reason,) = refusals([e.as_json() for e in first.events], HOSTILE)
    assert reason.startswith(f"{status_ref(HOSTILE)}:{STATUS_FILE}") and attack.says in reason
    (record,) = device_file(world, "stg-1").records
    assert record.activity.value == "downloading"
    assert any(attack.says in r for r in logged(world, HOSTILE))

    # The reviewer's case: the bad ref is in the controller's mirror now, and the next commit to
    # main used to fail every fetch ("object is not a committish").
    world.report_all(STAGING, "deployed")
    commit_to_main(world, "another change")
    world.clock.tick(10)
    second = world.reconcile()
    assert second.stalled is None
    (record,) = device_file(world, "stg-1").records
    assert record.activity.value == "deployed"

    # The robot reports honestly again (a reflashed agent): it is heard, whatever it planted.
    seq = report_honestly(world, HOSTILE, seq=2)
    world.clock.tick(10)
    world.reconcile()
    assert device_file(world, HOSTILE).last_report_seq == seq == 2


def test_a_mirror_only_ref_at_a_missing_object_is_deleted_and_fetches_still_work(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """A damaged cache: the mirror holds a status ref at an object it lacks (a server cannot serve
    one: a fetch of it fails there, and receive-pack never creates one). The server has no such
    ref, so the fetch deletes it from the mirror (the server is the truth): nothing is read from
    it, nothing is refused, and the robot is heard as soon as it reports."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    loose = world.settings.source.mirror / status_ref(HOSTILE)
    loose.parent.mkdir(parents=True, exist_ok=True)
    loose.write_text("1" * 40 + "\n")
    world.report_all(STAGING, "downloading")
    commit_to_main(world, "an unrelated change")
    world.clock.tick(10)

    result = world.reconcile()
    assert refusals([e.as_json() for e in result.events], HOSTILE) == []
    assert not loose.exists()
    assert pygit2.Repository(str(world.settings.source.mirror)).references.get(status_ref(HOSTILE)) is None
    (record,) = device_file(world, "stg-1").records
    assert record.activity.value == "downloading"
    seq = report_honestly(world, HOSTILE)
    world.clock.tick(10)
    world.reconcile()
    assert device_file(world, HOSTILE).last_report_seq == seq


def test_a_planted_seq_does_not_freeze_a_robot_whose_state_already_holds_one(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """A state branch written before reports were bounded may hold a seq no agent can beat: the
    robot's next report is still heard."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    repo = open_mirror(world.settings.source)
    fetch_all(repo, world.settings.source)
    snapshot = load_state(repo)
    frozen = snapshot.devices["stg-1"].model_copy(update={"last_report_seq": 10**30})
    written = write_state(
        repo, snapshot, {device_path("stg-1"): dump(frozen)}, "old controller", world.clock.now
    )
    assert written is not None
    publish(repo, world.settings.source, state_base=snapshot.commit)

    world.report_all(STAGING, "downloading")
    world.clock.tick(10)
    world.reconcile()
    assert device_file(world, "stg-1").last_report_seq == 1
    (record,) = device_file(world, "stg-1").records
    assert record.activity.value == "downloading"


# --- controller run --------------------------------------------------------------------------------


def test_controller_run_keeps_reconciling_through_hostile_status_refs(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    for device, name in zip(
        CANARY + PRODUCTION, ["blob", "tag-of-a-blob", "gitlink", "seq-10**30"], strict=False
    ):
        plant(world, device, ATTACKS[name])
    results: list[ReconcileResult] = []

    def one_more_step(result: ReconcileResult) -> None:
        results.append(result)
        world.report_all(STAGING, ["downloading", "applying", "deployed"][min(len(results), 3) - 1])
        commit_to_main(world, f"change {len(results)}")
        world.clock.tick(10)

    run_forever(world.settings, 0.0, iterations=4, report=one_more_step)
    assert len(results) == 4 and all(r.stalled is None and not r.idle for r in results)
    (record,) = device_file(world, "stg-1").records
    assert record.activity.value == "deployed"
    for device in CANARY + PRODUCTION[:1]:
        assert any(status_ref(device) in r for r in logged(world, device)), device


# --- the fuzz -----------------------------------------------------------------------------------


def test_fuzz_random_hostile_status_refs_never_stop_the_loop_or_the_honest_robots(
    tmp_path: Path, keys: KeyFactory
) -> None:
    seed = int(os.environ.get("FLEETCD_FUZZ_SEED", "20260504"))
    rng = random.Random(seed)
    world = make_world(tmp_path, keys)
    world.reconcile()
    robots = STAGING + CANARY + PRODUCTION
    names = sorted(ATTACKS)
    started = time.monotonic()
    rounds = 0
    while rounds < FUZZ_ROUNDS and time.monotonic() - started < FUZZ_BUDGET_S:
        rounds += 1
        honest: dict[str, int] = {}
        hostile: dict[str, str] = {}
        for device in robots:
            roll = rng.random()
            if roll < 0.4:
                name = rng.choice(names)
                plant(world, device, ATTACKS[name])
                hostile[device] = name
            elif roll < 0.8:
                honest[device] = report_honestly(world, device)
        if rng.random() < 0.3:  # a damaged cache: a mirror ref at an object it lacks
            loose = world.settings.source.mirror / status_ref(rng.choice(robots))
            loose.parent.mkdir(parents=True, exist_ok=True)
            loose.write_text(f"{rng.getrandbits(160):040x}\n")
        if rng.random() < 0.6:
            commit_to_main(world, f"fuzz round {rounds}")
        world.clock.tick(rng.choice([1, 10, 60]))
        context = f"seed {seed}, round {rounds}, hostile {hostile}, honest {sorted(honest)}"

        result = reconcile_once(world.settings)
        assert result.stalled is None, context
        state = world.state()
        for device, seq in honest.items():
            assert state.devices[device].last_report_seq == seq, context
        events = [e.as_json() for e in result.events]
        for device, name in hostile.items():
            said = refusals(events, device)
            named = [r for r in said if status_ref(device) in r and ATTACKS[name].says in r]
            assert named, (device, said, context)
    assert rounds >= 3, f"seed {seed}: only {rounds} rounds in {FUZZ_BUDGET_S} s"


# --- the server's hook (docs/git-server.md) ------------------------------------------------------


def hook_source() -> str:
    text = (ROOT / "docs" / "git-server.md").read_text(encoding="utf-8")
    found = re.search(r"## Refuse status pushes the controller cannot read.*?```sh\n(.*?)```", text, re.S)
    assert found is not None, "docs/git-server.md: no pre-receive hook"
    return found.group(1)


@pytest.fixture
def hooked(tmp_path: Path) -> tuple[Path, pygit2.Repository]:
    """A bare server with the documented hook, and a robot's repository to push from."""
    server = bare_repo(tmp_path / "server.git")
    install_hook(server, "pre-receive", hook_source())
    robot = pygit2.init_repository(str(tmp_path / "robot.git"), bare=True)
    return server, robot


def push(robot: pygit2.Repository, server: Path, *specs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "--git-dir", robot.path, "push", "--porcelain", str(server), *specs],
        capture_output=True,
        text=True,
        check=False,
    )


# What the hook can see: the shape of the push. A well-formed commit with bad JSON inside is the
# controller's to refuse (the attacks above).
HOOK_REFUSES = [
    "blob",
    "tree",
    "tag-of-a-good-commit",
    "tag-of-a-blob",
    "deep-json",
    "huge-file",
    "huge-commit",
    "symlink",
    "gitlink",
    "directory",
]


@pytest.mark.parametrize("name", HOOK_REFUSES)
def test_the_documented_hook_refuses_a_status_push_the_controller_cannot_read(
    hooked: tuple[Path, pygit2.Repository], name: str
) -> None:
    server, robot = hooked
    target = ATTACKS[name].plant(robot, "amr-001")
    assert isinstance(target, pygit2.Oid)
    done = push(robot, server, f"{target}:{status_ref('amr-001')}")
    assert done.returncode != 0, done.stdout + done.stderr
    assert "fleetcd: refs/fleetcd/status/amr-001/report:" in done.stderr
    assert ref_target(pygit2.Repository(str(server)), status_ref("amr-001")) is None


def test_the_documented_hook_accepts_the_agents_own_status_commit_and_refuses_odd_names(
    hooked: tuple[Path, pygit2.Repository],
) -> None:
    server, robot = hooked
    agent = RobotRepository(Path(robot.path))
    good = agent.commit_file(
        STATUS_FILE,
        dumps(honest_json("amr-001", 1)),
        parent=None,
        message="status of amr-001: seq 1",
        author=(ROBOT.name, ROBOT.email),
        when=datetime(2026, 5, 4, tzinfo=UTC),
    )
    two_files = status_commit(
        robot,
        {
            STATUS_FILE: (robot.create_blob(dumps(honest_json("amr-001", 2))), FileMode.BLOB),
            "extra": (robot.create_blob(b"x"), FileMode.BLOB),
        },
    )
    refused = {
        f"{good}:refs/fleetcd/status/amr-001/other": "not refs/fleetcd/status/<id>/report",
        f"{good}:refs/fleetcd/status/amr-001/x/report": "not refs/fleetcd/status/<id>/report",
        f"{two_files}:{status_ref('amr-001')}": "status.json alone",
    }
    for spec, says in refused.items():
        done = push(robot, server, spec)
        assert done.returncode != 0 and says in done.stderr, (spec, done.stderr)
    # One refused ref refuses the whole push: the good one does not land either.
    done = push(robot, server, f"{good}:{status_ref('amr-001')}", f"{good}:refs/fleetcd/status/amr-001/odd")
    assert done.returncode != 0
    assert ref_target(pygit2.Repository(str(server)), status_ref("amr-001")) is None

    done = push(robot, server, f"{good}:{status_ref('amr-001')}")
    assert done.returncode == 0, done.stderr
    assert str(ref_target(pygit2.Repository(str(server)), status_ref("amr-001"))) == good
    done = push(robot, server, f"{good}:refs/heads/anything")  # other refs are the ACL's business
    assert done.returncode == 0, done.stderr


def test_the_documented_hook_refuses_a_blob_pushed_through_gitolite(tmp_path: Path) -> None:
    """Installed as the page says for gitolite (``~/local/hooks/common/pre-receive``, then
    ``gitolite setup --hooks-only``): the ACL lets amr-001 write its status subtree, the hook
    still refuses a blob there, and its honest status commit goes through."""
    try:
        server = Gitolite(tmp_path / "gl", ["amr-001"]).__enter__()
    except (GitoliteUnavailable, RuntimeError) as exc:
        require_service("gitolite", False, str(exc))
        raise
    try:
        hooks = server.home / "local" / "hooks" / "common"
        hooks.mkdir(parents=True)
        install_hook(hooks.parent.parent, "common/pre-receive", hook_source())
        server.gitolite("setup", "--hooks-only")
        robot = pygit2.init_repository(str(tmp_path / "robot.git"), bare=True)
        ssh = ssh_command(
            SshKey(server.user, server.key("amr-001")), known_hosts=None, insecure_accept_any_host_key=True
        )
        env = {**os.environ, "GIT_SSH_COMMAND": ssh}

        def push_over_ssh(target: pygit2.Oid) -> subprocess.CompletedProcess[str]:
            spec = f"{target}:{status_ref('amr-001')}"
            argv = ["git", "--git-dir", robot.path, "push", "--porcelain", server.url(), spec]
            return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=60)

        assert server.access("amr-001", "W", status_ref("amr-001"))
        refused = push_over_ssh(robot.create_blob(dumps(honest_json("amr-001", 1))))
        assert refused.returncode != 0 and "points at a blob, not a commit" in refused.stderr, refused.stderr
        assert ref_target(pygit2.Repository(str(server.repo_path())), status_ref("amr-001")) is None
        good = file_commit(robot, dumps(honest_json("amr-001", 1)))
        accepted = push_over_ssh(good)
        assert accepted.returncode == 0, accepted.stderr
        assert ref_target(pygit2.Repository(str(server.repo_path())), status_ref("amr-001")) == good
    finally:
        server.__exit__(None, None, None)
