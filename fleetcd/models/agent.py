"""``/etc/fleetcd/agent.yaml`` (kind AgentConfig): one robot's agent, provisioned with the robot.

It lives on the robot, not in the fleet repository, but it is a format like the others (strict YAML,
a generated JSON Schema in ``schemas/v1/agentconfig.json``, a frozen model), so a typo in it gets the
same file:line:field error. The robot pins one root of trust (root keys and a threshold); every other
key it trusts comes from the trust-root chain those keys sign, never from agent.yaml.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from fleetcd.compat import Self
from fleetcd.models.base import Document, Fingerprint, FrozenModel, SafeName
from fleetcd.models.trustroot import MAX_TRUST_VERSION

AbsolutePath = Annotated[str, StringConstraints(pattern=r"^/[^\x00]*$", max_length=1024)]
Argv = Annotated[list[Annotated[str, StringConstraints(max_length=4096)]], Field(min_length=1, max_length=64)]


MAX_REPLICAS = 8  # each down one costs a poll at most one connection attempt (timeout_seconds)
# A path or URL git is given as an argument: never one it would read as an option, no control characters.
URL_PATTERN = r"^[^\-\x00-\x20][^\x00-\x1f]*$"
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=URL_PATTERN)]


# An OpenSSH host key fingerprint as `ssh-keygen -l -E sha256` prints it (fleetcd.git.knownhosts).
HOST_KEY_PIN = re.compile(
    r"^SHA256:[A-Za-z0-9+/]{43}$"
)  # an OpenSSH key fingerprint, as ssh-keygen -l prints
HostKeyPin = Annotated[str, StringConstraints(pattern=HOST_KEY_PIN.pattern)]


class Endpoint(FrozenModel):
    """Another git server of the fleet: a read replica, or this robot's status shard.

    The robot logs in with the same ``ssh_key``/``ssh_user`` as to ``remote.url``; each server
    has its own host key, so each endpoint has its own pin (none: the system's known_hosts).
    """

    url: Url
    host_key_sha256: HostKeyPin | None = None


class RemoteSettings(FrozenModel):
    """Where the fleet repository is and how this robot authenticates to it.

    ``url`` is the primary. Polls go to ``replicas`` first, in order, then to ``url``: the first
    server that answers is used, so a replica that is down costs one failed connection and the
    poll falls through to the next (docs/agent.md). The status report goes to ``status`` (the
    robot's status shard, written by ``fleetcd robot add --status-shard``), else to ``url``.
    """

    url: Url  # local path, file://, ssh://, user@host:path, https://
    ssh_key: AbsolutePath | None = None  # private key; the public key is '<ssh_key>.pub'
    ssh_user: str | None = Field(default=None, max_length=64)  # default: the URL's user, else the device
    host_key_sha256: HostKeyPin | None = None  # pinned 'SHA256:...' of the primary, like a replica's
    timeout_seconds: int = Field(default=60, ge=1, le=3600)
    replicas: list[Endpoint] = Field(default_factory=list, max_length=MAX_REPLICAS)  # polled before url
    status: Endpoint | None = None  # where status reports are pushed; default: url

    @model_validator(mode="after")
    def _replicas_distinct(self) -> Self:
        seen = {self.url}
        for index, replica in enumerate(self.replicas):
            if replica.url in seen:
                where = "remote.url" if replica.url == self.url else "an earlier replica"
                raise ValueError(f"replicas[{index}].url {replica.url!r} repeats {where}")
            seen.add(replica.url)
        return self


class PinnedRoot(FrozenModel):
    """The root of trust a robot is provisioned with: trust-root ``version``'s root keys and threshold."""

    version: int = Field(default=1, ge=1, le=MAX_TRUST_VERSION)
    threshold: int = Field(default=1, ge=1, le=16)
    keys: list[Fingerprint] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _threshold_reachable(self) -> Self:
        if self.threshold > len(set(self.keys)):
            raise ValueError(f"threshold {self.threshold} exceeds the {len(set(self.keys))} pinned root keys")
        return self


class PinnedTrust(FrozenModel):
    """The robot's one pinned root of trust (TUF root rotation, docs/signing-and-approval.md).

    Everything else it trusts — the controller's key, the release signers and their threshold, the
    approvers and the approvals each stage needs — it learns from the signed trust-root chain that
    travels with its desired state, walked from ``root.version`` (or the version it holds since).
    """

    keys_dir: AbsolutePath  # armored OpenPGP public keys (*.asc) of the pinned root keys
    fleet: SafeName | None = None  # when set, desired state of another fleet is refused
    root: PinnedRoot


class PollSettings(FrozenModel):
    """How often the agent looks for new desired state and says it is alive; units in the names."""

    interval_seconds: int = Field(default=60, ge=1, le=86_400)
    jitter_percent: int = Field(default=20, ge=0, le=50)  # +/- on every sleep, so robots do not sync up
    backoff_initial_seconds: int = Field(default=5, ge=1, le=3600)
    backoff_max_seconds: int = Field(default=900, ge=1, le=86_400)  # cap of the exponential backoff
    heartbeat_seconds: int = Field(default=300, ge=10, le=86_400)  # a report at least this often
    # While a download or health watch runs, a report saying how far it is, at most this often
    # (and not before the step has run this long); 0: none (agent.report.progress).
    progress_seconds: int = Field(default=30, ge=0, le=86_400)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff_max_seconds is below backoff_initial_seconds")
        return self


class ExecHook(FrozenModel):
    """A customer hook as an executable: argv (absolute path first, no shell); JSON on stdin."""

    exec: Argv
    timeout_seconds: int = Field(default=300, ge=1, le=3600)


class HookSettings(FrozenModel):
    """Customer hooks (Fleet Release's adapter): a Python plugin and/or executables per hook.

    ``plugin`` names an entry point in the group ``fleetcd.agent.hooks``; an executable set for a
    hook wins over the plugin's method of the same name.
    """

    plugin: SafeName | None = None
    install_artifact: ExecHook | None = None
    run_preflight: ExecHook | None = None
    switch_slot: ExecHook | None = None
    report_health: ExecHook | None = None
    rollback: ExecHook | None = None


class ExecGate(FrozenModel):
    """A robot-state gate ("docked", "no active mission") checked by a command: exit 0 = open."""

    exec: Argv
    timeout_seconds: int = Field(default=10, ge=1, le=300)


class FileGate(FrozenModel):
    """A robot-state gate checked by a file the robot's software maintains: present = open."""

    file: AbsolutePath


class GateSettings(FrozenModel):
    """Gates a release or rollout may name, and how long an install may wait for them."""

    checks: dict[SafeName, ExecGate | FileGate] = Field(default_factory=dict)
    retry_seconds: int = Field(default=60, ge=1, le=86_400)  # re-check a closed gate this often
    max_deferral_seconds: int = Field(default=3600, ge=1, le=7 * 86_400)  # then the deployment fails


class DockerSettings(FrozenModel):
    base_url: str = Field(default="unix:///var/run/docker.sock", max_length=1024)

    @model_validator(mode="before")
    @classmethod
    def _registry_insecure_was_removed(cls, data: object) -> object:
        if isinstance(data, dict) and "registry_insecure" in data:
            raise ValueError(
                "docker.registry_insecure was removed: nothing acted on it; the Docker engine's own "
                "insecure-registries (daemon.json) decides — delete the line"
            )
        return data


class AgentConfig(Document):
    """Everything one robot's agent needs; see docs/agent.md for a commented example."""

    kind: Literal["AgentConfig"]
    device: SafeName
    remote: RemoteSettings
    trust: PinnedTrust
    state_dir: AbsolutePath | None = None  # default: $STATE_DIRECTORY, else /var/lib/fleetcd
    executor: Literal["tarball", "docker"] = "tarball"
    poll: PollSettings = Field(default_factory=PollSettings)
    exec_allowlist: list[AbsolutePath] = Field(default_factory=list, max_length=256)  # probe/gate binaries
    hooks: HookSettings = Field(default_factory=HookSettings)
    gates: GateSettings = Field(default_factory=GateSettings)
    # A local change to what fleetcd put on the robot — a config file, the `current` link, the app's
    # container or image, a version started by hand — is always reported; `restore` also puts it back.
    drift: Literal["restore", "report"] = "report"
    max_trials: int = Field(default=3, ge=1, le=10)  # starts of a new version before it is given up
    docker: DockerSettings = Field(default_factory=DockerSettings)

    @model_validator(mode="before")
    @classmethod
    def _config_drift_is_the_old_name_of_drift(cls, data: object) -> object:
        """agent.yaml files written before ``drift`` covered more than config files still load."""
        if isinstance(data, dict) and "config_drift" in data:
            data = dict(data)
            old = data.pop("config_drift")
            if "drift" in data and data["drift"] != old:
                raise ValueError("config_drift is the old name of drift: give only drift")
            data["drift"] = old
        return data
