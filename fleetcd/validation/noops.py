"""Rollouts that silently do nothing (or less than they say): warnings, errors under ``--strict``.

A valid rollout can still update nobody, or skip the protection its strategy promises: a first
wave whose cohort has no targeted robot (it passes at once, nothing soaks), robots that fall in no
explicit wave (never updated), a targeted cohort with no robots, every target skipped as
incompatible or decommissioned, a canary that takes every robot, a rolling batch that covers the
whole target. None of these is wrong on its own, so they are warnings.

Waves come from :func:`fleetcd.planning.waves.plan_waves` over the robots
:func:`fleetcd.planning.selection.resolve_targets` makes eligible, exactly as ``fleetcd plan`` and
the controller compute them: what is warned about here is what would run. A paused rollout is
judged as if running (resuming it needs no edit); aborted rollouts and rollouts whose release is
missing (already an error) are not judged, and nothing is judged while a device or cohort file
fails to load (membership would be a guess). Strategies inherited from ``fleet.yaml`` are reported
there, naming the rollout; the built-in default (no strategy anywhere) is not judged. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fleetcd.errors import Diagnostic
from fleetcd.layout import FileKind, classify, rollout_path
from fleetcd.loading.documents import Loaded
from fleetcd.models.rollout import Canary, Rolling, Rollout, Wave, Waves
from fleetcd.planning.waves import PlannedWave, effective_strategy, plan_waves, unplaced
from fleetcd.reasons import Reason, SkipReason
from fleetcd.validation.context import Context, at

WARNING = "warning"
# No dedicated reason code yet: fleetcd/reasons.py was outside this change's files. Give these
# their own codes (e.g. empty_wave, robots_in_no_wave, updates_nobody) when that module is next open.
REASON = Reason.NO_EFFECT
SHOWN_ROBOTS = 5  # robot ids named in one warning; the count says how many more


@dataclass(frozen=True)
class _Source:
    """Where a rollout's strategy is written: its own file, or fleet.yaml's default."""

    doc: Loaded[Any]
    prefix: tuple[str, ...]  # path of the strategy mapping inside ``doc``
    label: str  # "" in the rollout's own file; names the rollout when reported in fleet.yaml

    @property
    def inherited(self) -> bool:
        return bool(self.label)


def check(ctx: Context) -> Iterator[Diagnostic]:
    if membership_unknown(ctx):
        return  # who is in which cohort and wave is a guess until the broken files are fixed
    for name in sorted(ctx.spec.rollouts):
        yield from rollout_warnings(ctx, name)


def rollout_warnings(ctx: Context, name: str) -> Iterator[Diagnostic]:
    """One rollout's warnings, when no device or cohort file failed to load (:func:`membership_unknown`)."""
    rollout = ctx.spec.rollouts[name].doc.model
    if rollout.aborted or ctx.release_of(name) is None:
        return
    yield from _rollout(ctx, name, rollout)


def membership_unknown(ctx: Context) -> bool:
    """True when a device or cohort file failed to load (already an error)."""
    return _membership_unknown(ctx)


def _rollout(ctx: Context, name: str, rollout: Rollout) -> Iterator[Diagnostic]:
    doc = ctx.spec.rollouts[name].doc
    yield from _empty_cohorts(ctx, doc, rollout)
    eligible = ctx.owned(name)
    if not eligible:
        yield from _nobody_eligible(ctx, doc, name)
        return
    source = _source(ctx, name, rollout)
    if source is None:
        return  # the built-in default: nothing the operator wrote to warn about
    strategy = effective_strategy(rollout, ctx.spec.fleet.model if ctx.spec.fleet else None)
    cohorts_of = ctx.selections[name].cohorts_of
    waves = plan_waves(name, strategy, eligible, cohorts_of, ctx.members)
    if isinstance(strategy, Waves):
        unknown = any(w.cohort is not None and w.cohort not in ctx.cohorts for w in strategy.waves)
        if unknown and not source.inherited:
            return  # the rollout's own wave names an unknown cohort: already an error there
        yield from _empty_waves(ctx, source, strategy.waves, waves, eligible)
        yield from _unplaced(source, eligible, waves)
    elif isinstance(strategy, Canary):
        yield from _canary_takes_all(source, strategy, waves, len(eligible))
    elif isinstance(strategy, Rolling):
        yield from _one_batch(source, strategy, len(eligible))


def _membership_unknown(ctx: Context) -> bool:
    """True when a device or cohort file failed to load (already an error)."""
    for path in ctx.spec.files:
        where = classify(path)
        if where is not None and (
            (where.kind is FileKind.DEVICE and where.name not in ctx.devices)
            or (where.kind is FileKind.COHORT and where.name not in ctx.cohorts)
        ):
            return True
    return False


def _source(ctx: Context, name: str, rollout: Rollout) -> _Source | None:
    if rollout.strategy is not None:
        return _Source(ctx.spec.rollouts[name].doc, ("strategy",), "")
    fleet = ctx.spec.fleet
    if fleet is not None and fleet.model.defaults.strategy is not None:
        label = f"rollout {name!r} ({rollout_path(name)}) inherits this default strategy: "
        return _Source(fleet, ("defaults", "strategy"), label)
    return None


def _empty_cohorts(ctx: Context, doc: Loaded[Rollout], rollout: Rollout) -> Iterator[Diagnostic]:
    for index, cohort in enumerate(rollout.targets.cohorts):
        if cohort in ctx.cohorts and not ctx.members[cohort]:
            model = ctx.cohorts[cohort]
            how = "no device matches its selector" if model.selector else "it lists no existing device"
            yield at(
                doc,
                ("targets", "cohorts", index),
                f"cohort {cohort!r} has no robots ({how}), so targeting it adds nobody to this rollout",
                REASON,
                WARNING,
            )


def _nobody_eligible(ctx: Context, doc: Loaded[Rollout], name: str) -> Iterator[Diagnostic]:
    skipped = ctx.selections[name].skipped
    if not skipped or all(why is SkipReason.UNKNOWN for _, why in skipped):
        return  # nothing targeted, or only unknown robots (each already an error)
    by_reason: dict[SkipReason, list[str]] = {}
    for device, why in skipped:
        by_reason.setdefault(why, []).append(device)
    reasons = "; ".join(f"{why}: {_ids(ids)}" for why, ids in sorted(by_reason.items()))
    yield at(
        doc,
        ("targets",),
        f"updates no robot: {_all(len(skipped), 'targeted robot')} skipped ({reasons})",
        REASON,
        WARNING,
    )


def _empty_waves(
    ctx: Context,
    source: _Source,
    declared: Sequence[Wave],
    planned: Sequence[PlannedWave],
    eligible: Sequence[str],
) -> Iterator[Diagnostic]:
    for wave, plan in zip(declared, planned, strict=True):
        if not plan.empty:
            continue
        earlier = {d for p in planned[: plan.index] for d in p.devices}
        yield at(
            source.doc,
            (*source.prefix, "waves", plan.index),
            f"{source.label}wave {plan.index + 1} {wave.name!r} ({_selector(wave)}) selects no robot: "
            f"{_why_empty(ctx, wave, eligible, earlier)}; an empty wave passes at once, "
            "so nothing is soaked or gated there",
            REASON,
            WARNING,
        )


def _why_empty(ctx: Context, wave: Wave, eligible: Sequence[str], earlier: set[str]) -> str:
    if wave.cohort is None:
        return f"every eligible robot ({len(eligible)}) is already in an earlier wave"
    if wave.cohort not in ctx.members:
        return f"cohort {wave.cohort!r} does not exist (no cohorts/{wave.cohort}.yaml)"
    members = ctx.members[wave.cohort]
    if not members:
        return f"cohort {wave.cohort!r} has no robots"
    mine = set(members) & set(eligible)
    if not mine:
        return (
            f"cohort {wave.cohort!r} has {_n(len(members), 'robot')}, none of them among this rollout's "
            f"{_n(len(eligible), 'eligible robot')} (targeted, compatible, not decommissioned)"
        )
    return f"every eligible robot of cohort {wave.cohort!r} ({len(mine)}) is already in an earlier wave"


def _unplaced(
    source: _Source, eligible: Sequence[str], planned: Sequence[PlannedWave]
) -> Iterator[Diagnostic]:
    left = unplaced(eligible, planned)
    if not left:
        return
    yield at(
        source.doc,
        (*source.prefix, "waves"),
        f"{source.label}{len(left)} of {_n(len(eligible), 'eligible robot')} "
        f"{'is' if len(left) == 1 else 'are'} in no wave and never updated: {_ids(left)}; "
        "add their cohorts to a wave, or end with a wave that takes the rest "
        "(e.g. {name: rest, percent: 100})",
        REASON,
        WARNING,
    )


def _canary_takes_all(
    source: _Source, strategy: Canary, planned: Sequence[PlannedWave], eligible: int
) -> Iterator[Diagnostic]:
    canary = planned[0]
    if eligible < 2 or len(canary.devices) < eligible:
        return  # one robot cannot be split; a canary that leaves robots behind does its job
    spot = "percent" if "percent" in _written(source) else None
    yield at(
        source.doc,
        (*source.prefix, *([spot] if spot else [])),
        f"{source.label}canary percent {strategy.percent:g} of {eligible} eligible robots takes all "
        f"{eligible} (rounded up): the 'rest' wave is empty, so the canary holds no robot back",
        REASON,
        WARNING,
    )


def _one_batch(source: _Source, strategy: Rolling, eligible: int) -> Iterator[Diagnostic]:
    if eligible < 2 or strategy.batch_size < eligible:
        return
    spot = "batch_size" if "batch_size" in _written(source) else None
    yield at(
        source.doc,
        (*source.prefix, *([spot] if spot else [])),
        f"{source.label}rolling batch_size {strategy.batch_size} covers all {eligible} eligible robots: "
        "one batch updates them all at once and delay_seconds never applies (as all_at_once would)",
        REASON,
        WARNING,
    )


def _written(source: _Source) -> dict[str, Any]:
    """The strategy mapping as written in the source document (to point at a field only if present)."""
    node: Any = source.doc.data
    for key in source.prefix:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def _selector(wave: Wave) -> str:
    parts = []
    if wave.cohort is not None:
        parts.append(f"cohort {wave.cohort!r}")
    if wave.percent is not None:
        parts.append(f"percent {wave.percent:g}")
    return ", ".join(parts)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _all(count: int, noun: str) -> str:
    """'the 1 eligible robot is' / 'all 3 eligible robots are'."""
    return f"the 1 {noun} is" if count == 1 else f"all {count} {noun}s are"


def _ids(robots: Sequence[str]) -> str:
    """'r1, r2, r3 (+4 more)': the first few ids, so one broad mistake stays one short line."""
    shown = ", ".join(robots[:SHOWN_ROBOTS])
    return shown + (f" (+{len(robots) - SHOWN_ROBOTS} more)" if len(robots) > SHOWN_ROBOTS else "")
