"""The Docker executor: each version of an app is one container, created beside the running one.

Place in the flow: :mod:`agent.converge` drives it through ``fetch → install → switch → (watch) →
commit | rollback`` (the :class:`~agent.executors.base.Executor` Protocol). This is the only module
that imports the ``docker`` SDK.

* fetch pulls the release's ``container_image`` by digest (``repo@sha256:…``; a tag is never
  trusted) and checks the engine lists that exact digest in the image's ``RepoDigests``.
* install creates — never starts — ``fleetcd-<device>-<app>-<version>`` with ``dev.fleetcd.*``
  labels, host networking and restart policy ``no``: the agent, not the engine, decides about
  restarts. The app's config folder (``<app_dir>/config``) is bind-mounted read-only at the same
  path, so ``$FLEETCD_CONFIG`` and the files the agent writes before each switch reach the app.
* Everything is scoped to this robot (``dev.fleetcd.device``): agents of several devices may share
  one engine (the demo's six robots do) without seeing or stopping each other's containers.
* switch stops the other versions (kept for a rollback), starts the new one, then records the active
  version in ``<app_dir>/active`` (atomic), the intent that :meth:`DockerExecutor.active` reads back.
* rollback and commit only touch containers already on the robot, so they work with the link down.

Errors: the engine's socket not answering is :class:`~agent.errors.EngineUnavailable` (retry); a
registry that cannot be reached is :class:`~agent.errors.DownloadFailed` (retry); a registry that
answers "no such manifest", a digest mismatch or a container the engine refuses are ApplyErrors.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from agent.errors import (
    ContainerFailed,
    CorruptState,
    DigestMismatch,
    DownloadFailed,
    EngineUnavailable,
    ImageNotInRegistry,
)
from agent.executors.base import AppTarget, ExecutorContext, RunState
from agent.state.atomic import fsync_dir, read_bytes, write_atomic
from fleetcd.errors import ApplyError
from fleetcd.models.agent import AgentConfig
from fleetcd.models.base import parse_version
from fleetcd.models.release import ContainerImage, Release
from fleetcd.vocabulary import DriftKind

LABEL_APP = "dev.fleetcd.app"
LABEL_VERSION = "dev.fleetcd.version"
LABEL_DEPLOYMENT = "dev.fleetcd.deployment"
LABEL_DEVICE = "dev.fleetcd.device"
LABEL_IMAGE = "dev.fleetcd.image"  # the repo@sha256 reference the container was created from
CONFIG_DIR = "config"  # agent.configfiles.write.CONFIG_DIR: relative config paths live here
ACTIVE_FILE = "active"
NETWORK_MODE = "host"  # robots run one app per port; no bridge, no NAT between app and robot
RUNNING_STATUSES = frozenset({"running", "restarting"})
# Docker container names allow [a-zA-Z0-9][a-zA-Z0-9_.-]*; semver build metadata brings '+'.
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
_DOCKER_HUB_PREFIXES = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")


@dataclass(frozen=True)
class DockerTimeouts:
    """Bounds on talking to the engine; units in the names."""

    api_seconds: int = 300  # one engine request; a pull streams progress, so this bounds a stall
    stop_seconds: int = 10  # SIGTERM grace before the engine SIGKILLs a container


def container_name(app: str, version: str, device: str | None = None) -> str:
    """``fleetcd-<device>-<app>-<version>`` (``fleetcd-<app>-<version>`` without a device).

    The labels, not the name, are what identifies a version; the device keeps names apart when
    several robots' agents share one engine.
    """
    parts = [device] if device else []
    return _NAME_UNSAFE.sub("_", "-".join(["fleetcd", *parts, app, version]))


def image_artifact(release: Release) -> ContainerImage:
    """The release's one ``container_image`` artifact; anything else cannot run in a container."""
    images = [a for a in release.artifacts if isinstance(a, ContainerImage)]
    if len(images) != 1:
        raise ApplyError(
            f"release {release.app} {release.version}: the docker executor needs exactly one "
            f"container_image artifact, found {len(images)}"
        )
    return images[0]


def normalize_reference(reference: str) -> str:
    """The engine's short form of an image reference (``docker.io/library/x`` is listed as ``x``)."""
    for prefix in _DOCKER_HUB_PREFIXES:
        if reference.startswith(prefix):
            reference = reference.removeprefix(prefix).removeprefix("library/")
            break
    return reference


def check_repo_digests(image: str, repo_digests: Sequence[str]) -> None:
    """Pure: the engine must list exactly ``repo@sha256:…`` for the image it pulled."""
    wanted = normalize_reference(image)
    if wanted not in {normalize_reference(d) for d in repo_digests}:
        raise DigestMismatch(image, image, ", ".join(repo_digests) or "(no repo digests)")


class DockerExecutor:
    """Runs each app version as a labelled container on the local Docker Engine."""

    name = "docker"

    def __init__(
        self,
        ctx: ExecutorContext,
        config: AgentConfig,
        *,
        client: Any | None = None,
        timeouts: DockerTimeouts = DockerTimeouts(),
    ) -> None:
        self._ctx = ctx
        self._device = config.device
        self._base_url = config.docker.base_url
        self._client = client
        self._timeouts = timeouts

    # --- Executor Protocol ---------------------------------------------------------------------

    def fetch(self, target: AppTarget) -> None:
        image = image_artifact(target.release).image
        if self._local_repo_digests(image) is None:
            self._pull(image)
        repo_digests = self._local_repo_digests(image)
        check_repo_digests(image, repo_digests or [])

    def install(self, target: AppTarget) -> None:
        artifact = image_artifact(target.release)
        self.fetch(target)  # after a crash or an image prune; a no-op when the image is here
        name = self._name(target.app, target.version)
        labels = {
            LABEL_APP: target.app,
            LABEL_VERSION: target.version,
            LABEL_DEPLOYMENT: target.deployment_id,
            LABEL_DEVICE: self._device,
            LABEL_IMAGE: artifact.image,
        }
        binds = self._config_binds(target)
        with self._engine(f"install {name}"):
            image_id = self._docker.images.get(artifact.image).id
            existing = self._get(name)
            if existing is not None:
                if existing.labels == {**existing.labels, **labels} and existing.attrs["Image"] == image_id:
                    return
                if existing.status in RUNNING_STATUSES:
                    raise ContainerFailed(f"replace {name}", "a running container already has this name")
                self._call(name, "remove stale", lambda: existing.remove(force=True))
            api = self._docker.api
            self._call(
                name,
                "create",
                lambda: api.create_container(
                    artifact.image,
                    command=artifact.command,
                    name=name,
                    labels=labels,
                    environment={**artifact.env, **target.env},
                    # Host networking: the app binds these itself, nothing is published; they are
                    # recorded as ExposedPorts so `docker inspect` shows what the release declared.
                    ports=sorted(set(artifact.ports.values())),
                    volumes=sorted(binds),
                    host_config=api.create_host_config(
                        network_mode=NETWORK_MODE, restart_policy={"Name": "no"}, binds=binds
                    ),
                ),
            )

    def switch(self, target: AppTarget, previous: str | None) -> None:
        name = self._name(target.app, target.version)
        with self._engine(f"switch to {name}"):
            # Stop every other version, not just `previous`: after a crash mid-rollback another one
            # may run, and exactly one version of an app may ever run.
            for version, container in self._containers(target.app).items():
                if version != target.version and container.status in RUNNING_STATUSES:
                    self._stop(container)
            self._start(target.app, target.version)
        self._record_active(target.app, target.version)

    def state(self, app: str, version: str) -> RunState:
        with self._engine(f"inspect {self._name(app, version)}"):
            container = self._get(self._name(app, version))
        if container is None or container.labels.get(LABEL_APP) != app:
            return RunState.MISSING
        if container.labels.get(LABEL_DEVICE) != self._device:
            return RunState.MISSING
        if container.labels.get(LABEL_VERSION) != version:
            return RunState.MISSING
        return RunState.RUNNING if container.status in RUNNING_STATUSES else RunState.EXITED

    def active(self, app: str) -> str | None:
        recorded = self._read_active(app)
        try:
            with self._engine(f"list containers of {app}"):
                containers = self._containers(app)
        except EngineUnavailable:
            return recorded  # the engine is restarting: the file is still our best knowledge
        if recorded is not None and recorded in containers:
            return recorded
        # The file is missing (first switch cut short) or names a removed container: if the engine
        # runs exactly one version of this app, that one is active.
        running = [v for v, c in containers.items() if c.status in RUNNING_STATUSES]
        return running[0] if len(running) == 1 else recorded

    def rollback(self, app: str, failed: str, previous: str | None) -> None:
        with self._engine(f"roll back {app} {failed}"):
            for version, container in self._containers(app).items():
                if version == failed and failed != previous:
                    name = self._name(app, version)
                    self._call(name, "remove", lambda c=container: c.remove(force=True))
                elif version != previous and container.status in RUNNING_STATUSES:
                    self._stop(container)
            if previous is not None:
                self._start(app, previous)
        if previous is None:
            self._clear_active(app)
        else:
            self._record_active(app, previous)

    def restart(self, app: str, version: str) -> None:
        name = self._name(app, version)
        with self._engine(f"restart {name}"):
            container = self._get(name)
            if container is None:
                raise ContainerFailed(f"restart {name}", "no such container (never installed, or removed)")
            if container.status in RUNNING_STATUSES:
                self._stop(container)
            self._start(app, version)
        self._record_active(app, version)

    def ensure_running(self, app: str) -> bool:
        """Start the active version's container if it is stopped (after a reboot); True if started.

        Containers are created with no restart policy (the agent, not the engine, decides), so the
        loop's idle path calls this; inside a watch window an exit must be seen, not repaired.
        """
        version = self.active(app)
        if version is None or self.state(app, version) is not RunState.EXITED:
            return False
        with self._engine(f"restart {self._name(app, version)}"):
            self._start(app, version)
        return True

    def commit(self, app: str, version: str, previous: str | None) -> None:
        with self._engine(f"commit {app} {version}"):
            # Everything but the committed version goes: `previous` and any leftover of a crash.
            for other, container in self._containers(app).items():
                if other != version:
                    name = self._name(app, other)
                    self._call(name, "remove", lambda c=container: c.remove(force=True))

    def drift(self, app: str, version: str, target: AppTarget | None) -> list[tuple[DriftKind, str]]:
        """The version's container runs another image than its pinned digest (a replaced container or
        a re-pointed image) or is gone (``docker rm`` by hand: no image of it runs, and with no
        restart policy nothing would start it again), or a container of another version of the app
        runs (started by hand)."""
        found: list[tuple[DriftKind, str]] = []
        name = self._name(app, version)
        with self._engine(f"check {app} for drift"):
            container = self._get(name)
            pinned = image_artifact(target.release).image if target is not None else None
            if container is None:
                pin = f" ({pinned})" if pinned else ""
                found.append(
                    (DriftKind.IMAGE, f"container {name}{pin} is gone; the agent made {version} active")
                )
            else:
                pinned = pinned or container.labels.get(LABEL_IMAGE)
                running_image = str(container.attrs.get("Image", ""))
                wanted = self._image_id(pinned) if pinned else None
                if pinned and running_image != wanted:
                    found.append(
                        (DriftKind.IMAGE, f"container {name} runs image {running_image[:19]}, not {pinned}")
                    )
            for other, box in self._containers(app).items():
                if other != version and box.status in RUNNING_STATUSES:
                    detail = f"container {box.name} of {app} {other} runs; the agent made {version} active"
                    found.append((DriftKind.STARTED_OUTSIDE, detail))
        return found

    def restore(self, app: str, version: str, target: AppTarget | None) -> None:
        """A replaced container is created again from the pinned image (needs ``target``); every
        other version of the app is stopped; ``version`` runs and is recorded active."""
        kinds = {kind for kind, _ in self.drift(app, version, target)}
        name = self._name(app, version)
        if DriftKind.IMAGE in kinds:
            if target is None:
                raise ApplyError(
                    f"{name} runs another image, and its release is not at hand to create it again"
                )
            with self._engine(f"remove {name}"):
                existing = self._get(name)
                if existing is not None:
                    self._call(name, "remove replaced", lambda: existing.remove(force=True))
            self.install(target)
        with self._engine(f"restore {name}"):
            for other, box in self._containers(app).items():
                if other != version and box.status in RUNNING_STATUSES:
                    self._stop(box)
            self._start(app, version)
        self._record_active(app, version)

    # --- engine --------------------------------------------------------------------------------

    def _image_id(self, reference: str) -> str | None:
        try:
            return str(self._docker.images.get(reference).id)
        except docker.errors.ImageNotFound:
            return None

    @property
    def _docker(self) -> Any:
        if self._client is None:
            try:
                self._client = docker.DockerClient(
                    base_url=self._base_url, timeout=self._timeouts.api_seconds
                )
            except docker.errors.DockerException as exc:  # the API version probe got no answer
                raise EngineUnavailable(self._base_url, f"connect: {exc}") from exc
        return self._client

    @contextlib.contextmanager
    def _engine(self, doing: str) -> Iterator[None]:
        """Socket failures (no engine, engine restarting) become EngineUnavailable; refusals ApplyErrors."""
        try:
            yield
        except docker.errors.DockerException as exc:  # APIError, or the SDK refusing an argument
            # First: APIError is also an OSError (through requests' HTTPError) but the engine answered.
            raise ContainerFailed(doing, _explain(exc)) from exc
        except OSError as exc:  # requests' ConnectionError and timeouts: no answer from the socket
            raise EngineUnavailable(self._base_url, f"{doing}: {exc}") from exc

    def _call(self, name: str, action: str, operation: Any) -> Any:
        try:
            return operation()
        except docker.errors.NotFound as exc:
            if action.startswith("remove"):
                return None  # already gone: removal is idempotent
            raise ContainerFailed(f"{action} {name}", _explain(exc)) from exc
        except docker.errors.APIError as exc:
            raise ContainerFailed(f"{action} {name}", _explain(exc)) from exc

    def _name(self, app: str, version: str) -> str:
        return container_name(app, version, self._device)

    def _config_binds(self, target: AppTarget) -> dict[str, dict[str, str]]:
        """``<app_dir>/config`` read-only at the same path, when the app has (or will have) config.

        The agent writes the config file after install and before switch, so the folder is created
        here for a release that declares a config: a bind mount needs its source to exist.
        """
        folder = self._ctx.app_dir(target.app) / CONFIG_DIR
        if target.release.config is not None:
            folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            return {}
        path = str(folder.resolve())
        return {path: {"bind": path, "mode": "ro"}}

    def _get(self, name: str) -> Any | None:
        try:
            return self._docker.containers.get(name)
        except docker.errors.NotFound:
            return None

    def _containers(self, app: str) -> dict[str, Any]:
        """This device's containers of this app by version (stopped ones too)."""
        labels = [f"{LABEL_APP}={app}", f"{LABEL_DEVICE}={self._device}"]
        found = self._docker.containers.list(all=True, filters={"label": labels}, ignore_removed=True)
        return {str(c.labels[LABEL_VERSION]): c for c in found if c.labels.get(LABEL_VERSION)}

    def _start(self, app: str, version: str) -> None:
        name = self._name(app, version)
        container = self._get(name)
        if container is None:
            raise ContainerFailed(f"start {name}", "no such container (never installed, or removed)")
        if container.status not in RUNNING_STATUSES:
            self._call(name, "start", container.start)

    def _stop(self, container: Any) -> None:
        self._call(str(container.name), "stop", lambda: container.stop(timeout=self._timeouts.stop_seconds))

    def _local_repo_digests(self, image: str) -> list[str] | None:
        """The RepoDigests of the local image ``image`` names, None when it is not here."""
        with self._engine(f"inspect image {image}"):
            try:
                found = self._docker.images.get(image)
            except docker.errors.ImageNotFound:
                return None
            return [str(d) for d in found.attrs.get("RepoDigests") or []]

    def _pull(self, image: str) -> None:
        repository, _, digest = image.rpartition("@")
        try:
            with self._engine(f"pull {image}"):
                try:
                    progress = self._docker.api.pull(repository, tag=digest, stream=True, decode=True)
                    for line in progress:
                        if "error" in line:
                            raise DownloadFailed(f"pull of {image} failed: {line['error']}")
                except docker.errors.NotFound as exc:
                    raise ImageNotInRegistry(image, _explain(exc)) from exc
        except ContainerFailed as exc:
            # Anything else the engine says about a pull is the registry failing us: retry later.
            raise DownloadFailed(f"pull of {image} failed: {exc.detail}") from exc

    # --- the active file -----------------------------------------------------------------------

    def _active_path(self, app: str) -> Path:
        return self._ctx.app_dir(app) / ACTIVE_FILE

    def _record_active(self, app: str, version: str) -> None:
        path = self._active_path(app)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, f"{version}\n".encode())

    def _clear_active(self, app: str) -> None:
        path = self._active_path(app)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_dir(path.parent)

    def _read_active(self, app: str) -> str | None:
        path = self._active_path(app)
        raw = read_bytes(path)
        if raw is None:
            return None
        version = raw.decode("utf-8", errors="replace").strip()
        try:
            parse_version(version)
        except ValueError as exc:
            raise CorruptState(path, f"not a version: {version!r}") from exc
        return version


def _explain(exc: Exception) -> str:
    """The engine's own words (``explanation``) with the HTTP status, e.g. ``404: manifest unknown``."""
    explanation = getattr(exc, "explanation", None) or str(exc)
    status = getattr(exc, "status_code", None)
    return f"{status}: {explanation}" if status is not None else str(explanation)
