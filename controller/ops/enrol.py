"""``fleetcd robot add``: enrol a real robot, written as commits and a folder for the robot.

It writes ``devices/<id>.yaml``, adds the id to the cohort's ``devices:`` list (a cohort that
selects by attributes must match the robot instead), and makes the robot's folder: its
``agent.yaml`` (:mod:`fleetcd.operator.agentconfig`, the one writer), the fleet's public keys it
pins, and its SSH key (made here with ssh-keygen, or only the public key the operator brings).
With ``--gitolite-admin`` the key file and the ``@robots`` membership go into that checkout; with
``--shard-admin NAME=PATH`` for the robot's own status shard, into that server's checkout too.

Everything is decided and validated before anything is written: a duplicate id (device file or
gitolite key), an unknown cohort, a bad device field or agent setting, a key that already belongs
to someone or an edit that would add a validation error is refused with the file named. The
robot's folder is assembled in a temporary folder and renamed into place; if a later write fails,
what was already written is put back (:class:`controller.ops.robots.Undo`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from controller.ops.gitolite import AdminCheckout, AdminEdit, ShardAdmin
from controller.ops.local import WorkTree, check_change, open_work_tree
from controller.ops.robots import (
    RobotChange,
    Undo,
    check_outside,
    check_robot_id,
    robot_key,
    write_and_commit,
)
from controller.ops.sshkeys import PRIVATE_KEY_FILE, PublicKey
from controller.ops.yamledit import UneditableYaml, append_list_item
from fleetcd.errors import Diagnostic, InvalidContent, SetupError
from fleetcd.git.gitcli import server_host
from fleetcd.layout import cohort_path, device_path
from fleetcd.loading.documents import load_document
from fleetcd.loading.emit import dump_yaml, plain_scalar_ok
from fleetcd.models import Cohort, Device, Fleet
from fleetcd.models.agent import Endpoint, PollSettings, RemoteSettings
from fleetcd.models.base import API_VERSION_V1
from fleetcd.operator.agentconfig import AGENT_CONFIG_FILE, agent_config, pinned_trust, render_agent_config
from fleetcd.operator.repo import verified_trust_root
from fleetcd.planning.selection import selector_matches
from fleetcd.reasons import Reason
from fleetcd.shards import ShardSpec, shard_of

DEFAULT_CONFIG_DIR = "/etc/fleetcd"  # where the .deb expects agent.yaml and the robot's key
KEYS_SUBDIR = "keys"


@dataclass(frozen=True)
class RobotSpec:
    """What ``devices/<id>.yaml`` says about the robot."""

    id: str
    site: str
    cohort: str
    family: str
    model: str
    revision: int
    timezone: str = "UTC"
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RobotSide:
    """How the robot reaches the fleet and where its files will be on the robot."""

    url: str  # the fleet repository as the robot reaches it, e.g. ssh://git@git.example.com/fleet
    config_dir: str = DEFAULT_CONFIG_DIR  # the robot's folder is copied here
    host_key_sha256: str | None = None
    ssh_user: str | None = None
    state_dir: str | None = None
    executor: Literal["tarball", "docker"] = "tarball"
    replicas: tuple[str, ...] = ()  # read replicas the robot polls before url (remote.replicas)
    # Every status shard of the fleet, as the controller's --status-shard lists them: the robot's
    # own (fleetcd.shards.shard_of) becomes remote.status.
    status_shards: tuple[ShardSpec, ...] = ()
    # Pinned host keys of the fleet's other servers (replicas, status shards), by host name; a server
    # on the primary's host takes the primary's pin (one machine, one host key).
    server_host_keys: Mapping[str, str] = field(default_factory=dict)

    def endpoint(self, url: str) -> Endpoint:
        """``url`` as an endpoint of agent.yaml, with its host's pin when one is known."""
        host = server_host(url)
        pin = self.server_host_keys.get(host) if host is not None else None
        if pin is None and host is not None and host == server_host(self.url):
            pin = self.host_key_sha256
        return Endpoint(url=url, host_key_sha256=pin)

    def unpinned_hosts(self, robot: str) -> list[str]:
        """Hosts given a pin that none of ``robot``'s servers is on (a typo would leave one unpinned)."""
        shard = self.status_shard(robot)
        urls = [self.url, *self.replicas, *([shard.url] if shard is not None else [])]
        reached = {server_host(url) for url in urls}
        return sorted(set(self.server_host_keys) - reached)

    def status_shard(self, robot: str) -> ShardSpec | None:
        """The shard ``robot`` pushes its status to; None without shards (it pushes to ``url``)."""
        if not self.status_shards:
            return None
        name = shard_of(robot, [s.name for s in self.status_shards])
        return next(s for s in self.status_shards if s.name == name)


def _device_doc(spec: RobotSpec) -> bytes:
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION_V1,
        "kind": "Device",
        "id": spec.id,
        "family": spec.family,
        "hardware": {"model": spec.model, "revision": spec.revision},
        "site": spec.site,
        "timezone": spec.timezone,
    }
    if spec.labels:
        doc["labels"] = dict(spec.labels)
    header = "# Enrolled by `fleetcd robot add`; retire with `fleetcd robot retire` (keeps its history).\n"
    return (header + dump_yaml(doc)).encode("utf-8")


def _cohort_change(tree: WorkTree, spec: RobotSpec, device: Device) -> dict[str, bytes | None]:
    path = cohort_path(spec.cohort)
    raw = tree.files.get(path)
    if raw is None:
        known = sorted(p[len("cohorts/") : -len(".yaml")] for p in tree.files if p.startswith("cohorts/"))
        raise InvalidContent.at(
            path,
            f"no cohort {spec.cohort!r} (cohorts: {', '.join(known) or 'none'})",
            reason=Reason.UNKNOWN_REFERENCE,
        )
    cohort = load_document(path, raw, Cohort)
    if not cohort.model.devices:
        if cohort.model.selector is not None and selector_matches(cohort.model, device):
            return {}  # the selector takes the robot in by its attributes
        raise InvalidContent.at(
            path,
            f"lists no devices to add {spec.id!r} to, and its selector does not match the robot "
            f"(site {spec.site}, family {spec.family}, model {spec.model} r{spec.revision})",
            field="selector",
            reason=Reason.UNKNOWN_REFERENCE,
        )
    text = raw.decode("utf-8")
    for item in (spec.id,) if plain_scalar_ok(spec.id) else (json.dumps(spec.id),):
        try:
            edited = load_document(path, append_list_item(text, "devices", item).encode("utf-8"), Cohort)
        except (InvalidContent, UneditableYaml):
            continue
        if edited.model == cohort.model.model_copy(update={"devices": [*cohort.model.devices, spec.id]}):
            return {path: edited.raw}
    raise UneditableYaml(f"{path}: cannot add {spec.id!r} to `devices:` by a one-line edit; add it by hand")


def _fleet(tree: WorkTree) -> Fleet:
    raw = tree.files.get("fleet.yaml")
    if raw is None:
        raise SetupError(f"{tree.root}: no fleet.yaml")
    return load_document("fleet.yaml", raw, Fleet).model


def _fleet_keys(tree: WorkTree) -> dict[str, bytes]:
    return {
        Path(p).name: data for p, data in tree.files.items() if p.startswith("keys/") and p.endswith(".asc")
    }


def add_robot(
    start: Path,
    spec: RobotSpec,
    side: RobotSide,
    *,
    out: Path,
    public_key: Path | None = None,
    gitolite_admin: Path | None = None,
    commit: bool = True,
    author: str | None = None,
    push: bool = False,
    shard_admins: Sequence[ShardAdmin] = (),
) -> RobotChange:
    """Enrol ``spec.id``: device file, cohort membership, the robot's folder ``out/<id>``, gitolite
    (the primary's, and the server's of its own status shard when its checkout is given)."""
    check_robot_id(spec.id)
    tree = open_work_tree(start)
    path = device_path(spec.id)
    if path in tree.files:
        raise InvalidContent.at(
            path, f"robot {spec.id!r} already exists", field="id", reason=Reason.DUPLICATE_ID
        )
    device = load_document(path, _device_doc(spec), Device)
    changes: dict[str, bytes | None] = {path: device.raw, **_cohort_change(tree, spec, device.model)}
    check_change(tree, changes, path)
    folder = out / spec.id
    check_outside(folder, tree.root, gitolite_admin)
    if folder.exists():
        raise SetupError(f"{folder} already exists; the robot's folder is never overwritten")
    admin = AdminCheckout.open(gitolite_admin) if gitolite_admin is not None else None
    shard = side.status_shard(spec.id)
    shard_admin = _own_shard_admin(shard, side, shard_admins, gitolite_admin)
    check_outside(folder, *(s.path for s in shard_admins))
    for checkout in [c for c in (admin, shard_admin) if c is not None]:
        if checkout.key_files_of(spec.id):
            found = checkout.root / checkout.key_files_of(spec.id)[0]
            raise InvalidContent.at(
                str(found), f"gitolite already has a key for {spec.id!r}", reason=Reason.DUPLICATE_ID
            )
    committer = tree.prepare_commit(author) if commit else None
    admin_author = admin.prepare_commit(author) if admin is not None and commit else None
    shard_author = shard_admin.prepare_commit(author) if shard_admin is not None and commit else None
    config_path = str(folder / AGENT_CONFIG_FILE)
    try:  # an option outside AgentConfig's bounds is refused naming agent.yaml and the field
        remote = RemoteSettings(
            url=side.url,
            ssh_key=f"{side.config_dir}/{PRIVATE_KEY_FILE}",
            ssh_user=side.ssh_user,
            host_key_sha256=side.host_key_sha256 or side.server_host_keys.get(server_host(side.url) or ""),
            replicas=[side.endpoint(url) for url in side.replicas],
            status=None if shard is None else side.endpoint(shard.url),
        )
    except ValidationError as exc:
        raise _settings_error(config_path, exc, "remote.") from None
    try:
        trust = pinned_trust(verified_trust_root(tree.files), f"{side.config_dir}/{KEYS_SUBDIR}")
        defaults = _fleet(tree).defaults  # the fleet's poll interval and heartbeat
        poll = PollSettings(
            interval_seconds=defaults.poll_seconds, heartbeat_seconds=defaults.heartbeat_seconds
        )
        config = agent_config(
            spec.id, remote=remote, trust=trust, state_dir=side.state_dir, executor=side.executor, poll=poll
        )
    except ValidationError as exc:
        raise _settings_error(config_path, exc) from None
    note = f"{spec.id}'s agent (docs/agent.md, 'Provisioning a real robot'); copied to {side.config_dir}."
    text = render_agent_config(config, path=config_path, note=note)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=f".{spec.id}."))
    try:
        with Undo() as undo:
            key = robot_key(staging, spec.id, public_key)
            admin_changes = admin.enrol(spec.id, key) if admin is not None else {}
            shard_edits = []
            if shard is not None and shard_admin is not None:
                edit = AdminEdit(shard.name, shard_admin, shard_admin.enrol(spec.id, key), shard_author)
                shard_edits.append(edit)
            (staging / AGENT_CONFIG_FILE).write_text(text, encoding="utf-8")
            (staging / KEYS_SUBDIR).mkdir()
            for name, data in sorted(_fleet_keys(tree).items()):
                (staging / KEYS_SUBDIR / name).write_bytes(data)
            staging.chmod(0o700)  # it holds the robot's private key
            staging.rename(folder)
            undo.steps.append(lambda: shutil.rmtree(folder))
            result = write_and_commit(
                tree,
                changes,
                admin,
                admin_changes,
                undo,
                message=_add_message(spec, key),
                committer=committer,
                admin_author=admin_author,
                push=push,
                shard_edits=shard_edits,
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    notes = (
        [] if admin is not None else ["no --gitolite-admin: give the git server its key and access yourself"]
    )
    if (
        shard is not None
        and shard_admin is None
        and not _on_primary(shard, side, shard_admins, gitolite_admin)
    ):
        notes.append(
            f"status shard {shard.name} ({shard.url}): give that server the robot's key and "
            "RW refs/fleetcd/status/USER/ too (docs/git-server.md, 'Status shards')"
        )
    return RobotChange(spec.id, True, folder=folder, key=key, notes=tuple(notes), **result)


def _on_primary(
    shard: ShardSpec, side: RobotSide, shard_admins: Sequence[ShardAdmin], gitolite_admin: Path | None
) -> bool:
    """The shard's checkout is the primary's (given as such), or the shard is the fleet repository."""
    given = next((s.path for s in shard_admins if s.name == shard.name), None)
    same_checkout = (
        given is not None and gitolite_admin is not None and given.resolve() == gitolite_admin.resolve()
    )
    return gitolite_admin is not None and (same_checkout or shard.url == side.url)


def _own_shard_admin(
    shard: ShardSpec | None, side: RobotSide, shard_admins: Sequence[ShardAdmin], gitolite_admin: Path | None
) -> AdminCheckout | None:
    """The checkout to enrol the robot in for its own status shard, if one is given and it is not
    the primary's; refuses a ``--shard-admin`` naming no ``--status-shard``."""
    names = {s.name for s in side.status_shards}
    for given in shard_admins:
        if given.name not in names:
            raise SetupError(
                f"--shard-admin {given.name}={given.path}: no --status-shard is named {given.name!r}"
            )
    if shard is None or _on_primary(shard, side, shard_admins, gitolite_admin):
        return None
    path = next((s.path for s in shard_admins if s.name == shard.name), None)
    if path is None:
        return None
    return AdminCheckout.open(path)


def _settings_error(path: str, exc: ValidationError, prefix: str = "") -> InvalidContent:
    """Bounds of :class:`AgentConfig` broken by an option, as diagnostics naming the field."""
    return InvalidContent(
        [
            Diagnostic(path, None, prefix + ".".join(map(str, e["loc"])), e["msg"], Reason.INVALID)
            for e in exc.errors()
        ]
    )


def _add_message(spec: RobotSpec, key: PublicKey) -> str:
    return (
        f"Enrol robot {spec.id} in cohort {spec.cohort}\n\n"
        f"devices/{spec.id}.yaml: {spec.family} {spec.model} r{spec.revision} at {spec.site} "
        f"({spec.timezone}). SSH key {key.fingerprint}.\n"
    )
