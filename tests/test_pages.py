"""Status pages: the view model's robot states and counts, STATUS.md's ladders and tables, and
status.html's self-containment, escaping and size at 10,000 robots.

The fleets here are built from real records moved by :mod:`controller.records.transitions`, so a
robot "failed" on the page failed the way the controller would record it. ``sample_fleet`` is also
what ``tests/test_pages_chromium.py`` renders in a real browser.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape
from typing import Any

import pytest

from controller.pages import build_view, render_status_html, render_status_md
from controller.pages.html import GRID_MAX_ROBOTS
from controller.pages.summary import FleetView, RobotState, robot_state, shorten
from controller.records.model import Action, Connectivity, DeploymentRecord, DeviceState, TargetStatus
from controller.records.transitions import apply_report, new_deployment, time_out
from controller.state.model import DeviceFile, RolloutPhase, RolloutState, WavePhase, WaveState
from fleetcd.compat import UTC
from fleetcd.models import Cohort, Device
from fleetcd.models.rollout import HaltPolicy

API = "fleetcd.dev/v1"
NOW = datetime(2024, 5, 14, 9, 30, tzinfo=UTC)
STARTED = NOW - timedelta(hours=2)
SHA = "ab" * 32
COMMIT = "3f2a9c1d" * 5
PROBE_FAILED = "health probe http://127.0.0.1:8080/healthz failed 3/3 attempts"


def device(device_id: str, site: str, **fields: Any) -> Device:
    doc = {"apiVersion": API, "kind": "Device", "id": device_id, "family": "amr", "site": site}
    return Device.model_validate(doc | {"hardware": {"model": "mk2", "revision": 3}} | fields)


def cohort(name: str, stage: str, members: Sequence[str]) -> Cohort:
    return Cohort.model_validate(
        {"apiVersion": API, "kind": "Cohort", "name": name, "stage": stage, "devices": list(members)}
    )


def record(rollout: str, device_id: str, wave: int, kind: str, message: str = "") -> DeploymentRecord | None:
    """A record moved to ``kind`` the way reports and deadlines move it; ``None`` if never dispatched."""
    if kind == "pending":
        return None
    action = Action.ROLLBACK if kind == "rollback_done" else Action.DEPLOY
    version = "2.3.1" if kind == "rollback_done" else "2.4.0"
    rec = new_deployment(
        rollout=rollout, generation=1, device=device_id, app="nav", version=version, release_sha256=SHA,
        wave=wave, action=action, target_status=TargetStatus.DEPLOYED, at=STARTED,
        deadline_at=STARTED + timedelta(minutes=30),
    )  # fmt: skip
    at = STARTED + timedelta(minutes=5)
    reports = {
        "queued": [],
        "offline": [("downloading", "none", "")],
        "downloading": [("downloading", "none", "")],
        "retrying": [("downloading", "retrying", message or "registry returned 503; retrying")],
        "deployed": [("downloading", "none", ""), ("deployed", "none", "")],
        "rollback_done": [("deployed", "none", "")],
        "failed": [("applying", "none", ""), ("failed", "failed", message or PROBE_FAILED)],
        "rolled_back": [
            ("watching", "none", ""),
            ("rolled_back", "none", message or "watch failed; on 2.3.1"),
        ],
        "timed_out": [("downloading", "none", "")],
    }[kind]
    for activity, error, text in reports:
        rec = apply_report(rec, activity, error, text, at)
    if kind == "timed_out":
        rec = time_out(rec, NOW)
    return rec


@dataclass
class Fleet:
    rollouts: list[RolloutState] = field(default_factory=list)
    files: dict[str, DeviceFile] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    cohorts: dict[str, Cohort] = field(default_factory=dict)

    def view(self, fleet: str | None = "acme-warehouses") -> FleetView:
        return build_view(self.rollouts, self.files, self.cohorts, self.devices, NOW, COMMIT, fleet=fleet)

    def add_rollout(
        self,
        name: str,
        phase: RolloutPhase,
        waves: Sequence[tuple[str, str, WavePhase, Sequence[str]]],
        *,
        reason: str | None = None,
        messages: dict[str, str] | None = None,
    ) -> None:
        """``waves``: (wave name, cohort stage, phase, one kind per robot); robots get fresh ids."""
        states = []
        for index, (wave_name, stage, wave_phase, kinds) in enumerate(waves):
            ids = [f"{wave_name}-{len(self.devices) + i:05d}" for i in range(len(kinds))]
            sites = ("berlin", "munich", "hamburg", "lyon")
            for i, (device_id, kind) in enumerate(zip(ids, kinds, strict=True)):
                self.devices[device_id] = device(device_id, sites[i % len(sites)])
                rec = record(name, device_id, index, kind, (messages or {}).get(device_id, ""))
                offline = kind == "offline"
                seen = NOW - (timedelta(hours=3) if offline else timedelta(minutes=i % 7))
                state = DeviceState(
                    device=device_id,
                    connectivity=Connectivity.OFFLINE if offline else Connectivity.ONLINE,
                    last_seen=seen,
                )
                self.files[device_id] = DeviceFile(state=state, records=() if rec is None else (rec,))
            self.cohorts[f"{wave_name}-robots"] = cohort(f"{wave_name}-robots", stage, ids)
            states.append(WaveState(index=index, name=wave_name, devices=tuple(ids), phase=wave_phase))
        self.rollouts.append(
            RolloutState(
                name=name, app="nav", version="2.4.0", release_path="releases/nav/2.4.0.yaml",
                release_sha256=SHA, generation=1, generation_fingerprint="f" * 64, previous_version="2.3.1",
                phase=phase, reason=reason, waves=tuple(states), commit=COMMIT, created_at=STARTED,
                updated_at=NOW,
            )
        )  # fmt: skip


def mix(**counts: int) -> list[str]:
    return [kind for kind, n in counts.items() for _ in range(n)]


def sample_fleet(messages: dict[str, str] | None = None) -> Fleet:
    """About 60 robots over three waves in every state a page can show."""
    fleet = Fleet()
    fleet.add_rollout(
        "nav-2-4",
        RolloutPhase.PROGRESSING,
        [
            ("staging", "staging", WavePhase.PASSED, mix(deployed=5)),
            ("canary", "canary", WavePhase.PASSED, mix(deployed=12, failed=1, rolled_back=1, offline=1)),
            (
                "production",
                "production",
                WavePhase.RUNNING,
                mix(
                    deployed=16,
                    failed=2,
                    timed_out=1,
                    downloading=6,
                    retrying=2,
                    queued=6,
                    offline=3,
                    pending=4,
                ),
            ),
        ],
        messages=messages,
    )
    return fleet


def test_status_md_has_a_mermaid_ladder_per_rollout_and_cohort_tables() -> None:
    fleet = sample_fleet()
    fleet.add_rollout(
        "zz-lidar-fw",
        RolloutPhase.HALTED,
        [
            ("lab", "staging", WavePhase.PASSED, mix(deployed=2)),
            ("pilot", "canary", WavePhase.FAILED, mix(failed=2, rollback_done=1)),
        ],
        reason="wave pilot: 3 of 3 failed, threshold 1",
    )
    md = render_status_md(fleet.view())

    assert md.startswith("# Fleet status: acme-warehouses\n")
    assert f"main commit `{COMMIT}`" in md
    assert md.count("```mermaid\nflowchart LR\n") == 2
    assert 'w1["canary<br/>12/15 ok · 1 failed · 1 rolled back · 1 offline<br/><i>passed</i>"]:::passed' in md
    assert "  w0 --> w1 --> w2\n" in md
    assert "classDef failed fill:#fee2e2" in md
    assert "**Phase: halted** — wave pilot: 3 of 3 failed, threshold 1" in md
    assert "#### cohort `canary-robots` (canary): 15 robots" in md
    assert md.count("| robot | site | status | version | last seen |") == 5
    assert "| `canary-00017` | berlin | failed: health probe" in md
    # the robot rolled back by the controller shows the release it is back on
    assert re.search(r"\| `pilot-\d+` \| \w+ \| rolled back \| 2\.3\.1 \|", md)
    # the halted rollout needs a person: it comes first although its name sorts last
    assert md.index("## `zz-lidar-fw`") < md.index("## `nav-2-4`")


@pytest.mark.parametrize(
    ("kind", "connectivity", "expected"),
    [
        ("pending", Connectivity.ONLINE, RobotState.QUEUED),
        ("pending", Connectivity.OFFLINE, RobotState.OFFLINE),
        ("queued", Connectivity.UNKNOWN, RobotState.QUEUED),
        ("downloading", Connectivity.ONLINE, RobotState.IN_PROGRESS),
        ("retrying", Connectivity.ONLINE, RobotState.IN_PROGRESS),
        ("downloading", Connectivity.OFFLINE, RobotState.OFFLINE),
        ("deployed", Connectivity.OFFLINE, RobotState.SUCCEEDED),
        ("failed", Connectivity.OFFLINE, RobotState.FAILED),
        ("timed_out", Connectivity.OFFLINE, RobotState.TIMED_OUT),
        ("rolled_back", Connectivity.ONLINE, RobotState.ROLLED_BACK),
        ("rollback_done", Connectivity.ONLINE, RobotState.ROLLED_BACK),
    ],
    ids=lambda v: v.value if isinstance(v, Connectivity | RobotState) else v,
)
def test_robot_state_decision_table(kind: str, connectivity: Connectivity, expected: RobotState) -> None:
    assert robot_state(record("r", "d", 0, kind), connectivity) is expected


def test_wave_counts_add_up_to_the_wave_and_name_offline_apart_from_failed() -> None:
    view = sample_fleet().view()
    production = view.rollouts[0].waves[2]
    counts = dict(production.counts.by_state)
    assert production.counts.total == len(production.robots) == 40
    assert counts[RobotState.FAILED] == 2
    assert counts[RobotState.TIMED_OUT] == 1
    assert counts[RobotState.OFFLINE] == 3
    assert counts[RobotState.QUEUED] == 10  # queued plus not yet dispatched


def test_decommissioned_robots_are_left_out_of_the_counts() -> None:
    fleet = sample_fleet()
    gone = fleet.rollouts[0].waves[0].devices[0]
    fleet.devices[gone] = fleet.devices[gone].model_copy(update={"decommissioned": True})
    staging = fleet.view().rollouts[0].waves[0]
    assert staging.counts.total == 4
    assert gone not in {r.device for r in staging.robots}


HOSTILE = '<script>alert(1)</script> | ]) ``` "><img src=https://evil.test/x>'


def test_hostile_robot_message_is_escaped_everywhere() -> None:
    fleet = sample_fleet()
    victim = fleet.rollouts[0].waves[1].devices[12]  # a failed canary robot
    fleet = sample_fleet(messages={victim: HOSTILE})
    view = fleet.view()
    html, md = render_status_html(view), render_status_md(view)

    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in md and "<img" not in md
    row = next(line for line in md.splitlines() if f"`{victim}`" in line)
    assert len(re.split(r"(?<!\\)\|", row)) == 7  # five cells: the message's pipe did not add one
    assert "```" not in row


def test_hostile_wave_name_cannot_leave_its_mermaid_label() -> None:
    fleet = sample_fleet()
    rollout = fleet.rollouts[0]
    evil = rollout.waves[0].model_copy(update={"name": 'x"] --> pwn["<b>#quot;'})
    fleet.rollouts[0] = rollout.model_copy(update={"waves": (evil, *rollout.waves[1:])})
    md = render_status_md(fleet.view())
    node = next(line for line in md.splitlines() if line.startswith("  w0["))
    assert node.count('"') == 2
    assert "<b>" not in node and 'pwn["' not in md
    assert "#35;quot;" in node  # an entity code in the name stays literal text


def test_status_html_is_self_contained() -> None:
    html = render_status_html(sample_fleet().view())
    assert html.startswith("<!doctype html>")
    assert "<script" not in html.lower()
    assert not re.search(r"\b(src|href|xlink:href)\s*=", html), "no resource references at all"
    assert not re.search(r"@import|@font-face|<link|<iframe|<object|<embed", html)
    assert set(re.findall(r"url\(([^)]*)\)", html)) <= {"#hatch-f", "#hatch-t"}
    assert "Content-Security-Policy" in html
    for name in ("staging", "canary", "production"):
        assert f"<h3>{name}</h3>" in html
    assert html.count('<svg class="grid"') == 3
    assert html.count('<svg class="bar"') == 3


def test_legend_and_counts_name_every_colour_in_words() -> None:
    html = render_status_html(sample_fleet().view())
    legend = html.split('<section class="legend"', 1)[1].split("</section>", 1)[0]
    for state in RobotState:
        assert f"</svg>{state.label}</span>" in legend
    assert "16/40 ok · 2 failed · 1 timed out · 8 in progress · 10 queued · 3 offline" in html


def test_pages_render_the_same_bytes_for_the_same_state() -> None:
    assert render_status_html(sample_fleet().view()) == render_status_html(sample_fleet().view())
    assert render_status_md(sample_fleet().view()) == render_status_md(sample_fleet().view())


def test_an_empty_fleet_still_renders_both_pages() -> None:
    view = build_view([], {}, {}, {}, NOW, None)
    assert "_No rollouts._" in render_status_md(view)
    assert "No rollouts." in render_status_html(view)
    assert "no main commit processed yet" in render_status_md(view)


def test_a_long_cohort_table_is_cut_but_keeps_its_failures() -> None:
    fleet = Fleet()
    fleet.add_rollout(
        "big",
        RolloutPhase.PROGRESSING,
        [("prod", "production", WavePhase.RUNNING, mix(deployed=300, failed=1))],
    )
    md = render_status_md(fleet.view())
    assert "| `prod-00300` |" in md  # the one failure sorts above 300 successes
    assert "… and 101 more" in md


def test_pages_stay_bounded_at_ten_thousand_robots() -> None:
    fleet = Fleet()
    kinds = mix(
        deployed=7000, failed=300, timed_out=100, rolled_back=100, downloading=1500, queued=600, offline=400
    )
    messages = {f"prod-{i:05d}": "x" * 500 for i in range(10_000)}  # the longest messages a record holds
    fleet.add_rollout(
        "fleetwide",
        RolloutPhase.PROGRESSING,
        [("prod", "production", WavePhase.RUNNING, kinds)],
        messages=messages,
    )
    view = fleet.view()
    md, html = render_status_md(view), render_status_html(view)

    assert len(md.encode()) < 200_000
    assert "… and 9,800 more" in md
    grid = html.split('<svg class="grid"', 1)[1].split("</svg>", 1)[0]
    assert grid.count("<rect ") == grid.count("<title>") == 10_000  # one square per robot
    assert len(html.encode()) < 2_500_000


def test_past_the_grid_budget_a_wave_is_a_bar_and_a_count_not_squares() -> None:
    """The first 15,000 robots are drawn; the next wave (6,000) would pass GRID_MAX_ROBOTS, so the
    page says how many it leaves out and where to look, and stays about the size the cap promises."""
    fleet = Fleet()
    fleet.add_rollout(
        "fleetwide",
        RolloutPhase.PROGRESSING,
        [
            ("first", "canary", WavePhase.RUNNING, mix(pending=15_000)),
            ("second", "production", WavePhase.PENDING, mix(pending=6_000)),
        ],
    )
    html = render_status_html(fleet.view())
    assert 15_000 + 6_000 > GRID_MAX_ROBOTS >= 15_000
    grids = [part.split("</svg>", 1)[0] for part in html.split('<svg class="grid"')[1:]]
    assert [grid.count("<rect ") for grid in grids] == [15_000], "one grid, for the first wave only"
    assert "6,000 robots: too many to draw; see STATUS.md and devices/." in html
    assert len(html.encode()) < 4_000_000


def test_a_hostile_withdrawal_reason_is_escaped_on_both_pages() -> None:
    fleet = sample_fleet()
    running = [
        d
        for d, f in fleet.files.items()
        if any(r.version == "2.4.0" and r.activity.value == "deployed" for r in f.records)
    ]
    withdrawals = {("nav", "2.4.0"): HOSTILE}
    view = build_view(
        fleet.rollouts, fleet.files, fleet.cohorts, fleet.devices, NOW, COMMIT, withdrawals=withdrawals
    )
    (withdrawn,) = view.withdrawn
    assert withdrawn.running == tuple(sorted(running)), "robots whose newest success is 2.4.0"
    html, md = render_status_html(view), render_status_md(view)
    assert "Withdrawn releases" in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html and "<img" not in html
    line = next(line for line in md.splitlines() if line.startswith("**Withdrawn: nav@2.4.0**"))
    assert "<script" not in line and "<img" not in line and f"Still running it ({len(running)})" in line


def test_a_halt_policy_is_named_on_both_pages() -> None:
    fleet = sample_fleet()
    halted = fleet.rollouts[0].model_copy(
        update={
            "phase": RolloutPhase.HALTED,
            "halt_policy": HaltPolicy.ROLLBACK_WAVE,
            "rolled_back_devices": ("a", "b"),
        }
    )
    view = build_view([halted], fleet.files, fleet.cohorts, fleet.devices, NOW, COMMIT)
    words = "on halt: rollback_wave (the failed wave goes back; passed waves keep the release): 2 rolled back"
    assert words in render_status_md(view)
    assert words in render_status_html(view)
    plain = build_view(fleet.rollouts, fleet.files, fleet.cohorts, fleet.devices, NOW, COMMIT)
    assert "on halt:" not in render_status_md(plain), "no halt, nothing said"


# The demo's fleet right after its halt (`fleetcd demo`, step 7): six robots on navstack 1.0.0,
# 1.1.0 passed staging, amr-tyo-02 failed its health check in canary and its agent went back to
# 1.0.0, the halt (on_halt: rollback_all) sent amr-ber-01 and amr-chi-01 back, and production was
# never dispatched. The production cohort holds every robot; its wave only those no earlier took.
DEMO_WAVES = {"staging": ["amr-ber-01"], "canary": ["amr-chi-01", "amr-tyo-02"]}
DEMO_WAVES["production"] = ["amr-ber-02", "amr-chi-02", "amr-tyo-01"]
DEMO_ROBOTS = sorted(d for members in DEMO_WAVES.values() for d in members)
DEMO_FAILURE = (
    "unhealthy (probe_failed): navstack 1.1.0: probe 'healthz' failed 4 time(s) in a row; "
    "map tokyo-floor3: unreadable by the 1.1.0 map loader"
)


def demo_record(
    device_id: str,
    generation: int,
    version: str,
    wave: int,
    reports: Sequence[tuple[str, str]],
    at: datetime,
    action: Action | None = None,
) -> DeploymentRecord:
    """A navstack record; generation 2's 1.0.0 is the halt's rollback unless ``action`` says."""
    if action is None:
        action = Action.ROLLBACK if generation == 2 and version == "1.0.0" else Action.DEPLOY
    rec = new_deployment(
        rollout="navstack", generation=generation, device=device_id, app="navstack", version=version,
        release_sha256=SHA, wave=wave, action=action, target_status=TargetStatus.DEPLOYED, at=at,
        deadline_at=at + timedelta(minutes=30),
    )  # fmt: skip
    for activity, text in reports:
        rec = apply_report(rec, activity, "failed" if activity == "rolled_back" else "none", text, at)
    return rec


def demo_halt_fleet(on_halt: RolloutPhase = RolloutPhase.HALTED) -> Fleet:
    fleet = Fleet()
    gen1, gen2, back = STARTED - timedelta(hours=1), STARTED, STARTED + timedelta(minutes=10)
    wave_of = {d: i for i, members in enumerate(DEMO_WAVES.values()) for d in members}
    for device_id in DEMO_ROBOTS:
        fleet.devices[device_id] = device(
            device_id, {"ber": "berlin", "chi": "chicago"}.get(device_id[4:7], "tokyo")
        )
        wave = wave_of[device_id]
        records = [demo_record(device_id, 1, "1.0.0", wave, [("deployed", "")], gen1)]
        if device_id == "amr-tyo-02":
            records.append(demo_record(device_id, 2, "1.1.0", wave, [("rolled_back", DEMO_FAILURE)], gen2))
        elif wave < 2:  # passed 1.1.0, then the halt sent it back
            records.append(demo_record(device_id, 2, "1.1.0", wave, [("deployed", "")], gen2))
            records.append(demo_record(device_id, 2, "1.0.0", wave, [("deployed", "")], back))
        state = DeviceState(device=device_id, connectivity=Connectivity.ONLINE, last_seen=NOW)
        fleet.files[device_id] = DeviceFile(state=state, records=tuple(records))
    for name, stage in (("staging", "staging"), ("canary", "canary"), ("production", "production")):
        members = DEMO_ROBOTS if name == "production" else DEMO_WAVES[name]
        fleet.cohorts[name] = cohort(name, stage, members)
    phases = (WavePhase.PASSED, WavePhase.FAILED, WavePhase.PENDING)
    waves = tuple(
        WaveState(index=i, name=name, devices=tuple(members), phase=phases[i])
        for i, (name, members) in enumerate(DEMO_WAVES.items())
    )
    fleet.rollouts.append(
        RolloutState(
            name="navstack", app="navstack", version="1.1.0", release_path="releases/navstack/1.1.0.yaml",
            release_sha256=SHA, generation=2, generation_fingerprint="f" * 64, previous_version="1.0.0",
            phase=on_halt, reason="failure_threshold_crossed", waves=waves, commit=COMMIT,
            created_at=STARTED, updated_at=NOW, halt_policy=HaltPolicy.ROLLBACK_ALL,
            rolled_back_devices=("amr-ber-01", "amr-chi-01"),
        )
    )  # fmt: skip
    return fleet


def md_row(md: str, device_id: str, cohort_name: str = "production") -> list[str]:
    """The cells of ``device_id``'s row in the cohort's table of STATUS.md."""
    table = md.split(f"#### cohort `{cohort_name}`", 1)[1].split("####", 1)[0]
    line = next(line for line in table.splitlines() if line.startswith(f"| `{device_id}` |"))
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_a_robot_whose_agent_rolled_back_shows_the_version_it_runs() -> None:
    view = demo_halt_fleet().view()
    robots = {r.device: r for w in view.rollouts[0].waves for r in w.robots}
    assert robots["amr-tyo-02"].running == "1.0.0", "its agent went back: it runs 1.0.0, not 1.1.0"
    assert robots["amr-ber-01"].running == "1.0.0", "the halt's rollback finished"
    assert robots["amr-ber-02"].running == "1.0.0", "never dispatched: still on generation 1's 1.0.0"
    md, html = render_status_md(view), render_status_html(view)
    assert md_row(md, "amr-tyo-02")[3] == "1.0.0 (deployment 1.1.0)"
    assert md_row(md, "amr-ber-01")[3] == "1.0.0"
    assert md_row(md, "amr-ber-02")[3] == "1.0.0"
    attention = html.split("<th>needs attention</th>", 1)[1]
    tyo = attention.split("<code>amr-tyo-02</code>", 1)[1].split("</tr>", 1)[0]
    assert "<td>1.0.0 (deployment 1.1.0)</td>" in tyo


def test_a_robot_mid_deployment_shows_what_it_ran_before_until_it_reports_success() -> None:
    fleet = demo_halt_fleet(RolloutPhase.PROGRESSING)
    at = NOW - timedelta(minutes=1)
    downloading = demo_record("amr-ber-02", 2, "1.1.0", 2, [("downloading", "")], at)
    file = fleet.files["amr-ber-02"]
    fleet.files["amr-ber-02"] = file.model_copy(update={"records": (*file.records, downloading)})
    robot = next(r for r in fleet.view().rollouts[0].waves[2].robots if r.device == "amr-ber-02")
    assert (robot.running, robot.version_text) == ("1.0.0", "1.0.0 (deployment 1.1.0)")


def test_robots_a_halt_left_undispatched_are_not_counted_as_queued() -> None:
    view = demo_halt_fleet().view()
    rollout = view.rollouts[0]
    production = rollout.waves[2]
    assert production.counts[RobotState.QUEUED] == 0
    assert production.counts[RobotState.NOT_DISPATCHED] == 3
    md, html = render_status_md(view), render_status_html(view)
    assert "production<br/>0/3 ok · 3 not dispatched (halted)<br/>" in md
    assert "queued" not in md.split("```mermaid", 1)[1], (
        "no wave, cohort or row of a halted rollout is queued"
    )
    assert md_row(md, "amr-chi-02")[2] == "not dispatched (halted)"
    assert "3 not dispatched (halted)" in html and " queued" not in html.split("</section>", 1)[1]
    # While the rollout still runs, a robot without a record is on its way: queued.
    running = demo_halt_fleet(RolloutPhase.PROGRESSING).view().rollouts[0].waves[2]
    assert running.counts[RobotState.QUEUED] == 3 and running.counts[RobotState.NOT_DISPATCHED] == 0


def test_a_cohort_spanning_waves_says_how_many_of_its_robots_each_wave_holds() -> None:
    view = demo_halt_fleet().view()
    rollout = view.rollouts[0]
    wave = rollout.waves[2]
    table = next(t for t in rollout.cohorts if t.name == "production")
    assert (table.counts.total, wave.counts.total) == (6, 3)
    assert dict(table.by_wave) == {"staging": 1, "canary": 2, "production": 3}
    assert sum(n for _, n in table.by_wave) == table.counts.total
    md, html = render_status_md(view), render_status_html(view)
    assert (
        "#### cohort `production` (production): 6 robots in waves: staging 1 · canary 2 · production 3 —"
        in md
    )
    assert "#### cohort `canary` (canary): 2 robots in wave canary —" in md
    assert "<td>in waves: staging 1 · canary 2 · production 3</td>" in html


def test_a_long_failure_message_is_never_cut_mid_word() -> None:
    view = demo_halt_fleet().view()
    md, html = render_status_md(view), render_status_html(view)
    cell = md_row(md, "amr-tyo-02")[2]
    assert cell.endswith("…"), cell
    shown = cell.removeprefix("rolled back: ").removesuffix("…").replace("\\_", "_")
    assert DEMO_FAILURE.startswith(shown) and DEMO_FAILURE[len(shown)] == " ", "cut at a word boundary"
    assert len(shown) <= 80
    # status.html's attention table shows the whole message (bounded to 500 chars by the records).
    assert escape(DEMO_FAILURE) in html


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("short enough", "short enough"),
        ("a " * 50, ("a " * 40).strip() + "…"),  # 79 chars and the ellipsis
        ("x" * 200, "x" * 79 + "…"),  # no word boundary at all: cut, still with the ellipsis
        ("word " * 15 + "tail", ("word " * 15).strip() + " tail"),
    ],
    ids=["fits", "many-words", "one-long-word", "exactly-fits"],
)
def test_shorten_cuts_at_a_word_and_marks_the_cut(text: str, shown: str) -> None:
    assert shorten(text) == shown
    assert len(shorten(text)) <= 80


def unchanged_fleet() -> Fleet:
    """The demo's last rollout: generation 2 of navstack 1.0.0 completed, and amr-tyo-02, already on
    1.0.0 with the config it should run, kept its generation-1 record (no new deployment)."""
    fleet = demo_halt_fleet(RolloutPhase.COMPLETED)
    rollout = fleet.rollouts[0]
    fleet.rollouts[0] = rollout.model_copy(update={"version": "1.0.0", "halt_policy": None, "reason": None})
    for device_id, file in fleet.files.items():
        gen1 = file.records[:1]
        if device_id != "amr-tyo-02":
            again = demo_record(device_id, 2, "1.0.0", 0, [("deployed", "")], NOW, Action.DEPLOY)
            gen1 += (again,)
        fleet.files[device_id] = file.model_copy(update={"records": gen1})
    return fleet


def view_with_configs(fleet: Fleet, config: str | None) -> FleetView:
    return build_view(
        fleet.rollouts,
        fleet.files,
        fleet.cohorts,
        fleet.devices,
        NOW,
        COMMIT,
        config_of=lambda app, d: config,
    )


def test_a_robot_that_already_runs_the_release_counts_as_succeeded_like_the_controller_counts_it() -> None:
    fleet = unchanged_fleet()
    view = view_with_configs(fleet, None)  # demo_record writes no config: none applies
    canary = view.rollouts[0].waves[1]
    assert canary.counts[RobotState.SUCCEEDED] == 2 and canary.counts[RobotState.QUEUED] == 0
    tyo = next(r for r in canary.robots if r.device == "amr-tyo-02")
    assert (tyo.status, tyo.running) == ("deployed, unchanged since generation 1", "1.0.0")
    md = render_status_md(view)
    assert md_row(md, "amr-tyo-02")[2:4] == ["deployed, unchanged since generation 1", "1.0.0"]
    assert "queued" not in md


def test_a_robot_whose_config_changed_is_not_counted_as_already_current() -> None:
    fleet = unchanged_fleet()
    canary = view_with_configs(fleet, "c" * 64).rollouts[0].waves[1]
    assert canary.counts[RobotState.QUEUED] == 1, "it needs a deployment with the new config"
    halted = unchanged_fleet()
    halted.rollouts[0] = halted.rollouts[0].model_copy(update={"phase": RolloutPhase.HALTED})
    assert view_with_configs(halted, "c" * 64).rollouts[0].waves[1].counts[RobotState.NOT_DISPATCHED] == 1
    assert view_with_configs(halted, None).rollouts[0].waves[1].counts[RobotState.SUCCEEDED] == 2
