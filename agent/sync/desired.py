"""Agent step 1 (sync): fetch this robot's own desired-state commit and read its four files, capped.

The controller writes one small parentless commit per robot (``controller.delivery.write``). A
server that serves each robot its own view (``GIT_NAMESPACE=<id>``, docs/git-server.md) and a flat
layout both show it as ``refs/fleetcd/desired/<id>``; a plain local or ``file://`` server, which
applies no namespace, shows the namespaced layout under its physical name
``refs/namespaces/<id>/refs/fleetcd/desired/<id>``. One fetch asks for both names, so the robot
needs no setting for the layout and never downloads another robot's commit.

Everything goes through the ``git`` CLI (:mod:`fleetcd.git.robotgit`; no pygit2 on the robot): the
fetch speaks protocol v2, so the server lists only the names asked for. git refuses a fetch naming a
ref the server lacks, so the layout that answered last time (the name the robot's repository holds)
is asked alone first — one connection per poll — and both names otherwise.

Nothing here trusts the bytes: every file is size-checked from the object header before it is read
and the whole transfer is capped (git cannot write a larger pack), so a hostile server cannot fill
the disk; the signature chain is checked next by :mod:`agent.trustcheck`. Network failures are
:class:`~fleetcd.errors.TransportError` (retry with backoff); a missing or oversized file is
:class:`~fleetcd.desired.BundleRejected` naming it (keep the last good state, wait for a new one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetcd.desired import BUNDLE_FILE, PROOF_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, BundleRejected
from fleetcd.desired.bundle import MAX_BUNDLE_BYTES, MAX_PROOF_BYTES, MAX_ROOT_BYTES, MAX_ROOT_SIGNATURE_BYTES
from fleetcd.errors import SetupError
from fleetcd.git.gitcli import SshKey, TransferTooLarge, is_local
from fleetcd.git.knownhosts import HostKeyPolicy
from fleetcd.git.refs import desired_ref, namespaced
from fleetcd.git.robotgit import RobotRemote, RobotRepository
from fleetcd.models.agent import AgentConfig
from fleetcd.reasons import Reason

# Each file's cap, in the order the verifier reads them (fleetcd.desired.bundle's MAX_*_BYTES).
FILE_CAPS: tuple[tuple[str, int], ...] = (
    (BUNDLE_FILE, MAX_BUNDLE_BYTES),
    (ROOT_FILE, MAX_ROOT_BYTES),
    (ROOT_SIGNATURE_FILE, MAX_ROOT_SIGNATURE_BYTES),
    (PROOF_FILE, MAX_PROOF_BYTES),
)
# Pack headers, the commit and tree objects, and ref negotiation are a few hundred bytes; 64 KiB of
# slack keeps a legitimate fetch far from the cap while endless data stops after ~4.2 MiB.
TRANSFER_SLACK_BYTES = 64 * 1024
MAX_TRANSFER_BYTES = sum(cap for _, cap in FILE_CAPS) + TRANSFER_SLACK_BYTES


@dataclass(frozen=True)
class DesiredFiles:
    """The raw, still unverified files of one desired-state commit."""

    commit: str
    bundle: bytes
    root: bytes
    root_signature: bytes
    proof: bytes


@dataclass(frozen=True)
class Connection:
    """How this robot talks to its git server: the URL, SSH identity and host key policy."""

    url: str
    credentials: SshKey | None
    host_keys: HostKeyPolicy | None
    timeout_s: float

    def remote(self) -> RobotRemote:
        return RobotRemote(self.url, self.credentials, self.host_keys, self.timeout_s)


def connection_of(config: AgentConfig) -> Connection:
    """The connection ``agent.yaml`` describes; a configured SSH key that is missing is a SetupError."""
    remote = config.remote
    if is_local(remote.url) or remote.ssh_key is None:
        credentials = None
    else:
        key = Path(remote.ssh_key)
        if not key.is_file():
            raise SetupError(f"remote.ssh_key: {key} does not exist (agent.yaml); the robot cannot log in")
        credentials = SshKey(remote.ssh_user or config.device, key)
    host_keys = HostKeyPolicy(pinned_sha256=(remote.host_key_sha256,)) if remote.host_key_sha256 else None
    return Connection(remote.url, credentials, host_keys, float(remote.timeout_seconds))


def desired_refspecs(device: str) -> list[str]:
    """The robot's ref as a namespaced or flat server shows it, then its physical namespaced name."""
    flat = desired_ref(device)
    physical = namespaced(device, flat)
    return [f"+{flat}:{flat}", f"+{physical}:{physical}"]


def fetch_desired(config: AgentConfig, repo_dir: Path) -> DesiredFiles | None:
    """Fetch this robot's desired-state commit into the bare repo at ``repo_dir``; None if it has none."""
    repo = RobotRepository(repo_dir)
    remote = connection_of(config).remote()
    flat = desired_ref(config.device)
    specs = desired_refspecs(config.device)
    try:
        # The flat name wins when the server has both, so asking it alone first changes no answer.
        found = (
            repo.fetch(remote, specs[:1], max_bytes=MAX_TRANSFER_BYTES) if repo.has_loose_ref(flat) else []
        )
        if not found:
            found = repo.fetch(remote, specs, max_bytes=MAX_TRANSFER_BYTES)
    except TransferTooLarge as exc:
        raise BundleRejected(Reason.TOO_LARGE, str(exc), file=flat) from exc
    ref = flat if flat in found else namespaced(config.device, flat) if found else None
    return None if ref is None else read_desired(repo, ref)


def read_desired(repo: RobotRepository, commit: str) -> DesiredFiles:
    """The four files of ``commit`` (an id or a ref); each one's size is checked from its object
    header before anything is read."""
    commit_id, headers = repo.blob_sizes(commit, [name for name, _ in FILE_CAPS])
    if commit_id is None:
        raise SetupError(f"{repo.path}: {commit} is not a commit here")
    blobs = []
    for name, cap in FILE_CAPS:
        found = headers[name]
        if found is None:
            message = f"the desired-state commit {commit_id} holds no {name}"
            raise BundleRejected(Reason.BUNDLE_INVALID, message, file=name)
        if found[1] > cap:
            message = f"{found[1]} bytes in commit {commit_id}; at most {cap}"
            raise BundleRejected(Reason.TOO_LARGE, message, file=name)
        blobs.append(found)
    data = dict(zip([name for name, _ in FILE_CAPS], repo.read_blobs(blobs), strict=True))
    return DesiredFiles(
        commit=commit_id,
        bundle=data[BUNDLE_FILE],
        root=data[ROOT_FILE],
        root_signature=data[ROOT_SIGNATURE_FILE],
        proof=data[PROOF_FILE],
    )
