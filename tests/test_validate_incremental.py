"""Revalidation at the cost of what changed: its verdict is a fresh full validation's, byte for byte.

:func:`fleetcd.validation.incremental.recheck_content` keeps the last content check (documents and
cross-file checks) when a snapshot's bytes are unchanged, or when only signatures, approvals or keys
changed; :func:`fleetcd.validation.pipeline.judge` then runs gpg's and the clock's checks afresh.
Real gpg, real files written by :class:`tests.fleetrepo.FleetRepoBuilder`. What must hold:

* after every commit of a random sequence (robots added, removed and changed, cohorts changed and
  deleted, releases added, rollouts retargeted, signatures and approvals removed or forged, key
  files swapped, the clock moved past the trust root's expiry warning and past a signing key's
  expiry), the incremental verdict renders byte for byte as a fresh full validation's, and each
  way of reusing was taken;
* a robot, cohort or rollout that becomes invalid through another file's change is still refused
  (a change of robot files only is rechecked from the kept index: :mod:`tests.test_validate_robot_delta`
  covers that path over every kind of document change);
* a signing key that expires while the snapshot stays put is caught by the same-tree revalidation,
  which reuses every content check and parses nothing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from fleetcd.compat import UTC
from fleetcd.errors import Diagnostic
from fleetcd.layout import approval_path, cohort_path, device_path, release_path, release_signature_path
from fleetcd.loading.memo import DocumentMemo
from fleetcd.reasons import Reason
from fleetcd.validation import ValidationResult, validate_snapshot
from fleetcd.validation.incremental import Reuse, changed_paths, recheck_content
from fleetcd.validation.pipeline import ContentCheck, check_content, judge
from fleetcd.validation.report import Format, render
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import GpgKey, KeyFactory

NOW = datetime(2030, 6, 1, tzinfo=UTC)
TRUST_EXPIRES = datetime(2036, 1, 1, tzinfo=UTC)  # tests.fleetrepo.TRUST_EXPIRES
SEEDS = (3, 17, 2024)
STEPS = 14


def short_lived_key(keys: KeyFactory, name: str, seconds: int) -> GpgKey:
    fingerprint = keys.signer.generate_key(name.title(), f"{name}@fleet.test", expire=f"seconds={seconds}")
    return GpgKey(name, fingerprint, keys.signer.export_public(fingerprint))


def assert_same_verdict(got: ValidationResult, want: ValidationResult) -> None:
    """Byte for byte in every report format, and equal in what a reconcile acts on."""
    for fmt in Format:
        assert render(got, fmt) == render(want, fmt), fmt
    assert got.diagnostics == want.diagnostics
    assert got.trust == want.trust
    assert got.spec == want.spec


class Sequence:
    """A fleet repository edited commit by commit, revalidated incrementally after each."""

    def __init__(self, root: Path, keys: KeyFactory, rng: random.Random) -> None:
        self.keys, self.rng = keys, rng
        self.fleet = FleetRepoBuilder(root, keys=keys).standard()
        self.fleet.write()
        self.robots = [f"amr-00{index}" for index in range(1, 5)]
        self.versions = ["1.0.0"]
        self.now = NOW
        self.memo = DocumentMemo()
        self.content: ContentCheck | None = None
        self.reuses: dict[Reuse, int] = {}
        self.errors_seen = 0

    def revalidate(self) -> ValidationResult:
        files = self.fleet.snapshot()
        self.content, reuse = recheck_content(self.content, files, memo=self.memo)
        self.reuses[reuse] = self.reuses.get(reuse, 0) + 1
        got = judge(self.content, now=self.now)
        want = validate_snapshot(files, now=self.now)
        assert_same_verdict(got, want)
        assert_same_verdict(judge(self.content, now=self.now, strict=True), want.promoted())
        self.errors_seen += len(want.errors)
        return got

    # --- edits: each one commit ----------------------------------------------------------------------
    def add_robot(self) -> None:
        robot = f"rnd-{len(self.robots):03d}"
        self.robots.append(robot)
        self.fleet.device(robot, labels={"line": str(self.rng.randrange(3))})
        if self.rng.random() < 0.5 and cohort_path("production") in self.fleet.docs:
            self.fleet.docs[cohort_path("production")]["devices"].append(robot)
        self.fleet.write()

    def remove_robot(self) -> None:
        robot = self.rng.choice(self.robots)
        self.fleet.remove(device_path(robot))  # a cohort may still list it: an unknown robot
        self.fleet.write()

    def change_robot(self) -> None:
        robot = self.rng.choice(self.robots)
        change = self.rng.choice(
            [
                {"labels": {"line": "9"}},
                {"hardware": {"model": "mk2", "revision": 4}},
                {"decommissioned": True},
            ]
        )
        self.fleet.device(robot, **change)
        self.fleet.write()

    def rename_robot(self) -> None:
        """A robot's file moved to a new id (a robot file only: rechecked from the kept index)."""
        robot = self.rng.choice(self.robots)
        self.fleet.remove(device_path(robot))
        renamed = f"{robot}-b"
        self.robots.append(renamed)
        self.fleet.device(renamed, labels={"line": str(self.rng.randrange(3))})
        self.fleet.write()

    def change_cohort(self) -> None:
        name = self.rng.choice(["canary", "production"])
        members = self.rng.sample(self.robots, k=self.rng.randint(0, min(3, len(self.robots))))
        if self.rng.random() < 0.3:
            members.append("ghost-robot")  # an unknown robot: refused
        stage = self.rng.choice(["canary", "production", "staging"])  # approvals required change
        self.fleet.cohort(name, members, stage=stage)
        self.fleet.write()

    def delete_cohort(self) -> None:
        self.fleet.remove(cohort_path(self.rng.choice(["canary", "production"])))
        self.fleet.write()

    def add_release(self) -> None:
        version = f"1.{len(self.versions)}.0"
        self.versions.append(version)
        self.fleet.release("nav", version, config_schema={"type": "object"})
        if self.rng.random() < 0.5:  # the rollout moves to it, approved again on write
            self.fleet.docs["rollouts/nav-1-0-0.yaml"]["release"] = version
        self.fleet.write()

    def remove_signature(self) -> None:
        version = self.rng.choice(self.versions)
        path = release_path("nav", version)
        self.fleet.signers_of[path] = []  # stays unsigned on later writes
        self.fleet.remove(release_signature_path("nav", version, self.fleet.release_signers[0].fingerprint))

    def remove_approval(self) -> None:
        approver = self.rng.choice(self.fleet.approver_keys)
        self.fleet.approvers_of["rollouts/nav-1-0-0.yaml"] = [
            k for k in self.fleet.approver_keys if k != approver
        ]
        self.fleet.remove(approval_path("nav-1-0-0", approver.fingerprint))

    def forge_signature(self) -> None:
        """Mallory signs a release; the file is filed under the trusted signer's name."""
        version = self.rng.choice(self.versions)
        signer = self.fleet.release_signers[0]
        forged = self.keys.sign(self.fleet.read(release_path("nav", version)), self.keys.key("mallory"))
        self.fleet.signers_of[release_path("nav", version)] = []
        self.fleet.file(release_signature_path("nav", version, signer.fingerprint), forged)
        self.fleet.write()

    def orphan_signature(self) -> None:
        """A signature of a release that does not exist: reported on the signature file."""
        signer = self.fleet.release_signers[0]
        self.fleet.file(release_signature_path("nav", "9.9.9", signer.fingerprint), b"not even armored\n")
        self.fleet.write()

    def swap_key_file(self) -> None:
        self.fleet.file(self.fleet.approver_keys[0].key_file, self.keys.key("mallory").public)
        self.fleet.write()

    def later(self) -> None:
        """No commit: the clock moves (into the trust root's expiry warning, or past its expiry)."""
        self.now = self.rng.choice([self.now + timedelta(minutes=11), TRUST_EXPIRES - timedelta(days=10)])
        if self.rng.random() < 0.2:
            self.now = TRUST_EXPIRES + timedelta(days=1)


EDITS: list[Callable[[Sequence], None]] = [
    Sequence.add_robot,
    Sequence.remove_robot,
    Sequence.change_robot,
    Sequence.rename_robot,
    Sequence.change_cohort,
    Sequence.delete_cohort,
    Sequence.add_release,
    Sequence.remove_signature,
    Sequence.remove_approval,
    Sequence.forge_signature,
    Sequence.orphan_signature,
    Sequence.swap_key_file,
    Sequence.later,
    Sequence.later,
]


@pytest.mark.parametrize("seed", SEEDS)
def test_random_commits_revalidate_byte_for_byte_as_a_full_validation(
    tmp_path: Path, keys: KeyFactory, seed: int
) -> None:
    rng = random.Random(seed)
    run = Sequence(tmp_path, keys, rng)
    assert run.revalidate().ok
    for _ in range(STEPS):
        rng.choice(EDITS)(run)
        run.revalidate()
        run.revalidate()  # the same bytes again: nothing re-checked but gpg's and the clock's part
    assert run.reuses.get(Reuse.SAME, 0) >= STEPS
    assert run.reuses.get(Reuse.NONE, 0) >= 1 and run.reuses.get(Reuse.TRUST_FILES, 0) >= 1
    assert run.errors_seen > 0  # the sequence did break the fleet, so the comparison compared something


def test_every_trust_file_edit_reuses_the_content_checks_and_matches_a_full_validation(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """Signatures removed, forged or orphaned, approvals removed, key files swapped: not one document
    changes, so each is revalidated from the kept content checks, with the full verdict."""
    run = Sequence(tmp_path, keys, random.Random(1))
    run.revalidate()
    for edit in (
        Sequence.remove_approval,
        Sequence.forge_signature,
        Sequence.orphan_signature,
        Sequence.swap_key_file,
        Sequence.remove_signature,
    ):
        edit(run)
        verdict = run.revalidate()
        assert not verdict.ok
    assert run.reuses == {Reuse.NONE: 1, Reuse.TRUST_FILES: 5}
    assert run.memo.parsed == len(run.memo)  # every document parsed once, at the start


def test_a_signing_key_that_expires_is_caught_on_an_aged_same_tree_revalidation(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """gpg judges key expiry on the wall clock: the same bytes, revalidated after the release
    signer's key expired, are refused as a full validation refuses them, with nothing re-parsed."""
    short = short_lived_key(keys, "short-lived-incremental", 6)
    fleet = FleetRepoBuilder(tmp_path, keys=keys).standard()
    fleet.add_signer(short)
    fleet.release("nav", "1.0.1", signers=[short])
    fleet.write()
    files = fleet.snapshot()
    memo = DocumentMemo()
    content = check_content(files, memo=memo)
    assert judge(content).ok
    parsed = memo.parsed

    time.sleep(7.5)
    again, reuse = recheck_content(content, files, memo=memo)
    verdict = judge(again)
    assert reuse is Reuse.SAME and again is content and memo.parsed == parsed
    assert not verdict.ok
    assert [e.file for e in verdict.errors] == ["releases/nav/1.0.1.yaml"]
    assert_same_verdict(verdict, validate_snapshot(files))


def test_the_trust_roots_expiry_is_judged_on_the_kept_content_at_each_new_now(
    tmp_path: Path, keys: KeyFactory
) -> None:
    fleet = FleetRepoBuilder(tmp_path, keys=keys).standard()
    fleet.write()
    files = fleet.snapshot()
    content = check_content(files)
    assert judge(content, now=NOW).diagnostics == ()
    for now in (TRUST_EXPIRES - timedelta(days=3), TRUST_EXPIRES + timedelta(seconds=1)):
        kept, reuse = recheck_content(content, files)
        verdict = judge(kept, now=now)
        assert reuse is Reuse.SAME
        assert [d.reason for d in verdict.diagnostics] == [Reason.EXPIRED]
        assert_same_verdict(verdict, validate_snapshot(files, now=now))
    assert not judge(content, now=TRUST_EXPIRES).ok


def refused_after(
    tmp_path: Path, keys: KeyFactory, edit: Callable[[FleetRepoBuilder], None], taken: Reuse = Reuse.NONE
) -> ValidationResult:
    """A valid fleet validated and kept, then ``edit`` committed and revalidated incrementally."""
    fleet = FleetRepoBuilder(tmp_path, keys=keys).standard()
    fleet.config("nav", "cohort-canary", {"max_speed": 1.0})
    fleet.write()
    memo = DocumentMemo()
    content, _ = recheck_content(None, fleet.snapshot(), memo=memo)
    assert judge(content).ok
    edit(fleet)
    fleet.write()
    files = fleet.snapshot()
    again, reuse = recheck_content(content, files, memo=memo)
    verdict = judge(again)
    assert reuse is taken
    assert_same_verdict(verdict, validate_snapshot(files))
    return verdict


def errors(result: ValidationResult) -> list[tuple[str, Reason]]:
    return [(d.file, d.reason) for d in result.errors]


def test_a_deleted_cohort_still_refuses_the_rollout_and_config_that_name_it(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """Neither the rollout nor the cohort's config changed; the cohort's deletion makes both invalid."""
    verdict = refused_after(
        tmp_path, keys, lambda fleet: fleet.remove(cohort_path("canary")), Reuse.DOCUMENTS
    )
    assert ("rollouts/nav-1-0-0.yaml", Reason.UNKNOWN_REFERENCE) in errors(verdict)
    assert ("configs/nav/cohort-canary.yaml", Reason.UNKNOWN_REFERENCE) in errors(verdict)


def test_a_deleted_robot_still_refuses_the_cohort_that_lists_it(tmp_path: Path, keys: KeyFactory) -> None:
    """A removed robot file is rechecked from the index (its document dropped from the memo)."""
    verdict = refused_after(tmp_path, keys, lambda fleet: fleet.remove(device_path("amr-003")), Reuse.ROBOTS)
    assert errors(verdict) == [("cohorts/production.yaml", Reason.UNKNOWN_DEVICE)]


MOVES: dict[str, tuple[Callable[[FleetRepoBuilder], object], Reuse]] = {
    "the robot's own file": (
        lambda fleet: fleet.device("amr-002", labels={"quarantine": "yes"}),
        Reuse.ROBOTS,
    ),
    "the cohort's selector": (
        lambda fleet: fleet.cohort("quarantine", selector={"sites": ["berlin"]}),
        Reuse.DOCUMENTS,
    ),
}


@pytest.mark.parametrize("move", list(MOVES.values()), ids=list(MOVES))
def test_a_robot_moved_under_a_cohort_config_that_breaks_its_schema_is_refused(
    tmp_path: Path, keys: KeyFactory, move: tuple[Callable[[FleetRepoBuilder], object], Reuse]
) -> None:
    """The quarantine cohort's config is over nav's limit while no robot is in it; one changed file
    (a robot's labels, or the cohort's selector) puts robots in it and their merged config fails."""
    fleet = FleetRepoBuilder(tmp_path, keys=keys).standard()
    fleet.cohort("quarantine", selector={"labels": {"quarantine": "yes"}})
    fleet.config("nav", "cohort-quarantine", {"max_speed": 9.0})
    fleet.write()
    memo = DocumentMemo()
    content, _ = recheck_content(None, fleet.snapshot(), memo=memo)
    assert judge(content).ok
    parsed = memo.parsed
    edit, taken = move
    edit(fleet)
    fleet.write()
    files = fleet.snapshot()
    again, reuse = recheck_content(content, files, memo=memo)
    verdict = judge(again)
    assert reuse is taken and memo.parsed == parsed + 1
    assert ("configs/nav/cohort-quarantine.yaml", Reason.CONFIG_INVALID) in errors(verdict)
    assert_same_verdict(verdict, validate_snapshot(files))


def test_an_approval_made_invalid_by_a_changed_release_is_refused_though_only_documents_changed(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """The rollout's release file is republished in place: the approvals are now over other bytes."""

    def republish(fleet: FleetRepoBuilder) -> None:
        fleet.approvers_of["rollouts/nav-1-0-0.yaml"] = []  # the old approvals stay on disk
        fleet.docs[release_path("nav", "1.0.0")]["artifacts"][0]["name"] = "nav-renamed"

    verdict = refused_after(tmp_path, keys, republish, Reuse.DOCUMENTS)  # from the kept index
    assert ("rollouts/nav-1-0-0.yaml", Reason.APPROVAL_MISSING) in errors(verdict)


def test_other_reader_findings_or_a_base_make_a_full_check(tmp_path: Path, keys: KeyFactory) -> None:
    fleet = FleetRepoBuilder(tmp_path, keys=keys).standard()
    fleet.write()
    files = fleet.snapshot()
    content = check_content(files)
    symlink = Diagnostic("devices/x.yaml", None, None, "symlinks are not allowed", Reason.INVALID)
    with_problem, reuse = recheck_content(content, files, problems=[symlink])
    assert reuse is Reuse.NONE and symlink in judge(with_problem).errors
    against_base = check_content(files, base={})
    assert recheck_content(against_base, files)[1] is Reuse.NONE
    assert recheck_content(None, files)[1] is Reuse.NONE


def test_changed_paths_names_only_signature_approval_and_key_changes() -> None:
    old = {"devices/a.yaml": b"a", "keys/k.asc": b"k", "approvals/r/" + "A" * 40 + ".asc": b"x"}
    assert changed_paths(old, old) == set()
    assert changed_paths(old, dict(old)) == set()
    assert changed_paths(old, {**old, "keys/k.asc": b"other"}) == {"keys/k.asc"}
    assert changed_paths(old, {k: v for k, v in old.items() if not k.startswith("approvals/")}) == {
        "approvals/r/" + "A" * 40 + ".asc"
    }
    assert changed_paths(old, {**old, "devices/a.yaml": b"b"}) is None
    assert changed_paths(old, {**old, "devices/b.yaml": b"b"}) is None
    assert changed_paths(old, {**old, "keys/notes.txt": b"?"}) is None  # unexpected file: a finding
    assert changed_paths(old, {**old, "releases/a/1.0.0.yaml.d/" + "B" * 40 + ".asc": b"s"}) is not None


def test_reattached_trust_files_give_the_loaders_spec_and_findings(tmp_path: Path, keys: KeyFactory) -> None:
    """A spec whose signatures were attached again equals one loaded from scratch, orphans included."""
    fleet = FleetRepoBuilder(tmp_path, keys=keys).standard()
    fleet.write()
    content = check_content(fleet.snapshot())
    signer = fleet.release_signers[0]
    fleet.file(release_signature_path("nav", "2.0.0", signer.fingerprint), b"orphan\n")
    fleet.file(approval_path("gone-rollout", signer.fingerprint), b"orphan\n")
    fleet.write()
    files = fleet.snapshot()
    again, reuse = recheck_content(content, files)
    fresh = check_content(files)
    assert reuse is Reuse.TRUST_FILES
    assert again.spec == fresh.spec and again.attached == fresh.attached and len(fresh.attached) == 2
    assert again.documents == fresh.documents and again.checks == fresh.checks
    assert again.ctx.spec is again.spec and again.ctx.devices is content.ctx.devices
