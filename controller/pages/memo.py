"""What the status pages keep between reconciles: each robot's view and square, by what they came from.

A long-running controller (``fleetcd controller run``) hands one :class:`PagesMemo` to every
reconcile (``ReconcileCache.pages``); ``controller reconcile --once`` has none and builds every
robot's row. :func:`controller.pages.summary.build_view` and
:func:`controller.pages.html.render_status_html` take it and redo only the robots whose inputs
changed, so a reconcile that changes K robots' records builds K robot views, not the fleet's.

An entry is reused only when everything its robot's view is computed from is the same: the device
file *object* (the state cache hands unchanged files over as the very same frozen object, and the
memo holds a reference, so the same object is the same bytes; a file the last reconcile wrote is
handed back as the very object it was dumped from, so its robot is not built again), the wave,
main's model of the robot (the same object, or an equal one), the rollout's fields a robot's
state reads, and, when the robot's view consulted the config it should run, the same fleet
context. Nothing is ever read from an entry whose inputs differ, so nothing can be stale; a memo
that is dropped only costs one full rebuild. Pages bytes with and without the memo are the same
(tests/test_pages_incremental.py). Only the entries of the last build are kept, so memory stays
one view of the fleet.

Finding those robots does not walk the fleet in Python: each wave's device files and models are
compared with the ones its entries hold object by object in C (``map(is_not, ...)``, about 30 ns a
robot), and hold reasons by the robots held by name. The robots found are put into the last view:
their waves' robot lists and counts, the rollout's counts and their cohorts' tables are patched
(each cohort keeps its robots per state in device order), every other list and table is the last
view's object (tests/test_pages_patched.py checks the result against a cold build over random
reconciles). A change that may move every robot (a pause, an earlier wave soaking, main's
cohorts) builds the rollout's view again from its entries.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.pages.summary import CohortTable, RobotState, RobotView, RolloutView
    from controller.state.holds import Holds
    from controller.state.model import DeviceFile
    from fleetcd.models import Device


@dataclass(frozen=True, slots=True)
class RobotEntry:
    """One robot's view in one wave of one rollout, with the inputs it was built from."""

    device: str
    model: Device | None  # main's model of the robot (its site, decommissioned); None: not on main
    file: DeviceFile | None
    used_config: bool  # the view read the config the robot should run (a carried record)
    view: RobotView | None  # None: decommissioned, out of every count


@dataclass
class WaveMemo:
    """One wave's robots as last built: valid for a wave of the same name and devices."""

    devices: tuple[str, ...]  # as the rollout state lists them
    name: str
    ids: list[str]  # the same, sorted (the grid's order)
    entries: list[RobotEntry]  # one per id, in that order


@dataclass
class RolloutMemo:
    """The robot views of one rollout: valid while :attr:`key` (the rollout's fields a robot's
    view reads) stays the same."""

    key: tuple[object, ...] = ()
    waves: dict[int, WaveMemo] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # the rollout's robots in device order
    built: int = 0  # robot views the last build made (the rest were reused)
    # The view the last build returned and what its cohort tables were grouped by (the memberships
    # and cohorts objects): while no robot's inputs changed it is reused whole, its fields from the
    # rollout state taken anew (controller.pages.summary._reused).
    view: RolloutView | None = None
    grouped_by: tuple[object, object] = (None, None)
    reused: bool = False  # the last build reused the whole view (tests count them)
    # What a build patches instead of walking every robot (controller.pages.summary._patched): the
    # hold reasons the views were built with, each robot's view in the rollout's counts (the last
    # wave's wins), its counts, and per cohort each state's robots in device order.
    holds: Holds | None = None
    seen: dict[str, RobotView] = field(default_factory=dict)
    tally: dict[RobotState, int] = field(default_factory=dict)
    lists: dict[str, dict[RobotState, list[RobotView]]] = field(default_factory=dict)
    tables: dict[str, CohortTable] = field(default_factory=dict)
    # per cohort, its robots per (wave index, wave name) (controller.pages.summary.per_wave)
    waves_of: dict[str, Counter[tuple[int, str | None]]] = field(default_factory=dict)
    patched: bool = False  # the last build patched the last view (tests count them)


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
    # Withdrawn releases: device -> (its file, app -> the version it runs), in device order.
    running: dict[str, tuple[DeviceFile, dict[str, str]]] = field(default_factory=dict)
    robots_built: int = 0  # robot views built by the last build_view (tests count them)
    squares_rendered: int = 0  # squares rendered by the last render_status_html (tests count them)
