"""The write step's first half: per-robot desired state, a new commit only for robots that move.

A change costs what it changes. Each robot's device file records what the controller last wrote
on its desired-state ref (:class:`~controller.state.model.PublishedDesired`: commit, serial,
content digest, expiry, inputs digest). A reconcile digests what every robot's bundle is built
from and builds only the bundles whose inputs differ from the recorded ones
(:mod:`controller.delivery.inputs`); a robot's ref moves only when its bundle changed, its ref is
not exactly the recorded commit, or its renewal is due (:mod:`controller.delivery.select`), and
those robots' bundles are built too. One root is signed over the moving robots' bundles alone and
their new commits are recorded in the same state-branch commit. Everyone else keeps the commit it holds,
which nothing here reads. A reconcile where no robot moves signs nothing and moves no ref, so an
idle fleet costs no gpg call and robots' no-op polls find nothing new.

The serial comes from the state branch (``state.json``'s ``serial``, the highest ever signed, and
every robot's recorded serial), never from bytes on a robot's ref:
:func:`controller.delivery.published.judge_published` lets a root found on a ref that is not the
recorded commit raise the serial only when it verifies by a controller key of the verified trust
root; such a ref is rewritten either way. The desired-state refs the controller does not own (the
other layout's, robots no longer on main, retired robots) are listed here and removed after the
push (:mod:`controller.delivery.prune`).

A retired robot (``decommissioned: true``) gets no desired state at all: the engine has archived
its open deployments, and removing its ref (rather than leaving a last bundle there) means a robot
that is switched on again after retirement, or a stolen robot, finds nothing to install, while its
records, audit lines and status ref stay on the server as history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.delivery.bundles import DeliverySource, Evidence, EvidenceKey, bundle_for, delivered_records
from controller.delivery.inputs import BundleInputs, encode_bundle
from controller.delivery.prune import list_desired, stale_refs
from controller.delivery.published import RobotRef, judge_published
from controller.delivery.quiet import scope_of
from controller.delivery.select import RenewalPolicy, Selection, select
from controller.delivery.standing import plain_copy
from controller.delivery.write import delivery_ref, read_held, write_desired_state
from controller.reconcile.memo import RobotMemo
from controller.reconcile.rollouts import FleetContext
from controller.reconcile.settings import ControllerSettings
from controller.records.model import Action
from controller.state.model import ControllerMeta, DeviceFile, PublishedDesired, RolloutState
from fleetcd.desired import Bundle, SignedRoot, verify_root
from fleetcd.desired.chain import trust_file_of
from fleetcd.errors import InvalidContent
from fleetcd.git.repo import Oid, Repository
from fleetcd.git.trees import read_tree
from fleetcd.loading.fleetspec import load_spec
from fleetcd.trust.gpg import Keyring, Signer

log = logging.getLogger("fleetcd.controller")


@dataclass(frozen=True)
class Delivered:
    serial: int  # the highest serial ever signed, after this step
    root_sha256: str | None  # of the root signed under ``serial``
    refs: Mapping[str, Oid] = field(default_factory=dict)
    moved: frozenset[str] = frozenset()
    signatures: int = 0
    # device -> what its device file now records of its ref: the robots whose ref this step wrote,
    # and robots whose bundle was built without changing (their new inputs digest)
    published: Mapping[str, PublishedDesired] = field(default_factory=dict)
    selection: Selection = field(default_factory=Selection)  # who moved, and why
    next_renewal_at: datetime | None = None  # the idle fast path wakes for the next renewal due
    ignored_roots: tuple[str, ...] = ()  # roots found on robots' refs that moved no serial, and why
    stale: Mapping[str, Oid] = field(default_factory=dict)  # desired-state refs to remove after the push
    listed: Mapping[str, Oid] = field(default_factory=dict)  # the mirror's desired-state refs after this step
    built: int = 0  # bundles built: robots whose inputs changed, and those whose ref moves


def active_devices(ctx: FleetContext, devices: Mapping[str, DeviceFile]) -> dict[str, DeviceFile]:
    """The robots that get desired state: every one on main that is not decommissioned (a copy of
    the mapping without the retired: at 100,000 robots a dict comprehension cost 40 ms)."""
    active = dict(devices)
    for device in ctx.retired:
        active.pop(device, None)
    return active


def renewal_policy(ctx: FleetContext, settings: ControllerSettings) -> RenewalPolicy:
    return RenewalPolicy.of(
        timedelta(seconds=ctx.fleet.defaults.bundle_expiry_seconds),
        settings.root_refresh_before,
        settings.renewal_window,
        settings.renewals_per_reconcile,
    )


def deliver(
    repo: Repository,
    ctx: FleetContext,
    meta: ControllerMeta,
    devices: Mapping[str, DeviceFile],
    rollouts: Mapping[str, RolloutState],
    settings: ControllerSettings,
    now: datetime,
    *,
    listed: Mapping[str, Oid] | None = None,
) -> Delivered:
    """``listed``: the mirror's desired-state refs as the fetch left them (else listed here)."""
    devices = active_devices(ctx, devices)
    namespaces = settings.namespaces
    if listed is None:
        listed = list_desired(repo)  # one pass over the mirror's refs serves everything below
    memo = settings.cache.robots if settings.cache is not None else None
    source = _source(ctx, memo)
    evidence: dict[EvidenceKey, Evidence] = {}  # historic evidence, read for the robots that need it
    inputs = BundleInputs(source, evidence, memo.inputs if memo is not None else None)
    # Robots the last reconcile left alone, with the same device file and scope, are quiet: their
    # inputs are their recorded ones (controller.delivery.quiet), so no per-robot pass below reads
    # them. Of those, the standing ones (their ref unmoved since: controller.delivery.standing) are
    # kept with their recorded content, and only their renewal slot is looked at, by group. Both
    # memos answer with the robots that are *not* quiet (``touched``) or not standing
    # (``others``): every pass below is over those, not over the fleet.
    scope, found = None, None
    touched: AbstractSet[str] = devices.keys()
    others: AbstractSet[str] = devices.keys()
    ids: list[str] = []
    if memo is not None and devices:
        ids = list(devices)
        scope = scope_of(inputs.scope(), rollouts, source.release_sha256, namespaces=namespaces)
        found = memo.quiet.touched(scope, devices)
        if found is not None:
            touched = found.touched
        others = memo.standing.stand(devices, [*touched, *(found.gone if found else ())], listed)
        stale = memo.standing.stale_refs(listed, devices, ids, namespaces=namespaces)
    else:
        stale = stale_refs(listed, devices, namespaces=namespaces)
    standing = memo is not None and len(others) < len(devices)  # some robots stand
    recorded = {device: devices[device].desired for device in others}
    kept: set[str] = set()
    refs = {}
    for device, record in recorded.items():
        target = listed.get(delivery_ref(device, namespaces=namespaces))
        if target is not None and record is not None and str(target) == record.commit:
            kept.add(device)  # exactly the recorded commit: nothing of it is read
        elif target is None:
            refs[device] = RobotRef(None, None if record is None else record.commit)
        else:  # only refs that are not what was recorded are read
            refs[device] = RobotRef(
                str(target), None if record is None else record.commit, read_held(repo, target)
            )
    highest = max([meta.serial, *(r.serial for r in recorded.values() if r is not None)])
    if standing and memo is not None:
        highest = max(highest, memo.standing.highest_serial())
    with ExitStack() as stack:
        # Every serial recorded, and a robot's root only when it verifies by a controller key of
        # the verified trust root (controller.delivery.published).
        published = judge_published(
            refs,
            serial=highest,
            root_sha256=meta.root_sha256,
            verify=_root_verifier(ctx, stack),
            kept=frozenset(kept),
        )
    serial = published.next_serial
    lifetime = timedelta(seconds=ctx.fleet.defaults.bundle_expiry_seconds)
    expires = now + lifetime
    digested = {device: devices[device] for device in touched} if found is not None else devices
    evidence.update(_historic_evidence(repo, source, rollouts, digested))
    if found is not None:
        inputs.carry(found.gone)
    keys = {device: inputs.digest(device, data.records) for device, data in digested.items()}
    inputs.remember()
    bundles: dict[str, Bundle] = {}
    encoded: dict[str, bytes] = {}  # bundle.json of each robot built, as written if its ref moves

    def build(device: str) -> str:
        """Build ``device``'s bundle; its content digest."""
        bundle = bundles[device] = bundle_for(
            device, devices[device].records, source, serial, now, expires, evidence=evidence
        )
        encoded[device], digest = encode_bundle(bundle)
        return digest

    # A robot whose inputs are the recorded ones holds the recorded content: not built again.
    digests = {d: _unchanged(recorded[d], key) or build(d) for d, key in keys.items()}
    for device in others:  # quiet, not standing: the recorded content
        if device not in touched:
            digests[device] = _content(recorded[device])
    chosen = select(
        digests,
        recorded,
        published.kept,
        now,
        renewal_policy(ctx, settings),
        lifetime=lifetime,
        standing=memo.standing.groups if standing and memo is not None else None,
    )
    moving = frozenset(chosen.moving)
    # A renewed or healed quiet robot needs its bytes too, and so its historic evidence.
    moving_quiet = {device: devices[device] for device in moving if device not in touched}
    evidence.update(_historic_evidence(repo, source, rollouts, moving_quiet))
    for device in moving_quiet:
        keys[device] = _inputs(devices[device].desired)
        digests.setdefault(device, _content(devices[device].desired))
    for device in moving.difference(bundles):
        build(device)
    # Robots built although their content did not change: their new inputs digest is recorded once.
    relabelled = {
        device: record.model_copy(update={"inputs_sha256": keys[device]})
        for device in sorted(bundles)
        if device not in moving and (record := devices[device].desired) is not None
    }
    touched_left = _left_alone(recorded, keys, moving, relabelled)
    result = None
    records: dict[str, PublishedDesired] = {}
    if moving:
        with Signer(settings.gnupghome) as signer:
            fingerprint = ctx.signing_key(signer.secret_fingerprints())
            result = write_desired_state(
                repo,
                {device: bundles[device] for device in sorted(moving)},
                fleet=ctx.fleet.name,
                serial=serial,
                issued_at=now,
                expires_at=expires,
                sign=lambda data: signer.sign_detached(data, fingerprint),
                namespaces=settings.namespaces,
                trust=trust_file_of(ctx.spec),
                targets={d: listed.get(delivery_ref(d, namespaces=namespaces)) for d in moving},
                encoded=encoded,
            )
        log.info(
            "desired state serial %d: %d robots changed, %d refs healed, %d renewed; %d kept their commit",
            serial,
            len(chosen.changed),
            len(chosen.healed),
            len(chosen.renewed),
            len(devices) - len(moving),
        )
        records = {
            device: PublishedDesired(
                commit=str(oid),
                serial=serial,
                content_sha256=digests[device],
                expires_at=expires,
                inputs_sha256=keys[device],
            )
            for device, oid in result.commits.items()
        }
    after = listed
    if result is not None:  # the fetch's read-only view copied in C ({**view}: 25 ms at 100,000)
        after = plain_copy(listed)
        after.update(result.refs)
    written = {**relabelled, **records}
    if memo is not None and scope is not None:  # for the next reconcile to skip
        # Left alone: the quiet robots that did not move, and the others whose inputs were their
        # recorded ones (no new record); the standing ones among them already stand. Every robot
        # is one of those or written a record; any that is neither takes the full way next time.
        loose = {d for d in touched if d not in touched_left and d not in written}
        loose.update(moving - written.keys())
        memo.quiet.remember(scope, devices, written, loose)
        fresh = {d for d in others if d not in touched and d not in moving} | touched_left
        memo.standing.remember(
            after, {d: devices[d].desired for d in fresh}, fresh, written, stale=(stale, ids, namespaces)
        )
    if result is None:
        return Delivered(
            serial=published.floor,
            root_sha256=meta.root_sha256,
            published=relabelled,
            selection=chosen,
            next_renewal_at=chosen.next_renewal_at,
            ignored_roots=published.ignored,
            stale=stale,
            listed=listed,
            built=len(bundles),
        )
    return Delivered(
        serial=serial,
        root_sha256=result.root_sha,
        refs=result.refs,
        moved=result.moved,
        signatures=result.signatures,
        published=written,
        selection=chosen,
        next_renewal_at=chosen.next_renewal_at,
        ignored_roots=published.ignored,
        stale=stale,
        listed=after,
        built=len(bundles),
    )


def _source(ctx: FleetContext, memo: RobotMemo | None) -> DeliverySource:
    """The delivery source of main's fleet: the memo's while it was built from the very spec and the
    same release hashes (everything it derives, the robots' and cohorts' lookups and each rollout's
    evidence, is a function of them; at 100,000 robots building the lookups cost ~40 ms)."""
    if memo is None:
        return DeliverySource(ctx.spec, ctx.release_sha256)
    held = memo.source
    if held is None or held.spec is not ctx.spec or held.release_sha256 != (ctx.release_sha256 or {}):
        held = memo.source = DeliverySource(ctx.spec, ctx.release_sha256)
    return held


def _content(record: PublishedDesired | None) -> str:
    assert record is not None  # a quiet robot's inputs were its recorded ones
    return record.content_sha256


def _inputs(record: PublishedDesired | None) -> str:
    assert record is not None and record.inputs_sha256 is not None  # as for _content
    return record.inputs_sha256


def _left_alone(
    recorded: Mapping[str, PublishedDesired | None],
    keys: Mapping[str, str],
    moving: frozenset[str],
    relabelled: Mapping[str, PublishedDesired],
) -> set[str]:
    """The robots digested this reconcile (not quiet) whose inputs were their recorded ones and
    that got no new record."""
    left = set()
    for device, key in keys.items():
        record = recorded.get(device)
        if (
            device not in moving
            and device not in relabelled
            and record is not None
            and record.inputs_sha256 == key
        ):
            left.add(device)
    return left


def _unchanged(record: PublishedDesired | None, inputs: str) -> str | None:
    """The recorded content digest when ``inputs`` are what the recorded bundle was built from."""
    return record.content_sha256 if record is not None and record.inputs_sha256 == inputs else None


def _root_verifier(ctx: FleetContext, stack: ExitStack) -> Callable[[bytes, bytes], SignedRoot]:
    """:func:`verify_root` by a controller key the verified trust root names, with a keyring built
    from main's ``keys/`` on first use (a fleet whose robots all hold the recorded root needs none)."""
    keyring: list[Keyring] = []
    controller = ctx.trust.controller_fingerprints

    def verify(root: bytes, signature: bytes) -> SignedRoot:
        if not keyring:
            keyring.append(stack.enter_context(Keyring.from_armored(ctx.spec.keys)))
        return verify_root(root, signature, controller, keyring[0], fleet=ctx.fleet.name)

    return verify


def _historic_evidence(
    repo: Repository,
    source: DeliverySource,
    rollouts: Mapping[str, RolloutState],
    devices: Mapping[str, DeviceFile],
) -> dict[EvidenceKey, Evidence]:
    """Signed evidence, read from main's history, for records main no longer backs: an earlier
    generation's (its rollout, release or config files changed since), rollbacks, removed rollouts.

    A record names the commit it was created at; any commit of one generation holds the same
    approved content, so one snapshot is read per (rollout, generation, release), not per record.
    Records without a commit (written before records carried one) fall back to the commit that
    put their release out (``release_commits``)."""
    sources: dict[str, DeliverySource] = {}
    first_commit: dict[tuple[str, int, str], str] = {}
    found: dict[EvidenceKey, Evidence] = {}
    for device in sorted(devices):
        for record in delivered_records(device, devices[device].records):  # only what bundles carry
            state = rollouts.get(record.rollout)
            if state is None:
                continue  # bundle_for stalls naming the record
            live = source.release_sha256.get(record.rollout) == record.release_sha256
            if live and record.generation == state.generation and record.action is not Action.ROLLBACK:
                continue  # main's snapshot holds this generation's content
            commit = record.commit
            if commit is not None and record.action is not Action.ROLLBACK:
                commit = first_commit.setdefault(
                    (record.rollout, record.generation, record.release_sha256), commit
                )
            commit = commit or state.release_commits.get(record.release_sha256)
            if commit is None:
                continue  # bundle_for stalls with rollout_mismatch, naming the record
            if commit not in sources:
                files, _ = read_tree(repo, commit)
                sources[commit] = DeliverySource(load_spec(files)[0])
            try:
                found[record.id] = sources[commit].evidence(record.rollout)
            except InvalidContent:
                continue
    return found
