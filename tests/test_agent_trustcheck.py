"""Agent verify step against the real controller's output and real gpg: every attack is refused.

Each test fetches what the controller wrote (:func:`agent.sync.desired.fetch_desired`) and runs
:func:`agent.trustcheck.verify_desired` with the anchors pinned in ``agent.yaml``. Attacks come from
three places: a robot whose pins are stricter than what the fleet now says (thresholds lowered in
``fleet.yaml``), a server that serves old or foreign commits, and tampered bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent.errors import CorruptState
from agent.sync.desired import DesiredFiles, fetch_desired
from agent.trustcheck import (
    TrustState,
    check_unchanged,
    load_trust_state,
    record_expiry,
    save_trust_state,
    verify_desired,
)
from fleetcd.compat import UTC
from fleetcd.desired import BundleExpired, BundleRejected
from fleetcd.errors import SetupError
from fleetcd.reasons import Reason
from tests.gpgkeys import KeyFactory
from tests.sim.provision import ROBOT, ProvisionedFleet, provisioned_fleet
from tests.sim.world import START

EPOCH = datetime(1970, 1, 1, 0, 5, tzinfo=UTC)
EXPIRY = timedelta(days=7)  # fleet.yaml's default bundle expiry


@pytest.fixture
def aw(tmp_path: Path, keys: KeyFactory) -> ProvisionedFleet:
    return provisioned_fleet(tmp_path, keys)


def fetched(aw: ProvisionedFleet, device: str = ROBOT) -> DesiredFiles:
    files = fetch_desired(aw.config(device), aw.repo_dir(device))
    assert files is not None
    return files


def new_serial(aw: ProvisionedFleet, after: timedelta) -> None:
    """Let the controller's clock run until it re-signs the root with the next serial."""
    aw.world.clock.tick(after.total_seconds())
    aw.world.reconcile()


def rejection(excinfo: pytest.ExceptionInfo[BundleRejected]) -> tuple[Reason, str]:
    (diagnostic,) = excinfo.value.diagnostics
    return excinfo.value.reason, diagnostic.file


# --- the happy path --------------------------------------------------------------------------------


def test_the_controllers_bundle_is_accepted_and_the_state_remembers_it(aw: ProvisionedFleet) -> None:
    files = fetched(aw)
    verified, state = verify_desired(aw.config(), files, TrustState(), START + timedelta(hours=1))
    assert verified.bundle.device == ROBOT
    assert [r.version for r in verified.releases.values()] == ["1.0.0"]
    assert state.last_serial == verified.root.serial
    assert state.last_bundle_sha256 == verified.bundle_sha256
    assert state.last_commit == files.commit
    assert state.time_floor == START  # the root's issued_at: signed, unlike the clock reading
    assert state.expires_at == START + EXPIRY


def test_the_same_bundle_again_is_unchanged(aw: ProvisionedFleet) -> None:
    files = fetched(aw)
    _, state = verify_desired(aw.config(), files, TrustState(), START)
    again, same = verify_desired(aw.config(), files, state, START + timedelta(minutes=1))
    assert again.unchanged and same.last_serial == state.last_serial
    assert check_unchanged(state, files, START + timedelta(minutes=1)) is True


# --- attacks from the server -----------------------------------------------------------------------


def test_another_robots_bundle_is_rejected(aw: ProvisionedFleet) -> None:
    theirs = fetched(aw, "can-1")
    with pytest.raises(BundleRejected) as raised:
        verify_desired(aw.config(ROBOT), theirs, TrustState(), START)
    assert rejection(raised) == (Reason.NOT_INCLUDED, "proof.json")
    assert repr(ROBOT) in str(raised.value)


def test_an_older_validly_signed_bundle_is_a_rollback_and_the_state_keeps_the_newer_serial(
    aw: ProvisionedFleet, tmp_path: Path
) -> None:
    old = fetched(aw)
    new_serial(aw, timedelta(days=6))
    new = fetched(aw)
    assert new.commit != old.commit
    trust_file = tmp_path / "trust.json"
    verified, state = verify_desired(aw.config(), new, TrustState(), START + timedelta(days=6))
    save_trust_state(trust_file, state)
    with pytest.raises(BundleRejected) as raised:
        verify_desired(aw.config(), old, load_trust_state(trust_file), START + timedelta(days=6))
    assert rejection(raised) == (Reason.SERIAL_ROLLBACK, "root.json")
    assert load_trust_state(trust_file).last_serial == verified.root.serial == state.last_serial


def test_an_expired_bundle_is_a_freeze_attack(aw: ProvisionedFleet) -> None:
    with pytest.raises(BundleExpired) as raised:
        verify_desired(aw.config(), fetched(aw), TrustState(), START + EXPIRY + timedelta(hours=1))
    assert raised.value.reason is Reason.EXPIRED
    assert raised.value.expires_at == START + EXPIRY


def test_a_clock_reset_to_1970_cannot_revive_an_expired_bundle_but_a_fresh_one_is_accepted(
    aw: ProvisionedFleet, tmp_path: Path
) -> None:
    trust_file = tmp_path / "trust.json"
    files = fetched(aw)
    _, state = verify_desired(aw.config(), files, TrustState(), START + timedelta(hours=1))
    save_trust_state(trust_file, state)
    with pytest.raises(BundleExpired) as expired:
        verify_desired(aw.config(), files, load_trust_state(trust_file), START + EXPIRY + timedelta(days=1))
    save_trust_state(trust_file, record_expiry(load_trust_state(trust_file), expired.value))

    # Power cut, the RTC battery is dead: the clock says 1970. The old bundle stays expired...
    with pytest.raises(BundleExpired) as still:
        verify_desired(aw.config(), files, load_trust_state(trust_file), EPOCH)
    assert still.value.judged_at == START + EXPIRY
    with pytest.raises(BundleExpired):
        check_unchanged(load_trust_state(trust_file), files, EPOCH)

    # ...and the controller's next root is accepted all the same, flagged for the clock.
    new_serial(aw, EXPIRY + timedelta(days=1))
    fresh = fetched(aw)
    verified, state = verify_desired(aw.config(), fresh, load_trust_state(trust_file), EPOCH)
    assert verified.root.serial > (load_trust_state(trust_file).last_serial or 0)
    assert verified.clock_suspect
    assert state.time_floor == verified.root.issued_at


def test_a_clock_one_year_ahead_finds_the_bundle_expired_and_once_corrected_fresh_again(
    aw: ProvisionedFleet, tmp_path: Path
) -> None:
    trust_file = tmp_path / "trust.json"
    files = fetched(aw)
    _, state = verify_desired(aw.config(), files, TrustState(), START + timedelta(hours=1))
    save_trust_state(trust_file, state)
    with pytest.raises(BundleExpired) as expired:
        check_unchanged(load_trust_state(trust_file), files, START + timedelta(days=365))
    state = record_expiry(load_trust_state(trust_file), expired.value)
    save_trust_state(trust_file, state)
    assert state.time_floor == START  # not the expiry, not the clock reading

    # NTP corrects the clock: the same commit is fresh again, without a new root from the controller.
    assert check_unchanged(load_trust_state(trust_file), files, START + timedelta(hours=2)) is True
    verified, _ = verify_desired(aw.config(), files, load_trust_state(trust_file), START + timedelta(hours=2))
    assert verified.unchanged


def test_a_clock_ahead_but_inside_the_bundles_life_does_not_lift_the_floor(aw: ProvisionedFleet) -> None:
    _, state = verify_desired(aw.config(), fetched(aw), TrustState(), START + timedelta(days=6))
    assert state.time_floor == START


def test_a_new_robot_with_a_1970_clock_still_accepts_a_valid_bundle(aw: ProvisionedFleet) -> None:
    verified, state = verify_desired(aw.config(), fetched(aw), TrustState(), EPOCH)
    assert verified.clock_suspect and state.time_floor == START


@pytest.mark.parametrize(
    ("part", "edit", "reason", "file"),
    [
        ("bundle", lambda b: b.replace(b'"1.0.0"', b'"9.0.0"'), Reason.NOT_INCLUDED, "proof.json"),
        (
            "root",
            lambda b: b.replace(b'"serial":', b'"serial":1'),
            Reason.ROOT_SIGNATURE_INVALID,
            "root.json.asc",
        ),
        (
            "root_signature",
            lambda b: b[:60] + (b"B" if b[60:61] == b"A" else b"A") + b[61:],
            Reason.ROOT_SIGNATURE_INVALID,
            "root.json.asc",
        ),
        ("proof", lambda b: b.replace(b"[", b'["' + b"0" * 64 + b'",', 1), Reason.NOT_INCLUDED, "proof.json"),
    ],
    ids=["bundle-bytes", "root-bytes", "root-signature", "proof-path"],
)
def test_tampered_bytes_are_rejected(
    aw: ProvisionedFleet, part: str, edit: Callable[[bytes], bytes], reason: Reason, file: str
) -> None:
    files = fetched(aw)
    original = getattr(files, part)
    tampered = edit(original)
    assert tampered != original, "the edit must change something"
    forged = DesiredFiles(**{**files.__dict__, part: tampered})
    with pytest.raises(BundleRejected) as raised:
        verify_desired(aw.config(), forged, TrustState(), START)
    assert rejection(raised) == (reason, file)


def test_a_root_signed_by_a_key_that_is_not_the_pinned_controller_is_rejected(
    aw: ProvisionedFleet, keys: KeyFactory
) -> None:
    mallory = keys.key("mallory")
    files = fetched(aw)
    forged = DesiredFiles(**{**files.__dict__, "root_signature": keys.sign(files.root, mallory)})
    config = aw.config(extra_keys={"mallory.asc": mallory.public})
    with pytest.raises(BundleRejected, match="not a pinned controller key") as raised:  # of the trust root
        verify_desired(config, forged, TrustState(), START)
    assert rejection(raised) == (Reason.ROOT_SIGNATURE_INVALID, "root.json.asc")


# --- the pinned root of trust ----------------------------------------------------------------------


def test_a_pinned_root_key_missing_from_keys_dir_is_a_setup_error(
    aw: ProvisionedFleet, keys: KeyFactory
) -> None:
    mallory = keys.key("mallory")
    config = aw.config(root={"version": 1, "threshold": 1, "keys": [mallory.fingerprint]})
    with pytest.raises(SetupError, match=mallory.fingerprint):
        verify_desired(config, fetched(aw), TrustState(), START)


def test_root_keys_other_than_the_pinned_ones_are_refused(aw: ProvisionedFleet, keys: KeyFactory) -> None:
    mallory = keys.key("mallory")
    config = aw.config(
        root={"version": 1, "threshold": 1, "keys": [mallory.fingerprint]},
        extra_keys={"m.asc": mallory.public},
    )
    with pytest.raises(BundleRejected) as raised:
        verify_desired(config, fetched(aw), TrustState(), START)
    assert rejection(raised) == (Reason.BELOW_THRESHOLD, "trust.json")


# --- the trust state on disk -----------------------------------------------------------------------


def test_trust_state_survives_a_restart_and_is_private(aw: ProvisionedFleet, tmp_path: Path) -> None:
    trust_file = tmp_path / "trust.json"
    assert load_trust_state(trust_file) == TrustState()
    _, state = verify_desired(aw.config(), fetched(aw), TrustState(), START)
    save_trust_state(trust_file, state)
    assert load_trust_state(trust_file) == state
    assert os.stat(trust_file).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".trust.json")] == []


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"last_serial": "seven"}', b'{"surprise": 1}'],
    ids=["syntax", "type", "extra"],
)
def test_a_corrupt_trust_state_is_refused_not_reset(tmp_path: Path, content: bytes) -> None:
    trust_file = tmp_path / "trust.json"
    trust_file.write_bytes(content)
    with pytest.raises(CorruptState, match=r"trust\.json"):
        load_trust_state(trust_file)


def test_check_unchanged_sends_another_commit_to_full_verification(aw: ProvisionedFleet) -> None:
    files = fetched(aw)
    _, state = verify_desired(aw.config(), files, TrustState(), START)
    other = DesiredFiles(**{**files.__dict__, "commit": "0" * 40})
    assert check_unchanged(state, other, START) is False
    assert check_unchanged(TrustState(), files, START) is False
