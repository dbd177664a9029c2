"""``status.html`` on the state branch: one self-contained page for people without a forge (pure).

Step 6 (write) of the reconcile commits this next to ``STATUS.md``, from the same view. The page is
plain HTML with inline CSS and inline SVG only: no JavaScript, no external assets, no web fonts, so
it opens from a file, a CI artifact or a raw git blob and cannot phone home. Per rollout: a stacked
progress bar per wave, a grid with one square per robot (its tooltip a ``<title>``), a cohort
summary and the robots that need attention. Colour is never the only cue: failures are hatched,
every bar carries its counts in words and a legend names each colour. All text goes through
:func:`html.escape`. Size stays bounded at fleet scale: a square costs ~150 bytes and the page
draws at most :data:`GRID_MAX_ROBOTS` of them.
"""

from __future__ import annotations

from html import escape
from itertools import takewhile

from controller.pages.memo import PagesMemo
from controller.pages.summary import (
    NO_COHORT,
    RUNNING_SHOWN,
    Counts,
    FleetView,
    RobotState,
    RobotView,
    RolloutView,
    WaveView,
    counts_text,
    halt_text,
    when,
)
from fleetcd.compat import UTC

GRID_MAX_ROBOTS = 20_000  # squares on one page (~3 MB at most); beyond that waves show bars only
ATTENTION_ROWS = 50  # per rollout: the worst robots listed with their messages
CELL_PX = 12
GAP_PX = 3
GRID_COLUMNS = 60
BAR_UNITS = 1000  # viewBox width of a progress bar; the SVG scales to the page width

_CSP = "default-src 'none'; style-src 'unsafe-inline'"

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies); short class names
# keep a 10,000-square grid small.
_STYLE: dict[RobotState, tuple[str, str]] = {
    RobotState.SUCCEEDED: ("s", "#009e73"),
    RobotState.FAILED: ("f", "url(#hatch-f)"),
    RobotState.TIMED_OUT: ("t", "url(#hatch-t)"),
    RobotState.ROLLED_BACK: ("r", "#e69f00"),
    RobotState.IN_PROGRESS: ("p", "#56b4e9"),
    RobotState.QUEUED: ("q", "#d0d7de"),
    RobotState.NOT_DISPATCHED: ("n", "#f6f8fa"),
    RobotState.OFFLINE: ("o", "#3d3d3d"),
    RobotState.RETIRED: ("x", "#ffffff"),
}
_HATCH = {"f": "#d55e00", "t": "#882255"}

_CSS = f"""
:root {{ color-scheme: light; }}
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #1f2328; background: #f6f8fa; margin: 0; }}
main {{ max-width: 1100px; margin: 0 auto; padding: 20px 24px 40px; }}
h1 {{ font-size: 22px; margin: 0 0 2px; }}
h2 {{ font-size: 18px; margin: 0; display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }}
h3 {{ font-size: 14px; margin: 0; }}
code {{ font: 12px ui-monospace, "DejaVu Sans Mono", monospace; background: #eef1f4; padding: 1px 4px;
  border-radius: 4px; }}
.meta, .facts {{ color: #57606a; margin: 0 0 12px; }}
.legend {{ display: flex; flex-wrap: wrap; gap: 6px 16px; margin: 12px 0 18px; padding: 8px 12px;
  background: #fff; border: 1px solid #d0d7de; border-radius: 6px; }}
.key {{ display: inline-flex; align-items: center; gap: 5px; }}
.key svg {{ width: 14px; height: 14px; }}
.rollout {{ background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 16px 20px;
  margin: 0 0 20px; }}
.app {{ font-weight: 400; color: #57606a; }}
.badge {{ font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 10px; border: 1px solid;
  text-transform: uppercase; letter-spacing: .03em; }}
.good {{ color: #064e3b; background: #d1fae5; border-color: #047857; }}
.bad {{ color: #7f1d1d; background: #fee2e2; border-color: #b91c1c; }}
.busy {{ color: #1e3a8a; background: #dbeafe; border-color: #1d4ed8; }}
.hold {{ color: #78350f; background: #fef3c7; border-color: #b45309; }}
.idle {{ color: #343a40; background: #f1f3f5; border-color: #868e96; }}
.reason {{ margin: 6px 0; padding: 6px 10px; border-left: 4px solid #b91c1c; background: #fff5f5; }}
.wave {{ margin: 16px 0 0; }}
.wave-head {{ display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; margin-bottom: 4px; }}
.counts {{ color: #3d444d; font-variant-numeric: tabular-nums; }}
.bar {{ display: block; width: 100%; height: auto; border-radius: 3px; background: #eef1f4; }}
.grid {{ display: block; margin: 6px 0 0; }}
.more {{ color: #57606a; font-style: italic; margin: 4px 0 0; }}
table {{ border-collapse: collapse; margin: 14px 0 0; width: 100%; }}
th, td {{ text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid #eaeef2;
  vertical-align: top; }}
th {{ color: #57606a; font-weight: 600; white-space: nowrap; }}
td.nowrap {{ white-space: nowrap; }}
td.num {{ font-variant-numeric: tabular-nums; }}
.msg {{ color: #57606a; overflow-wrap: anywhere; }}
.defs {{ position: absolute; width: 0; height: 0; }}
{chr(10).join(f"svg .{cls} {{ fill: {fill}; }}" for cls, fill in _STYLE.values())}
svg .q, svg .x {{ stroke: #8c959f; stroke-width: 1; }}
svg .x {{ stroke-dasharray: 2 2; }}
svg .n {{ stroke: #57606a; stroke-width: 1; stroke-dasharray: 1 2; }}
"""

_ROLLOUT_TONE = {
    "completed": "good",
    "halted": "bad",
    "rolling_back": "bad",
    "stalled": "bad",
    "progressing": "busy",
    "paused": "hold",
}
_WAVE_TONE = {
    "passed": "good",
    "failed": "bad",
    "running": "busy",
    "soaking": "busy",
    "awaiting_promotion": "hold",
}


def _defs() -> str:
    patterns = "".join(
        f'<pattern id="hatch-{cls}" width="5" height="5" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="5" height="5" fill="{colour}"/>'
        '<rect width="1.6" height="5" fill="#fff" fill-opacity=".6"/></pattern>'
        for cls, colour in _HATCH.items()
    )
    return f'<svg class="defs" aria-hidden="true" focusable="false"><defs>{patterns}</defs></svg>'


def _badge(text: str, tone: str) -> str:
    return f'<span class="badge {tone}">{escape(text.replace("_", " "))}</span>'


def _legend() -> str:
    keys = "".join(
        f'<span class="key"><svg viewBox="0 0 14 14" aria-hidden="true"><rect x="1" y="1" width="12" '
        f'height="12" class="{cls}"/></svg>{escape(state.label)}</span>'
        for state, (cls, _) in _STYLE.items()
    )
    return f'<section class="legend" aria-label="legend">{keys}</section>'


def _bar(counts: Counts) -> str:
    total = counts.total or 1
    x, parts = 0.0, []
    for state, n in counts.nonzero():
        width = BAR_UNITS * n / total
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{width:.1f}" height="16" class="{_STYLE[state][0]}">'
            f"<title>{n} {escape(state.label)}</title></rect>"
        )
        x += width
    label = escape(counts_text(counts))
    svg = f'<svg class="bar" viewBox="0 0 {BAR_UNITS} 16" role="img" aria-label="{label}">'
    return f"{svg}{''.join(parts)}</svg>"


def _tooltip(robot: RobotView, view: FleetView) -> str:
    status = robot.state.label if robot.state is RobotState.NOT_DISPATCHED else robot.status_text
    text = f"{robot.device} ({robot.site}): {status}"
    if robot.state is RobotState.OFFLINE:
        text += f", offline, last seen {when(robot.last_seen, view.generated_at)}"
    if robot.version or robot.running:
        text += f", runs {robot.version_text}"
    if robot.message:
        text += f" — {robot.short_message}"  # the attention table has the whole message
    return escape(text)


class _Squares:
    """Each robot's square after its position, kept in ``memo`` by view: a view the memo handed over
    again is the same robot in the same state, so its square is the same bytes, except an offline
    robot's, whose tooltip says how long ago it was seen (rendered afresh every time)."""

    def __init__(self, memo: PagesMemo | None, view: FleetView) -> None:
        self.kept = memo.squares if memo is not None else {}
        self.memo, self.view = memo, view
        self.squares: dict[int, tuple[RobotView, str]] = {}
        self.rendered = 0

    def of(self, robot: RobotView) -> str:
        found = self.kept.get(id(robot))
        if found is not None and found[0] is robot:
            self.squares[id(robot)] = found
            return found[1]
        self.rendered += 1
        tooltip = _tooltip(robot, self.view)
        square = f'height="{CELL_PX}" class="{_STYLE[robot.state][0]}"><title>{tooltip}</title></rect>'
        if robot.state is not RobotState.OFFLINE:
            self.squares[id(robot)] = (robot, square)
        return square

    def done(self) -> None:
        if self.memo is not None:
            self.memo.squares, self.memo.squares_rendered = self.squares, self.rendered


def _cell_at(i: int) -> str:
    pitch = CELL_PX + GAP_PX
    return f'<rect x="{(i % GRID_COLUMNS) * pitch}" y="{(i // GRID_COLUMNS) * pitch}" width="{CELL_PX}" '


_CELLS = [_cell_at(i) for i in range(GRID_MAX_ROBOTS)]  # a grid never holds more squares than this


def _grid(robots: tuple[RobotView, ...], squares: _Squares) -> str:
    pitch = CELL_PX + GAP_PX
    columns = min(GRID_COLUMNS, len(robots))
    rows = -(-len(robots) // GRID_COLUMNS)
    width, height = columns * pitch - GAP_PX, rows * pitch - GAP_PX
    cells = "".join([_CELLS[i] + squares.of(r) for i, r in enumerate(robots)])
    return (
        f'<svg class="grid" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{len(robots)} robots, one square each">{cells}</svg>'
    )


def _wave(wave: WaveView, squares: _Squares, budget: int) -> tuple[str, int]:
    head = (
        f'<div class="wave-head"><h3>{escape(wave.name)}</h3>'
        + _badge(wave.phase.value, _WAVE_TONE.get(wave.phase, "idle"))
        + (f"{_badge('rollback', 'hold')}" if wave.action == "rollback" else "")
        + f'<span class="counts">{escape(counts_text(wave.counts))}</span></div>'
    )
    reason = f'<p class="reason">{escape(wave.reason)}</p>' if wave.reason else ""
    if not wave.robots:
        return f'<div class="wave">{head}{reason}</div>', budget
    if len(wave.robots) > budget:
        grid = (
            f'<p class="more">{len(wave.robots):,} robots: too many to draw; see STATUS.md and devices/.</p>'
        )
        return f'<div class="wave">{head}{reason}{_bar(wave.counts)}{grid}</div>', budget
    grid = _grid(wave.robots, squares)
    return f'<div class="wave">{head}{reason}{_bar(wave.counts)}{grid}</div>', budget - len(wave.robots)


def _cohorts(rollout: RolloutView) -> str:
    rows = "".join(
        f"<tr><td>{escape('direct targets' if t.name == NO_COHORT else t.name)}</td>"
        f"<td>{escape(t.stage or '—')}</td>"
        f'<td class="num">{t.counts.total}</td><td>{escape(t.waves_text)}</td>'
        f'<td class="counts">{escape(counts_text(t.counts))}</td></tr>'
        for t in rollout.cohorts
    )
    return (
        "<table><tr><th>cohort</th><th>stage</th><th>robots</th><th>waves</th><th>status</th></tr>"
        f"{rows}</table>"
        if rows
        else ""
    )


def _attention(rollout: RolloutView, view: FleetView) -> str:
    # Every robot of the rollout sits in a cohort table (direct targets in their own), each worst
    # first: the robots needing attention are the tables' heads, found without a pass over all.
    limit = RobotState.OFFLINE.severity
    bad = {
        r.device: r for t in rollout.cohorts for r in takewhile(lambda r: r.state.severity <= limit, t.robots)
    }
    worst = sorted(bad.values(), key=lambda r: (r.state.severity, r.device))[:ATTENTION_ROWS]
    if not worst:
        return ""
    rows = "".join(
        f'<tr><td class="nowrap"><code>{escape(r.device)}</code></td><td>{escape(r.site)}</td>'
        f'<td class="nowrap">{escape(r.state.label)}</td><td>{escape(r.version_text)}</td>'
        f'<td class="nowrap">{escape(when(r.last_seen, view.generated_at))}</td>'
        f'<td class="msg">{escape(r.message)}</td></tr>'
        for r in worst
    )
    return (
        "<table><tr><th>needs attention</th><th>site</th><th>state</th><th>runs</th><th>last seen</th>"
        f"<th>message</th></tr>{rows}</table>"
    )


def _in_progress(rollout: RolloutView, view: FleetView) -> str:
    """Robots whose last report said how far their download or health watch was."""
    busy = sorted(
        {r.device: r for w in rollout.waves for r in w.robots if r.progress}.values(), key=lambda r: r.device
    )[:ATTENTION_ROWS]
    if not busy:
        return ""
    rows = "".join(
        f'<tr><td class="nowrap"><code>{escape(r.device)}</code></td><td>{escape(r.site)}</td>'
        f'<td class="nowrap">{escape(r.status_text)}</td><td>{escape(r.version_text)}</td>'
        f'<td class="nowrap">{escape(when(r.last_seen, view.generated_at))}</td></tr>'
        for r in busy
    )
    return (
        "<table><tr><th>in progress</th><th>site</th><th>progress</th><th>runs</th><th>reported</th></tr>"
        f"{rows}</table>"
    )


def _rollout(rollout: RolloutView, view: FleetView, squares: _Squares, budget: int) -> tuple[str, int]:
    facts = [
        f"generation {rollout.generation}",
        f"main commit <code>{escape(rollout.commit[:12])}</code>",
        f"{rollout.counts.total} robots: {escape(counts_text(rollout.counts))}",
    ]
    if rollout.skipped:
        facts.append(f"{rollout.skipped} skipped")
    if rollout.previous_version:
        facts.append(f"previous {escape(rollout.previous_version)}")
    if rollout.approvers:
        facts.append("approved by " + escape(", ".join(rollout.approvers)))
    halted = halt_text(rollout)
    if halted:
        facts.append(escape(halted))
    waves = []
    for wave in rollout.waves:
        html, budget = _wave(wave, squares, budget)
        waves.append(html)
    reason = f'<p class="reason">{escape(rollout.reason)}</p>' if rollout.reason else ""
    tone = _ROLLOUT_TONE.get(rollout.phase.value, "idle")
    return (
        f'<section class="rollout"><h2>{escape(rollout.name)} <span class="app">'
        f"{escape(rollout.app)}@{escape(rollout.version)}</span>{_badge(rollout.phase.value, tone)}</h2>"
        f'{reason}<p class="facts">{" · ".join(facts)}</p>{"".join(waves)}'
        f"{_cohorts(rollout)}{_in_progress(rollout, view)}{_attention(rollout, view)}</section>"
    ), budget


def _withdrawn(view: FleetView) -> str:
    """Withdrawn releases first: no robot gets them anew; those listed still run them."""
    if not view.withdrawn:
        return ""
    items = []
    for w in view.withdrawn:
        shown = ", ".join(w.running[:RUNNING_SHOWN]) or "none"
        more = f" and {len(w.running) - RUNNING_SHOWN} more" if len(w.running) > RUNNING_SHOWN else ""
        items.append(
            f"<li><b>{escape(w.app)}@{escape(w.version)}</b> withdrawn: {escape(w.reason)}. "
            f"Still running it ({len(w.running)}): {escape(shown)}{more}</li>"
        )
    return f'<section class="rollout"><h2>Withdrawn releases</h2><ul>{"".join(items)}</ul></section>'


def render_status_html(view: FleetView, memo: PagesMemo | None = None) -> str:
    """The whole ``status.html``; deterministic for a given view. ``memo``: the squares of the last
    page, reused for the robot views handed over again (the bytes are the same without it)."""
    fleet = escape(view.fleet) if view.fleet else "fleet"
    commit = (
        f"main commit <code>{escape(view.commit)}</code>" if view.commit else "no main commit processed yet"
    )
    generated = view.generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    budget = GRID_MAX_ROBOTS
    sections = []
    squares = _Squares(memo, view)
    for rollout in view.rollouts:
        html, budget = _rollout(rollout, view, squares, budget)
        sections.append(html)
    squares.done()
    body = _withdrawn(view) + ("".join(sections) or '<p class="meta">No rollouts.</p>')
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # Defence in depth: even text that slipped past escaping could load or run nothing.
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{fleet} status</title><style>{_CSS}</style></head><body>{_defs()}<main>"
        f'<h1>Fleet status: {fleet}</h1><p class="meta">Generated {generated} by the fleetcd controller from '
        f"{commit}.</p>{_legend()}{body}</main></body></html>\n"
    )
