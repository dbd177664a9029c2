"""The README's main job: `fleetcd demo` tells the whole story with real processes, and cleans up.

The demo runs as a user runs it (a subprocess of the `fleetcd` console script) with a marker in its
environment. Everything it starts inherits the marker, except the robots' apps, which the tarball
executor starts with a clean environment naming their supervisor folder (inside the demo's
directory). After the demo exits, no process with either may be alive.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO

import pytest
import yaml

from controller.state.layout import device_file
from tests.dockerd import DockerWorld, docker_world
from tests.test_pages_chromium import PageText, chromium

FLEETCD = [sys.executable, "-c", "from controller.cli import main; main()"]
MARK = "FLEETCD_DEMO_TEST_MARK"
__all__ = ["docker_world"]  # the session fixture of tests/dockerd.py
DEMO_LIMIT_SECONDS = 300  # the demo itself aims at under two minutes; this only stops a hang


def leftovers(mark: str, folder: Path) -> list[str]:
    """Live processes carrying ``mark`` in their environment or supervised from inside ``folder``."""
    wanted = f"{MARK}={mark}".encode()
    supervisor = f"FLEETCD_SUPERVISOR={folder.resolve()}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if state != "Z" and any(item == wanted or item.startswith(supervisor) for item in environ):
            found.append(f"{entry.name}: {cmdline}")
    return found


def demo(*args: str, mark: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, MARK: mark, **(env or {})}
    return subprocess.run(
        [*FLEETCD, "demo", *args], capture_output=True, text=True, timeout=DEMO_LIMIT_SECONDS, env=environment
    )


@pytest.mark.slow
def test_demo_rolls_out_halts_a_failing_canary_and_leaves_nothing_running(
    tmp_path: Path, gpg_available: str
) -> None:
    kept, mark = tmp_path / "demo", uuid.uuid4().hex
    done = demo("--keep", str(kept), mark=mark)
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr
    assert "[signature_missing]" in out  # 1.0.0 before it was signed
    assert "Plan: 6 robots to update in 3 waves, 0 skipped, 0 approvals missing." in out
    assert "All 6 robots run navstack 1.0.0." in out
    # The robot-level rollback, with the app's own reason, and the controller's halt.
    assert re.search(
        r"amr-tyo-02: its agent rolled back to 1\.0\.0: unhealthy \(probe_failed\).*"
        r"map tokyo-floor3: unreadable by the 1\.1\.0 map loader",
        out,
    )
    assert "rollout navstack generation 2: halted (failure_threshold_crossed)" in out
    assert re.search(
        r"amr-chi-01: (healthy on 1\.1\.0, but its wave failed|its 1\.1\.0 deployment was withdrawn)", out
    )
    # on_halt: rollback_all (the default): staging had passed on 1.1.0 and goes back too.
    assert (
        "amr-ber-01: its staging wave had passed on 1.1.0; the halt (on_halt: rollback_all) "
        "sent it back to 1.0.0" in out
    )
    assert "production never got 1.1.0; robots still on it: none (every robot runs 1.0.0 again)" in out
    # A config change is a rollout: re-approved, planned per robot, out in waves, restarted apps.
    assert "Plan: 5 robots to update in 3 waves (5 with new config), 0 skipped, 0 approvals missing." in out
    assert "    amr-tyo-01: max_speed_mps 1.2 → 0.9\n" in out
    assert "rollout navstack (navstack@1.0.0, gen 4): completed" in out
    for robot in ("amr-ber-01", "amr-ber-02", "amr-chi-01", "amr-chi-02", "amr-tyo-01"):
        assert f"  {robot}: navstack 1.0.0 runs with max_speed_mps 0.9\n" in out
    assert "  amr-tyo-02: navstack 1.0.0 runs with max_speed_mps 0.8 (its own device config)" in out
    assert re.search(r"amr-tyo-02 +tokyo +online .*navstack 1\.0\.0 \(deployed\)", out)
    assert "audit log intact" in out
    assert "# Receipt: rollout `navstack` generation 2" in out
    assert "- **On halt:** `rollback_all`" in out
    assert re.search(r"- \*\*Rolled back:\*\* amr-ber-01, amr-chi-01", out)
    assert "signature verified: receipts/navstack/2.yaml signed by the controller key" in done.stderr
    # It ends with the question after an incident: what ran on amr-tyo-02 while 1.1.0 went out.
    asked = re.search(r"\$ fleetcd history amr-tyo-02 --at (\S+) --repo", out)
    assert asked is not None, out[-3000:]
    answer = out[asked.end() :]
    assert "navstack: 1.1.0 dispatched, not yet applied; running 1.0.0" in answer, answer[:3000]
    assert re.search(r"running: 1\.0\.0 deployment dep-[0-9a-f]{24}; robot says deployed", answer)
    assert "handed: 1.1.0 deployment dep-" in answer
    assert answer.count("wave 1 canary") == 2  # the running deployment's and the one being applied
    assert "approved by approver-1 (" in answer and "approver-2 (" in answer
    assert "asked for by main commit" in answer and '"Publish navstack 1.1.0 and roll it out"' in answer
    assert "the robot's last report before the instant" in answer
    page = kept / "status.html"
    assert f"Status page (the state branch's status.html): {page}" in out
    assert page.read_text().lstrip().lower().startswith("<!doctype html")
    assert (kept / "fleet" / "fleet.yaml").is_file() and (kept / "fleet.git" / "HEAD").is_file()
    assert list((kept / "gnupg").glob("*.kbx")) or list((kept / "gnupg").glob("pubring*"))
    assert leftovers(mark, kept) == []
    halted_page_says_what_the_records_say(kept, tmp_path)


def _git_show(repo: Path, spec: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), "show", spec], capture_output=True, text=True, check=True)
    return done.stdout


def halted_page_says_what_the_records_say(kept: Path, tmp_path: Path) -> None:
    """The demo's status.html right after its halt, parsed by headless Chromium, against the
    records of the same state-branch commit: what each robot runs, production never queued, the
    production cohort's robots per wave, and amr-tyo-02's whole failure message."""
    repo = kept / "fleet.git"
    commits = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "fleetcd/state"], capture_output=True, text=True, check=True
    ).stdout.split()
    at = next(
        c for c in commits if json.loads(_git_show(repo, f"{c}:rollouts/navstack.json"))["phase"] == "halted"
    )
    rollout = json.loads(_git_show(repo, f"{at}:rollouts/navstack.json"))
    page = tmp_path / "halted.html"
    page.write_text(_git_show(repo, f"{at}:status.html"), encoding="utf-8")
    result = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    dom = PageText()
    dom.feed(result.stdout)

    waves = {w["name"]: w["devices"] for w in rollout["waves"]}
    for device in sorted(d for members in waves.values() for d in members):
        records = json.loads(_git_show(repo, f"{at}:{device_file(device)}"))["records"]
        ran = [r for r in records if r["activity"] == "deployed"]
        running = max(ran, key=lambda r: r["created_at"])["version"]
        (title,) = [t for t in dom.titles if t.startswith(f"{device} (")]
        assert f"runs {running}" in title, title
        if device == "amr-tyo-02":
            assert "runs 1.0.0 (deployment 1.1.0)" in title
            message = max(records, key=lambda r: r["created_at"])["events"][-1]["message"]
            (row,) = [r for r in dom.rows if r and r[0] == device]
            assert row[-1] == message  # whole, not cut
    (head,) = [h for h in dom.heads if h.startswith("production")]
    assert f"{len(waves['production'])} not dispatched (halted)" in head
    assert not any("queued" in h for h in dom.heads)
    (cohort,) = [r for r in dom.rows if r and r[0] == "production"]
    assert cohort[2] == "6" and cohort[3] == "in waves: " + " · ".join(
        f"{n} {len(d)}" for n, d in waves.items()
    )


def _read_until(stream: IO[str], pattern: str, limit_s: float) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + limit_s
    for line in stream:
        seen.append(line)
        if re.search(pattern, line) or time.monotonic() > deadline:
            break
    return "".join(seen)


@pytest.mark.slow
def test_interrupted_demo_stops_every_process_and_removes_its_fleet(gpg_available: str) -> None:
    mark = uuid.uuid4().hex
    proc = subprocess.Popen(
        [*FLEETCD, "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, MARK: mark},
        start_new_session=True,  # Ctrl-C reaches the demo's group, never pytest
    )
    assert proc.stdout is not None
    try:
        # Interrupted once a robot runs its app: agents, controller and apps are all up.
        seen = _read_until(proc.stdout, r"amr-ber-01: runs 1\.0\.0", limit_s=DEMO_LIMIT_SECONDS)
        assert "amr-ber-01: runs 1.0.0" in seen, seen[-3000:]
        home = Path(re.search(r"created \d+ files in (\S+)/fleet;", seen)[1])  # type: ignore[index]
        assert home.is_dir()
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "interrupted: stopping the controller, the agents and their apps" in rest
    assert not home.exists()
    assert leftovers(mark, home) == []


def test_demo_docker_without_an_engine_exits_4_before_creating_anything(tmp_path: Path) -> None:
    kept = tmp_path / "demo"
    done = demo(
        "--docker", "--keep", str(kept), mark="none", env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"}
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert f"Docker engine not reachable at unix://{tmp_path}/no.sock" in done.stderr
    assert not kept.exists()


@pytest.mark.slow
@pytest.mark.docker
def test_demo_docker_runs_the_story_as_containers_on_one_engine_and_removes_them(
    tmp_path: Path, gpg_available: str, docker_world: DockerWorld
) -> None:
    kept, mark = tmp_path / "demo", uuid.uuid4().hex
    done = demo("--docker", "--keep", str(kept), mark=mark, env={"DOCKER_HOST": docker_world.base_url})
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr
    assert "(real processes, docker executor)" in out
    assert re.search(r"its app at 127\.0\.0\.1:\d+/fleetcd-demo/navstack@sha256:[0-9a-f]{64}", out)
    assert "All 6 robots run navstack 1.0.0." in out
    assert re.search(
        r"amr-tyo-02: its agent rolled back to 1\.0\.0: unhealthy \(probe_failed\).*"
        r"map tokyo-floor3: unreadable by the 1\.1\.0 map loader",
        out,
    )
    assert "rollout navstack generation 2: halted (failure_threshold_crossed)" in out
    assert "audit log intact" in out
    assert "  amr-ber-01: navstack 1.0.0 runs with max_speed_mps 0.9\n" in out  # config-only, restarted
    config = yaml.safe_load((kept / "robots" / "amr-tyo-02" / "agent.yaml").read_text())
    assert config["executor"] == "docker" and config["docker"]["base_url"] == docker_world.base_url
    # Cleaned up: no container, no image of the run's registry left on the engine, registry stopped.
    containers = docker_world.client.containers.list(all=True, filters={"label": "dev.fleetcd.app=navstack"})
    assert containers == []
    assert not [t for i in docker_world.client.images.list() for t in i.tags if "fleetcd-demo/" in t]
    assert leftovers(mark, kept) == []


def test_demo_keep_refuses_a_directory_with_something_in_it(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    done = demo("--keep", str(tmp_path), mark="none")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "not empty; --keep needs a new or empty directory" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
