"""A release's ``requires``: every required app has releases on main, some satisfy the range, and the
releases that rollouts deliver do not require each other in a cycle.

* ``requires_unknown_app`` — no release of the app is on main (a typo, or an app never published):
  no robot could ever satisfy it. A release file of that app that failed to load counts as present
  (the loader reported it already).
* ``requires_unsatisfiable`` — releases of the app exist, but none is in the range.
* ``requires_cycle`` — among the releases live rollouts deliver, app A requires B and B (through
  any chain) requires A: each would wait for the other on every robot. Reported on every release of
  the cycle, at its ``requires``. Releases that no rollout delivers do not count: they order nothing
  until a rollout points at them.

Which robot runs what is the controller's and the robot's business (they hold a deployment until
its requirements run there); validation checks only what main alone decides. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fleetcd.errors import Diagnostic
from fleetcd.loading.fleetspec import ReleaseEntry
from fleetcd.models.base import parse_version
from fleetcd.reasons import Reason
from fleetcd.validation.context import Context, at, known

RELEASES_DIR = "releases"


def check(ctx: Context) -> Iterator[Diagnostic]:
    yield from ranges(ctx)
    yield from cycles(ctx)


def ranges(ctx: Context) -> Iterator[Diagnostic]:
    """Unknown apps and unsatisfiable ranges: read no device file."""
    return _ranges(ctx)


def cycles(ctx: Context, owns: Callable[[str], bool] | None = None) -> Iterator[Diagnostic]:
    """Requirement cycles among the releases that rollouts deliver to at least one robot; ``owns``
    (rollout name -> whether it delivers to anyone) spares listing each rollout's robots."""
    return _cycles(ctx, owns)


def _ranges(ctx: Context) -> Iterator[Diagnostic]:
    versions: dict[str, list[str]] = {}
    for app, version in ctx.spec.releases:
        versions.setdefault(app, []).append(version)
    for (app, version), entry in sorted(ctx.spec.releases.items()):
        for index, requirement in enumerate(entry.doc.model.requires):
            have = sorted(versions.get(requirement.app, []), key=parse_version)
            if not have:
                if _any_release_file(ctx, requirement.app):
                    continue  # it failed to load: the loader said why
                yield at(
                    entry.doc,
                    ("requires", index, "app"),
                    f"{app} {version} requires app {requirement.app!r}, which has no release on main "
                    f"(apps with releases: {known(versions)})",
                    Reason.REQUIRES_UNKNOWN_APP,
                )
            elif not any(requirement.allows(v) for v in have):
                yield at(
                    entry.doc,
                    ("requires", index, "version"),
                    f"no release of {requirement.app} on main is in {requirement.version!r} "
                    f"({requirement.app} has {', '.join(have)}): no robot could ever run {app} {version}",
                    Reason.REQUIRES_UNSATISFIABLE,
                )


def _any_release_file(ctx: Context, app: str) -> bool:
    prefix = f"{RELEASES_DIR}/{app}/"
    return any(path.startswith(prefix) and path.endswith(".yaml") for path in ctx.spec.files)


def _cycles(ctx: Context, owns: Callable[[str], bool] | None) -> Iterator[Diagnostic]:
    delivered: dict[tuple[str, str], ReleaseEntry] = {}
    for name in ctx.selections:
        release = ctx.release_of(name)
        if release is not None and (owns(name) if owns is not None else bool(ctx.owned(name))):
            delivered[(release.doc.model.app, release.doc.model.version)] = release
    edges: dict[str, set[str]] = {}
    for (app, _version), entry in delivered.items():
        edges.setdefault(app, set()).update(r.app for r in entry.doc.model.requires)
    for (app, version), entry in sorted(delivered.items()):
        for requirement in entry.doc.model.requires:
            path = _path(edges, requirement.app, app)
            if path is None:
                continue
            chain = " → ".join([app, *path])
            yield at(
                entry.doc,
                ("requires",),
                f"{app} {version} is part of a requirement cycle ({chain}): on every robot each app "
                "would wait for the other; drop one of the requirements",
                Reason.REQUIRES_CYCLE,
            )
            break


def _path(edges: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """Apps from ``start`` to ``goal`` along ``edges`` (breadth first), or None."""
    previous: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        current = queue.pop(0)
        if current == goal:
            chain: list[str] = []
            step: str | None = current
            while step is not None:
                chain.append(step)
                step = previous[step]
            return chain[::-1]
        for following in sorted(edges.get(current, ())):
            if following not in previous:
                previous[following] = current
                queue.append(following)
    return None
