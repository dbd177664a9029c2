"""Showing a :class:`~fleetcd.planning.plan.Plan` to people and machines: text, markdown, JSON.

The last step of ``fleetcd plan``; pure string building. The first line is always the Terraform-style
summary (``Plan: 12 robots to update in 3 waves, 2 skipped, 1 approval missing.``) so CI logs and
PR comments can be scanned at a glance. Markdown is for a PR comment or a job summary: one collapsed
``<details>`` block per rollout, capped below GitHub's comment limit by shortening robot lists and
then dropping whole blocks, never by cutting through a tag.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fleetcd.compat import UTC
from fleetcd.models.rollout import AllAtOnce, BlueGreen, Canary, FailureThreshold, Rolling, Strategy, Waves
from fleetcd.planning.plan import UNSET, Change, ConfigChange, KeyChange, Plan, RolloutPlan
from fleetcd.planning.schedule import WaveStart
from fleetcd.planning.waves import PlannedWave, WaveAction
from fleetcd.planning.windows import LOOKAHEAD_DAYS
from fleetcd.reasons import HoldReason, SkipReason

MARKDOWN_LIMIT_CHARS = 60_000  # GitHub rejects comments over 65,536 characters; keep a margin
LIST_HEAD = 10  # robots shown before "… and N more"
MARKDOWN_LIST_LEVELS = (200, 50, LIST_HEAD)  # robot lists shorten step by step before blocks are dropped
TRUNCATED_NOTE = "… truncated, run `fleetcd plan` locally for the full plan"
_MARKS = {
    Change.PLANNED: "+",
    Change.NEW: "+",
    Change.MODIFIED: "~",
    Change.AFFECTED: "~",
    Change.REMOVED: "-",
}


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def summary_line(plan: Plan) -> str:
    if not plan.has_changes:
        return (
            f"No changes. Fleet is up to date with {plan.base}." if plan.base else "No changes. No rollouts."
        )
    robots = plural(len(plan.robots_to_update), "robot")
    waves = plural(plan.wave_count, "wave")
    missing = plural(plan.approvals_missing, "approval")
    configs = len(plan.robots_with_config_changes)
    new_config = f" ({configs} with new config)" if configs else ""
    skipped = len(plan.skipped_robots)
    return f"Plan: {robots} to update in {waves}{new_config}, {skipped} skipped, {missing} missing."


def value_text(value: Any) -> str:
    """A config value as the plan shows it: JSON, or ``(unset)``."""
    if value is UNSET:
        return repr(UNSET)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def config_change_text(change: ConfigChange) -> str:
    keys = ", ".join(f"{k.key} {value_text(k.old)} → {value_text(k.new)}" for k in change.keys)
    return f"{change.device}: {keys}"


def duration(seconds: int) -> str:
    if seconds <= 0:
        return "0s"
    parts = [
        (seconds // 86400, "d"),
        (seconds % 86400 // 3600, "h"),
        (seconds % 3600 // 60, "m"),
        (seconds % 60, "s"),
    ]
    return "".join(f"{n}{unit}" for n, unit in parts if n)


def threshold_text(threshold: FailureThreshold) -> str:
    if threshold.count == 0:
        return "halt on any failure"
    bounds = []
    if threshold.count is not None:
        bounds.append(plural(threshold.count, "failure"))
    if threshold.percent is not None:
        bounds.append(f"{threshold.percent:g}%")
    return "halt above " + " or ".join(bounds)


def strategy_text(strategy: Strategy | None) -> str:
    if isinstance(strategy, AllAtOnce):
        return "all at once"
    if isinstance(strategy, Rolling):
        return f"rolling, batches of {strategy.batch_size}, {duration(strategy.delay_seconds)} between"
    if isinstance(strategy, Canary):
        return f"canary {strategy.percent:g}%, soak {duration(strategy.soak_seconds)}, then the rest"
    if isinstance(strategy, Waves):
        return f"{plural(len(strategy.waves), 'explicit wave')}"
    if isinstance(strategy, BlueGreen):
        return f"blue/green, switch once {strategy.min_staged_percent:g}% staged"
    return "none"


def gate_text(wave: PlannedWave, last: bool) -> str:
    parts = [threshold_text(wave.failure_threshold)]
    if wave.action is WaveAction.STAGE:
        parts.append(f"switch once {wave.min_reported_percent:g}% staged")
    elif wave.min_reported_percent < 100 and not last:
        parts.append(f"next wave once {wave.min_reported_percent:g}% reported")
    if wave.soak_seconds and not last:
        parts.append(f"soak {duration(wave.soak_seconds)}")
    if wave.manual_promotion:
        parts.append("manual promotion")
    return ", ".join(parts)


def approvals_text(rollout: RolloutPlan) -> str:
    required = rollout.approvals_required
    if rollout.aborted:
        return "not needed (aborted)"
    if rollout.approvals is None:
        return f"{required} required (not checked)"
    present = rollout.approvals.present
    names = f" ({', '.join(rollout.approvals.approvers)})" if rollout.approvals.approvers else ""
    missing = f"; missing {rollout.approvals_missing}" if rollout.approvals_missing else ""
    return f"{present}/{required}{names}{missing}"


def signatures_text(rollout: RolloutPlan) -> str:
    if not rollout.release_found:
        return "release file missing"
    if rollout.signatures is None:
        return "not checked"
    sig = rollout.signatures
    return f"{sig.verified}/{sig.required} verified" + ("" if sig.ok else ", below threshold")


def robots_text(devices: Sequence[str], limit: int | None = LIST_HEAD) -> str:
    if not devices:
        return "(none)"
    if limit is None or len(devices) <= limit:
        return ", ".join(devices)
    return f"{', '.join(devices[:limit])} … and {len(devices) - limit} more"


def skipped_by_reason(rollout: RolloutPlan) -> dict[SkipReason, list[str]]:
    groups: dict[SkipReason, list[str]] = {}
    for device, reason in rollout.skipped:
        groups.setdefault(reason, []).append(device)
    return dict(sorted(groups.items()))


def waiting_by_reason(rollout: RolloutPlan) -> dict[str, list[str]]:
    """Robots to update that would wait, by hold reason (in the order of the reasons' enum)."""
    out: dict[str, list[str]] = {}
    for device, reason in rollout.waiting.items():
        out.setdefault(reason.value, []).append(device)
    return {reason.value: out[reason.value] for reason in HoldReason if reason.value in out}


def title(rollout: RolloutPlan) -> str:
    was = f" (was {rollout.previous_version})" if rollout.previous_version else ""
    return f"{_MARKS[rollout.change]} {rollout.name} → {rollout.app}@{rollout.version}{was}"


# --- text -----------------------------------------------------------------------------------------


REQUIREMENT_WAITS = "waiting for a required app no rollout gives them"


def requires_text(r: RolloutPlan) -> str:
    """``requires navstack >=1.2.0 (each robot waits until it runs there)``."""
    return f"requires {', '.join(r.requires)} (each robot waits until it runs there)"


def instant_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def start_lines(r: RolloutPlan, start: WaveStart, index: int) -> list[str]:
    """``could start: 2026-12-07 04:00Z …`` and each robot's windows in its local time."""
    after = " once the earlier waves pass" if index else ""
    if start.earliest is None:
        lines = [f"could start: not within {LOOKAHEAD_DAYS} days (no robot's maintenance window opens)"]
    elif not r.respects_windows:
        ignored = "maintenance windows ignored: respect_maintenance_windows false"
        lines = [f"could start: {instant_text(start.earliest)}{after} ({ignored})"]
    else:
        first = "in the first robot's maintenance window" if start.robots else "no robot has a window"
        lines = [f"could start: {instant_text(start.earliest)}{after}, {first}"]
    for robot in start.robots[:LIST_HEAD]:
        now = robot.local_now.strftime("%a %H:%M")
        if not r.respects_windows:
            opens = "ignored by this rollout"
        elif robot.opens_at is None:
            opens = f"no window within {LOOKAHEAD_DAYS} days"
        else:
            local = robot.opens_at.astimezone(robot.local_now.tzinfo).strftime("%a %H:%M")
            opens = f"next open {local} local ({instant_text(robot.opens_at)})"
        windows = "; ".join(robot.windows)
        lines.append(f"  {robot.device} (local time {now} {robot.timezone}): window {windows}; {opens}")
    if len(start.robots) > LIST_HEAD:
        lines.append(f"  … and {len(start.robots) - LIST_HEAD} more robots with windows")
    return lines


def render_text(plan: Plan) -> str:
    lines = [summary_line(plan)]
    for rollout in plan.rollouts:
        lines += ["", *_text_block(rollout)]
    return "\n".join(lines) + "\n"


def _text_block(r: RolloutPlan) -> list[str]:
    lines = [title(r), f"  {r.change}: {'; '.join(r.why)}"]
    if r.change is Change.REMOVED:
        return lines
    lines.append(f"  stage {r.stage} · strategy {strategy_text(r.strategy)}")
    lines.append(f"  approvals {approvals_text(r)} · signatures {signatures_text(r)}")
    if r.not_before is not None:
        lines.append(f"  not before {r.not_before.isoformat()}")
    if r.requires:
        lines.append(f"  {requires_text(r)}")
        if r.requirement_waits:
            lines.append(f"    {REQUIREMENT_WAITS}: {robots_text(r.requirement_waits)}")
    lines.append(f"  robots to update: {len(r.to_update)} of {len(r.eligible)} eligible")
    for wave in r.waves:
        last = wave.index == len(r.waves) - 1
        size = plural(len(wave.devices), "robot") if wave.devices else "empty"
        lines.append(f"  wave {wave.index + 1} {wave.name} — {size}, {gate_text(wave, last)}")
        if wave.devices:
            lines.append(f"    {robots_text(wave.devices)}")
        if wave.index < len(r.schedule) and wave.devices:
            lines += [f"    {line}" for line in start_lines(r, r.schedule[wave.index], wave.index)]
    if r.waiting:
        lines.append(f"  waiting: {plural(len(r.waiting), 'robot')}")
        lines += [f"    {reason}: {robots_text(ids)}" for reason, ids in waiting_by_reason(r).items()]
    if r.unplaced:
        lines.append(f"  in no wave (never updated): {len(r.unplaced)}")
        lines.append(f"    {robots_text(r.unplaced)}")
    if r.skipped:
        lines.append(f"  skipped: {len(r.skipped)}")
        lines += [f"    {reason}: {robots_text(ids)}" for reason, ids in skipped_by_reason(r).items()]
    if r.config_changes:
        lines.append(f"  config changes: {plural(len(r.config_changes), 'robot')}")
        shown = r.config_changes[:LIST_HEAD]
        lines += [f"    {config_change_text(c)}" for c in shown]
        if len(r.config_changes) > len(shown):
            lines.append(f"    … and {len(r.config_changes) - len(shown)} more")
    return lines


# --- markdown -------------------------------------------------------------------------------------


def render_markdown(plan: Plan, limit: int = MARKDOWN_LIMIT_CHARS) -> str:
    """Markdown for a PR comment; never longer than ``limit`` characters, ``<details>`` always closed."""
    head = summary_line(plan) + "\n"
    full = [_md_block(r, None) for r in plan.rollouts]
    text = head + "".join(full)
    if len(text) <= limit:
        return text
    note = f"\n{TRUNCATED_NOTE}\n"
    for list_limit in MARKDOWN_LIST_LEVELS:
        short = [_md_block(r, list_limit) for r in plan.rollouts]
        text = head + "".join(short) + note
        if len(text) <= limit:
            return text
    budget = limit - len(head) - len(note) - 60  # room for "N rollouts not shown"
    kept: list[str] = []
    for block in short:
        if len(block) > budget:
            break
        kept.append(block)
        budget -= len(block)
    dropped = len(short) - len(kept)
    if dropped:
        note = f"\n{TRUNCATED_NOTE} ({plural(dropped, 'more rollout')} not shown)\n"
    return head + "".join(kept) + note


def _md(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|")


def _md_block(r: RolloutPlan, limit: int | None) -> str:
    facts = [("change", f"{r.change}: {'; '.join(r.why)}")]
    if r.change is not Change.REMOVED:
        facts += [
            ("stage", str(r.stage)),
            ("strategy", strategy_text(r.strategy)),
            ("approvals", approvals_text(r)),
            ("signatures", signatures_text(r)),
            ("robots to update", f"{len(r.to_update)} of {len(r.eligible)} eligible"),
        ]
        if r.not_before is not None:
            facts.append(("not before", r.not_before.isoformat()))
        if r.requires:
            facts.append(("requires", requires_text(r)))
    out = [f"\n<details><summary>{_md(_summary(r))}</summary>\n", "| | |", "|---|---|"]
    out += [f"| {key} | {_md(value)} |" for key, value in facts]
    if r.waves:
        out += ["", "| wave | robots | gate | devices |", "|---|---|---|---|"]
        for wave in r.waves:
            gate = gate_text(wave, wave.index == len(r.waves) - 1)
            devices = robots_text(wave.devices, limit)
            out.append(f"| {wave.index + 1} {wave.name} | {len(wave.devices)} | {_md(gate)} | {devices} |")
        starts = [(w, r.schedule[w.index]) for w in r.waves if w.devices and w.index < len(r.schedule)]
        if starts:
            out += ["", "| wave | could start | robots' maintenance windows (local time) |", "|---|---|---|"]
            for wave, start in starts:
                could, *robots = start_lines(r, start, wave.index)
                windows = "<br>".join(_md(line.strip()) for line in robots) or "—"
                when = _md(could.removeprefix("could start: "))
                out.append(f"| {wave.index + 1} {wave.name} | {when} | {windows} |")
    if r.waiting:
        out += ["", "| waiting for | robots |", "|---|---|"]
        out += [f"| {reason} | {robots_text(ids, limit)} |" for reason, ids in waiting_by_reason(r).items()]
    if r.unplaced or r.skipped or r.requirement_waits:
        out += ["", "| not updated | robots |", "|---|---|"]
        if r.unplaced:
            out.append(f"| in no wave | {robots_text(r.unplaced, limit)} |")
        if r.requirement_waits:
            out.append(f"| {REQUIREMENT_WAITS} | {robots_text(r.requirement_waits, limit)} |")
        out += [
            f"| skipped: {reason} | {robots_text(ids, limit)} |"
            for reason, ids in skipped_by_reason(r).items()
        ]
    if r.config_changes:
        shown = r.config_changes if limit is None else r.config_changes[:limit]
        out += ["", "| config changes | keys (old → new) |", "|---|---|"]
        for change in shown:
            keys = ", ".join(f"{k.key} {value_text(k.old)} → {value_text(k.new)}" for k in change.keys)
            out.append(f"| {change.device} | {_md(keys)} |")
        if len(r.config_changes) > len(shown):
            out.append(f"| … | {len(r.config_changes) - len(shown)} more robots |")
    out.append("\n</details>\n")
    return "\n".join(out)


def _summary(r: RolloutPlan) -> str:
    if r.change is Change.REMOVED:
        return f"{title(r)} — removed"
    robots = plural(len(r.to_update), "robot")
    waves = plural(r.update_wave_count, "wave")
    return f"{title(r)} — {robots}, {waves}, approvals {approvals_text(r)}"


# --- json -----------------------------------------------------------------------------------------


def render_json(plan: Plan) -> str:
    return json.dumps(plan_to_dict(plan), indent=2, ensure_ascii=False) + "\n"


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "summary": summary_line(plan),
        "base": plan.base,
        "has_changes": plan.has_changes,
        "totals": {
            "robots_to_update": len(plan.robots_to_update),
            "robots_with_config_changes": len(plan.robots_with_config_changes),
            "waves": plan.wave_count,
            "skipped": len(plan.skipped_robots),
            "approvals_missing": plan.approvals_missing,
        },
        "rollouts": [_rollout_dict(r) for r in plan.rollouts],
    }


def _rollout_dict(r: RolloutPlan) -> dict[str, Any]:
    return {
        "name": r.name,
        "change": r.change.value,
        "why": list(r.why),
        "app": r.app,
        "version": r.version,
        "previous_version": r.previous_version,
        "release_found": r.release_found,
        "stage": r.stage.value if r.stage is not None else None,
        "strategy": r.strategy.model_dump(mode="json") if r.strategy is not None else None,
        "not_before": r.not_before.isoformat() if r.not_before is not None else None,
        "waves": [_wave_dict(w, r.schedule[w.index] if w.index < len(r.schedule) else None) for w in r.waves],
        "unplaced": list(r.unplaced),
        "skipped": [{"device": d, "reason": reason.value} for d, reason in r.skipped],
        "to_update": list(r.to_update),
        "config_changes": [
            {"device": c.device, "keys": [_key_dict(k) for k in c.keys]} for c in r.config_changes
        ],
        "approvals": {
            "required": r.approvals_required,
            "present": r.approvals.present if r.approvals is not None else None,
            "approvers": list(r.approvals.approvers) if r.approvals is not None else [],
            "missing": r.approvals_missing,
        },
        "signatures": _signatures_dict(r),
        "requires": list(r.requires),
        "requirement_waits": list(r.requirement_waits),
        "waiting": [{"device": d, "reason": reason.value} for d, reason in r.waiting.items()],
    }


def _key_dict(change: KeyChange) -> dict[str, Any]:
    out: dict[str, Any] = {"key": change.key}
    if change.old is not UNSET:
        out["old"] = change.old
    if change.new is not UNSET:
        out["new"] = change.new
    return out


def _wave_dict(w: PlannedWave, start: WaveStart | None) -> dict[str, Any]:
    out = {
        "index": w.index,
        "name": w.name,
        "action": w.action.value,
        "devices": list(w.devices),
        "soak_seconds": w.soak_seconds,
        "failure_threshold": w.failure_threshold.model_dump(mode="json"),
        "min_reported_percent": w.min_reported_percent,
        "manual_promotion": w.manual_promotion,
    }
    if start is not None:
        out["could_start"] = None if start.earliest is None else start.earliest.isoformat()
        out["maintenance_windows"] = [
            {
                "device": robot.device,
                "timezone": robot.timezone,
                "local_now": robot.local_now.isoformat(),
                "windows": list(robot.windows),
                "opens_at": None if robot.opens_at is None else robot.opens_at.isoformat(),
            }
            for robot in start.robots
        ]
    return out


def _signatures_dict(r: RolloutPlan) -> dict[str, Any] | None:
    if r.signatures is None:
        return None
    return {"verified": r.signatures.verified, "required": r.signatures.required, "ok": r.signatures.ok}
