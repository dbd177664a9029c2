"""Attacks on trust at the reconcile level, on real git and real gpg: a force-pushed main, commits
under the strict commit policy, a release signed below its threshold, approvals voided by a later
edit.

Whatever the attack, the controller stalls with the reason in the rollout status and the audit
log, writes no desired state, and robots keep the release they run. A commit that fixes it
(signed, re-signed, re-approved) lets the reconcile proceed again.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from controller.reconcile import steps
from controller.reconcile.cache import ReconcileCache
from controller.reconcile.source import Source
from controller.reconcile.steps import ReconcileResult, reconcile_once
from controller.state.model import RolloutPhase
from fleetcd.layout import rollout_path
from tests.fleetrepo import GIT_IDENTITY, FleetRepoBuilder
from tests.gpgkeys import GpgKey, KeyFactory
from tests.sim.world import STAGING, WAVES, ControllerWorld, assert_no_duplicates, audit_lines, make_world
from tests.test_controller_faults import desired_targets

COHORTS = ["staging", "canary", "production"]


def signed_commit(fleet: FleetRepoBuilder, keys: KeyFactory, key: GpgKey | None, message: str) -> str:
    """Write, stage and commit, signed by ``key`` with the real git and gpg (None: unsigned)."""
    fleet.write()
    fleet.git("add", "-A")
    env = {**os.environ, **GIT_IDENTITY, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(fleet.root)}
    env["GNUPGHOME"] = str(keys.home)
    sign = ["-c", "gpg.program=gpg", "-c", f"user.signingkey={key.fingerprint}"] if key else []
    command = ["git", *sign, "commit", "-q", "--allow-empty", *(["-S"] if key else []), "-m", message]
    subprocess.run(command, cwd=fleet.root, env=env, capture_output=True, check=True)
    return fleet.git("rev-parse", "HEAD")


def deployed_on_staging(world: ControllerWorld) -> dict[str, str]:
    """Reconcile, let the staging robot run nav 1.0.0 and report it; the desired refs then."""
    world.reconcile()
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    world.reconcile()
    return desired_targets(world.server)


def assert_stalled_and_untouched(
    world: ControllerWorld, result: ReconcileResult, before: dict[str, str], needle: str
) -> None:
    """Stalled naming ``needle`` in the result, rollout status and audit; no desired state written."""
    assert result.stalled is not None and needle in result.stalled, result.stalled
    assert (result.desired_refs, result.root_signatures) == (0, 0)
    assert desired_targets(world.server) == before
    state = world.state()
    rollout = state.rollouts["nav"]
    assert rollout.phase is RolloutPhase.STALLED and rollout.reason is not None
    assert needle in rollout.reason and rollout.generation == 1
    head = world.fleet.git("rev-parse", "HEAD")
    stalls = [line["event"] for line in audit_lines(state) if line["event"]["kind"] == "stalled"]
    assert [(e["commit"], needle in e["reason"]) for e in stalls] == [(head, True)]
    assert state.meta.last_processed_commit != head
    assert [d.version for d in world.sim.bundle("stg-1", world.clock.now).deployments] == ["1.0.0"]
    assert_no_duplicates(state)
    again = reconcile_once(world.settings)
    assert again.stalled == result.stalled and again.state_commit is None  # audited once per commit


def nav_1_1_0(fleet: FleetRepoBuilder, **rollout: object) -> None:
    fleet.release("nav", "1.1.0")
    fleet.rollout(
        "nav", app="nav", release="1.1.0", cohorts=COHORTS, strategy={"type": "waves", "waves": WAVES}
    )
    for key, value in rollout.items():
        fleet.docs[rollout_path("nav")][key] = value


# --- the strict commit policy ---------------------------------------------------------------------


def strict_policy(keys: KeyFactory) -> Callable[[FleetRepoBuilder], None]:
    def configure(fleet: FleetRepoBuilder) -> None:
        committer = keys.key("committer")
        fleet.add_key_file(committer)
        trusted = [{"fingerprint": committer.fingerprint, "name": "committer"}]
        fleet.fleet["trust"] = {"commits": {"mode": "strict", "trusted": trusted}}

    return configure


@pytest.mark.parametrize(
    ("middle", "stalls"),
    [("committer", False), (None, True), ("alice", True)],
    ids=["every-commit-signed-proceeds", "unsigned-commit-stalls", "untrusted-signer-stalls"],
)
def test_strict_policy_checks_every_commit_since_the_last_processed_one(
    tmp_path: Path, keys: KeyFactory, middle: str | None, stalls: bool
) -> None:
    committer = keys.key("committer")

    def merge(fleet: FleetRepoBuilder, message: str) -> None:
        signed_commit(fleet, keys, committer, message)

    world = make_world(tmp_path, keys, configure=strict_policy(keys), merge=merge)
    before = deployed_on_staging(world)

    nav_1_1_0(world.fleet)
    suspect = signed_commit(world.fleet, keys, keys.key(middle) if middle else None, "nav 1.1.0")
    world.merge("a signed tip on top")  # the tip alone would pass mode: head
    result = reconcile_once(world.settings)

    if stalls:
        assert_stalled_and_untouched(world, result, before, f"commit {suspect} rejected")
        return
    assert result.stalled is None
    assert world.state().meta.last_processed_commit == world.fleet.git("rev-parse", "HEAD")
    assert [d.version for d in world.sim.bundle("stg-1", world.clock.now).deployments] == ["1.1.0"]


def strict_world_kept(tmp_path: Path, keys: KeyFactory) -> tuple[ControllerWorld, ReconcileCache]:
    """A world under the strict commit policy (every merge signed by ``committer``), reconciled
    once through the cache ``controller run`` keeps."""
    committer = keys.key("committer")

    def merge(fleet: FleetRepoBuilder, message: str) -> None:
        signed_commit(fleet, keys, committer, message)

    world = make_world(tmp_path, keys, configure=strict_policy(keys), merge=merge)
    cache = ReconcileCache()
    world.settings = replace(world.settings, cache=cache)
    world.reconcile()
    return world, cache


def test_a_head_switching_the_strict_policy_off_is_judged_by_the_kept_policy_of_the_last_accepted_tree(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """``controller run`` keeps fleet.yaml and keys/ of the last trees it read rather than reading
    the last accepted tree again (``MainCache.policy_reads`` counts full reads). The policy must
    still be the accepted tree's, never the head's, also after a stalled commit in between; a
    controller without the cache, and one with a fresh cache, stall alike."""
    world, cache = strict_world_kept(tmp_path, keys)
    nav_1_1_0(world.fleet)
    world.merge("nav 1.1.0, signed")
    world.clock.tick(30)
    world.reconcile()
    accepted = world.fleet.git("rev-parse", "HEAD")

    world.fleet.fleet["trust"] = {"commits": {"mode": "off"}}
    suspect = signed_commit(world.fleet, keys, None, "commit policy off, unsigned")
    world.fleet.git("push", "-q", str(world.server), "main")
    world.clock.tick(30)
    result = reconcile_once(world.settings)
    assert result.stalled is not None and f"commit {suspect} rejected" in result.stalled
    world.merge("a signed tip on top")
    world.clock.tick(30)
    again = reconcile_once(world.settings)
    assert again.stalled is not None and f"commit {suspect} rejected" in again.stalled
    assert cache.main.policy_reads == 0 and world.state().meta.last_processed_commit == accepted

    full = replace(world.settings, idle_fast_path=False)  # a stalled, unmoved main is idle otherwise
    assert reconcile_once(replace(full, cache=None)).stalled == again.stalled
    fresh = ReconcileCache()
    assert reconcile_once(replace(full, cache=fresh)).stalled == again.stalled
    assert fresh.main.policy_reads == 1


def test_an_unmoved_main_is_judged_by_the_policy_kept_for_its_tree_not_by_every_file_again(
    tmp_path: Path, keys: KeyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconcile whose main did not move (robots reported) takes the commit policy's files from
    what ``controller run`` kept for that tree when it read it, instead of testing every path of
    main again (one a robot: 15-30 ms at 100,000); the strict policy still holds, and without the
    cache the files are picked from main's tree as before."""
    world, cache = strict_world_kept(tmp_path, keys)
    walked: list[int] = []
    real = steps._policy_files

    def counted(files: Mapping[str, bytes]) -> dict[str, bytes]:
        walked.append(len(files))
        return real(files)

    monkeypatch.setattr(steps, "_policy_files", counted)
    world.sim.report("stg-1", "nav", "deployed", world.clock.now)
    world.clock.tick(30)
    result = reconcile_once(world.settings)
    assert result.stalled is None and result.state_commit is not None  # the report was taken in
    kept = len(cache.main.policy_of(commit_tree_id_of(world)) or {})
    assert kept and walked and all(n <= kept for n in walked)  # never main's every file
    world.sim.report("stg-1", "nav", "deployed", world.clock.now)
    world.clock.tick(30)
    walked.clear()
    assert reconcile_once(replace(world.settings, cache=None)).stalled is None
    assert max(walked) > kept  # without the cache: picked from every file of main, as before


def commit_tree_id_of(world: ControllerWorld) -> str:
    return world.fleet.git("rev-parse", "HEAD^{tree}").strip()


# --- releases and approvals -------------------------------------------------------------------------


def below_threshold(world: ControllerWorld, keys: KeyFactory) -> str:
    nav_1_1_0(world.fleet)
    world.fleet.signers_of["releases/nav/1.1.0.yaml"] = world.fleet.release_signers[:1]
    world.merge("nav 1.1.0, signed by one of two release signers")
    return "releases/nav/1.1.0.yaml: 1 of 2 required release signatures verified"


def approvals_voided(world: ControllerWorld, keys: KeyFactory) -> str:
    nav_1_1_0(world.fleet)
    world.merge("nav 1.1.0, approved")
    world.fleet.approvers_of[rollout_path("nav")] = []  # the approvals of the last commit stay
    world.fleet.docs[rollout_path("nav")]["device_timeout_seconds"] = 120
    world.merge("nav: shorter device timeout, not re-approved")
    return "rollouts/nav.yaml: 0 of 2 required approvals verified"


def two_release_signers(keys: KeyFactory) -> Callable[[FleetRepoBuilder], None]:
    def configure(fleet: FleetRepoBuilder) -> None:
        fleet.add_signer(keys.key("release-bot-2"))
        fleet.trust["release_signers"]["threshold"] = 2

    return configure


@pytest.mark.parametrize(
    "attack", [below_threshold, approvals_voided], ids=["release-below-threshold", "approvals-voided"]
)
def test_untrusted_release_or_rollout_stalls_and_robots_keep_the_working_version(
    tmp_path: Path, keys: KeyFactory, attack: Callable[[ControllerWorld, KeyFactory], str]
) -> None:
    world = make_world(tmp_path, keys, configure=two_release_signers(keys))
    before = deployed_on_staging(world)

    world.clock.tick(30)
    culprit = attack(world, keys)
    result = reconcile_once(world.settings)
    assert_stalled_and_untouched(world, result, before, culprit)

    # Signed and approved properly: the reconcile proceeds with a new generation.
    world.fleet.signers_of.clear()
    world.fleet.approvers_of.clear()
    world.merge("fixed: signed and approved")
    world.clock.tick(30)
    world.reconcile()
    rollout = world.state().rollouts["nav"]
    assert (rollout.generation, rollout.version, rollout.phase) == (2, "1.1.0", RolloutPhase.PROGRESSING)
    assert [d.version for d in world.sim.bundle("stg-1", world.clock.now).deployments] == ["1.1.0"]


# --- a rewritten main -----------------------------------------------------------------------------


@pytest.mark.parametrize("fresh_cache", [False, True], ids=["same-cache", "fresh-cache"])
def test_force_pushed_main_stalls_with_history_rewritten_and_leaves_desired_state_alone(
    tmp_path: Path, keys: KeyFactory, fresh_cache: bool
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    before = desired_targets(world.server)
    processed = world.state().meta.last_processed_commit

    world.fleet.rollout("nav", app="nav", release="1.0.0", cohorts=["staging", "canary", "production"])
    world.fleet.write()
    world.fleet.git("add", "-A")
    world.fleet.git("commit", "-q", "--amend", "-m", "nav to everyone at once (rewritten)")
    world.fleet.git("push", "-q", "--force", str(world.server), "main")
    settings = world.settings
    if fresh_cache:
        settings = replace(settings, source=Source.for_url(settings.source.url, tmp_path / "new-host"))
    world.clock.tick(30)

    result = reconcile_once(settings)
    assert result.stalled is not None and "history was rewritten" in result.stalled
    assert (result.desired_refs, result.root_signatures) == (0, 0)
    assert desired_targets(world.server) == before
    state = world.state()
    assert state.meta.last_processed_commit == processed
    assert state.rollouts["nav"].phase is RolloutPhase.STALLED
    (event,) = [line["event"] for line in audit_lines(state) if line["event"]["kind"] == "history_rewritten"]
    assert processed in event["reason"] and event["commit"] == world.fleet.git("rev-parse", "HEAD")
    assert_no_duplicates(state)
    again = reconcile_once(settings)
    assert again.state_commit is None and desired_targets(world.server) == before
