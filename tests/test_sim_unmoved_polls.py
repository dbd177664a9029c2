"""Skipping polls that would find a robot's own desired ref unmoved (``SimSettings.unmoved_poll_sample``).

At 10,000 robots, every wave moves a few robots' refs and the rest of the fleet's next polls are
no-ops: ``bench/e2e_rollout.py`` counts them without running git, except on a sample of robots.
Such a skip must change nothing the rehearsal reports — the same robots apply at the same
simulated instants, the controller records the same outcomes — only how many polls ran git. A robot
whose own ref moved must still fetch it for real, and a sampled robot must keep running its
no-op polls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.sim import SimReport, SimSettings
from tests.gpgkeys import KeyFactory
from tests.test_sim import ROBOTS, record_outcomes, rehearse, state_of, waves_fleet


def rehearsal(root: Path, keys: KeyFactory, **overrides: Any) -> tuple[SimReport, Path]:
    server = waves_fleet(root, keys)
    return rehearse(server, keys, root / "sim", skip_noop_polls=True, **overrides), server


def test_skipping_unmoved_polls_changes_no_outcome_and_no_instant_only_the_git_polls_run(
    tmp_path: Path, keys: KeyFactory
) -> None:
    plain, plain_server = rehearsal(tmp_path / "plain", keys, failure_rate=0.2, offline_rate=0.1)
    skipping, skipping_server = rehearsal(
        tmp_path / "skipping", keys, failure_rate=0.2, offline_rate=0.1, unmoved_poll_sample=7
    )

    assert plain.stopped == skipping.stopped == "done"
    assert plain.summary == skipping.summary
    assert plain.waves == skipping.waves
    assert [(t.device, t.deployment_id, t.outcome, t.finished_s) for t in plain.traces] == [
        (t.device, t.deployment_id, t.outcome, t.finished_s) for t in skipping.traces
    ]
    assert record_outcomes(state_of(plain_server, tmp_path / "a")) == record_outcomes(
        state_of(skipping_server, tmp_path / "b")
    )
    # The same polls happened on the simulated clock; fewer of them ran git.
    assert plain.costs["polls"] == skipping.costs["polls"]
    assert plain.costs["skipped_unmoved_polls"] == 0
    assert skipping.costs["skipped_unmoved_polls"] > 0
    ran = [r.costs["polls"] - r.costs["skipped_polls"] for r in (plain, skipping)]
    assert ran[1] == ran[0] - skipping.costs["skipped_unmoved_polls"]
    # Every bundle a robot took still came through a real fetch and a real verify.
    assert plain.costs["fetches"] == skipping.costs["fetches"]
    assert plain.costs["verifications"] == skipping.costs["verifications"]
    assert skipping.settings["unmoved_poll_sample"] == 7


def test_a_sample_of_one_robot_in_one_runs_every_no_op_poll(tmp_path: Path, keys: KeyFactory) -> None:
    every, _ = rehearsal(tmp_path / "every", keys, unmoved_poll_sample=1)
    one_in_many, _ = rehearsal(tmp_path / "many", keys, unmoved_poll_sample=len(ROBOTS))

    assert every.summary.applied == one_in_many.summary.applied == len(ROBOTS)
    assert every.costs["skipped_unmoved_polls"] == 0
    # Only the first robot samples: the other nineteen skip their unmoved polls in the later waves.
    assert one_in_many.costs["skipped_unmoved_polls"] >= len(ROBOTS) - 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"skip_noop_polls": True, "unmoved_poll_sample": -1}, "must not be negative"),
        ({"skip_noop_polls": False, "unmoved_poll_sample": 10}, "needs skip_noop_polls"),
    ],
    ids=["negative-sample", "sample-without-skipping"],
)
def test_settings_refuse_an_unmoved_poll_sample_they_cannot_act_on(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SimSettings(url="x", gnupghome=tmp_path, workdir=tmp_path, **overrides)
