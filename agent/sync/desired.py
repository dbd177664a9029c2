"""Agent step 1 (sync): fetch this robot's own desired-state commit and read its four files, capped.

The controller writes one small parentless commit per robot (``controller.delivery.write``). A
server that serves each robot its own view (``GIT_NAMESPACE=<id>``, docs/git-server.md) and a flat
layout both show it as ``refs/fleetcd/desired/<id>``; a plain local or ``file://`` server, which
applies no namespace, shows the namespaced layout under its physical name
``refs/namespaces/<id>/refs/fleetcd/desired/<id>``. Every poll asks for both names in one fetch, so
the robot needs no setting for the layout and never downloads another robot's commit: the flat
name exactly, the physical one as the pattern ``refs/namespaces/<id>/*/fleetcd/desired/<id>``,
which never fails when absent and whose ref prefix is this robot's namespace alone. git refuses a
fetch naming an exact ref the server lacks, so on a plain server with namespaced refs the fetch is
asked again without the flat name (a second connection; served namespaces and the flat layout
need one). When both names exist and differ, :mod:`agent.sync.layout` decides which one the robot
follows and the caller reports the conflict.

The files and their caps are the shared wire format (:mod:`fleetcd.wire`). Nothing here trusts
the bytes: every file is size-checked from the object header before it is read
and the whole transfer is capped (git cannot write a larger pack), so a hostile server cannot fill
the disk; the signature chain is checked next by :mod:`agent.trustcheck`. Network failures are
:class:`~fleetcd.errors.TransportError` (retry with backoff); a missing or oversized file is
:class:`~fleetcd.desired.BundleRejected` naming it (keep the last good state, wait for a new one).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from agent.sync.layout import Candidate, Judge, choose
from fleetcd.desired import BundleRejected
from fleetcd.errors import SetupError
from fleetcd.git.gitcli import SshKey, TransferTooLarge, is_local
from fleetcd.git.knownhosts import HostKeyPolicy
from fleetcd.git.refs import desired_names, namespace_prefix
from fleetcd.git.robotgit import RobotRemote, RobotRepository
from fleetcd.models.agent import AgentConfig
from fleetcd.reasons import Reason
from fleetcd.wire import (
    DESIRED_FILE_CAPS,
    DESIRED_FILE_NAMES,
    DesiredFiles,
    check_desired_file,
    desired_files,
)

# Pack headers, the commit and tree objects, and ref negotiation are a few hundred bytes; 64 KiB of
# slack keeps a legitimate fetch far from the cap while endless data stops after ~4.2 MiB.
TRANSFER_SLACK_BYTES = 64 * 1024
MAX_TRANSFER_BYTES = sum(cap for _, cap in DESIRED_FILE_CAPS) + TRANSFER_SLACK_BYTES


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
    """The refspecs of both names (:func:`fleetcd.git.refs.desired_names`): the physical namespaced
    name as a pattern inside the robot's own namespace (absent is no error), the flat name exactly."""
    physical, flat = desired_names(device)
    inner = physical.removeprefix(namespace_prefix(device)).removeprefix("refs/")
    pattern = f"{namespace_prefix(device)}*/{inner}"
    return [f"+{pattern}:{pattern}", f"+{flat}:{flat}"]


def fetch_desired(config: AgentConfig, repo_dir: Path, judge: Judge | None = None) -> DesiredFiles | None:
    """Fetch this robot's desired-state commit into the bare repo at ``repo_dir``; None if it has none.

    When both names exist and differ, ``judge`` (the robot's verification: the verified serial, or
    BundleRejected) decides which one is returned (:func:`agent.sync.layout.choose`), and the result
    carries the :class:`~agent.sync.layout.LayoutConflict` to report.
    """
    repo = RobotRepository(repo_dir)
    remote = connection_of(config).remote()
    names = desired_names(config.device)
    specs = desired_refspecs(config.device)
    too_large: dict[str, BundleRejected] = {}
    try:
        found = repo.fetch(remote, specs, max_bytes=MAX_TRANSFER_BYTES, prune=True)
    except TransferTooLarge:
        # One name may be oversized on purpose; asked alone, the other still counts.
        found = []
        for name, spec in zip(names, specs, strict=True):
            try:
                found += repo.fetch(remote, [spec], max_bytes=MAX_TRANSFER_BYTES, prune=True)
            except TransferTooLarge as exc:
                too_large[name] = BundleRejected(Reason.TOO_LARGE, str(exc), file=names[1])
    held = repo.refs(list(names))
    physical, flat = names
    present = [name for name in names if name in too_large or name in (held if name == physical else found)]
    if flat in held and flat not in found:
        repo.delete_ref(flat)  # gone from the server: the local copy must not count next time
    candidates = [
        Candidate(name, None, too_large[name]) if name in too_large else _read(repo, name) for name in present
    ]
    choice = choose(candidates, judge)
    if choice is None:
        return None
    if choice.chosen.files is None:
        assert choice.chosen.error is not None
        raise choice.chosen.error
    return replace(choice.chosen.files, conflict=choice.conflict)


def _read(repo: RobotRepository, ref: str) -> Candidate:
    try:
        return Candidate(ref, read_desired(repo, ref))
    except BundleRejected as exc:
        return Candidate(ref, None, exc)


def read_desired(repo: RobotRepository, commit: str) -> DesiredFiles:
    """The four files of ``commit`` (an id or a ref); each one's size is checked from its object
    header before anything is read."""
    commit_id, headers = repo.blob_sizes(commit, list(DESIRED_FILE_NAMES))
    if commit_id is None:
        raise SetupError(f"{repo.path}: {commit} is not a commit here")
    blobs = []
    for name, cap in DESIRED_FILE_CAPS:
        found = headers[name]
        check_desired_file(commit_id, name, None if found is None else found[1], cap)
        assert found is not None
        blobs.append(found)
    return desired_files(commit_id, dict(zip(DESIRED_FILE_NAMES, repo.read_blobs(blobs), strict=True)))
