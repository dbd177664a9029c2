"""The robot's trust chain under a hostile server and a damaged robot: what :func:`verify_desired` does
with broken key files in the commit, a trust root that expired, a chain shorter than what the robot
last held, and a held trust root that no longer parses.

A desired-state commit carries the fleet's public keys (``trust.json``'s ``keys``) beside the chain;
only the root keys are pinned on the robot. A git host can plant or break any of those key files:
a broken one must neither block verification with the keys that are fine nor let anything unsigned
through. Real controller output (tests/sim/provision.py), real gpg.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from agent.sync.desired import DesiredFiles, fetch_desired
from agent.trustcheck import TrustState, verify_desired
from fleetcd.compat import UTC
from fleetcd.desired import BundleExpired, BundleRejected
from fleetcd.errors import SetupError
from fleetcd.reasons import Reason
from tests.gpgkeys import KeyFactory
from tests.sim.provision import ROBOT, ProvisionedFleet, provisioned_fleet
from tests.sim.world import START

BROKEN_KEY = (
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n=AAAA\n-----END PGP PUBLIC KEY BLOCK-----\n"
)


@pytest.fixture
def aw(tmp_path: Path, keys: KeyFactory) -> ProvisionedFleet:
    return provisioned_fleet(tmp_path, keys)


def fetched(aw: ProvisionedFleet) -> DesiredFiles:
    files = fetch_desired(aw.config(), aw.repo_dir(ROBOT))
    assert files is not None
    return files


def with_keys(files: DesiredFiles, **changes: str) -> DesiredFiles:
    """``files`` with ``trust.json``'s key files changed (``keys/<name>.asc`` → armored text)."""
    trust = json.loads(files.trust)
    trust["keys"].update({f"keys/{name}.asc": text for name, text in changes.items()})
    return DesiredFiles(**{**files.__dict__, "trust": json.dumps(trust).encode()})


def trust_root_expiry(files: DesiredFiles) -> datetime:
    newest = json.loads(files.trust)["versions"][-1]
    document = yaml.safe_load(base64.b64decode(newest["document_b64"]))
    return datetime.fromisoformat(str(document["expires"]).replace("Z", "+00:00")).astimezone(UTC)


def test_a_broken_key_file_planted_in_the_commit_does_not_block_the_keys_that_are_fine(
    aw: ProvisionedFleet,
) -> None:
    files = fetched(aw)
    planted = with_keys(files, mallory=BROKEN_KEY)

    verified, state = verify_desired(aw.config(), planted, TrustState(), START + timedelta(hours=1))

    assert verified.bundle.device == ROBOT
    assert state.last_serial == verified.root.serial


def test_the_controllers_key_broken_in_the_commit_is_read_from_the_robots_own_keys_dir(
    aw: ProvisionedFleet,
) -> None:
    # Provisioning copies the fleet's public keys to trust.keys_dir (docs/agent.md): a server that
    # breaks the commit's copy cannot stop the robot from checking the controller's signature.
    files = fetched(aw)
    broken = with_keys(files, controller=BROKEN_KEY)

    verified, _state = verify_desired(aw.config(), broken, TrustState(), START + timedelta(hours=1))

    assert verified.root.serial == verify_desired(aw.config(), files, TrustState(), START)[0].root.serial


def test_the_controllers_key_swapped_for_mallorys_cannot_sign_for_the_fleet(
    aw: ProvisionedFleet, keys: KeyFactory
) -> None:
    mallory = keys.key("mallory")
    files = fetched(aw)
    forged = with_keys(files, controller=mallory.public.decode())
    forged = DesiredFiles(**{**forged.__dict__, "root_signature": keys.sign(files.root, mallory)})

    with pytest.raises(BundleRejected) as raised:
        verify_desired(aw.config(), forged, TrustState(), START + timedelta(hours=1))

    assert raised.value.reason is Reason.ROOT_SIGNATURE_INVALID


def test_an_expired_trust_root_installs_nothing_new_and_names_the_version(aw: ProvisionedFleet) -> None:
    files = fetched(aw)
    after = trust_root_expiry(files) + timedelta(days=1)

    with pytest.raises(BundleExpired) as raised:
        verify_desired(aw.config(), files, TrustState(), after)

    assert "trust root version 1 expired" in str(raised.value)
    assert raised.value.expires_at == trust_root_expiry(files)
    assert [d.file for d in raised.value.diagnostics] == ["trust.json"]


def test_a_chain_older_than_the_version_a_rebuilt_trust_state_remembers_is_a_replay(
    aw: ProvisionedFleet,
) -> None:
    # The robot's trust.json was lost and rebuilt from its last report: it knows it held version 2,
    # not the bytes. A server serving the old chain (version 1 only) must not take it back.
    rebuilt = TrustState(trust_version=2)

    with pytest.raises(BundleRejected) as raised:
        verify_desired(aw.config(), fetched(aw), rebuilt, START + timedelta(hours=1))

    assert raised.value.reason is Reason.TRUST_ROOT_ROLLBACK
    assert "older than version 2" in str(raised.value)


def test_a_held_trust_root_that_no_longer_parses_asks_for_reprovisioning_instead_of_trusting_the_pin(
    aw: ProvisionedFleet,
) -> None:
    damaged = TrustState(trust_version=1, trust_root=base64.b64encode(b"kind: [unclosed").decode())

    with pytest.raises(SetupError, match="re-provision"):
        verify_desired(aw.config(), fetched(aw), damaged, START + timedelta(hours=1))
