"""What the status pages keep between reconciles: each robot's view and square, by what they came from.

A long-running controller (``fleetcd controller run``) hands one :class:`PagesMemo` to every
reconcile (``ReconcileCache.pages``); ``controller reconcile --once`` has none and builds every
robot's row. :func:`controller.pages.summary.build_view` and
:func:`controller.pages.html.render_status_html` take it and redo only the robots whose inputs
changed, so a reconcile that changes K robots' records builds K robot views, not the fleet's.

An entry is reused only when everything its robot's view is computed from is the same: the device
file *object* (the state cache hands unchanged files over as the very same frozen object, and the
memo holds a reference, so the same object is the same bytes; a file the last reconcile wrote is
parsed again by the next, so its robot is built once more), the wave, main's model of the robot
(the same object, or an equal one), the rollout's fields a robot's state reads, and, when the
robot's view consulted the config it should run, the same fleet context. Nothing is ever read
from an entry whose inputs differ, so nothing can be stale; a memo that is dropped only costs one
full rebuild. Pages bytes with and without the memo are the same
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

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
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


# device -> (the file object the pages were built from, its path, the bytes written)
WrittenFiles = dict[str, tuple["DeviceFile", str, bytes]]
# A wave is walked whole instead of looked up robot by robot once this many times more robots of
# it are adopted than it has (a lookup is a bisection; the walk one dict probe a robot).
_WALK_FROM = 1 / 8


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
    # The device files the last reconcile wrote: the next one reads them back as new objects and,
    # when their bytes are the ones written, builds its pages from these (controller.reconcile.finish).
    written: WrittenFiles = field(default_factory=dict)
    robots_built: int = 0  # robot views built by the last build_view (tests count them)
    squares_rendered: int = 0  # squares rendered by the last render_status_html (tests count them)

    def adopt(self, device: str, written: DeviceFile, read: DeviceFile) -> None:
        """``read`` holds the same record as ``written`` (the bytes written were read back): every
        entry built from ``written`` is kept as built from ``read``, so the identity check finds it."""
        self.adopt_all({device: (written, read)})

    def adopt_all(self, files: Mapping[str, tuple[DeviceFile, DeviceFile]]) -> None:
        """:meth:`adopt` for every device -> (written, read) of ``files``: each wave is walked once
        when many of its robots are adopted (after a fan-out, all of them), else its robots are
        looked up one by one, so adopting K robots costs about K, not the fleet."""
        if not files:
            return
        for rollout in self.rollouts.values():
            for wave in rollout.waves.values():
                if len(files) >= len(wave.ids) * _WALK_FROM:
                    positions: Iterable[int] = range(len(wave.ids))
                else:
                    positions = (i for i in map(partial(bisect_left, wave.ids), files) if i < len(wave.ids))
                for i in positions:
                    entry = wave.entries[i]
                    pair = files.get(entry.device)
                    if pair is not None and entry.file is pair[0]:
                        wave.entries[i] = RobotEntry(
                            entry.device, entry.model, pair[1], entry.used_config, entry.view
                        )
        for device, (written, read) in files.items():
            held = self.running.get(device)
            if held is not None and held[0] is written:
                self.running[device] = (read, held[1])
