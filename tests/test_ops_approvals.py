"""Which earlier approvals ``fleetcd rollback`` restores (controller/ops/approvals.py), attacked.

Rollback changes what approvers signed, so it searches main's history for approvals of exactly the
content it returns to and restores only those that verify now: against today's trust root and
today's key files, over the rollout, the release and the app's config files together. Each test
here is a way an old signature could sneak back in — a key revoked since, a signature filed under
another approver's name, an approval of the same release over a config it never saw — or a fault
in the repository (no commits yet, a key file that is garbage) that must not hide the approvals
that do verify. Real git, real gpg, the real ``fleetcd`` command group.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetcd.layout import approval_path, rollout_path
from fleetcd.reasons import Reason
from fleetcd.validation.worktree import validate_work_tree
from tests.clirun import fleetcd
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import GpgKey, KeyFactory
from tests.test_ops_switches import AUTHOR, COMMENTED_ROLLOUT, bump, commits, flat, small_fleet


def approvals_on_disk(fleet: FleetRepoBuilder, rollout: str = "nav") -> set[str]:
    folder = fleet.root / "approvals" / rollout
    return {f"approvals/{rollout}/{p.name}" for p in folder.glob("*.asc")} if folder.is_dir() else set()


def rollback(capsys: pytest.CaptureFixture[str], fleet: FleetRepoBuilder, *args: str) -> tuple[int, str, str]:
    return fleetcd(capsys, "rollback", "nav", "--repo", str(fleet.root), *AUTHOR, *args)


def production_fleet(
    root: Path, keys: KeyFactory, *versions: str, approvers: list[GpgKey] | None = None
) -> FleetRepoBuilder:
    """Two production robots (2 approvals needed), nav ``versions`` published, the commented
    rollout on the last one, approved on write() by ``approvers`` (default: alice and bob); not
    committed."""
    fleet = FleetRepoBuilder(root, keys=keys)
    for index in range(1, 3):
        fleet.device(f"amr-00{index}")
    fleet.cohort("production", ["amr-001", "amr-002"], stage="production")
    for version in versions:
        fleet.release("nav", version)
    fleet.rollout("nav", app="nav", release=versions[-1], approvers=approvers)
    set_rollout(fleet, versions[-1])
    fleet.git_init()
    return fleet


def set_rollout(fleet: FleetRepoBuilder, version: str) -> None:
    fleet.file(rollout_path("nav"), COMMENTED_ROLLOUT.format(version=version).replace("canary, ", ""))


def plain_public(key: GpgKey) -> bytes:
    """``key``'s key file as it was before its revocation certificate was published."""
    return key.public.removesuffix(b"\n" + key.revocation)


def test_an_approval_by_a_key_revoked_since_is_not_restored(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rex approved nav 1.0.0 and later had his key revoked (published in keys/rex.asc). Rolling
    back to 1.0.0 must not bring his old signature back as a live approval."""
    rex = keys.revoked_key("rex")
    fleet = production_fleet(tmp_path / "fleet", keys, "1.0.0")
    fleet.add_approver(rex)
    fleet.raw[rex.key_file] = plain_public(rex)  # not revoked yet
    fleet.approver_keys = [k for k in fleet.approver_keys if k.name != "bob"]
    fleet.trust["approvers"] = fleet.key_refs(*fleet.approver_keys)  # alice and rex
    fleet.commit("nav 1.0.0, approved by alice and rex")
    fleet.release("nav", "1.1.0")
    set_rollout(fleet, "1.1.0")
    fleet.commit("nav 1.1.0")
    fleet.raw[rex.key_file] = rex.public
    fleet.commit("rex's key is revoked")

    code, _out, err = rollback(capsys, fleet)
    assert code == 0, err
    alice = next(k for k in fleet.approver_keys if k.name == "alice")
    assert approvals_on_disk(fleet) == {approval_path("nav", alice.fingerprint)}
    assert "APPROVALS NEEDED: 1 of 2 approvals for stage production verified (alice)" in flat(err)
    assert {d.reason for d in validate_work_tree(fleet.root).errors} == {Reason.APPROVAL_MISSING}


def test_a_signature_filed_under_another_approvers_name_is_not_restored(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """History holds alice's approval of 1.0.0 twice: under her name and, planted, under bob's.
    One approver's signature must count once, whatever file it sits in."""
    alice, bob = keys.key("alice"), keys.key("bob")
    fleet = production_fleet(tmp_path / "fleet", keys, "1.0.0", approvers=[alice])
    fleet.write()
    fleet.approve("nav", alice, as_fingerprint=bob.fingerprint)
    fleet.git("add", "-A")
    fleet.git("commit", "-q", "-m", "nav 1.0.0; mallory files alice's signature in bob's slot")
    fleet.approvers_of[rollout_path("nav")] = [alice, bob]
    fleet.release("nav", "1.1.0")
    set_rollout(fleet, "1.1.0")
    fleet.commit("nav 1.1.0, approved by both for real")

    code, _out, err = rollback(capsys, fleet)
    assert code == 0, err
    assert approvals_on_disk(fleet) == {approval_path("nav", alice.fingerprint)}
    assert "APPROVALS NEEDED: 1 of 2 approvals for stage production verified (alice)" in flat(err)


def test_an_approval_of_the_release_under_another_config_is_not_restored(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Approvers signed nav 1.0.0 with max_speed 1.5. The bump to 1.1.0 also raised it to 2.0.
    Back on 1.0.0 the robots would run 1.0.0 at 2.0, a pairing nobody approved."""
    fleet = FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()
    fleet.git_init()
    fleet.commit("nav 1.0.0 at max_speed 1.5")
    schema = fleet.docs["releases/nav/1.0.0.yaml"]["config"]["schema"]
    fleet.release("nav", "1.1.0", config_schema=schema)
    fleet.config("nav", "default", {"max_speed": 2.0, "map": "hall-a"})
    fleet.rollout("nav-1-0-0", app="nav", release="1.1.0", cohorts=["canary", "production"])
    fleet.commit("nav 1.1.0 at max_speed 2.0")

    code, _out, err = fleetcd(capsys, "rollback", "nav-1-0-0", "--repo", str(fleet.root), *AUTHOR)
    assert code == 0, err
    assert approvals_on_disk(fleet, "nav-1-0-0") == set()
    assert "APPROVALS NEEDED: 0 of 2 approvals for stage production verified" in flat(err)


def test_a_key_file_that_is_garbage_does_not_hide_the_approvals_that_verify(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """One unreadable keys/*.asc must not make every signature look unknown (ops/remote.open_keyring)."""
    fleet = small_fleet(tmp_path / "fleet", keys)
    bump(fleet, "1.1.0")
    fleet.file("keys/broken.asc", b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a key\n")
    fleet.commit("a broken key file")

    code, out, err = rollback(capsys, fleet)
    assert code == 0, err
    assert "Restored 2 earlier approval(s)" in flat(out)
    assert "Approvals now: 2 of 2 approvals for stage production verified (alice, bob)" in flat(out)
    assert len(approvals_on_disk(fleet)) == 2


def test_a_rollback_before_the_first_commit_restores_nothing_and_says_what_is_missing(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fleet being set up (git init, nothing committed) has no history to search: no crash."""
    fleet = production_fleet(tmp_path / "fleet", keys, "1.0.0", "1.1.0")
    fleet.write()

    code, out, err = rollback(capsys, fleet, "--no-commit")
    assert code == 0, err
    assert "not committed" in out
    assert approvals_on_disk(fleet) == set()
    assert "APPROVALS NEEDED: 0 of 2" in flat(err)
    assert fleet.git("log", "--oneline", "--all") == ""


def test_rollback_with_approve_but_no_approver_key_is_refused_before_anything_is_written(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = small_fleet(tmp_path / "fleet", keys)
    bump(fleet, "1.1.0")
    empty = tmp_path / "gnupg"
    empty.mkdir(mode=0o700)
    before = fleet.read(rollout_path("nav"))

    code, out, err = rollback(capsys, fleet, "--approve", "--gnupghome", str(empty))
    assert code == 4, out + err
    assert "no secret key of an approver" in err
    assert fleet.read(rollout_path("nav")) == before
    assert fleet.git("status", "--porcelain") == "" and commits(fleet) == 2


def test_rollback_to_an_older_release_restores_the_approvals_of_that_content_only(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three releases in history: rolling 1.2.0 back to 1.0.0 restores 1.0.0's approvals, never
    1.1.0's (the newer signatures are over other bytes) — and each file once."""
    fleet = small_fleet(tmp_path / "fleet", keys)
    bump(fleet, "1.1.0")
    bump(fleet, "1.2.0")
    old = {p: fleet.git("show", f"HEAD~2:{p}").encode() for p in approvals_on_disk(fleet)}

    code, out, err = rollback(capsys, fleet, "--to", "1.0.0")
    assert code == 0, err
    assert "nav 1.2.0 -> 1.0.0" in out and "Restored 2 earlier approval(s)" in flat(out)
    restored = {p: fleet.read(p).strip() + b"\n" for p in approvals_on_disk(fleet)}
    assert restored == {p: data.strip() + b"\n" for p, data in old.items()}
    assert validate_work_tree(fleet.root).ok
