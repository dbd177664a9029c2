"""Validating a snapshot again at the cost of what changed since the last validation of it.

A long-running caller (the controller's ``ReconcileCache``) keeps the last
:class:`~fleetcd.validation.pipeline.ContentCheck` and hands it back with the next snapshot;
:func:`recheck_content` returns the content check of the new snapshot, equal to a fresh
:func:`~fleetcd.validation.pipeline.check_content`, reusing what provably did not change:

* nothing changed (the same tree, its validation aged): the content check is a pure function of
  the bytes, so it is the kept one as is. Only :func:`~fleetcd.validation.pipeline.judge` runs
  again: the trust-root chain, signatures, approvals and withdrawals through gpg (which judges key
  and signature expiry against its clock) and the trust root's expiry against ``now``;
* only signatures, approvals or keys changed (every changed path is one of
  :data:`~fleetcd.loading.fleetspec.TRUST_FILE_KINDS`, all ``.asc``): no document changed and no
  cross-file check reads those files, so the documents' findings and the cross-file checks are
  kept, and the files are attached to the kept documents again
  (:func:`~fleetcd.loading.fleetspec.reattach`);
* only robot files changed (``devices/<id>.yaml`` added, removed or edited, each loading cleanly
  before and after; a removed one's document is dropped from the memo), maybe with signatures,
  approvals or keys (attached again as above): the previous check's
  :class:`~fleetcd.validation.delta.RobotIndex` is patched for those robots and only the parts of
  the cross-file checks they feed are recomputed (:mod:`fleetcd.validation.delta` says which, and
  which run over the whole fleet when they found or find an error);
* releases added or edited, rollouts and config instances added, edited or removed (each loading
  cleanly before and after), maybe with robot files and signatures, approvals or keys: the robots
  are patched as above, then the affected rollouts are selected again from the index and only the
  parts of the checks they and the changed releases and configs feed are recomputed
  (:mod:`fleetcd.validation.rollout_delta` says which);
* anything else (a cohort, withdrawal, trust-root or fleet document added, removed or changed, a
  release removed, a document that fails to load, an unexpected file, other findings of
  the reader, a base to compare against): the content check runs in full, parsing only the
  documents whose bytes the memo does not hold, and keeps a new index.

Pure: no gpg, no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from pydantic import BaseModel

from fleetcd.compat import StrEnum
from fleetcd.errors import Diagnostic, InvalidContent
from fleetcd.layout import FileKind, classify, release_path
from fleetcd.loading.documents import Loaded, load_document
from fleetcd.loading.fleetspec import TRUST_FILE_KINDS, FleetSpec, reattach
from fleetcd.loading.memo import DocumentMemo, RoundStats
from fleetcd.models import Device
from fleetcd.validation import (
    apps,
    artifacts,
    configs,
    delta,
    noops,
    overlap,
    references,
    requires,
    rollout_delta,
)
from fleetcd.validation.context import Context, Delivery
from fleetcd.validation.pipeline import (
    APPS,
    ARTIFACTS,
    CONFIGS_RELEASES,
    CONFIGS_ROBOTS,
    OVERLAP,
    REFERENCES_DOCUMENTS,
    REFERENCES_ROBOT_CASE,
    REFERENCES_ROBOTS,
    REQUIRES_CYCLES,
    REQUIRES_RANGES,
    ContentCheck,
    check_content,
    noops_part,
)

M = TypeVar("M", bound=BaseModel)


class Reuse(StrEnum):
    """How much of the previous content check a recheck kept."""

    SAME = "same"  # the snapshot's bytes are the previous one's: all of it
    TRUST_FILES = "trust-files"  # only signatures, approvals or keys changed: all but their attaching
    ROBOTS = "robots"  # only robot files changed: the parts of the checks those robots feed
    DOCUMENTS = "documents"  # releases, rollouts or configs changed (maybe robots): the parts they feed
    NONE = "none"  # documents or the reader's findings changed: checked in full


def recheck_content(
    previous: ContentCheck | None,
    files: Mapping[str, bytes],
    *,
    problems: Iterable[Diagnostic] = (),
    memo: DocumentMemo | None = None,
) -> tuple[ContentCheck, Reuse]:
    """The content check of ``files`` (no base), equal to ``check_content(files, problems=problems)``,
    and how much of ``previous`` it reused."""
    found = tuple(problems)
    if previous is None or previous.base is not None or previous.problems != found:
        return _full(files, found, memo), Reuse.NONE
    changed = changed_paths(previous.files, files, allow=_DELTA_FILES)
    if changed is None:
        return _full(files, found, memo), Reuse.NONE
    if not changed:
        return previous, Reuse.SAME
    if not all(_is_trust_file(path) for path in changed):
        again = _recheck_delta(previous, files, changed, found, memo)
        return again if again is not None else (_full(files, found, memo), Reuse.NONE)
    spec, attached = reattach(previous.spec, files)
    ctx = previous.ctx.with_spec(spec)
    index = previous.index
    if index is not None and index.files is previous.files:
        index.files = files  # the robots and every document they are checked against are the same
    content = ContentCheck(
        files,
        None,
        found,
        spec,
        ctx,
        previous.documents,
        tuple(attached),
        previous.checks,
        previous.parts,
        index,
    )
    return content, Reuse.TRUST_FILES


def _is_trust_file(path: str) -> bool:
    where = classify(path)
    return where is not None and where.kind in TRUST_FILE_KINDS


def _full(
    files: Mapping[str, bytes], found: tuple[Diagnostic, ...], memo: DocumentMemo | None
) -> ContentCheck:
    return check_content(files, problems=found, memo=memo, keep_index=True)


def _recheck_delta(
    previous: ContentCheck,
    files: Mapping[str, bytes],
    changed: set[str],
    found: tuple[Diagnostic, ...],
    memo: DocumentMemo | None,
) -> tuple[ContentCheck, Reuse] | None:
    """The content check of ``files``, whose changes from ``previous.files`` are robot, release and
    rollout files (and signatures), from ``previous.index``; None when it must be checked in full
    (see :mod:`.delta` and :mod:`.rollout_delta`)."""
    index = previous.index
    if index is None or index.files is not previous.files:
        return None
    named: dict[str, str] = {}
    releases: dict[str, tuple[str, str]] = {}
    rollouts: dict[str, str] = {}
    configs_changed: dict[str, tuple[str, str]] = {}
    cohorts_changed: dict[str, str] = {}
    signatures = False
    for path in changed:
        where = classify(path)
        if where is None:
            return None
        if where.kind is FileKind.DEVICE:
            named[path] = where.name
        elif where.kind is FileKind.RELEASE:
            releases[path] = (where.name, where.version)
        elif where.kind is FileKind.ROLLOUT:
            rollouts[path] = where.name
        elif where.kind is FileKind.CONFIG:
            configs_changed[path] = (where.name, where.stem)
        elif where.kind is FileKind.COHORT:
            cohorts_changed[path] = where.name
        elif where.kind in TRUST_FILE_KINDS:
            signatures = True  # attached again below, as on the TRUST_FILES path
        else:
            return None
    if memo is not None:
        memo.last = RoundStats()  # this load's: the changed files alone are asked for
        memo.forget(path for path in changed if path not in files)  # it holds one snapshot's documents
    loaded = delta.load_changed(previous.spec, files, named, lambda path, raw: _load(memo, path, raw, Device))
    if loaded is None:
        return None
    docs = rollout_delta.load_documents(
        previous.spec,
        files,
        releases,
        rollouts,
        lambda path, raw, model: _load(memo, path, raw, model),
        configs_changed,
        cohorts_changed,
    )
    if docs is None:
        return None
    index.files = None  # patched in place from here: unusable if this does not finish
    old = previous.spec
    spec_releases, spec_rollouts = rollout_delta.patched(old.releases, old.rollouts, docs)
    spec = FleetSpec(
        fleet=old.fleet,
        devices=delta.patched_devices(old.devices, loaded),
        cohorts=rollout_delta.patched_cohorts(old.cohorts, docs) if docs.cohorts else old.cohorts,
        releases=spec_releases,
        rollouts=spec_rollouts,
        configs=rollout_delta.patched_configs(old.configs, docs) if docs.configs else old.configs,
        keys=old.keys,
        files=files,
        trust_roots=old.trust_roots,
        withdrawals=old.withdrawals,
        withdrawal_approvals=old.withdrawal_approvals,
    )
    attached = previous.attached
    if signatures or docs:  # a new document's signatures or approvals are attached here too
        spec, again = reattach(spec, files)
        attached = tuple(again)
    moved = rollout_delta.affected(spec, docs)
    robots: set[str] = set(loaded)
    for name in moved:
        targets = index.targets.pop(name, None)  # selected again below, after the robots' patch
        if targets is not None:
            robots.update(rollout_delta.targeted(targets))
    regrouped = rollout_delta.regroup(index, old, spec, docs)
    done = delta.patch(index, spec, set(loaded) | regrouped.robots)
    robots.update(regrouped.robots)
    if regrouped.staged:
        cohorts = {name: entry.model for name, entry in spec.cohorts.items()}
        for robot in regrouped.staged - robots:
            mine = index.memberships.get(robot, ())
            delta.restage(index, cohorts, robot, [name for name in cohorts if name in mine])
    for name in moved & set(spec.rollouts):
        index.targets[name] = rollout_delta.select(index, spec, name)
        robots.update(rollout_delta.targeted(index.targets[name]))
    if moved:
        index.targets = {name: index.targets[name] for name in sorted(index.targets)}
    robots.update(rollout_delta.config_robots(index, spec, docs))
    ctx = index.context(spec)
    parts = dict(previous.parts)
    if docs:
        _recheck_releases(ctx, index, docs, parts)
    parts[REFERENCES_ROBOTS] = tuple(references.robot_references(ctx, index.release_apps))
    parts[REFERENCES_ROBOT_CASE] = delta.case_errors(spec, index)
    if done.owners_changed or moved:
        parts[REQUIRES_CYCLES] = tuple(requires.cycles(ctx, lambda name: index.targets[name].owns_anyone()))
    index.fallbacks = _grouped(ctx, index, previous.parts, parts, robots)
    for name in moved - set(spec.rollouts):
        parts.pop(noops_part(name), None)
    for name in sorted(spec.rollouts):
        regrouped_cohorts = done.cohorts | set(docs.cohorts)
        if name in moved or name in done.rollouts or regrouped_cohorts & delta.wave_cohorts(spec, name):
            parts[noops_part(name)] = (
                () if index.membership_unknown else tuple(noops.rollout_warnings(ctx, name))
            )
    index.files = files
    checks = tuple(d for part in parts.values() for d in part)
    content = ContentCheck(
        files, None, found, spec, ctx.for_trust(), previous.documents, attached, checks, parts, index
    )
    return content, Reuse.DOCUMENTS if docs else Reuse.ROBOTS


def _recheck_releases(
    ctx: Context,
    index: delta.RobotIndex,
    docs: rollout_delta.Documents,
    parts: dict[str, tuple[Diagnostic, ...]],
) -> None:
    """The checks of the release documents themselves, and the index's schema validators, after
    releases were added or edited (or rollouts changed: the document checks read their names)."""
    spec = ctx.spec
    paths = docs.release_paths()
    kept = [d for d in parts[CONFIGS_RELEASES] if d.file not in paths and d.file not in docs.configs]
    for key, entry in docs.releases.items():
        if entry is None:
            index.validators.pop(release_path(*key), None)
            continue
        problems, index.validators[entry.doc.path] = configs.release_schema(entry)
        kept.extend(problems)
        index.release_apps.add(entry.doc.model.app)
    if any(entry is None for entry in docs.releases.values()):
        index.release_apps = references.release_apps(ctx)  # its app may have no release left
    for path in docs.configs:
        kept.extend(configs.oversized(path, spec.files[path]) if path in spec.files else ())
    parts[CONFIGS_RELEASES] = tuple(kept)
    if paths or docs.configs:  # merged configs of an edited release or layer are checked again
        index.findings = {
            key: found
            for key, found in index.findings.items()
            if key[0] not in paths and not any(layer in docs.configs for layer in key[1])
        }
    parts[REFERENCES_DOCUMENTS] = tuple(references.document_checks(ctx))
    parts[REQUIRES_RANGES] = tuple(requires.ranges(ctx))
    if spec.fleet is not None:
        parts[ARTIFACTS] = tuple(artifacts.check(ctx, spec.fleet.model))


def _grouped(
    ctx: Context,
    index: delta.RobotIndex,
    before: Mapping[str, tuple[Diagnostic, ...]],
    parts: dict[str, tuple[Diagnostic, ...]],
    robots: set[str],
) -> list[str]:
    """The grouped robot errors, kept when they were none and none of ``robots`` (those whose
    deliveries may have changed) has one; else run in full. Returns the parts run in full."""
    fallbacks: list[str] = []
    delivered = rollout_delta.deliveries(ctx.spec, index, robots)
    if before[OVERLAP] or any(_overlaps(d) for d in delivered.values()):
        parts[OVERLAP] = tuple(overlap.check(ctx))
        fallbacks.append(OVERLAP)
    if before[APPS] or any(_shares_config(d) for d in delivered.values()):
        parts[APPS] = tuple(apps.check(ctx))
        fallbacks.append(APPS)
    if before[CONFIGS_ROBOTS] or any(
        _config_findings(ctx, index, robot, d) for robot, d in delivered.items()
    ):
        parts[CONFIGS_ROBOTS] = tuple(configs.robot_groups(ctx, index.validators, index.findings))
        fallbacks.append(CONFIGS_ROBOTS)
    return fallbacks


def _load(memo: DocumentMemo | None, path: str, raw: bytes, model: type[M]) -> Loaded[M] | None:
    try:
        return load_document(path, raw, model) if memo is None else memo.load(path, raw, model)
    except InvalidContent:
        return None


def _overlaps(delivered: Mapping[str, list[Delivery]]) -> bool:
    """Two rollouts of one app deliver to the robot (:mod:`.overlap`'s error)."""
    return any(len(rollouts) > 1 for rollouts in delivered.values())


def _shares_config(delivered: Mapping[str, list[Delivery]]) -> bool:
    """Two apps delivered to the robot write one absolute config path (:mod:`.apps`'s error)."""
    return apps.shared_paths(delivered)


def _config_findings(
    ctx: Context, index: delta.RobotIndex, robot: str, delivered: Mapping[str, list[Delivery]]
) -> bool:
    """The robot's merged config fails for some app it receives (:mod:`.configs`' error)."""
    for app, deliveries in delivered.items():
        entry = deliveries[0].release
        if entry is None:
            continue
        layers = configs.config_layers(ctx, app, robot)
        if configs.robot_findings(entry, layers, index.validators, index.findings):
            return True
    return False


_DELTA_FILES = frozenset(
    {*TRUST_FILE_KINDS, FileKind.DEVICE, FileKind.RELEASE, FileKind.ROLLOUT, FileKind.CONFIG, FileKind.COHORT}
)


def changed_paths(
    old: Mapping[str, bytes], new: Mapping[str, bytes], allow: frozenset[FileKind] = TRUST_FILE_KINDS
) -> set[str] | None:
    """The paths added, removed or changed from ``old`` to ``new``, when every one of them is of a
    kind in ``allow`` (by default a signature, approval or key); None as soon as one is not (another
    document, or an unexpected file)."""
    if old is new:
        return set()
    changed = set(old.keys() ^ new.keys())
    for path, raw in new.items():
        before = old.get(path)
        if before is not None and before is not raw and before != raw:
            changed.add(path)
    for path in changed:
        where = classify(path)
        if where is None or where.kind not in allow:
            return None
    return changed
