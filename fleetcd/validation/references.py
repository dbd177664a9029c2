"""Cross-file references: every name one document uses must exist, once.

Checks rollout → release, rollout → cohorts/devices (targets and waves), cohort → devices, config →
app/cohort/device, withdrawal → release (and, once approvals are checked, :func:`withdrawn_rollouts`
warns about a rollout whose release is withdrawn: the controller stalls it), repeated names in
lists, and names that differ only in letter case (they would
be one file on macOS and Windows checkouts). Unknown robots are errors, never silently dropped.
Runs after loading; a referenced file that exists but failed to load was already reported, so it
is not reported again as unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from fleetcd.errors import Diagnostic
from fleetcd.loading.documents import Loaded
from fleetcd.models import parse_version
from fleetcd.models.rollout import Waves
from fleetcd.reasons import Reason
from fleetcd.validation.context import Context, at, known


def check(ctx: Context) -> Iterator[Diagnostic]:
    yield from robot_references(ctx)
    yield from robot_case_collisions(ctx)
    yield from document_checks(ctx)


def robot_references(ctx: Context, apps: set[str] | None = None) -> Iterator[Diagnostic]:
    """The references that name robots (and everything else the same documents name): what a
    changed device file can change. ``apps``: the apps with a release file (:func:`release_apps`)."""
    yield from _rollouts(ctx)
    yield from _cohorts(ctx)
    yield from _configs(ctx, apps)


def robot_case_collisions(ctx: Context) -> Iterator[Diagnostic]:
    """Robot ids that differ only in letter case (:func:`robot_case_group` for one folded id)."""
    groups: dict[str, list[str]] = {}
    for name in ctx.spec.devices:
        groups.setdefault(name.casefold(), []).append(name)
    for names in groups.values():
        if len(names) > 1:
            yield from robot_case_group(ctx.spec.devices, names)


def robot_case_group(devices: Mapping[str, Loaded[Any]], names: Iterable[str]) -> Iterator[Diagnostic]:
    """The case-collision errors among ``names`` (robot ids of one case-folded form)."""
    yield from _collisions("robot id", {name: devices[name] for name in names})


def document_checks(ctx: Context) -> Iterator[Diagnostic]:
    """The checks no device file is read by: withdrawals, cohort and rollout name case, versions."""
    yield from _withdrawals(ctx)
    yield from _collisions("cohort name", dict(ctx.spec.cohorts))
    yield from _collisions("rollout name", {k: v.doc for k, v in ctx.spec.rollouts.items()})
    yield from _equal_versions(ctx)


def _rollouts(ctx: Context) -> Iterator[Diagnostic]:
    for name in sorted(ctx.spec.rollouts):
        doc = ctx.spec.rollouts[name].doc
        model = doc.model
        if ctx.spec.release(model.app, model.release) is None and not ctx.release_file_exists(
            model.app, model.release
        ):
            versions = [v for (app, v) in ctx.spec.releases if app == model.app]
            yield at(
                doc,
                ("release",),
                f"release {model.app} {model.release} does not exist (no releases/{model.app}/"
                f"{model.release}.yaml; published versions: {known(versions)})",
                Reason.UNKNOWN_REFERENCE,
            )
        yield from _cohort_refs(ctx, doc, ("targets", "cohorts"), model.targets.cohorts)
        yield from _device_refs(ctx, doc, ("targets", "devices"), model.targets.devices)
        yield from _repeats(doc, ("targets", "cohorts"), model.targets.cohorts)
        yield from _repeats(doc, ("targets", "devices"), model.targets.devices)
        strategy = model.strategy
        if isinstance(strategy, Waves):
            for index, wave in enumerate(strategy.waves):
                if wave.cohort is not None:
                    yield from _cohort_refs(ctx, doc, ("strategy", "waves", index, "cohort"), [wave.cohort])


def _withdrawals(ctx: Context) -> Iterator[Diagnostic]:
    for app, version in sorted(ctx.spec.withdrawals):
        doc = ctx.spec.withdrawals[(app, version)]
        if ctx.spec.release(app, version) is None and not ctx.release_file_exists(app, version):
            versions = [v for (a, v) in ctx.spec.releases if a == app]
            yield at(
                doc,
                ("version",),
                f"withdraws release {app} {version}, which does not exist (no releases/{app}/{version}.yaml; "
                f"published versions: {known(versions)})",
                Reason.UNKNOWN_REFERENCE,
            )


def withdrawn_rollouts(ctx: Context) -> Iterator[Diagnostic]:
    """A warning on every live rollout of a withdrawn release; run on a spec that holds only the
    withdrawals in force (:func:`fleetcd.validation.validate_snapshot`)."""
    for name in sorted(ctx.spec.rollouts):
        rollout = ctx.spec.rollouts[name].doc
        model = rollout.model
        withdrawal = ctx.spec.withdrawal(model.app, model.release)
        if withdrawal is not None and not model.aborted:
            yield at(
                rollout,
                ("release",),
                f"release {model.app} {model.release} is withdrawn (withdrawals/{model.app}/{model.release}"
                f".yaml: {withdrawal.reason}); the controller stalls this rollout and deploys it nowhere",
                Reason.RELEASE_WITHDRAWN,
                severity="warning",
            )


def _cohorts(ctx: Context) -> Iterator[Diagnostic]:
    for name in sorted(ctx.spec.cohorts):
        doc = ctx.spec.cohorts[name]
        yield from _device_refs(ctx, doc, ("devices",), doc.model.devices)
        yield from _repeats(doc, ("devices",), doc.model.devices)


def release_apps(ctx: Context) -> set[str]:
    """Apps with a release on main, loaded or not (a config of any other app is read by nothing)."""
    return {app for app, _ in ctx.spec.releases} | {app for app, _ in _release_files(ctx)}


def _configs(ctx: Context, apps: set[str] | None = None) -> Iterator[Diagnostic]:
    apps = release_apps(ctx) if apps is None else apps
    for app in sorted(ctx.spec.configs):
        for doc in sorted(ctx.spec.configs[app], key=lambda d: d.path):
            model = doc.model
            if app not in apps:
                yield at(
                    doc,
                    ("app",),
                    f"no release of app {app!r} exists (nothing in releases/{app}/), "
                    "so nothing reads this config",
                    Reason.UNKNOWN_REFERENCE,
                )
            if model.scope == "cohort" and model.target is not None:
                yield from _cohort_refs(ctx, doc, ("target",), [model.target])
            elif model.scope == "device" and model.target is not None:
                yield from _device_refs(ctx, doc, ("target",), [model.target])


def _cohort_refs(
    ctx: Context, doc: Loaded[Any], path: tuple[str | int, ...], names: Sequence[str]
) -> Iterator[Diagnostic]:
    for index, name in enumerate(names):
        if name in ctx.cohorts or ctx.cohort_file_exists(name):
            continue
        spot = path if path[-1] in ("cohort", "target") else (*path, index)
        yield at(
            doc,
            spot,
            f"unknown cohort {name!r} (no cohorts/{name}.yaml; known: {known(ctx.cohorts)})",
            Reason.UNKNOWN_REFERENCE,
        )


def _device_refs(
    ctx: Context, doc: Loaded[Any], path: tuple[str | int, ...], names: Sequence[str]
) -> Iterator[Diagnostic]:
    for index, name in enumerate(names):
        if name in ctx.devices or ctx.device_file_exists(name):
            continue
        spot = path if path[-1] == "target" else (*path, index)
        yield at(
            doc,
            spot,
            f"unknown robot {name!r}: no devices/{name}.yaml (a typo here would silently drop a robot)",
            Reason.UNKNOWN_DEVICE,
        )


def _repeats(doc: Loaded[Any], path: tuple[str, ...], names: Sequence[str]) -> Iterator[Diagnostic]:
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            yield at(
                doc,
                (*path, index),
                f"{name!r} is listed twice (first at index {seen[name]})",
                Reason.DUPLICATE_ID,
            )
        else:
            seen[name] = index


def _release_files(ctx: Context) -> Iterable[tuple[str, str]]:
    for path in ctx.spec.files:
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "releases" and parts[2].endswith(".yaml"):
            yield parts[1], parts[2].removesuffix(".yaml")


def _collisions(what: str, docs: Mapping[str, Loaded[Any]]) -> Iterator[Diagnostic]:
    """Ids that differ only in letter case: one file on case-insensitive checkouts, two on Linux."""
    first: dict[str, str] = {}
    for name in sorted(docs):
        folded = name.casefold()
        if folded in first:
            other = docs[first[folded]]
            field = "id" if what == "robot id" else "name"
            yield at(
                docs[name],
                (field,),
                f"{what} {name!r} differs from {first[folded]!r} ({other.path}) only in letter case; "
                "they are the same file on case-insensitive file systems",
                Reason.DUPLICATE_ID,
            )
        else:
            first[folded] = name


def _equal_versions(ctx: Context) -> Iterator[Diagnostic]:
    """Two files of one app whose versions differ only in build metadata name the same release."""
    by_app: dict[str, list[str]] = {}
    for app, version in ctx.spec.releases:
        by_app.setdefault(app, []).append(version)
    for app in sorted(by_app):
        # Equal versions share major.minor.patch: each version is compared only within its group
        # (in sorted order, as before), each parsed once.
        groups: dict[tuple[int, int, int], list[tuple[str, Any]]] = {}
        for version in sorted(by_app[app]):
            parsed = parse_version(version)
            groups.setdefault((parsed.major, parsed.minor, parsed.patch), []).append((version, parsed))
        for group in groups.values():
            for index, (version, parsed) in enumerate(group):
                earlier = next((e for e, other in group[:index] if parsed.compare(other) == 0), None)
                if earlier is not None:
                    yield at(
                        ctx.spec.releases[(app, version)].doc,
                        ("version",),
                        f"version {version} equals {earlier} (build metadata does not order releases); "
                        "publish a new version number instead",
                        Reason.DUPLICATE_ID,
                    )
