"""Live progress of the demo: what each robot does and how the rollout's waves stand, per tick.

Mostly read from the fleet's bare repository, the way an operator's tools see it: each robot's
status ref (``refs/fleetcd/status/<id>/report``: the version it runs) and the controller's state
branch (the rollout's waves, deployment records, receipts). A robot reports once per cycle, so what
it is doing *right now* (downloading, watching…) comes from its local journal (``<state>/journal/
<app>.json``, what ``fleetcd-agent status`` shows on the robot), which only a demo can peek at.
On a terminal the table is redrawn in place every tick; into a pipe or a log, each change is a line.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import click

from controller.demo.fleet import APP, ROLLOUT, Robot
from controller.ops.listing import wave_progress
from controller.state.layout import device_file, receipt_files, rollout_file
from controller.state.model import DeviceFile, RolloutState
from fleetcd.git.objects import read_blob
from fleetcd.git.refs import STATE_BRANCH, status_ref
from fleetcd.git.trees import open_repository
from fleetcd.reports import STATUS_FILE, StatusReport

TICK_SECONDS = 0.5
MESSAGE_CHARS = 72
NOTHING_YET = "-"  # a robot that has reported nothing is not worth a line


@dataclass(frozen=True)
class RobotRow:
    robot: Robot
    running: str | None  # the version its report says runs
    now: str  # its newest deployment, from its journal: "1.1.0 watching"
    controller: str  # the controller's newest record: "rollback 1.0.0 deployed"
    full_message: str  # why, when it went wrong
    message: str  # the end of it, for the table

    def cells(self) -> list[str]:
        r = self.robot
        site = f"{r.site} r{r.revision}"
        return [r.id, r.cohort, site, self.running or "-", self.now, self.controller, self.message]


@dataclass(frozen=True)
class Snapshot:
    rows: list[RobotRow]
    rollout: RolloutState | None

    def running(self, version: str) -> list[str]:
        return [row.robot.id for row in self.rows if row.running == version]

    def wave_line(self) -> str:
        state = self.rollout
        if state is None:
            return "rollout: not seen by the controller yet"
        waves = "  ".join(wave_progress(w) for w in state.waves)
        reason = f" ({state.reason})" if state.reason else ""
        release = f"{state.app}@{state.version}"
        return (
            f"rollout {state.name} ({release}, gen {state.generation}): {state.phase.value}{reason} | {waves}"
        )


class Fleetview:
    """Reads snapshots of the fleet from its bare repository."""

    def __init__(self, server: Path, robots: list[Robot], journals: Callable[[Robot], Path]) -> None:
        self.server = server
        self.robots = robots
        self.journals = journals  # where a robot's agent keeps its journal of the app

    def snapshot(self) -> Snapshot:
        read = partial(read_blob, open_repository(self.server))  # opened afresh: refs move under us
        rows = [self._row(read, robot) for robot in self.robots]
        raw = read(STATE_BRANCH, rollout_file(ROLLOUT))
        return Snapshot(rows, RolloutState.model_validate_json(raw) if raw else None)

    def has_receipt(self, generation: int) -> bool:
        repo = open_repository(self.server)
        return read_blob(repo, STATE_BRANCH, receipt_files(ROLLOUT, generation)[0]) is not None

    def _row(self, read: Callable[[str, str], bytes | None], robot: Robot) -> RobotRow:
        running, now, message = None, NOTHING_YET, ""
        raw = read(status_ref(robot.id), STATUS_FILE)
        if raw is not None:
            report = StatusReport.model_validate_json(raw)
            running = next((a.current for a in report.apps if a.app == APP), None)
            if report.deployments:
                newest = max(report.deployments, key=lambda d: d.updated_at)
                now = f"{newest.version} {newest.activity}"
                message = newest.message if newest.activity in ("rolled_back", "failed") else ""
        entry = _journal_entry(self.journals(robot))
        if entry is not None:
            now = f"{entry['version']} {entry['state']}"
            message = str(entry.get("reason") or "") if entry["state"] in ("rolled_back", "failed") else ""
        controller = NOTHING_YET
        raw = read(STATE_BRANCH, device_file(robot.id))
        if raw is not None:
            records = DeviceFile.model_validate_json(raw).records
            if records:
                record = max(records, key=lambda r: (r.created_at, r.updated_at))
                action = "" if record.action.value == "deploy" else f"{record.action.value} "
                controller = f"{action}{record.version} {record.status.value}"
        return RobotRow(robot, running, now, controller, message, _clip(message))


def _journal_entry(path: Path) -> dict[str, Any] | None:
    """The agent's journal entry (written atomically), or None while there is none or it is unreadable."""
    try:
        entry = json.loads(path.read_bytes())["entry"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = (
        isinstance(entry, dict)
        and isinstance(entry.get("version"), str)
        and isinstance(entry.get("state"), str)
    )
    return entry if ok else None


HEADER = ["ROBOT", "COHORT", "SITE/HW", "RUNS", "ON THE ROBOT", "CONTROLLER RECORD", "WHY"]


def render(snapshot: Snapshot) -> list[str]:
    table = [HEADER, *(row.cells() for row in snapshot.rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    return [*lines, "  " + snapshot.wave_line()]


class LiveTable:
    """Shows snapshots: redrawn in place on a terminal, as change lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.started = time.monotonic()
        self._drawn = 0
        self._last: dict[str, str] = {}

    def show(self, snapshot: Snapshot) -> None:
        if self.tty:
            # Clipped to the terminal: a wrapped line would throw the in-place redraw off.
            width = shutil.get_terminal_size().columns - 1
            lines = [line[:width] for line in render(snapshot)]
            if self._drawn:
                click.echo(f"\x1b[{self._drawn}F", nl=False)
            click.echo("\n".join(f"{line}\x1b[K" for line in lines))
            self._drawn = len(lines)
            return
        stamp = f"{time.monotonic() - self.started:5.1f}s"
        current = {r.robot.id: _line(r) for r in snapshot.rows}
        current["rollout"] = snapshot.wave_line()
        for key, value in current.items():
            if self._last.get(key, NOTHING_YET) != value:
                click.echo(f"  {stamp} {value}" if key == "rollout" else f"  {stamp} {key}: {value}")
        self._last = current

    def finish(self, snapshot: Snapshot) -> None:
        """Leave the final table on screen (a log gets it once, in full)."""
        if not self.tty:
            click.echo("\n".join(render(snapshot)))
        self._drawn = 0


def _line(row: RobotRow) -> str:
    """A robot's state as one log line; NOTHING_YET until there is something to say."""
    if row.running is None and row.now == NOTHING_YET and row.controller == NOTHING_YET:
        return NOTHING_YET
    why = f"; why: {row.message}" if row.message else ""
    return f"runs {row.running or '-'}; on the robot: {row.now}; controller: {row.controller}{why}"


def _clip(text: str) -> str:
    """The end of a message, in whole ``: ``-separated parts: where a probe says what went wrong."""
    text = " ".join(text.split())
    if len(text) <= MESSAGE_CHARS:
        return text
    parts = text.split(": ")
    tail = parts.pop()
    while parts and len(parts[-1]) + len(tail) + 2 <= MESSAGE_CHARS:
        tail = f"{parts.pop()}: {tail}"
    return tail if len(tail) <= MESSAGE_CHARS else "…" + tail[-(MESSAGE_CHARS - 1) :]


def watch_until(
    view: Fleetview,
    done: Callable[[Snapshot], bool],
    *,
    limit_seconds: float,
    check: Callable[[], None] = lambda: None,
) -> Snapshot:
    """Show snapshots every tick until ``done`` holds; None of the story may take over ``limit_seconds``.

    ``check`` runs every tick too (it raises when a demo process died). Raises TimeoutError.
    """
    table = LiveTable()
    deadline = time.monotonic() + limit_seconds
    while True:
        snapshot = view.snapshot()
        table.show(snapshot)
        if done(snapshot):
            table.finish(snapshot)
            return snapshot
        check()
        if time.monotonic() >= deadline:
            table.finish(snapshot)
            raise TimeoutError(f"not done after {limit_seconds:.0f} s")
        time.sleep(TICK_SECONDS)
