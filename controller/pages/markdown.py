"""``STATUS.md`` on the state branch: the fleet's rollouts as a forge renders them (pure).

Step 6 (write) of the reconcile commits this page next to the records it summarises. Per rollout:
the release, the phase with its reason, a Mermaid ladder of waves (one node per wave with its
counts, styled by phase) and one table per cohort. Everything a robot sent is untrusted text and
is escaped for both Markdown and Mermaid. The page is bounded whatever the fleet size: at most
:data:`ROWS_PER_COHORT` rows per table and :data:`ROWS_PER_PAGE` in all; the rest is counted, and
every robot's full record is in ``devices/<id>.json`` on the same branch.
"""

from __future__ import annotations

from controller.pages.summary import (
    NO_COHORT,
    RUNNING_SHOWN,
    CohortTable,
    FleetView,
    RobotState,
    RobotView,
    RolloutView,
    WaveView,
    counts_text,
    halt_text,
    when,
)
from controller.state.model import WavePhase
from fleetcd.compat import UTC

ROWS_PER_COHORT = 200
ROWS_PER_PAGE = 5_000  # ~100 bytes a row: the page stays well under 1 MB at any fleet size

# Mermaid classDef per wave phase: fill, stroke, text colour (text contrast >= 4.5:1 on the fill).
_PHASE_STYLE: dict[WavePhase, tuple[str, str, str]] = {
    WavePhase.PENDING: ("#f1f3f5", "#868e96", "#343a40"),
    WavePhase.WAITING: ("#f1f3f5", "#495057", "#212529"),
    WavePhase.RUNNING: ("#dbeafe", "#1d4ed8", "#1e3a8a"),
    WavePhase.SOAKING: ("#ccfbf1", "#0f766e", "#134e4a"),
    WavePhase.AWAITING_PROMOTION: ("#fef3c7", "#b45309", "#78350f"),
    WavePhase.PASSED: ("#d1fae5", "#047857", "#064e3b"),
    WavePhase.FAILED: ("#fee2e2", "#b91c1c", "#7f1d1d"),
}

_MD_SPECIAL = str.maketrans(
    {
        "\\": "\\\\",
        "|": "\\|",
        "`": "\\`",
        "*": "\\*",
        "_": "\\_",
        "[": "\\[",
        "]": "\\]",
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
        "#": "\\#",
        "\n": " ",
        "\r": " ",
    }
)


def md_text(text: str) -> str:
    """Untrusted text as inert Markdown (also safe inside a table cell)."""
    return text.translate(_MD_SPECIAL)


def mermaid_text(text: str) -> str:
    """Untrusted text inside a quoted Mermaid label: entity codes for what would end or inject."""
    text = text.replace("#", "#35;")
    for char, code in (('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("`", "#96;")):
        text = text.replace(char, code)
    return " ".join(text.split())


def _ladder(waves: tuple[WaveView, ...]) -> list[str]:
    lines = ["```mermaid", "flowchart LR"]
    for i, wave in enumerate(waves):
        label = f"{mermaid_text(wave.name)}<br/>{mermaid_text(counts_text(wave.counts))}"
        label += f"<br/><i>{wave.phase.value.replace('_', ' ')}</i>"
        # Rollback waves get another shape, so the ladder reads right even without colour.
        node = f'w{i}{{{{"{label}"}}}}' if wave.action == "rollback" else f'w{i}["{label}"]'
        lines.append(f"  {node}:::{wave.phase.value}")
    if len(waves) > 1:
        lines.append("  " + " --> ".join(f"w{i}" for i in range(len(waves))))
    for phase in sorted({wave.phase for wave in waves}, key=list(WavePhase).index):
        fill, stroke, color = _PHASE_STYLE[phase]
        lines.append(f"  classDef {phase.value} fill:{fill},stroke:{stroke},color:{color},stroke-width:2px")
    lines.append("```")
    return lines


def _status_cell(robot: RobotView) -> str:
    """The page's word for the robot first, then the record's own status where it adds something."""
    status = robot.status.replace("_", " ")
    text = {
        RobotState.SUCCEEDED: status,
        RobotState.FAILED: status,
        RobotState.IN_PROGRESS: robot.status_text,
        RobotState.RETIRED: status,
        RobotState.TIMED_OUT: "failed (timed out)",
        RobotState.ROLLED_BACK: "rolled back",
        RobotState.QUEUED: status if robot.status.startswith(("not dispatched", "waiting")) else "queued",
        RobotState.NOT_DISPATCHED: RobotState.NOT_DISPATCHED.label,
        RobotState.OFFLINE: f"offline (last: {robot.status_text})",
    }[robot.state]
    if robot.message and robot.state not in (RobotState.SUCCEEDED, RobotState.QUEUED):
        text = f"{text}: {robot.short_message}"  # cut at a word; the whole one is in devices/<id>.json
    return md_text(text)


def _table(table: CohortTable, view: FleetView, budget: int) -> tuple[list[str], int]:
    title = "robots targeted directly" if table.name == NO_COHORT else f"cohort `{table.name}`"
    stage = f" ({table.stage})" if table.stage else ""
    lines = [
        f"#### {title}{stage}: {table.counts.total} robots {md_text(table.waves_text)} — "
        f"{md_text(counts_text(table.counts))}",
        "",
    ]
    shown = table.robots[: min(ROWS_PER_COHORT, budget)]
    if shown:
        lines += ["| robot | site | status | version | last seen |", "|---|---|---|---|---|"]
        for r in shown:
            seen = when(r.last_seen, view.generated_at)
            version = md_text(r.version_text)  # what it runs, and the deployment's where that differs
            lines.append(f"| `{r.device}` | {md_text(r.site)} | {_status_cell(r)} | {version} | {seen} |")
    rest = len(table.robots) - len(shown)
    if rest:
        lines += [
            "",
            f"… and {rest:,} more (worst first above; every robot's record is in `devices/<id>.json`)",
        ]
    return [*lines, ""], budget - len(shown)


def _rollout(rollout: RolloutView, view: FleetView, budget: int) -> tuple[list[str], int]:
    phase = rollout.phase.value.replace("_", " ")
    reason = f" — {md_text(rollout.reason)}" if rollout.reason else ""
    lines = [
        f"## `{rollout.name}`: {rollout.app}@{rollout.version}",
        "",
        f"**Phase: {phase}**{reason}",
        "",
        f"- generation {rollout.generation}, from main commit `{rollout.commit[:12]}`, "
        f"updated {when(rollout.updated_at, view.generated_at)}",
        f"- robots: {rollout.counts.total} — {md_text(counts_text(rollout.counts))}"
        + (f"; {rollout.skipped} skipped" if rollout.skipped else ""),
    ]
    if rollout.previous_version:
        lines.append(f"- previous release: {rollout.app}@{rollout.previous_version}")
    if rollout.approvers:
        lines.append(f"- approved by: {md_text(', '.join(rollout.approvers))}")
    halted = halt_text(rollout)
    if halted:
        lines.append(f"- {halted}")  # our own words and enum values: nothing to escape
    lines.append("")
    lines += [*_ladder(rollout.waves), ""] if rollout.waves else ["_No waves planned._", ""]
    for table in rollout.cohorts:
        table_lines, budget = _table(table, view, budget)
        lines += table_lines
    return lines, budget


def render_status_md(view: FleetView) -> str:
    """The whole ``STATUS.md``; deterministic for a given view."""
    fleet = f": {md_text(view.fleet)}" if view.fleet else ""
    commit = f"main commit `{view.commit}`" if view.commit else "no main commit processed yet"
    generated = view.generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    lines = [
        f"# Fleet status{fleet}",
        "",
        *([md_text(" ".join(view.description.split())), ""] if view.description else []),
        f"Generated {generated} by the fleetcd controller from {commit}. "
        "Written on every reconcile; do not edit.",
        "",
    ]
    for w in view.withdrawn:
        shown = ", ".join(f"`{md_text(d)}`" for d in w.running[:RUNNING_SHOWN]) or "none"
        more = f" and {len(w.running) - RUNNING_SHOWN} more" if len(w.running) > RUNNING_SHOWN else ""
        lines += [
            f"**Withdrawn: {md_text(w.app)}@{md_text(w.version)}** — {md_text(w.reason)}. "
            f"Still running it ({len(w.running)}): {shown}{more}",
            "",
        ]
    if not view.rollouts:
        lines += ["_No rollouts._", ""]
    budget = ROWS_PER_PAGE
    for rollout in view.rollouts:
        rollout_lines, budget = _rollout(rollout, view, budget)
        lines += rollout_lines
    return "\n".join(lines).rstrip("\n") + "\n"
