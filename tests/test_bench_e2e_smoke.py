"""The end-to-end rollout benchmark still runs: a tiny fleet, every key the issue note quotes.

Speed is never asserted here (the benchmark reports it); only that every simulated robot applied
the release through the real controller, real git served by ``git daemon`` and real gpg, and that
the git server's CPU was actually measured.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from bench.e2e_rollout import (
    SERVER_SETTINGS,
    Probe,
    pack_server_refs,
    publish,
    scratch_parent,
    shard_names,
    status_repositories,
)
from tests.gitolite import server_settings
from tests.test_bench_smoke import run_bench


@pytest.mark.slow
def test_e2e_bench_takes_every_robot_from_merge_to_applied_and_measures_the_server(
    tmp_path: Path, gpg_available: str
) -> None:
    result = run_bench(
        "e2e_rollout",
        tmp_path,
        *("--robots", "8", "--wave-percents", "100", "--poll-seconds", "20", "--apply-seconds", "5"),
        *("--status-shards", "0"),  # the setup of the runs before status shards: the fleet repository
    )

    assert result["stopped"] == "done"
    assert result["summary"]["applied"] == 8 and result["summary"]["failed"] == 0
    assert 0 < result["merge_to_applied_p50_s"] <= result["merge_to_applied_p99_s"]
    # Nobody applies before one apply has passed after the merge, nor later than a poll plus apply.
    assert 5 <= result["merge_to_applied_p99_s"] <= 1.2 * 20 + 5
    assert result["goal_p99_s"] == 1.2 * 20 + 2 * 5
    assert result["server_cpu_s"] > 0  # the daemon served real polls and pushes
    assert result["status_shards"] == 0 and result["status_shard_urls"] == {}
    assert result["costs"]["pushes"] >= 16  # applying + deployed from every robot
    assert result["costs"]["gpg_checks"] < result["costs"]["verifications"]
    assert {"goal_met", "goal_met_with_first_reconcile", "first_reconcile_wall_s"} <= set(result)
    assert [w["action"] for w in result["waves"]] == ["deploy"]
    (wave,) = result["per_wave"]
    assert wave["robots"] == 8 and wave["start_s"] == 0.0
    assert wave["reconcile_wall_s"]["dispatching"] == result["first_reconcile_wall_s"]


@pytest.mark.slow
def test_e2e_bench_reports_each_wave_of_a_rollout_with_soak(
    tmp_path: Path, gpg_available: str, request: pytest.FixtureRequest
) -> None:
    soak, apply = 30, 5
    # A short path: gpg-agent's socket goes under it, and pytest's tmp_path is too long for one.
    scratch = Path(tempfile.mkdtemp(prefix="e2e-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    result = run_bench(
        "e2e_rollout",
        tmp_path,
        *("--robots", "10", "--wave-percents", "20", "30", "50", "--soak-seconds", str(soak)),
        *("--poll-seconds", "20", "--apply-seconds", str(apply), "--controller-seconds", "10"),
        *("--push-samples", "1", "--scratch", str(scratch), "--workers", "2"),
        *("--server-pack-seconds", "40"),
    )

    assert result["stopped"] == "done" and result["summary"]["applied"] == 10
    waves = result["per_wave"]
    assert [(w["wave"], w["robots"], w["applied"]) for w in waves] == [
        ("wave-1", 2, 2),
        ("wave-2", 3, 3),
        ("wave-3", 5, 5),
    ]
    for earlier, later in itertools.pairwise(waves):
        # A wave starts only after the one before it applied everywhere and soaked.
        assert later["start_s"] >= earlier["p99_applied_s"] + soak
    for wave in waves:
        # Nobody applies before its wave started plus one apply, p50 <= p99, both since the merge.
        assert (
            wave["start_s"] + apply
            <= wave["first_applied_s"]
            <= wave["p50_applied_s"]
            <= wave["p99_applied_s"]
        )
        assert wave["p99_since_start_s"] == round(wave["p99_applied_s"] - wave["start_s"], 3)
        # Every change of a robot's own reached it as a download; a wave's robots each had one at least.
        assert wave["downloads_per_robot"] >= wave["own_changes_per_robot"] >= 1
        assert wave["downloads_per_own_change"] >= 1
        assert wave["reconcile_wall_s"]["dispatching"] is not None
        assert wave["server_push_cpu_s"] > 0 and wave["pushes"] >= 2 * wave["robots"]
    # Every reconcile of the run is in one wave's window; the downloads add up.
    assert sum(w["reconciles"] for w in waves) == result["costs"]["reconciles"]
    assert result["downloads"] == result["costs"]["verifications"]
    assert {"goal_met", "downloads_goal_met", "goal_downloads_per_own_change"} <= set(result)
    # Waves 2 and 3 moved a few robots' refs; the others' next polls found theirs unmoved and were
    # counted, not run, except on the sampled robot (1 in 10: the first); downloads are unchanged.
    assert result["unmoved_poll_sample"] == 10
    assert result["costs"]["skipped_unmoved_polls"] >= 10 - 2 - 1
    assert result["downloads_goal_met"] and result["downloads"] == result["own_changes"]
    # Every reconcile sampled the machine's load; the repositories went to --scratch and are gone.
    assert all(r["load_1m"] >= 0 for r in result["reconciles"] if not r.get("end"))
    assert result["load_1m_during_run"]["min"] <= result["load_1m_during_run"]["max"]
    assert result["workers"] == 2
    assert list(scratch.iterdir()) == []
    # By default status goes to five shard repositories served by the push daemon, and the
    # controller read them: every wave advanced on the reports it ingested from them.
    assert result["status_shards"] == 5
    assert sorted(result["status_shard_urls"]) == ["s1", "s2", "s3", "s4", "s5"]
    assert all(url.startswith("git://127.0.0.1:") for url in result["status_shard_urls"].values())
    assert result["one_more_push_server_cpu_ms"]["unfiltered"] > 0
    # The server's cron packed the shards' refs every 40 simulated seconds, and the robots' later
    # pushes still landed (every wave applied).
    assert result["server_pack_seconds"] == 40
    assert result["server_packs"] >= int(result["simulated_seconds"] // 40) - 1 >= 1
    assert result["server_pack_cpu_s"] > 0


def test_e2e_bench_gives_each_status_shard_a_repository_with_the_server_settings(tmp_path: Path) -> None:
    server = publish(tmp_path, {"fleet.yaml": b"name: bench\n"})

    assert status_repositories(tmp_path, 0, server) == {"": server}
    shards = status_repositories(tmp_path, 3, server)

    assert list(shards) == shard_names(3) == ["s1", "s2", "s3"]
    assert len({path.name for path in shards.values()}) == 3 and server not in shards.values()
    for path in shards.values():
        for key, value in SERVER_SETTINGS:
            shown = subprocess.run(
                ["git", "--git-dir", str(path), "config", "--get", key], capture_output=True, text=True
            )
            assert shown.stdout.strip() == value, (path, key)


def loose_status_refs(repo: Path, devices: list[str], message: str = "report") -> None:
    """A status commit under each robot's ref, written as a loose ref file (as a push leaves it)."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    tree = subprocess.run(
        ["git", "--git-dir", str(repo), "mktree"], input=b"", capture_output=True, check=True
    ).stdout.strip()
    new = subprocess.run(
        ["git", "--git-dir", str(repo), "commit-tree", tree, "-m", message],
        env=env,
        capture_output=True,
        check=True,
    ).stdout.strip()
    for device in devices:
        subprocess.run(
            ["git", "--git-dir", str(repo), "update-ref", f"refs/fleetcd/status/{device}/report", new],
            check=True,
        )


def test_the_servers_cron_packs_a_shards_refs_and_removes_the_directories_packing_leaves(
    tmp_path: Path,
) -> None:
    repo = status_repositories(tmp_path, 1, tmp_path / "unused")["s1"]
    devices = [f"amr-{n:02d}" for n in range(5)]
    loose_status_refs(repo, devices)
    assert len(list((repo / "refs" / "fleetcd" / "status").iterdir())) == 5

    cpu = pack_server_refs(repo)

    assert cpu >= 0
    packed = (repo / "packed-refs").read_text()
    assert all(f"refs/fleetcd/status/{d}/report" in packed for d in devices)
    # git leaves each ref's directory; the cron line removes every empty one from refs/x/y/ down.
    assert not (repo / "refs" / "fleetcd" / "status").exists()
    assert list((repo / "refs" / "fleetcd").iterdir()) == []
    assert (repo / "refs" / "heads").is_dir() and (repo / "refs" / "tags").is_dir()
    listed = subprocess.run(
        ["git", "--git-dir", str(repo), "for-each-ref", "--format=%(refname)"], capture_output=True, text=True
    )
    assert listed.stdout.split() == [f"refs/fleetcd/status/{d}/report" for d in devices]
    # A robot's next push recreates its directory: git makes a ref's directories when they vanished.
    loose_status_refs(repo, devices[:1], "the next report")
    assert (repo / "refs" / "fleetcd" / "status" / devices[0] / "report").is_file()


def test_the_servers_cron_runs_at_the_first_reconcile_past_each_interval_and_only_on_the_shards(
    tmp_path: Path,
) -> None:
    shards = list(status_repositories(tmp_path, 2, tmp_path / "unused").values())
    for shard in shards:
        loose_status_refs(shard, ["amr-01"])
    probe = Probe(0, 0, pack_repos=tuple(shards), pack_seconds=600.0)

    rounds = []
    for at in (0.0, 30.0, 570.0, 600.0, 630.0, 1199.0, 1230.0, 2430.0, 2460.0):
        probe.cron(at)
        rounds.append(probe.packs)

    assert rounds == [0, 0, 0, 1, 1, 1, 2, 3, 3]  # a skipped interval is not made up twice
    assert probe.pack_cpu_s >= 0
    assert all((shard / "packed-refs").is_file() for shard in shards)
    never = Probe(0, 0, pack_repos=tuple(shards), pack_seconds=0.0)
    never.cron(10_000.0)
    assert never.packs == 0
    without_shards = Probe(0, 0, pack_seconds=600.0)
    without_shards.cron(10_000.0)
    assert without_shards.packs == 0


def test_a_cron_line_that_fails_is_an_error_not_a_silent_skip(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exited with"):
        pack_server_refs(tmp_path)  # not a repository: git pack-refs fails


def test_e2e_bench_serves_the_fleet_with_the_settings_docs_git_server_recommends(tmp_path: Path) -> None:
    documented = [argv[4:] for argv in server_settings()]

    server = publish(tmp_path, {"fleet.yaml": b"name: bench\n"})

    assert [list(pair) for pair in SERVER_SETTINGS] == documented
    for key, value in SERVER_SETTINGS:
        shown = subprocess.run(
            ["git", "--git-dir", str(server), "config", "--get", key], capture_output=True, text=True
        )
        assert shown.stdout.strip() == value, key
    # The merge is on main, as the controller expects it.
    log = subprocess.run(["git", "--git-dir", str(server), "log", "--format=%s", "main"], capture_output=True)
    assert log.stdout == b"merge\n"


def test_e2e_bench_puts_its_repositories_where_asked_else_on_tmpfs(tmp_path: Path) -> None:
    assert scratch_parent(tmp_path) == tmp_path
    shm = Path("/dev/shm")
    expected = shm if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None
    assert scratch_parent(None) == expected
