"""Trust rotates through the repository (issue 11, point 2), with real gpg and real git.

The controller reads the newest trust-root version on main whose chain verifies; a robot pins only
version 1's root keys and walks the chain every desired-state commit carries (``trust.json``).
Robot-side attacks are played by someone holding the controller's key (a compromised controller,
or a git host replaying what one signed): a desired-state commit is forged with
:func:`forge` and must still be refused by the robot's own checks.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pygit2
import pytest

from agent.converge.repair import repair_files
from agent.paths import AgentPaths
from agent.sync.accept import load_desired, read_cache, write_cache
from agent.trustcheck import TrustState, load_trust_state, save_trust_state, verify_desired
from controller.delivery.write import delivery_ref
from controller.reconcile.steps import reconcile_once
from controller.state.model import RolloutPhase
from fleetcd.desired import BundleExpired, BundleRejected, SignedRoot, build_signed_bundles
from fleetcd.desired.bundle import Bundle, canonical_bytes
from fleetcd.desired.chain import TRUST_FILE, build_trust_file
from fleetcd.git.objects import read_blob
from fleetcd.layout import trust_root_path
from fleetcd.reasons import Reason
from fleetcd.reports import StatusReport
from fleetcd.wire import DesiredFiles
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import GpgKey, KeyFactory
from tests.sim.provision import ROBOT, ProvisionedFleet, provisioned_fleet
from tests.sim.world import CANARY, PRODUCTION, STAGING, START, make_world, pass_wave
from tests.test_agent_trustcheck import fetched, rejection

NOW = START + timedelta(hours=1)


@pytest.fixture
def aw(tmp_path: Path, keys: KeyFactory) -> ProvisionedFleet:
    return provisioned_fleet(tmp_path, keys)


def chain(
    fleet: FleetRepoBuilder, upto: int | None = None, extra_keys: dict[str, bytes] | None = None
) -> bytes:
    """``trust.json`` of the builder's versions on disk (1..``upto``), with its keys/."""
    fleet.write()
    versions = fleet.root_versions(upto)
    keys = {f"keys/{p.name}": p.read_bytes() for p in (fleet.root / "keys").glob("*.asc")}
    return build_trust_file(versions, keys | (extra_keys or {}))


def forge(
    aw: ProvisionedFleet,
    keys: KeyFactory,
    signer: GpgKey,
    trust: bytes,
    *,
    serial_step: int = 1,
    **bundle: object,
) -> DesiredFiles:
    """The robot's current commit re-issued under a higher serial with ``bundle`` changes, the root
    signed by ``signer`` and ``trust`` as its trust.json: what a holder of that key could serve."""
    files = fetched(aw)
    old = Bundle.model_validate_json(files.bundle)
    root = SignedRoot.model_validate_json(files.root)
    new = old.model_copy(update={"serial": old.serial + serial_step, **bundle})
    root_bytes, signature, per_device = build_signed_bundles(
        root.fleet, {ROBOT: new}, new.serial, new.issued_at, new.expires_at, lambda d: keys.sign(d, signer)
    )
    bundle_bytes, proof = per_device[ROBOT]
    return DesiredFiles(f"forged-{new.serial}", bundle_bytes, root_bytes, signature, proof, trust)


def holding_v1(aw: ProvisionedFleet) -> TrustState:
    _, state = verify_desired(aw.config(), fetched(aw), TrustState(), NOW)
    assert state.trust_version == 1
    return state


# --- robots walk the chain ------------------------------------------------------------------------


def test_robot_offline_across_two_rotations_catches_up(aw: ProvisionedFleet, keys: KeyFactory) -> None:
    fleet = aw.world.fleet
    k2, k3, root_2 = keys.key("controller-2"), keys.key("controller-3"), keys.key("root-2")
    for key in (k2, k3):
        fleet.add_key_file(key)
    fleet.use_root_key(root_2)
    fleet.rotate(controller=fleet.key_refs(k2))
    fleet.rotate(controller=fleet.key_refs(k3), root={"threshold": 1, "keys": fleet.key_refs(root_2)})
    files = forge(aw, keys, k3, chain(fleet), trust_version=3)

    for state in (TrustState(), holding_v1(aw)):  # first boot, and a robot that held version 1
        verified, new_state = verify_desired(aw.config(), files, state, NOW)
        assert new_state.trust_version == 3 and verified.root.serial == files_serial(files)


def files_serial(files: DesiredFiles) -> int:
    return SignedRoot.model_validate_json(files.root).serial


def test_old_trust_root_version_replayed_is_refused_by_a_robot(
    aw: ProvisionedFleet, keys: KeyFactory, tmp_path: Path
) -> None:
    fleet = aw.world.fleet
    k1, k2 = keys.key("controller"), keys.key("controller-2")
    fleet.add_key_file(k2)
    fleet.rotate(controller=fleet.key_refs(k2))  # k1 leaked: version 2 drops it
    _, holding_v2 = verify_desired(
        aw.config(), forge(aw, keys, k2, chain(fleet), trust_version=2), TrustState(), NOW
    )
    save_trust_state(tmp_path / "trust.json", holding_v2)  # a reboot in between: the held version stays
    holding_v2 = load_trust_state(tmp_path / "trust.json")
    assert holding_v2.trust_version == 2

    replay = forge(aw, keys, k1, chain(fleet, upto=1), serial_step=5, trust_version=1)  # k1's old world
    with pytest.raises(BundleRejected) as raised:
        verify_desired(aw.config(), replay, holding_v2, NOW)
    assert rejection(raised) == (Reason.TRUST_ROOT_ROLLBACK, TRUST_FILE)


def test_leaked_controller_key_is_refused_once_rotated_out(aw: ProvisionedFleet, keys: KeyFactory) -> None:
    fleet = aw.world.fleet
    k1, k2 = keys.key("controller"), keys.key("controller-2")
    fleet.add_key_file(k2)
    fleet.rotate(controller=fleet.key_refs(k2))
    stolen = forge(aw, keys, k1, chain(fleet), trust_version=2)  # new chain, root signed by the old key
    with pytest.raises(BundleRejected) as raised:
        verify_desired(aw.config(), stolen, holding_v1(aw), NOW)
    assert rejection(raised) == (Reason.ROOT_SIGNATURE_INVALID, "root.json.asc")


def test_fewer_than_the_threshold_of_root_keys_cannot_rotate_a_robot(
    aw: ProvisionedFleet, keys: KeyFactory
) -> None:
    fleet = aw.world.fleet
    mallory = keys.key("mallory")
    fleet.add_key_file(mallory)
    fleet.rotate(controller=fleet.key_refs(mallory), root={"threshold": 1, "keys": fleet.key_refs(mallory)})
    fleet.root_signers_of[2] = [mallory]  # mallory signs her own version; no root key of version 1 does
    forged = forge(aw, keys, mallory, chain(fleet), trust_version=2)
    with pytest.raises(BundleRejected, match=r"trust/root/2\.yaml: root keys of version 1") as raised:
        verify_desired(aw.config(), forged, holding_v1(aw), NOW)
    assert rejection(raised) == (Reason.BELOW_THRESHOLD, TRUST_FILE)


def test_revoked_release_signer_is_refused_by_a_robot(aw: ProvisionedFleet, keys: KeyFactory) -> None:
    fleet = aw.world.fleet
    carol = keys.key("carol")
    fleet.add_key_file(carol)
    fleet.rotate(release_signers={"threshold": 1, "keys": fleet.key_refs(carol)})  # release-bot leaked
    forged = forge(aw, keys, keys.key("controller"), chain(fleet), trust_version=2)  # same nav 1.0.0
    with pytest.raises(BundleRejected) as raised:
        verify_desired(aw.config(), forged, holding_v1(aw), NOW)
    assert rejection(raised) == (Reason.RELEASE_UNSIGNED, "releases/nav/1.0.0.yaml")


def test_revoked_approver_is_refused_by_a_robot(aw: ProvisionedFleet, keys: KeyFactory) -> None:
    fleet = aw.world.fleet
    alice, bob = keys.key("alice"), keys.key("bob")
    carol = keys.key("carol")
    fleet.add_key_file(carol)
    # alice leaked: version 2 trusts bob and carol, and staging now needs two approvals
    fleet.rotate(approvers=fleet.key_refs(bob, carol), approvals={"staging": 2, "canary": 2, "production": 2})
    forged = forge(aw, keys, keys.key("controller"), chain(fleet), trust_version=2)
    assert alice.fingerprint in fetched(aw).bundle.decode()  # her approval still travels
    with pytest.raises(BundleRejected, match="1 of 2") as raised:
        verify_desired(aw.config(), forged, holding_v1(aw), NOW)
    assert rejection(raised) == (Reason.APPROVALS_BELOW_THRESHOLD, "rollouts/nav.yaml")


def test_chain_stripped_below_the_bundles_trust_version_is_refused(
    aw: ProvisionedFleet, keys: KeyFactory
) -> None:
    fleet = aw.world.fleet
    fleet.rotate()
    stripped = forge(aw, keys, keys.key("controller"), chain(fleet, upto=1), trust_version=2)
    with pytest.raises(BundleRejected) as raised:
        verify_desired(aw.config(), stripped, holding_v1(aw), NOW)
    assert rejection(raised) == (Reason.TRUST_ROOT_VERSION, "bundle.json")


def test_expired_trust_root_keeps_the_robot_on_what_it_runs(aw: ProvisionedFleet) -> None:
    state = holding_v1(aw)
    expires = aw.world.fleet.trust_versions[0]["expires"]
    with pytest.raises(BundleExpired) as raised:  # stale: keep running, report, install nothing new
        verify_desired(
            aw.config(), fetched(aw), state.model_copy(update={"last_commit": None}), START.replace(year=2037)
        )
    assert raised.value.diagnostics[0].file == TRUST_FILE and expires.startswith("2036")


def test_a_broken_key_file_in_the_chain_does_not_block_the_pinned_keys(
    aw: ProvisionedFleet, keys: KeyFactory
) -> None:
    garbage = chain(
        aw.world.fleet, extra_keys={"keys/broken.asc": b"-----BEGIN PGP PUBLIC KEY BLOCK-----\nnope\n"}
    )
    files = forge(aw, keys, keys.key("controller"), garbage, trust_version=1)
    verified, state = verify_desired(aw.config(), files, TrustState(), NOW)
    assert state.trust_version == 1 and verified.root.serial == files_serial(files)


# --- the controller -------------------------------------------------------------------------------


def test_controller_key_rotated_mid_rollout_and_the_rollout_completes(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    pass_wave(world, STAGING, "staging")

    k2 = keys.key("controller-2")
    world.fleet.add_key_file(k2)
    world.fleet.rotate(controller=world.fleet.key_refs(k2, keys.key("controller")))  # new key first
    world.merge("Rotate the controller key")
    world.reconcile()
    pass_wave(world, CANARY, "canary")
    pass_wave(world, PRODUCTION, "production")

    state = world.state()
    assert state.rollouts["nav"].phase is RolloutPhase.COMPLETED
    assert state.meta.trust_version == 2
    repo = pygit2.Repository(str(world.server))
    ref = delivery_ref(PRODUCTION[0], namespaces=True)
    root, signature = read_blob(repo, ref, "root.json"), read_blob(repo, ref, "root.json.asc")
    assert root is not None and signature is not None
    with keys.keyring([k2]) as keyring:
        assert keyring.verify_detached(root, signature).fingerprint == k2.fingerprint
    walked = {d: r.trust.version for d, r in world.sim.robots.items() if r.trust is not None}
    assert walked == {STAGING[0]: 1} | dict.fromkeys(CANARY + PRODUCTION, 2)  # each as of its last poll


def test_revoked_release_signer_is_refused_by_the_controller(tmp_path: Path, keys: KeyFactory) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    carol = keys.key("carol")
    world.fleet.add_key_file(carol)
    world.fleet.rotate(release_signers={"threshold": 1, "keys": world.fleet.key_refs(carol)})
    world.merge("Revoke release-bot")
    result = reconcile_once(world.settings)
    assert result.stalled is not None and "releases/nav/1.0.0.yaml" in result.stalled
    assert "0 of 1 required release signatures" in result.stalled


def test_revoked_approver_no_longer_counts_on_main(tmp_path: Path, keys: KeyFactory) -> None:
    fleet = FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()
    fleet.write()
    assert fleet.validate().ok
    fleet.rotate(approvers=fleet.key_refs(keys.key("bob")))  # alice leaked; production needs 2
    fleet.write()
    (error,) = fleet.validate().errors
    assert (error.file, error.reason) == ("rollouts/nav-1-0-0.yaml", Reason.APPROVAL_MISSING)
    assert "1 of 2 required approvals verified (bob)" in error.message


def test_main_rolled_back_to_an_older_trust_root_stalls_the_controller(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys)
    world.fleet.rotate()
    world.merge("Trust root version 2")
    world.reconcile()
    world.fleet.remove(trust_root_path(2))
    for sig in (world.fleet.root / f"{trust_root_path(2)}.d").glob("*.asc"):
        sig.unlink()
    world.fleet.trust_versions.pop()
    world.merge("Back to version 1")
    result = reconcile_once(world.settings)
    assert result.stalled is not None and "older than version 2" in result.stalled


def test_expired_trust_root_stalls_the_controller_and_a_new_version_resumes_it(
    tmp_path: Path, keys: KeyFactory
) -> None:
    def short_lived(fleet: FleetRepoBuilder) -> None:
        fleet.trust["expires"] = (START + timedelta(days=1)).isoformat()

    world = make_world(tmp_path, keys, configure=short_lived)
    world.reconcile()
    world.clock.tick(2 * 86400)
    world.fleet.write()
    result = reconcile_once(world.settings)
    assert result.stalled is not None and "trust/root/1.yaml: expires" in result.stalled
    world.fleet.rotate(expires=(START + timedelta(days=365)).isoformat())
    world.merge("Trust root version 2: a new expiry")
    assert world.reconcile().stalled is None
    assert world.state().meta.trust_version == 2


# --- the real agent's sync and verify, over real git ------------------------------------------------


def test_robot_offline_across_two_rotations_catches_up_through_real_git(
    aw: ProvisionedFleet, keys: KeyFactory
) -> None:
    config = aw.config()
    paths = AgentPaths(Path(config.state_dir or "")).create()
    first = load_desired(config, paths, NOW)
    assert first.known and not first.errors and load_trust_state(paths.trust_file).trust_version == 1

    world, fleet = aw.world, aw.world.fleet
    k2, k3, root_2 = keys.key("controller-2"), keys.key("controller-3"), keys.key("root-2")
    for key in (k2, k3, root_2):
        fleet.add_key_file(key)
    fleet.use_root_key(root_2)
    fleet.rotate(controller=fleet.key_refs(k2))
    world.merge("Trust root 2: controller key rotated")
    world.reconcile()  # the robot is offline: it never sees this commit
    fleet.rotate(controller=fleet.key_refs(k3), root={"threshold": 1, "keys": fleet.key_refs(root_2)})
    world.merge("Trust root 3: root key and controller key rotated")
    world.reconcile()

    back = load_desired(config, paths, NOW + timedelta(minutes=5))
    assert back.known and not back.errors, back.errors
    held = load_trust_state(paths.trust_file)  # on disk, for the next boot
    assert (held.trust_version, back.serial) == (3, world.state().meta.serial)
    assert [a.deployment.app for a in back.assignments.values()] == ["nav"]


def test_corrupt_trust_state_does_not_roll_the_trust_root_back(
    aw: ProvisionedFleet, keys: KeyFactory
) -> None:
    """A disk fault in trust.json after a rotation: the repair holds version 2 again (its chain
    verified once more from the pin), so the leaked key's world (version 1) stays refused."""
    config = aw.config()
    paths = AgentPaths(Path(config.state_dir or "")).create()
    world, fleet = aw.world, aw.world.fleet
    k1, k2 = keys.key("controller"), keys.key("controller-2")
    fleet.add_key_file(k2)
    fleet.rotate(controller=fleet.key_refs(k2))  # k1 leaked: version 2 drops it
    world.merge("Trust root 2: controller key rotated")
    world.reconcile()
    accepted = load_desired(config, paths, NOW)
    assert accepted.known and not accepted.errors, accepted.errors
    held = load_trust_state(paths.trust_file)
    assert held.trust_version == 2
    paths.trust_file.write_bytes(b"\x00\x13{torn")

    (repaired,) = repair_files(paths, NOW, config)

    rebuilt = load_trust_state(paths.trust_file)
    assert "trust-root version 2" in str(repaired)
    assert (rebuilt.trust_version, rebuilt.trust_root) == (held.trust_version, held.trust_root)
    assert rebuilt.last_serial == held.last_serial
    replay = forge(aw, keys, k1, chain(fleet, upto=1), serial_step=5, trust_version=1)  # k1's old world
    with pytest.raises(BundleRejected) as raised:
        verify_desired(config, replay, rebuilt, NOW)
    assert rejection(raised) == (Reason.TRUST_ROOT_ROLLBACK, TRUST_FILE)


def test_corrupt_trust_state_with_a_tampered_cached_chain_holds_no_version(
    aw: ProvisionedFleet, keys: KeyFactory
) -> None:
    """The cache is only a file on disk: a trust.json in it that does not verify from the pin is not
    held (the robot walks from its pin, as on first boot), and the repair says why."""
    config = aw.config()
    paths = AgentPaths(Path(config.state_dir or "")).create()
    assert load_desired(config, paths, NOW).known
    cached = read_cache(paths.desired_cache)
    assert cached is not None
    intruder = keys.key("intruder")
    fleet = aw.world.fleet
    fleet.add_key_file(intruder)
    fleet.use_root_key(intruder)  # version 2 signed by a root key version 1 does not name
    fleet.rotate(root={"threshold": 1, "keys": fleet.key_refs(intruder)})
    fleet.root_signers_of[2] = [intruder]
    write_cache(paths.desired_cache, replace(cached, trust=chain(fleet)))
    paths.trust_file.write_bytes(b"")

    (repaired,) = repair_files(paths, NOW, config)

    rebuilt = load_trust_state(paths.trust_file)
    assert (rebuilt.trust_version, rebuilt.trust_root) == (None, None)
    assert "does not verify" in str(repaired) and "trust/root/2.yaml" in str(repaired)


def test_trust_state_lost_with_its_cache_keeps_the_reported_trust_version_as_a_floor(
    aw: ProvisionedFleet, keys: KeyFactory
) -> None:
    """Both the trust state and desired.json lost: the last report's trust-root version is a floor.
    The chain is walked from the pin again (no bytes to hold) but must reach version 2, so the leaked
    key's world (version 1) stays refused while the honest chain is accepted."""
    config = aw.config()
    paths = AgentPaths(Path(config.state_dir or "")).create()
    world, fleet = aw.world, aw.world.fleet
    k1, k2 = keys.key("controller"), keys.key("controller-2")
    fleet.add_key_file(k2)
    fleet.rotate(controller=fleet.key_refs(k2))
    world.merge("Trust root 2: controller key rotated")
    world.reconcile()
    assert load_desired(config, paths, NOW).known
    held = load_trust_state(paths.trust_file)
    status = StatusReport.model_validate(
        {
            "format": "fleetcd.dev/status/v1",
            "device": ROBOT,
            "seq": 3,
            "agent_version": "0.1.0",
            "reported_at": NOW.isoformat(),
            "bundle_serial": held.last_serial,
            "trust_version": held.trust_version,
        }
    )
    paths.status_file.write_bytes(canonical_bytes(status))
    paths.desired_cache.write_bytes(b"")
    paths.trust_file.write_bytes(b"")

    repaired = repair_files(paths, NOW, config)

    assert any("at least trust-root version 2" in str(r) for r in repaired), repaired
    rebuilt = load_trust_state(paths.trust_file)
    assert (rebuilt.last_serial, rebuilt.trust_version, rebuilt.trust_root) == (held.last_serial, 2, None)
    replay = forge(aw, keys, k1, chain(fleet, upto=1), serial_step=5, trust_version=1)
    with pytest.raises(BundleRejected) as raised:
        verify_desired(config, replay, rebuilt, NOW)
    assert rejection(raised) == (Reason.TRUST_ROOT_ROLLBACK, TRUST_FILE)
    honest = forge(aw, keys, k2, chain(fleet), trust_version=2)
    _, walked = verify_desired(config, honest, rebuilt, NOW)
    assert walked.trust_version == 2 and walked.trust_root == held.trust_root  # the bytes are back
