"""Resolving rollout targets to robots: cohort membership, compatibility, skip reasons, stage.

Purely computational: takes loaded models, returns decisions; no I/O, no clock. Both
``fleetcd plan`` and the controller call it, so what a pull request shows is what will happen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fleetcd.models import Cohort, Device, Release, Rollout, Stage
from fleetcd.reasons import SkipReason


def cohort_members(cohort: Cohort, devices: Mapping[str, Device]) -> list[str]:
    """Device ids in a cohort: its static list (known ids only) plus every device its selector matches."""
    members = {d for d in cohort.devices if d in devices}
    if cohort.selector is not None:
        members.update(d.id for d in devices.values() if selector_matches(cohort, d))
    return sorted(members)


def selector_matches(cohort: Cohort, device: Device) -> bool:
    """Whether the cohort's selector takes ``device`` in; no selector, or an empty one, takes no one.

    The model refuses an empty selector; the check here keeps one built without validation (or by a
    future model) from meaning "the whole fleet" all the same.
    """
    sel = cohort.selector
    if sel is None or sel.is_empty():
        return False
    return (
        (not sel.families or device.family in sel.families)
        and (not sel.sites or device.site in sel.sites)
        and (not sel.models or device.hardware.model in sel.models)
        and (sel.hardware_revision is None or sel.hardware_revision.contains(device.hardware.revision))
        and all(device.labels.get(k) == v for k, v in sel.labels.items())
    )


def incompatibility(release: Release, device: Device) -> SkipReason | None:
    """Why ``device`` may not run ``release``, or None when it may."""
    compat = release.compatibility
    if compat.families and device.family not in compat.families:
        return SkipReason.INCOMPATIBLE_FAMILY
    if compat.models and device.hardware.model not in compat.models:
        return SkipReason.INCOMPATIBLE_HARDWARE
    if compat.hardware_revision is not None and not compat.hardware_revision.contains(
        device.hardware.revision
    ):
        return SkipReason.INCOMPATIBLE_HARDWARE
    return None


@dataclass(frozen=True)
class Selection:
    """The outcome of resolving one rollout's targets."""

    eligible: tuple[str, ...]  # device ids that get the release, sorted
    skipped: tuple[tuple[str, SkipReason], ...]  # (device id, why), sorted
    cohorts_of: Mapping[str, tuple[str, ...]]  # device id -> targeted cohorts it is in


def resolve_targets(
    rollout: Rollout,
    release: Release | None,
    devices: Mapping[str, Device],
    cohorts: Mapping[str, Cohort],
) -> Selection:
    """Which targeted robots receive the rollout's release and which are skipped, and why.

    A device listed directly or through a cohort is targeted. Unknown ids are skipped as ``unknown``
    (validation reports them as errors; planning still shows them). Paused and aborted rollouts
    skip everyone with that reason.
    """
    cohorts_of: dict[str, list[str]] = {}
    for name in rollout.targets.cohorts:
        cohort = cohorts.get(name)
        if cohort is None:
            continue
        # Unknown ids listed in a cohort stay visible (skipped as unknown) instead of vanishing.
        unknown = [d for d in cohort.devices if d not in devices]
        for member in [*cohort_members(cohort, devices), *unknown]:
            cohorts_of.setdefault(member, []).append(name)
    targeted = set(cohorts_of) | set(rollout.targets.devices)
    eligible: list[str] = []
    skipped: list[tuple[str, SkipReason]] = []
    for device_id in sorted(targeted):
        reason = _skip_reason(rollout, release, devices.get(device_id))
        if reason is None:
            eligible.append(device_id)
        else:
            skipped.append((device_id, reason))
    return Selection(
        eligible=tuple(eligible),
        skipped=tuple(skipped),
        cohorts_of={d: tuple(sorted(set(c))) for d, c in cohorts_of.items()},
    )


def _skip_reason(rollout: Rollout, release: Release | None, device: Device | None) -> SkipReason | None:
    if device is None:
        return SkipReason.UNKNOWN
    if device.decommissioned:
        return SkipReason.DECOMMISSIONED
    if release is not None:
        reason = incompatibility(release, device)
        if reason is not None:
            return reason
    if rollout.aborted:
        return SkipReason.ABORTED
    if rollout.paused:
        return SkipReason.PAUSED
    return None


def rollout_stage(
    rollout: Rollout, cohorts: Mapping[str, Cohort], device_stages: Mapping[str, Stage]
) -> Stage:
    """The highest stage a rollout touches; it decides how many approvals are needed.

    Devices targeted directly count at the highest stage of any cohort they belong to, and at
    ``production`` when they belong to none (the safe side: most approvals).
    """
    stages = [cohorts[c].stage for c in rollout.targets.cohorts if c in cohorts]
    stages.extend(device_stages.get(d, Stage.PRODUCTION) for d in rollout.targets.devices)
    return max(stages, key=lambda s: s.rank, default=Stage.PRODUCTION)


def device_stages(cohorts: Mapping[str, Cohort], devices: Mapping[str, Device]) -> dict[str, Stage]:
    """Each device's highest stage over every cohort it belongs to."""
    out: dict[str, Stage] = {}
    for cohort in cohorts.values():
        for member in cohort_members(cohort, devices):
            if member not in out or cohort.stage.rank > out[member].rank:
                out[member] = cohort.stage
    return out
