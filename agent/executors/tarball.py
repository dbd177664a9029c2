"""The tarball executor: releases unpacked side by side, switched by a symlink, run by the supervisor.

The converge loop drives it through ``fetch → install → switch → (watch) → commit | rollback``
(:class:`agent.executors.base.Executor`). On disk, per app (``<apps_dir>/<app>/``, see
:mod:`agent.install.slots`)::

    releases/1.4.0/                   the unpacked app_tarball, plus config/model payloads at their paths
    releases/1.4.0/.fleetcd/run.json  how to start it: argv (the artifact's ``command``) and env
    releases/1.4.0/.fleetcd/tree.json what the directory held at install (:mod:`agent.install.tree`)
    current -> releases/1.4.0

``run.json`` is what makes rollback independent of the network and of the desired state: restarting
an older version needs only its release directory, and ``tree.json`` is what makes that directory
trustworthy: a version still on disk whose files match the record is reused without a download
(a rollback ordered by the controller works with the artifact server down); one that does not is
downloaded again, or, for an automatic rollback, refused with the reason. The process itself belongs to the
:class:`~agent.executors.supervisor.Supervisor` (pidfiles under ``<apps_dir>/.run``); its working
directory is the release directory. A tarball without ``command`` is run by something else (a
customer's ``switch_slot`` hook, a systemd unit on ``current``): the executor then only switches
slots, and "running" means "the active version".

Downloads go to ``<downloads_dir>/<app>/<version>/<artifact name>`` (resumable) and are deleted on
commit, once the release directory holds their content. Every method is idempotent, so the journal
can replay any step after a crash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from agent.errors import CorruptState
from agent.executors.base import AppTarget, ExecutorContext, RunState
from agent.executors.supervisor import Supervisor, other_processes
from agent.fetch import Downloader, DownloadSettings
from agent.fetch.http import download
from agent.install.slots import (
    CURRENT_LINK,
    RELEASES_DIR,
    current_version,
    install_release,
    prune,
    release_dir,
    remove_release,
    switch_current,
)
from agent.install.tree import TREE_FILE, read_tree, record_tree, tree_problem
from agent.install.unpack import UnpackLimits
from agent.state.atomic import fsync_dir, read_record, write_atomic
from fleetcd.compat import path_sha256
from fleetcd.errors import ApplyError
from fleetcd.models.agent import AgentConfig
from fleetcd.models.release import AppTarball, ConfigPayload, ModelPayload, Release
from fleetcd.vocabulary import DriftKind

META_DIR = ".fleetcd"  # inside a release directory: ours, never a payload's
RUN_FILE = "run.json"
RUN_DIR = ".run"  # under apps_dir; app names are safe names, so never a leading dot
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STRANGER_STOP_SECONDS = 5.0  # SIGTERM grace for a version started by hand, then SIGKILL

Payload = ConfigPayload | ModelPayload
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """``releases/<version>/.fleetcd/run.json``: everything needed to start this version again."""

    app: str
    version: str
    argv: list[str] | None  # None: the app is started by something else (hook, systemd)
    env: dict[str, str]


class TarballExecutor:
    """Executor for ``app_tarball`` releases (plus their ``config`` and ``model`` payloads)."""

    name = "tarball"

    def __init__(
        self,
        ctx: ExecutorContext,
        config: AgentConfig,
        *,
        download_settings: DownloadSettings = DownloadSettings(),  # noqa: B008 - frozen, safe to share
        supervisor: Supervisor | None = None,
        downloader: Downloader = download,
        unpack_limits: UnpackLimits | None = None,
    ) -> None:
        self.ctx = ctx
        self.device = config.device
        self.download_settings = download_settings
        self.supervisor = supervisor or Supervisor(ctx.apps_dir / RUN_DIR)
        self.downloader = downloader
        self.unpack_limits = unpack_limits

    # --- Executor protocol ------------------------------------------------------------------------

    def fetch(self, target: AppTarget) -> None:
        """Download the app tarball and every payload, each checked by size and sha256 — unless the
        version is installed here and its files match what was recorded at its install (no network:
        a rollback to a version still on disk works with the artifact server down)."""
        tarball, payloads = _artifacts(target.release)
        for payload in payloads:
            _payload_path(target.release, payload)  # refuse a bad path before spending bandwidth
        if self._reusable(target) is None:
            return
        for artifact in (tarball, *payloads):
            self._downloaded(target, artifact)

    def install(self, target: AppTarget) -> None:
        """Unpack into ``releases/<version>``, place the payloads, record the tree, then write
        ``run.json`` last. A verified copy already here is reused as it is; any other directory of
        that version (an install cut short, changed files) is replaced from the verified download."""
        tarball, payloads = _artifacts(target.release)
        root = self.ctx.app_dir(target.app)
        folder = release_dir(root, target.version)
        meta = folder / META_DIR
        problem = self._reusable(target) if folder.is_dir() else "not installed"
        if problem is not None:
            if folder.is_dir():
                if current_version(root) == target.version:
                    raise ApplyError(
                        f"{folder}: the active release {target.version} cannot be reused: {problem}"
                    )
                log.warning("%s: not reused, installed again: %s", folder, problem)
                remove_release(root, target.version)
            archive = self._downloaded(target, tarball)
            install_release(root, target.version, archive, limits=self.unpack_limits)
            # A fresh unpack has no META_DIR: one that is there came in the archive (a folder with a
            # run.json naming another command, a link elsewhere). The agent's alone, so refused.
            if meta.is_symlink() or meta.exists():
                remove_release(root, target.version)
                raise ApplyError(f"{meta}: the release archive ships its own {META_DIR!r}; it is reserved")
            for payload in payloads:
                self._place(target, payload, folder)
            meta.mkdir(exist_ok=True)
            record_tree(folder, meta, _artifact_digests(target.release))
        spec = RunSpec(target.app, target.version, tarball.command, dict(target.env))
        write_atomic(meta / RUN_FILE, json.dumps(asdict(spec), indent=2, sort_keys=True).encode())

    def switch(self, target: AppTarget, previous: str | None) -> None:
        """Point ``current`` at the new version, stop whatever ran and start it from ``run.json``."""
        spec = self._spec(target.app, target.version)
        switch_current(self.ctx.app_dir(target.app), target.version)
        self._run(spec)

    def state(self, app: str, version: str) -> RunState:
        root = self.ctx.app_dir(app)
        if not release_dir(root, version).is_dir():
            return RunState.MISSING
        spec = self._read_spec(app, version)
        if spec is None or spec.argv is None:
            active = spec is not None and current_version(root) == version
            return RunState.RUNNING if active else RunState.EXITED
        seen = self.supervisor.state(app, version)
        return RunState.EXITED if seen is RunState.MISSING else seen  # installed, never started

    def active(self, app: str) -> str | None:
        return current_version(self.ctx.app_dir(app))

    def rollback(self, app: str, failed: str, previous: str | None) -> None:
        """Stop ``failed``; make ``previous`` current and start it again, from local files only.

        When ``previous`` cannot be restarted (its release is gone) nothing is touched and
        ApplyError is raised: a failing version still running beats no version at all.
        """
        root = self.ctx.app_dir(app)
        if previous is None:
            self.supervisor.stop(app)
            if current_version(root) == failed:
                (root / CURRENT_LINK).unlink()  # nothing was active before: nothing is now
                fsync_dir(root)
            return
        spec = self._spec(app, previous)
        folder = release_dir(root, previous)
        if read_tree(folder / META_DIR) is None:  # installed by an agent before the record existed
            log.warning("%s: no %s to check it against; rolling back to it as it is", folder, TREE_FILE)
        elif (problem := tree_problem(folder, folder / META_DIR, None)) is not None:
            raise ApplyError(
                f"{folder}: release {previous} of {app} is not reused for the rollback: {problem}"
            )
        switch_current(root, previous)
        self._run(spec)

    def restart(self, app: str, version: str) -> None:
        spec = self._spec(app, version)
        self.supervisor.stop(app)  # start() keeps a live twin of the same command: stop it first
        self._run(spec)

    def commit(self, app: str, version: str, previous: str | None) -> None:
        """Keep only ``version`` and ``previous`` on disk; their downloads are no longer needed."""
        keep = {version} if previous is None else {version, previous}
        removed = prune(self.ctx.app_dir(app), keep)
        for gone in (*keep, *removed):
            shutil.rmtree(self.ctx.downloads_dir / app / gone, ignore_errors=True)

    def drift(self, app: str, version: str, target: AppTarget | None) -> list[tuple[DriftKind, str]]:
        """``current`` retargeted by hand, or a process of the app running from a release directory
        that the supervisor did not start (see :func:`_strangers`)."""
        root = self.ctx.app_dir(app)
        found: list[tuple[DriftKind, str]] = []
        try:
            current = current_version(root)
        except CorruptState as exc:
            found.append((DriftKind.CURRENT_LINK, f"{exc}; the agent made {version} active"))
        else:
            if current != version:
                pointed = f"points at {current}" if current else "is missing"
                found.append(
                    (
                        DriftKind.CURRENT_LINK,
                        f"{root / CURRENT_LINK} {pointed}; the agent made {version} active",
                    )
                )
        spec = self._read_spec(app, version)
        if spec is None or spec.argv is None:
            return found  # a hook or a systemd unit runs this app: its processes are not ours to judge
        for pid, where in self._strangers(app):
            found.append(
                (DriftKind.STARTED_OUTSIDE, f"process {pid} runs {app} from {where}, not started by fleetcd")
            )
        return found

    def restore(self, app: str, version: str, target: AppTarget | None) -> None:
        """``current`` back on ``version``, processes started by hand stopped, ``version`` running."""
        root = self.ctx.app_dir(app)
        spec = self._spec(app, version)
        try:
            pointed = current_version(root)
        except CorruptState:
            pointed = None
            link = root / CURRENT_LINK
            if link.is_dir() and not link.is_symlink():
                shutil.rmtree(link)  # a directory where the link belongs: it was never ours
        if pointed != version:
            switch_current(root, version)
        if spec.argv is None:
            return  # started by something else (a hook, a systemd unit on `current`)
        for pid, _where in self._strangers(app):
            _stop_stranger(pid)
        if self.supervisor.running_version(app) != version:
            self._run(spec)

    # --- beyond the protocol ----------------------------------------------------------------------

    def ensure_running(self, app: str) -> bool:
        """Start the active version if its process is gone (after a reboot); True if it started it.

        For the loop's idle path only: inside a watch window an exit must be seen, not repaired.
        """
        version = self.active(app)
        if version is None:
            return False
        spec = self._read_spec(app, version)
        if spec is None or spec.argv is None or self.supervisor.state(app, version) is RunState.RUNNING:
            return False
        self._run(spec)
        return True

    def run_spec(self, app: str, version: str) -> RunSpec | None:
        """The stored ``run.json`` of an installed version, or None."""
        return self._read_spec(app, version)

    # --- internals --------------------------------------------------------------------------------

    def _reusable(self, target: AppTarget) -> str | None:
        """None when ``target``'s release directory is installed and matches its record, else why not."""
        folder = release_dir(self.ctx.app_dir(target.app), target.version)
        if not folder.is_dir() or folder.is_symlink():
            return "not installed"
        return tree_problem(folder, folder / META_DIR, _artifact_digests(target.release))

    def _strangers(self, app: str) -> list[tuple[int, str]]:
        """Processes whose working directory is one of the app's release directories and that are
        not in the session of the process the supervisor started: a version started by hand."""
        releases = (self.ctx.app_dir(app) / RELEASES_DIR).resolve()
        ours = self.supervisor.running_pid(app)
        found = []
        for pid, entry in other_processes():
            try:
                cwd = (entry / "cwd").readlink()
                session = os.getsid(pid)
            except (OSError, ProcessLookupError):
                continue  # gone meanwhile, a kernel thread, or not ours to read
            if not cwd.is_relative_to(releases) or cwd == releases or session == ours:
                continue
            found.append((pid, str(cwd.relative_to(releases.parent))))
        return found

    def _run(self, spec: RunSpec) -> None:
        if spec.argv is None:
            self.supervisor.stop(spec.app)
            return
        folder = release_dir(self.ctx.app_dir(spec.app), spec.version)
        env = {
            "PATH": os.environ.get("PATH", DEFAULT_PATH),
            "FLEETCD_DEVICE": self.device,
            "FLEETCD_APP": spec.app,
            "FLEETCD_VERSION": spec.version,
            "FLEETCD_RELEASE_DIR": str(folder),
            **spec.env,
        }
        self.supervisor.start(spec.app, spec.version, spec.argv, folder, env)

    def _spec(self, app: str, version: str) -> RunSpec:
        spec = self._read_spec(app, version)
        if spec is None:
            where = release_dir(self.ctx.app_dir(app), version)
            raise ApplyError(f"{where}: release {version} of {app} is not (completely) installed")
        return spec

    def _read_spec(self, app: str, version: str) -> RunSpec | None:
        path = release_dir(self.ctx.app_dir(app), version) / META_DIR / RUN_FILE
        return read_record(path, RunSpec, "a run spec")

    def _download_path(self, target: AppTarget, artifact: AppTarball | Payload) -> Path:
        return self.ctx.downloads_dir / target.app / target.version / artifact.name

    def _downloaded(self, target: AppTarget, artifact: AppTarball | Payload) -> Path:
        """The verified local copy of ``artifact`` (an instant check when it is already there)."""
        dest = self._download_path(target, artifact)
        dest.parent.mkdir(parents=True, exist_ok=True)
        listener, name = target.progress, artifact.name
        return self.downloader(
            artifact.url,
            dest,
            sha256=artifact.sha256,
            size=artifact.size,
            settings=self.download_settings,
            progress=None if listener is None else lambda done: listener(name, done),
        )

    def _place(self, target: AppTarget, payload: Payload, folder: Path) -> None:
        """Copy a verified payload to its path in the release, atomically; skip it if already there."""
        dest = folder / _payload_path(target.release, payload)
        if not dest.resolve().is_relative_to(folder.resolve()):
            raise ApplyError(f"{dest}: payload {payload.name!r} would land outside the release via a symlink")
        if dest.is_file() and dest.stat().st_size == payload.size and path_sha256(dest) == payload.sha256:
            return
        source = self._downloaded(target, payload)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            shutil.copyfile(source, tmp)
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
            tmp.chmod(0o644)
            tmp.replace(dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        fsync_dir(dest.parent)


def _artifacts(release: Release) -> tuple[AppTarball, list[Payload]]:
    """The one app tarball and the payloads; other kinds belong to other executors or hooks."""
    tarballs = [a for a in release.artifacts if isinstance(a, AppTarball)]
    if len(tarballs) != 1:
        raise ApplyError(
            f"release {release.app} {release.version}: the tarball executor needs exactly one "
            f"app_tarball artifact, found {len(tarballs)}"
        )
    payloads = [a for a in release.artifacts if isinstance(a, ConfigPayload | ModelPayload)]
    return tarballs[0], payloads


def _stop_stranger(pid: int, timeout_s: float = STRANGER_STOP_SECONDS) -> None:
    """SIGTERM a process started outside fleetcd, SIGKILL it if it is still there after ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while Path(f"/proc/{pid}").exists() and _state_of(pid) not in ("Z", None):
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)


def _state_of(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def _artifact_digests(release: Release) -> dict[str, str]:
    """Name -> sha256 of the artifacts this executor installs: what a reused directory must match."""
    tarball, payloads = _artifacts(release)
    return {a.name: a.sha256 for a in (tarball, *payloads)}


def _payload_path(release: Release, payload: Payload) -> PurePosixPath:
    """The payload's ``path``, relative and inside the release; anything else is refused."""
    raw = payload.path
    path = PurePosixPath(raw)
    problem = None
    if "\0" in raw or "\\" in raw:
        problem = "contains a NUL or backslash"
    elif path.is_absolute():
        problem = "is absolute"
    elif ".." in path.parts:
        problem = "has a '..' component"
    elif not path.parts:
        problem = "is empty"
    elif path.parts[0] == META_DIR:
        problem = f"is inside the agent's reserved {META_DIR!r}"
    if problem is not None:
        raise ApplyError(
            f"release {release.app} {release.version}: artifact {payload.name!r} path {raw!r} {problem}; "
            "payload paths must be relative to the release directory"
        )
    return path
