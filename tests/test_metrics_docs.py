"""The metrics documentation and example alerts stay true: real promtool, and the names the code uses.

docs/alerts.yaml loads in ``promtool check rules`` and each alert fires (and stays quiet) where
docs/alerts.test.yaml says with ``promtool test rules``; every metric an alert or docs/metrics.md
names is one the controller or the agent really exports, and every metric they export is
documented.
"""

from __future__ import annotations

import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from agent.report.metrics import CycleFacts
from agent.report.metrics import render as agent_render
from controller.metrics import exposition
from fleetcd.compat import UTC

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NAME = re.compile(r"\bfleetcd_[a-z_]+\b")
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def run(promtool: str, *args: str) -> str:
    done = subprocess.run([promtool, *args], cwd=DOCS, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_example_alert_rules_load_in_promtool(promtool: str) -> None:
    out = run(promtool, "check", "rules", "alerts.yaml")
    rules = [r for g in yaml.safe_load((DOCS / "alerts.yaml").read_text())["groups"] for r in g["rules"]]
    assert f"{len(rules)} rules found" in out and len(rules) == 6


def test_the_example_alerts_fire_on_the_series_written_for_them(promtool: str) -> None:
    run(promtool, "test", "rules", "alerts.test.yaml")
    tested = {
        t["alertname"]
        for case in yaml.safe_load((DOCS / "alerts.test.yaml").read_text())["tests"]
        for t in case["alert_rule_test"]
    }
    assert {"FleetcdRolloutHalted", "FleetcdReconcileFailing", "FleetcdRobotStale"} <= tested


def family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def exported() -> set[str]:
    """Every family name the code registers (controller: from its source; agent: rendered)."""
    source = Path(exposition.__file__).read_text()  # the installed module (dev/test-minimums)
    names = {family(n) for n in re.findall(r'"(fleetcd_[a-z_]+)"', source)}
    now = datetime(2026, 5, 4, tzinfo=UTC)
    facts = CycleFacts(now, 60, True, 3, now + timedelta(days=1), 0, None, apps=["web"])
    text = agent_render(facts, {}).decode()
    return names | {family(n) for n in NAME.findall(text)}


def test_every_metric_the_docs_and_alerts_name_is_exported_and_every_exported_one_documented() -> None:
    documented = {family(n) for n in NAME.findall((DOCS / "metrics.md").read_text())}
    alerted = {family(n) for n in NAME.findall((DOCS / "alerts.yaml").read_text())}
    code = exported()
    assert alerted <= code, alerted - code
    assert documented <= code, documented - code
    # Agent metrics that only exist with an app or a report (app info, status, durations) are
    # documented too; the controller's are all named in its source.
    missing = {n for n in code if n not in documented}
    assert missing == set(), missing
