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

Where it polls: the read replicas of ``remote.replicas`` in order, then the primary
``remote.url`` (:func:`poll_connections`). The first server that answers is used; one that fails
with a :class:`~fleetcd.errors.TransportError` (down, refused, timed out, no such repository) is
logged and the next one is asked, so a replica that is down costs a poll one failed connection,
and is asked last for the next ten minutes (:mod:`agent.sync.servers`).
Only when every server failed does the poll fail (the last error, naming every server). A
replica that lags serves older desired state: it is verified like any other (signature, serial
not below the one held), so a lag can only delay a change, never roll one back.

The files and their caps are the shared wire format (:mod:`fleetcd.wire`). Nothing here trusts
the bytes: every file is size-checked from the object header before it is read
and the whole transfer is capped (git cannot write a larger pack), so a hostile server cannot fill
the disk; the signature chain is checked next by :mod:`agent.trustcheck`. Network failures are
:class:`~fleetcd.errors.TransportError` (retry with backoff); a missing or oversized file is
:class:`~fleetcd.desired.BundleRejected` naming it (keep the last good state, wait for a new one).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

from agent.sync.layout import Candidate, Judge, choose
from agent.sync.servers import load_failures, order, save_failures
from fleetcd.desired import BundleRejected
from fleetcd.errors import SetupError, TransportError
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

log = logging.getLogger(__name__)
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
    """The connection to the primary ``remote.url``; a configured SSH key that is missing is a SetupError."""
    return _connection(config, config.remote.url, config.remote.host_key_sha256)


def status_connection(config: AgentConfig) -> Connection:
    """Where this robot's status report goes: ``remote.status`` (its status shard), else the primary."""
    status = config.remote.status
    if status is None:
        return connection_of(config)
    return _connection(config, status.url, status.host_key_sha256)


def poll_connections(config: AgentConfig) -> list[Connection]:
    """The servers a poll asks, in order: every read replica, then the primary."""
    replicas = [_connection(config, r.url, r.host_key_sha256) for r in config.remote.replicas]
    return [*replicas, connection_of(config)]


def _connection(config: AgentConfig, url: str, pin: str | None) -> Connection:
    remote = config.remote
    if is_local(url) or remote.ssh_key is None:
        credentials = None
    else:
        key = Path(remote.ssh_key)
        if not key.is_file():
            raise SetupError(f"remote.ssh_key: {key} does not exist (agent.yaml); the robot cannot log in")
        credentials = SshKey(remote.ssh_user or config.device, key)
    host_keys = HostKeyPolicy(pinned_sha256=(pin,)) if pin else None
    return Connection(url, credentials, host_keys, float(remote.timeout_seconds))


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
    names = desired_names(config.device)
    found, too_large = _fetch_first(repo, poll_connections(config), config.device, repo_dir)
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


def _fetch_first(
    repo: RobotRepository, connections: list[Connection], device: str, repo_dir: Path
) -> tuple[list[str], dict[str, BundleRejected]]:
    """Both names fetched from the first of ``connections`` that answers (see the module docstring);
    servers that failed recently are asked last (:mod:`agent.sync.servers`)."""
    urls = [c.url for c in connections]
    several = len(connections) > 1
    kept = load_failures(repo_dir, urls) if several else {}
    failures = dict(kept)
    now = time.time()
    asked = order(connections, urls, kept, now)
    failed: list[str] = []
    try:
        for index, connection in enumerate(asked):
            try:
                found = _fetch_names(repo, connection.remote(), device)
            except TransportError as exc:
                failed.append(str(exc))
                failures[connection.url] = now
                if index + 1 < len(asked):
                    log.warning("poll: %s; asking %s next", exc, asked[index + 1].url)
                continue
            failures.pop(connection.url, None)
            return found
    finally:
        if several and failures != kept and repo_dir.is_dir():  # written only when it changed
            save_failures(repo_dir, failures)
    if len(failed) == 1:
        raise TransportError(failed[0])
    raise TransportError(f"no server answered the poll ({len(failed)} tried): " + "; ".join(failed))


def _fetch_names(
    repo: RobotRepository, remote: RobotRemote, device: str
) -> tuple[list[str], dict[str, BundleRejected]]:
    names = desired_names(device)
    specs = desired_refspecs(device)
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
    return found, too_large


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
