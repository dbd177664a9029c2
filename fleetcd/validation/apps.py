"""Several apps on one robot share nothing on disk: no two apps' releases delivered to the same robot
write their config to the same absolute ``config.path``.

A relative ``config.path`` lands in the app's own folder on the robot (``apps/<app>/config/``), so
only absolute paths can meet. Two apps writing one file would overwrite each other at every switch,
each would see the other's write as drift, and a rollback of one would restore the other's bytes.
Each release involved gets the error at ``config.path``, naming the other app and the robots.
Pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import PurePosixPath

from fleetcd.errors import Diagnostic
from fleetcd.loading.fleetspec import ReleaseEntry
from fleetcd.reasons import Reason
from fleetcd.validation.context import Context, Delivery, at, robots_phrase


def shared_paths(deliveries: Mapping[str, Sequence[Delivery]]) -> bool:
    """Whether two apps delivered to one robot (app -> its deliveries there) write one absolute
    config path: the robot-level condition :func:`check` reports."""
    writers: dict[str, set[str]] = {}
    for app, found in deliveries.items():
        for delivery in found:
            release = delivery.release
            config = release.doc.model.config if release is not None else None
            path = absolute(config.path) if config is not None else None
            if path is not None:
                writers.setdefault(path, set()).add(app)
    return any(len(by_app) > 1 for by_app in writers.values())


@lru_cache(maxsize=1024)
def absolute(path: str) -> str | None:
    """A config path as one file on the robot when absolute (normalised), else None (it lands in
    the app's own folder). Kept: a fleet's releases name few paths, read once per robot."""
    pure = PurePosixPath(path)
    return str(pure) if pure.is_absolute() else None


def check(ctx: Context) -> Iterator[Diagnostic]:
    writers: dict[tuple[str, str], dict[str, ReleaseEntry]] = {}  # (robot, path) -> app -> release
    for (app, device), deliveries in ctx.deliveries.items():
        for delivery in deliveries:
            release = delivery.release
            config = release.doc.model.config if release is not None else None
            path = absolute(config.path) if config is not None else None
            if release is None or path is None:
                continue
            writers.setdefault((device, path), {})[app] = release
    shared: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    entries: dict[tuple[str, str], ReleaseEntry] = {}
    for (device, path), by_app in writers.items():
        if len(by_app) > 1:
            shared.setdefault((path, tuple(sorted(by_app))), []).append(device)
            entries.update({(path, app): release for app, release in by_app.items()})
    for (path, apps), robots in sorted(shared.items()):
        for app in apps:
            release = entries[(path, app)]
            others = ", ".join(repr(a) for a in apps if a != app)
            yield at(
                release.doc,
                ("config", "path"),
                f"{path} is also the config file of app {others} on {robots_phrase(sorted(robots))}: "
                "two apps on one robot would overwrite each other's config (use a relative path, "
                "which lands in the app's own folder, or another file)",
                Reason.CONFIG_PATH_SHARED,
            )
