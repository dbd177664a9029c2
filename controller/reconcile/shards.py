"""Status shards, step 1 (fetch) and the idle check's listing: robots' reports from several servers.

Without shards, robots push their status to the fleet repository and :func:`fetch_all
<controller.reconcile.source.fetch_all>` fetches it with everything else. With shards
(``fleetcd controller run --status-shard NAME=URL``, repeatable), every robot pushes to the one
shard :func:`fleetcd.shards.shard_of` gives it, and this module is the edge that reads them all:

* :func:`fetch_shards` fetches each shard's ``refs/fleetcd/status/*`` into the controller's
  mirror under ``refs/fleetcd/shards/<name>/status/*`` (never pushed anywhere; refs the shard no
  longer has are pruned). A shard that cannot be reached does not stop the others: its error is
  kept for an audit line (:attr:`~controller.audit.events.AuditKind.STATUS_SHARD_UNREACHABLE`)
  and the reports last fetched from it stand, so its robots are neither re-ingested nor lost; they
  age to offline on their own if the shard stays down.
* :func:`list_shards` is the same view without fetching, for the idle check (a shard that does
  not answer counts as unchanged: the mirror's copy).
* :func:`locate` keeps, per robot, only the report found in the robot's own shard, under its
  usual name ``refs/fleetcd/status/<id>/report`` (what ingest reads); a report found in another
  shard is *misplaced*: refused with an audit line naming both shards. A robot can only speak for
  itself, and only where the controller listens for it.

The same located mapping (:attr:`Located.marked`) feeds the idle mark in both paths, so an idle
fleet with a shard down stays idle, and a report arriving in any shard, its own or not, wakes the
controller.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from fleetcd.errors import TransportError
from fleetcd.git.hostkeys import HostKeyPolicy
from fleetcd.git.objects import list_refs
from fleetcd.git.refs import STATUS_PREFIX, device_of_status_ref
from fleetcd.git.remote import SshKey, fetch_untrusted, list_remote
from fleetcd.git.repo import Oid, Repository
from fleetcd.shards import check_shard_name, shard_of

SHARDS_PREFIX = "refs/fleetcd/shards/"  # in the controller's mirror only
log = logging.getLogger("fleetcd.controller")


@dataclass(frozen=True)
class StatusShard:
    """One status shard as the controller reaches it: name, URL and the controller's SSH identity."""

    name: str
    url: str
    credentials: SshKey | None = None
    host_keys: HostKeyPolicy | None = None

    def __post_init__(self) -> None:
        check_shard_name(self.name)

    @property
    def mirror_prefix(self) -> str:
        """Where the mirror keeps this shard's status refs: ``refs/fleetcd/shards/<name>/status/``."""
        return f"{SHARDS_PREFIX}{self.name}/status/"


@dataclass(frozen=True)
class ShardView:
    """Every shard's status refs (by their name on the shard) and the shards that did not answer."""

    refs: Mapping[str, Mapping[str, Oid]]  # shard name -> status ref -> commit
    unreachable: Mapping[str, str] = field(default_factory=dict)  # shard name -> the error


@dataclass(frozen=True)
class Misplaced:
    """Robot ``device``'s report, found in shard ``found_in`` while it belongs to ``owner``."""

    device: str
    found_in: str
    owner: str
    ref: str


@dataclass(frozen=True)
class Located:
    """Each robot's report from its own shard (``refs/fleetcd/status/<id>/report`` -> commit)."""

    status: dict[str, Oid]
    misplaced: list[Misplaced]
    misplaced_refs: dict[str, Oid] = field(default_factory=dict)  # by their name in the mirror

    @property
    def marked(self) -> dict[str, Oid]:
        """What the idle mark digests: every report, misplaced ones under their mirror name, so a
        report pushed to the wrong shard wakes the controller once (to refuse it with an audit
        line), and the robots' own reports under the names ingest reads."""
        return {**self.status, **self.misplaced_refs}


def fetch_shards(repo: Repository, shards: Iterable[StatusShard]) -> ShardView:
    """Each shard's status refs fetched into the mirror; a shard that fails keeps its last copy."""
    refs: dict[str, Mapping[str, Oid]] = {}
    unreachable: dict[str, str] = {}
    for shard in shards:
        try:
            found = _fetch_one(repo, shard)
        except TransportError as exc:
            error = without_secrets(str(exc), shard.url)
            log.warning("status shard %s (%s) unreachable: %s", shard.name, shown_url(shard.url), error)
            unreachable[shard.name] = error
            refs[shard.name] = _mirrored(repo, shard)
            continue
        for ref in list_refs(repo, shard.mirror_prefix):
            if ref not in found:  # gone from the shard (a robot moved, a ref deleted)
                repo.references.delete(ref)
        refs[shard.name] = {_shard_name(shard, ref): oid for ref, oid in found.items()}
    return ShardView(refs, unreachable)


def _fetch_one(repo: Repository, shard: StatusShard) -> dict[str, Oid]:
    spec = [f"+{STATUS_PREFIX}*:{shard.mirror_prefix}*"]
    return fetch_untrusted(repo, shard.url, spec, credentials=shard.credentials, host_keys=shard.host_keys)


def list_shards(repo: Repository, shards: Iterable[StatusShard]) -> ShardView:
    """Each shard's status refs as the shard lists them now, fetching nothing (the idle check)."""
    refs: dict[str, Mapping[str, Oid]] = {}
    unreachable: dict[str, str] = {}
    for shard in shards:
        try:
            refs[shard.name] = list_remote(
                repo, shard.url, [STATUS_PREFIX], credentials=shard.credentials, host_keys=shard.host_keys
            )
        except TransportError as exc:
            unreachable[shard.name] = without_secrets(str(exc), shard.url)
            refs[shard.name] = _mirrored(repo, shard)
    return ShardView(refs, unreachable)


def shown_url(url: str) -> str:
    """``url`` without a password or query (``https://user:token@host/x?t=…`` -> ``https://user@host/x``):
    a shard's error goes into an audit line on the state branch, which robots may read."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(a URL that does not parse)"
    if not parts.scheme or not parts.hostname:
        return url  # a path or scp-like git@host:path: no password can be in it
    user = f"{parts.username}@" if parts.username else ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, "", ""))


def without_secrets(text: str, url: str) -> str:
    """``text`` with ``url`` shown as :func:`shown_url` shows it, and its password nowhere."""
    text = text.replace(url, shown_url(url))
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    return text.replace(password, "…") if password and len(password) > 1 else text


def _mirrored(repo: Repository, shard: StatusShard) -> dict[str, Oid]:
    return {_shard_name(shard, ref): oid for ref, oid in list_refs(repo, shard.mirror_prefix).items()}


def _shard_name(shard: StatusShard, mirror_ref: str) -> str:
    return STATUS_PREFIX + mirror_ref.removeprefix(shard.mirror_prefix)


def locate(view: ShardView, devices: Iterable[str] | None = None) -> Located:
    """Each robot's report from the shard it belongs to; reports in any other shard are misplaced.

    With ``devices`` (the fleet's robots), a misplaced report of a robot not in the fleet is
    dropped silently, as ingest ignores status refs of unknown robots.
    """
    names = sorted(view.refs)
    known = None if devices is None else set(devices)
    status: dict[str, Oid] = {}
    misplaced: list[Misplaced] = []
    misplaced_refs: dict[str, Oid] = {}
    for name in names:
        for ref, oid in sorted(view.refs[name].items()):
            device = device_of_status_ref(ref)
            if device is None:
                continue  # not a report ref; ingest reads only refs/fleetcd/status/<id>/report
            owner = shard_of(device, names)
            if owner == name:
                status[ref] = oid
            elif known is None or device in known:
                misplaced.append(Misplaced(device, name, owner, ref))
                misplaced_refs[f"{SHARDS_PREFIX}{name}/{ref.removeprefix('refs/fleetcd/')}"] = oid
    return Located(status, misplaced, misplaced_refs)
