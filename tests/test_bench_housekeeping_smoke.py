"""The housekeeping benchmark still runs, and what it measures is what happened.

``bench.git_housekeeping`` at a tiny size with a pack limit of 2, housekeeping in the background as
the controller runs it: the packs it counts grow without housekeeping and are repacked with it, and
every ``git gc`` the controller started is timed once (not once more for each child git forks off
it, which is a copy of the ``gc`` until it execs: the first version counted those too). Its
``/proc`` sampler (:class:`bench.git_housekeeping.GitWatch`) sees the git processes this process
started and only those. Speed is never asserted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bench.git_housekeeping import GitWatch, report
from fleetcd.git.housekeeping import Policy, count, housekeep, settle
from tests.test_bench_smoke import run_bench
from tests.test_git_housekeeping import add_packs, bare


@pytest.mark.slow
def test_housekeeping_bench_counts_packs_and_times_each_background_repack_once(
    tmp_path: Path, gpg_available: str
) -> None:
    result = run_bench(
        "git_housekeeping",
        tmp_path,
        *("--robots", "200", "--reconciles", "4", "--reporting", "0.5"),
        *("--pack-limit", "2", "--no-strategies", "--background"),
    )

    assert result["robots"] == 200 and result["reporting_per_reconcile"] == 100
    assert result["background"] is True and result["pack_limit"] == 2
    before, after = result["before"], result["after"]
    assert [r["seq"] for r in before + after] == list(range(1, 9))
    # Without housekeeping every reconcile that ingests reports adds a pack to the mirror.
    packs = [r["packs"] for r in before]
    assert packs == sorted(packs) and packs[-1] > packs[0] and all(not r["repacks"] for r in before)
    # With it the mirror is repacked in the background, and a later reconcile reports it.
    repacked = [text for r in after for text in r["repacks"] if text.startswith("mirror: ")]
    assert repacked and all(" repacked " in text for text in repacked)
    assert after[-1]["packs"] < packs[-1]
    # Each gc the controller started is timed once, in the reconcile that saw it end or at the end.
    timed = [gc for r in after for gc in r["gc_ended"]] + result["sizes_after"]["gc_ended"]
    assert all(gc["where"].startswith("mirror-") and gc["where"].endswith(".git") for gc in timed), timed
    assert len(timed) == len(repacked) + len(result["sizes_after"]["settled"])
    assert all(gc["seconds"] >= 0 for gc in timed)
    assert all(r["git_peak_rss_mib"] >= 0 and r["load_1m"] >= 0 for r in before + after)
    text = (tmp_path / "git_housekeeping.txt").read_text()
    assert "git gc in" in text and "mirror, housekeeping on" in text
    assert report(result)[0].startswith("200 robots, 4 + 4 reconciles, 100 reports before each")


def test_the_watch_times_a_background_gc_once_and_sees_its_git_children_memory(tmp_path: Path) -> None:
    repo = bare(tmp_path / "r.git")
    add_packs(repo, 4, blobs=200, size=4096)
    with GitWatch(interval=0.002) as watch:
        assert housekeep(repo, Policy(pack_limit=1)) is None  # started, not waited for
        done = settle(repo, 120.0)
        taken = watch.take()

    assert done is not None and count(repo).packs == 1
    assert taken["gc_ended"] == [{"where": "r.git", "seconds": pytest.approx(done.seconds, abs=0.5)}]
    # gc, repack, pack-objects ...: each read its peak RSS from /proc while it ran.
    assert taken["git_peak_rss_mib"] > 0 and taken["git_peak_what"]
    assert watch.take()["gc_ended"] == []  # taken once


def test_the_watch_counts_git_this_process_started_and_not_git_started_by_another(tmp_path: Path) -> None:
    orphan = subprocess.run(
        ["sh", "-c", "sleep 30 2>/dev/null | git cat-file --batch >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan_pid = int(orphan.stdout.strip())  # its shell has exited: no longer a descendant of ours
    child = subprocess.Popen(
        ["git", "hash-object", "--stdin"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)  # the orphan's git has exec'd
        watch = GitWatch()
        watch.sample()
        assert child.pid in watch.peak_kib and watch.peak_kib[child.pid][1] == "hash-object"
        assert orphan_pid not in watch.peak_kib
        orphan_argv = Path(f"/proc/{orphan_pid}/cmdline").read_bytes().split(b"\0")
        assert orphan_argv[:3] == [b"git", b"cat-file", b"--batch"]  # it runs, as git
        taken = watch.take()
        assert taken["git_peak_what"] == "hash-object" and taken["gc_ended"] == []
        assert watch.take()["git_peak_rss_mib"] in (0.0, taken["git_peak_rss_mib"])  # still running
    finally:
        child.communicate(b"x", timeout=30)
        os.kill(orphan_pid, signal.SIGKILL)


def made_up_round(seq: int, seconds: float, packs: int, **extra: object) -> dict[str, object]:
    return {
        "seq": seq,
        "seconds": seconds,
        "packs": packs,
        "server_packs": packs - 1,
        "repacks": [],
        "repack_beside": [],
        "gc_ended": [],
        "git_peak_rss_mib": 10.0,
        "load_1m": 2.0 + seq / 10,
        **extra,
    }


def test_the_report_tells_reconciles_beside_a_repack_from_the_others_and_lists_each_gc() -> None:
    before = [made_up_round(n, 1.0 + n, 2 * n) for n in range(1, 4)]
    after = [
        made_up_round(4, 9.0, 8, repack_beside=["mirror"], git_peak_rss_mib=800.0),
        made_up_round(
            5,
            7.0,
            2,
            repack_beside=["mirror"],
            repacks=["mirror: repacked 9 packs into 2 in 61.0 s"],
            gc_ended=[{"where": "mirror-1.git", "seconds": 60.5}],
        ),
        made_up_round(6, 3.0, 4),
    ]
    summary = {
        "robots": 100_000,
        "reconciles": 3,
        "reporting_per_reconcile": 998,
        "setup_s": 344.1,
        "background": True,
        "pack_limit": 50,
        "peak_rss_mib": 2525,
        "before": before,
        "after": after,
        "sizes_before": {"mirror_mib": 325.0, "server_mib": 327.1},
        "sizes_after": {"mirror_mib": 339.8, "server_mib": 330.0, "gc_ended": []},
    }

    lines = report(summary)

    assert lines[0].startswith("100000 robots, 3 + 3 reconciles, 998 reports before each; setup 344.1 s")
    assert "in the background past 50 packs; load 2.1-2.6; peak RSS 2525 MiB" in lines[0]
    assert lines[2].split() == ["packs", "after", "reconcile", "1", "3"]
    assert lines[3].split() == ["mirror,", "no", "housekeeping", "2", "6"]
    assert lines[5].split() == ["mirror,", "housekeeping", "on", "8", "4"]
    assert "objects MiB: mirror 325.0 -> 339.8, server 327.1 -> 330.0" in lines
    assert any(line.split() == ["5", "mirror-1.git", "60.5"] for line in lines)
    assert "reconcile 5: mirror: repacked 9 packs into 2 in 61.0 s" in lines
    # median of 2, 3, 4 s; beside a repack 9 and 7 s; neither (no repack reaped either) only the 3 s
    assert lines[-1] == (
        "reconcile seconds, median (max): no housekeeping 3.0 (4.0); "
        "beside a repack 8.0 (9.0, 2 reconciles); neither 3.0 (3.0); largest git process 800.0 MiB"
    )
