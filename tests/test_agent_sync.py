"""Agent sync against a repository the real controller wrote: real git, real gpg, real sshd.

The world is the simulator's provisioned fleet (:func:`tests.sim.provision.provisioned_fleet`):
one reconcile puts a signed desired-state commit per robot on a bare server; ``stg-1`` gets nav
1.0.0 in the staging wave; :class:`~tests.sim.provision.ProvisionedFleet` adds what a provisioned
robot has: the pinned trust anchors, their public keys in a ``keys_dir``, and an ``agent.yaml``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest

from agent.sync.backoff import Backoff
from agent.sync.desired import MAX_TRANSFER_BYTES, fetch_desired
from controller.delivery.write import delivery_ref
from fleetcd.compat import UTC
from fleetcd.desired import BUNDLE_FILE, PROOF_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, BundleRejected
from fleetcd.desired.bundle import MAX_BUNDLE_BYTES, Bundle
from fleetcd.errors import SetupError, TransportError
from fleetcd.git.objects import Identity, commit, ref_target, update_refs, write_tree
from fleetcd.git.refs import desired_ref
from fleetcd.models.agent import PollSettings
from fleetcd.reasons import Reason
from tests.conftest import require_service
from tests.gitrepos import SshServer, free_port, sshd_binary
from tests.gpgkeys import KeyFactory
from tests.sim.provision import ROBOT, ProvisionedFleet, provisioned_fleet

ATTACKER = Identity("attacker", "attacker@evil.test")


# --- the world ----------------------------------------------------------------------------------


@pytest.fixture
def aw(tmp_path: Path, keys: KeyFactory) -> ProvisionedFleet:
    return provisioned_fleet(tmp_path, keys)


def plant(server: Path, device: str, files: dict[str, bytes], *, namespaces: bool = True) -> None:
    """An attacker with write access to the server replaces ``device``'s desired-state commit."""
    repo = pygit2.Repository(str(server))
    ref = delivery_ref(device, namespaces=namespaces)
    tree = write_tree(repo, files)
    planted = commit(repo, None, tree, "planted", [], ATTACKER, datetime(2026, 1, 1, tzinfo=UTC))
    update_refs(repo, {ref: (ref_target(repo, ref), planted)})


# --- fetching the desired state ------------------------------------------------------------------


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaced", "flat"])
def test_robot_fetches_exactly_the_files_the_controller_wrote_for_it(
    tmp_path: Path, keys: KeyFactory, namespaces: bool
) -> None:
    aw = provisioned_fleet(tmp_path, keys, namespaces=namespaces)
    files = fetch_desired(aw.config(), aw.repo_dir())
    assert files is not None
    expected = aw.server_files()
    assert (files.bundle, files.root, files.root_signature, files.proof) == (
        expected[BUNDLE_FILE],
        expected[ROOT_FILE],
        expected[ROOT_SIGNATURE_FILE],
        expected[PROOF_FILE],
    )
    bundle = Bundle.model_validate_json(files.bundle)
    assert bundle.device == ROBOT
    assert [(d.app, d.version) for d in bundle.deployments] == [("nav", "1.0.0")]
    local = pygit2.Repository(str(aw.repo_dir()))
    others = [ref for ref in local.references if ROBOT not in ref]
    assert others == [], f"the robot fetched other robots' refs: {others}"


def test_robot_fetches_from_a_file_url_too(aw: ProvisionedFleet) -> None:
    files = fetch_desired(aw.config(url=f"file://{aw.server}"), aw.repo_dir())
    assert files is not None and Bundle.model_validate_json(files.bundle).device == ROBOT


def test_a_repeated_poll_returns_the_same_commit(aw: ProvisionedFleet) -> None:
    first = fetch_desired(aw.config(), aw.repo_dir())
    again = fetch_desired(aw.config(), aw.repo_dir())
    assert first is not None and again == first


def test_a_robot_the_controller_never_wrote_for_gets_nothing(aw: ProvisionedFleet) -> None:
    assert fetch_desired(aw.config("ghost-1"), aw.repo_dir("ghost-1")) is None


def test_before_the_first_reconcile_there_is_no_desired_state(tmp_path: Path, keys: KeyFactory) -> None:
    aw = provisioned_fleet(tmp_path, keys, reconcile=False)
    assert fetch_desired(aw.config(), aw.repo_dir()) is None


def test_an_oversized_bundle_is_rejected_by_its_header_naming_the_file(aw: ProvisionedFleet) -> None:
    files = {k: v for k, v in aw.server_files().items() if v is not None}
    # Compresses to a few KB: the transfer cap does not stop it, the blob's own size must.
    files[BUNDLE_FILE] = b"{" + b" " * MAX_BUNDLE_BYTES + b"}"
    plant(aw.server, ROBOT, files)
    with pytest.raises(BundleRejected) as raised:
        fetch_desired(aw.config(), aw.repo_dir())
    assert raised.value.reason is Reason.TOO_LARGE
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.file == BUNDLE_FILE
    assert str(MAX_BUNDLE_BYTES + 2) in diagnostic.message


def test_endless_data_stops_at_the_transfer_cap(aw: ProvisionedFleet) -> None:
    files = {k: v for k, v in aw.server_files().items() if v is not None}
    files[BUNDLE_FILE] = random.Random(1).randbytes(MAX_TRANSFER_BYTES + 1024 * 1024)  # incompressible
    plant(aw.server, ROBOT, files)
    with pytest.raises(BundleRejected) as raised:
        fetch_desired(aw.config(), aw.repo_dir())
    assert raised.value.reason is Reason.TOO_LARGE
    assert raised.value.diagnostics[0].file == desired_ref(ROBOT)
    stored = sum(p.stat().st_size for p in aw.repo_dir().rglob("*") if p.is_file())
    assert stored < MAX_TRANSFER_BYTES, f"{stored} bytes kept in the robot's repository"


def test_a_commit_missing_a_file_is_rejected_naming_it(aw: ProvisionedFleet) -> None:
    files = {k: v for k, v in aw.server_files().items() if v is not None and k != PROOF_FILE}
    plant(aw.server, ROBOT, files)
    with pytest.raises(BundleRejected) as raised:
        fetch_desired(aw.config(), aw.repo_dir())
    assert (raised.value.reason, raised.value.diagnostics[0].file) == (Reason.BUNDLE_INVALID, PROOF_FILE)


def test_a_missing_server_repository_is_a_transport_error(aw: ProvisionedFleet) -> None:
    with pytest.raises(TransportError, match="no repository"):
        fetch_desired(aw.config(url=str(aw.root / "nowhere.git")), aw.repo_dir())


def test_a_configured_ssh_key_that_is_missing_is_a_setup_error(aw: ProvisionedFleet) -> None:
    config = aw.config(url="ssh://robot@127.0.0.1:1/fleet", remote={"ssh_key": str(aw.root / "no-key")})
    with pytest.raises(SetupError, match=r"remote\.ssh_key"):
        fetch_desired(config, aw.repo_dir())


# --- over ssh (plain OpenSSH; gitolite is in test_agent_gitolite.py) ------------------------------


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    require_service("sshd", sshd_binary() is not None, "no sshd (Debian package openssh-server)")
    with SshServer(tmp_path_factory.mktemp("sshd")) as running:
        yield running


def ssh_remote(ssh: SshServer, **overrides: Any) -> dict[str, Any]:
    return {"ssh_key": str(ssh.client_key), "host_key_sha256": ssh.host_fingerprint, **overrides}


def test_robot_fetches_over_ssh_with_its_key_and_the_pinned_host_key(
    aw: ProvisionedFleet, ssh_server: SshServer
) -> None:
    config = aw.config(url=ssh_server.url(aw.server), remote=ssh_remote(ssh_server))
    files = fetch_desired(config, aw.repo_dir())
    assert files is not None and files.bundle == aw.server_files()[BUNDLE_FILE]


def test_a_server_with_another_host_key_is_refused(aw: ProvisionedFleet, ssh_server: SshServer) -> None:
    wrong = "SHA256:" + "A" * 43
    config = aw.config(url=ssh_server.url(aw.server), remote=ssh_remote(ssh_server, host_key_sha256=wrong))
    with pytest.raises(TransportError, match="not one of the pinned keys"):
        fetch_desired(config, aw.repo_dir())
    assert not (aw.repo_dir() / "refs" / "fleetcd").exists()


def test_an_unreachable_ssh_server_is_a_transport_error(aw: ProvisionedFleet, ssh_server: SshServer) -> None:
    url = f"ssh://{ssh_server.user}@127.0.0.1:{free_port()}{aw.server}"
    config = aw.config(url=url, remote=ssh_remote(ssh_server, timeout_seconds=5))
    with pytest.raises(TransportError):
        fetch_desired(config, aw.repo_dir())


# --- backoff: a decision table ---------------------------------------------------------------------


def poll(**fields: int) -> PollSettings:
    return PollSettings.model_validate(
        {"interval_seconds": 60, "backoff_initial_seconds": 5, "backoff_max_seconds": 60, **fields}
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (poll(jitter_percent=0), [5, 10, 20, 40, 60, 60, 60]),
        (
            poll(jitter_percent=0, backoff_initial_seconds=1, backoff_max_seconds=900),
            [1, 2, 4, 8, 16, 32, 64],
        ),
        (poll(jitter_percent=0, backoff_initial_seconds=60, backoff_max_seconds=60), [60] * 7),
    ],
    ids=["doubles-then-caps", "doubles-below-a-high-cap", "initial-equals-cap"],
)
def test_failures_back_off_exponentially_up_to_the_cap(settings: PollSettings, expected: list[int]) -> None:
    backoff = Backoff(settings, random.Random(0))
    assert [backoff.failure() for _ in expected] == [float(e) for e in expected]
    assert backoff.failures == len(expected)


@pytest.mark.parametrize("jitter", [0, 10, 20, 50], ids=lambda j: f"jitter-{j}%")
def test_jitter_stays_within_its_bounds_and_never_breaks_the_cap(jitter: int) -> None:
    settings = poll(jitter_percent=jitter)
    backoff = Backoff(settings, random.Random(42))
    for failures in range(1, 12):
        base = backoff.step(failures)
        delays = []
        for _ in range(200):
            backoff.failures = failures - 1  # the next failure is number ``failures``
            delays.append(backoff.failure())
        assert min(delays) >= base * (1 - jitter / 100)
        assert max(delays) <= min(base * (1 + jitter / 100), settings.backoff_max_seconds)
        if jitter:
            assert max(delays) - min(delays) > 0, "jitter must spread robots out"


def test_success_resets_the_backoff_and_waits_the_poll_interval_with_jitter() -> None:
    backoff = Backoff(poll(jitter_percent=20), random.Random(3))
    for _ in range(5):
        backoff.failure()
    delays = [backoff.success() for _ in range(200)]
    assert backoff.failures == 0
    assert all(48 <= d <= 72 for d in delays) and max(delays) - min(delays) > 10
    first_again = backoff.failure()
    assert 4 <= first_again <= 6


def test_the_same_seed_gives_the_same_delays() -> None:
    one, two = Backoff(poll(), random.Random(9)), Backoff(poll(), random.Random(9))
    assert [one.failure() for _ in range(8)] == [two.failure() for _ in range(8)]


def test_a_robot_offline_for_a_very_long_time_stays_at_the_cap() -> None:
    backoff = Backoff(poll(jitter_percent=0, backoff_max_seconds=900), random.Random(0))
    for _ in range(10_000):
        delay = backoff.failure()
    assert delay == 900.0
