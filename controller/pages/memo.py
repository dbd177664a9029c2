"""What the status pages keep between reconciles: each robot's view and square, by what they came from.

A long-running controller (``fleetcd controller run``) hands one :class:`PagesMemo` to every
reconcile (``ReconcileCache.pages``); ``controller reconcile --once`` has none and builds every
robot's row. :func:`controller.pages.summary.build_view` and
:func:`controller.pages.html.render_status_html` take it and redo only the robots whose inputs
changed, so a reconcile that changes K robots' records builds K robot views, not the fleet's.

An entry is reused only when everything its robot's view is computed from is the same: the device
file *object* (the state cache hands unchanged files over as the very same frozen object, and the
memo holds a reference, so the same object is the same bytes), the wave, the site, the rollout's
fields a robot's state reads, and, when the robot's view consulted the config it should run, the
same fleet context. Nothing is ever read from an entry whose inputs differ, so nothing can be
stale; a memo that is dropped only costs one full rebuild. Pages bytes with and without the memo
are the same (tests/test_pages_incremental.py). Only the entries of the last build are kept, so
memory stays one view of the fleet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.pages.summary import RobotView
    from controller.state.model import DeviceFile


@dataclass(frozen=True)
class RobotEntry:
    """One robot's view in one wave of one rollout, with the inputs it was built from."""

    file: DeviceFile | None
    wave_name: str
    site: str
    used_config: bool  # the view read the config the robot should run (a carried record)
    view: RobotView


@dataclass
class RolloutMemo:
    """The robot views of one rollout: valid while :attr:`key` (the rollout's fields a robot's
    view reads) stays the same; keyed by (device, wave index)."""

    key: tuple[object, ...] = ()
    robots: dict[tuple[str, int], RobotEntry] = field(default_factory=dict)
    # wave index -> (the wave's devices as the state lists them, the same sorted once)
    order: dict[int, tuple[tuple[str, ...], list[str]]] = field(default_factory=dict)
    built: int = 0  # robot views the last build made (the rest were reused)


@dataclass
class PagesMemo:
    rollouts: dict[str, RolloutMemo] = field(default_factory=dict)
    # The object that answered "which config should this robot run" last time (the fleet context):
    # views that consulted it are rebuilt when it is another one.
    config_source: object = None
    # The cohorts' member lists last seen and each robot's cohort names built from them.
    members: object = None
    memberships: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # status.html: id(view) -> (view, its square after the position), the views of the last page.
    squares: dict[int, tuple[RobotView, str]] = field(default_factory=dict)
    robots_built: int = 0  # robot views built by the last build_view (tests count them)
    squares_rendered: int = 0  # squares rendered by the last render_status_html (tests count them)
