"""The robot's wire format in bytes (fleetcd.wire), checked against the real git CLI where git is involved.

The agent, the controller and the simulator all read desired state and write status commits through
this module, so the three can only agree if it is exact: each desired file refused from its header
when missing or over its cap (before a byte is read), the same report always making the same commit
(so a robot with nothing new does not push a different commit), and a status commit that the git
CLI stores and reads back byte for byte.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fleetcd.compat import UTC
from fleetcd.desired import BUNDLE_FILE, PROOF_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, BundleRejected
from fleetcd.desired.bundle import MAX_BUNDLE_BYTES, MAX_PROOF_BYTES, MAX_ROOT_BYTES, MAX_ROOT_SIGNATURE_BYTES
from fleetcd.desired.chain import MAX_TRUST_BYTES, TRUST_FILE
from fleetcd.reasons import Reason
from fleetcd.reports import MAX_REPORT_BYTES, STATUS_FILE, StatusReport
from fleetcd.wire import (
    DESIRED_FILE_CAPS,
    DESIRED_FILE_NAMES,
    REPORT_AUTHOR,
    DesiredFiles,
    check_desired_file,
    desired_files,
    status_commit,
)
from tests.gitrepos import GIT_ENV, bare_repo, git

COMMIT = "c" * 40
AT = datetime(2026, 5, 4, 9, 0, 0, tzinfo=UTC)

# --- desired state: caps from the header --------------------------------------------------------------


def test_the_caps_are_the_verifiers_in_the_order_it_reads_them() -> None:
    assert DESIRED_FILE_CAPS == (
        (BUNDLE_FILE, MAX_BUNDLE_BYTES),
        (ROOT_FILE, MAX_ROOT_BYTES),
        (ROOT_SIGNATURE_FILE, MAX_ROOT_SIGNATURE_BYTES),
        (PROOF_FILE, MAX_PROOF_BYTES),
        (TRUST_FILE, MAX_TRUST_BYTES),
    )
    assert DESIRED_FILE_NAMES == (BUNDLE_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, PROOF_FILE, TRUST_FILE)
    assert len(set(DESIRED_FILE_NAMES)) == 5


@pytest.mark.parametrize(("name", "cap"), DESIRED_FILE_CAPS, ids=[n for n, _ in DESIRED_FILE_CAPS])
def test_each_file_is_accepted_up_to_its_cap_and_refused_one_byte_over(name: str, cap: int) -> None:
    check_desired_file(COMMIT, name, 0, cap)
    check_desired_file(COMMIT, name, cap, cap)
    with pytest.raises(BundleRejected) as caught:
        check_desired_file(COMMIT, name, cap + 1, cap)
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.file, diagnostic.reason) == (name, Reason.TOO_LARGE)
    assert f"{cap + 1} bytes" in diagnostic.message and str(cap) in diagnostic.message
    assert COMMIT in diagnostic.message


@pytest.mark.parametrize("name", DESIRED_FILE_NAMES)
def test_a_missing_file_is_an_invalid_bundle_naming_it_and_the_commit(name: str) -> None:
    with pytest.raises(BundleRejected) as caught:
        check_desired_file(COMMIT, name, None, 1024)
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.file, diagnostic.reason) == (name, Reason.BUNDLE_INVALID)
    assert COMMIT in diagnostic.message and name in diagnostic.message


def test_a_size_far_beyond_any_integer_a_header_could_hold_is_refused() -> None:
    with pytest.raises(BundleRejected):
        check_desired_file(COMMIT, BUNDLE_FILE, 2**70, MAX_BUNDLE_BYTES)


def test_desired_files_are_assembled_by_name_not_by_order() -> None:
    data = {
        PROOF_FILE: b"p",
        ROOT_SIGNATURE_FILE: b"s",
        ROOT_FILE: b"r",
        BUNDLE_FILE: b"b",
        TRUST_FILE: b"t",
        "x": b"x",
    }
    files = desired_files(COMMIT, data)
    assert files == DesiredFiles(COMMIT, b"b", b"r", b"s", b"p", b"t")


def test_a_conflict_note_does_not_change_what_the_files_are() -> None:
    plain = DesiredFiles(COMMIT, b"b", b"r", b"s", b"p", b"t")
    noted = DesiredFiles(COMMIT, b"b", b"r", b"s", b"p", b"t", conflict=RuntimeError("two layouts"))
    assert plain == noted


def test_desired_files_with_a_file_missing_raise_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match=PROOF_FILE):
        desired_files(COMMIT, {BUNDLE_FILE: b"", ROOT_FILE: b"", ROOT_SIGNATURE_FILE: b""})


# --- status commits -----------------------------------------------------------------------------------


def report(seq: int = 7, at: datetime = AT, device: str = "amr-1", **fields: object) -> StatusReport:
    data: dict[str, object] = {
        "format": "fleetcd.dev/status/v1",
        "device": device,
        "seq": seq,
        "agent_version": "0.1.0",
        "reported_at": at.isoformat(),
        **fields,
    }
    return StatusReport.model_validate(data)


def test_a_status_commit_carries_the_report_as_canonical_json() -> None:
    made = status_commit(report(bundle_serial=3, last_error="BundleRejected: expired"))
    assert made.path == STATUS_FILE
    assert made.data == json.dumps(json.loads(made.data), sort_keys=True, separators=(",", ":")).encode()
    assert StatusReport.model_validate_json(made.data) == report(
        bundle_serial=3, last_error="BundleRejected: expired"
    )
    assert len(made.data) <= MAX_REPORT_BYTES


def test_the_same_report_always_makes_the_same_commit_fields() -> None:
    assert status_commit(report()) == status_commit(report())
    assert status_commit(report(seq=8)) != status_commit(report(seq=7))


def test_the_commit_names_the_robot_and_the_seq() -> None:
    made = status_commit(report(seq=42, device="amr-ber-07"))
    assert made.message == "status of amr-ber-07: seq 42"
    assert made.author_name == f"{REPORT_AUTHOR} amr-ber-07"
    assert made.author_email == "amr-ber-07@fleetcd.invalid"
    assert status_commit(report(device="amr-x"), sender="fleetcd-sim").author_name == "fleetcd-sim amr-x"


def test_the_commit_time_is_the_reports_time_in_any_zone() -> None:
    tokyo = AT.astimezone(timezone(timedelta(hours=9)))
    made = status_commit(report(at=tokyo))
    assert made.when == AT
    assert made.when.tzinfo is not None


def test_git_stores_and_returns_a_status_commit_byte_for_byte(tmp_path: Path) -> None:
    made = status_commit(report(seq=9, bundle_serial=2, stale=True))
    repo = bare_repo(tmp_path / "robot.git")
    (tmp_path / "status.json").write_bytes(made.data)
    blob_id = git("hash-object", "-w", str(tmp_path / "status.json"), cwd=repo).strip()
    tree = _mktree(repo, f"100644 blob {blob_id}\t{made.path}\n")
    env = {
        **GIT_ENV,
        "GIT_AUTHOR_NAME": made.author_name,
        "GIT_AUTHOR_EMAIL": made.author_email,
        "GIT_AUTHOR_DATE": made.when.isoformat(),
        "GIT_COMMITTER_NAME": made.author_name,
        "GIT_COMMITTER_EMAIL": made.author_email,
        "GIT_COMMITTER_DATE": made.when.isoformat(),
    }
    commit = git("commit-tree", tree, "-m", made.message, cwd=repo, env=env).strip()
    assert git("cat-file", "blob", f"{commit}:{STATUS_FILE}", cwd=repo).encode() == made.data
    assert git("log", "-1", "--format=%an <%ae>|%s|%aI", commit, cwd=repo).strip() == (
        f"{made.author_name} <{made.author_email}>|{made.message}|2026-05-04T09:00:00+00:00"
    )
    again = git("commit-tree", tree, "-m", made.message, cwd=repo, env=env).strip()
    assert again == commit, "the same report must make the same commit"


def _mktree(repo: Path, spec: str) -> str:
    done = subprocess.run(["git", "mktree"], cwd=repo, input=spec, capture_output=True, text=True, check=True)
    return done.stdout.strip()
