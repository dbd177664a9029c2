"""``fleetcd withdraw APP@VERSION --reason TEXT`` in a fleet work tree (controller/ops/withdraw.py).

The command writes ``withdrawals/<app>/<version>.yaml`` and commits it with a message that says
which rollouts it stalls and how to lift it; with approvers in the fleet it warns that the
withdrawal is not in force until they approve it. What an operator types as the reason cannot
change what is withdrawn (a reason holding a newline and YAML stays one string); a release that
does not exist is refused and nothing is written; withdrawing twice changes nothing. The commands
run in-process through the real ``fleetcd`` group on a real git work tree and a real keyring.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fleetcd.cli.exitcodes import Exit
from fleetcd.layout import withdrawal_path
from tests.clirun import fleetcd
from tests.fleetrepo import FleetRepoBuilder, committed_standard_fleet
from tests.gpgkeys import KeyFactory

AUTHOR = ["--author", "Ops Person <ops@fleet.test>"]
PATH = withdrawal_path("nav", "1.0.0")


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    return committed_standard_fleet(tmp_path / "fleet", keys)


def withdraw(capsys: pytest.CaptureFixture[str], fleet: FleetRepoBuilder, *args: str) -> tuple[int, str, str]:
    return fleetcd(capsys, "withdraw", *args, "--repo", str(fleet.root))


def head(fleet: FleetRepoBuilder) -> str:
    return fleet.git("rev-parse", "HEAD")


def test_withdraw_commits_the_file_and_says_which_rollouts_stall_and_how_to_lift_it(
    capsys: pytest.CaptureFixture[str], fleet: FleetRepoBuilder
) -> None:
    before = head(fleet)
    code, out, err = withdraw(capsys, fleet, "nav@1.0.0", "--reason", "crashes on mk2 lidars", *AUTHOR)

    assert code == Exit.OK, err
    assert fleet.git("rev-parse", "HEAD^") == before
    assert fleet.git("log", "-1", "--format=%an <%ae>") == "Ops Person <ops@fleet.test>"
    assert fleet.git("show", "--name-only", "--format=", "HEAD").split() == [PATH]
    doc = yaml.safe_load((fleet.root / PATH).read_text())
    assert doc == {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "Withdrawal",
        "app": "nav",
        "version": "1.0.0",
        "reason": "crashes on mk2 lidars",
    }
    message = fleet.git("log", "-1", "--format=%B")
    assert message.startswith("Withdraw nav 1.0.0\n\nReason: crashes on mk2 lidars\n")
    assert "stall (release_withdrawn): nav-1-0-0." in " ".join(message.split())
    assert f"Delete {PATH} and {PATH}.d/ to lift." in " ".join(message.split())
    # The standard fleet has approvers: until they sign, the controller ignores the withdrawal.
    assert "warning: APPROVALS NEEDED: 0 of" in err
    assert f"fleetcd approve {PATH}" in err
    assert f"committed {head(fleet)}" in out


def test_a_reason_holding_yaml_cannot_change_what_is_withdrawn(
    capsys: pytest.CaptureFixture[str], fleet: FleetRepoBuilder
) -> None:
    reason = 'bad\napp: lidar\nversion: "9.9.9"\nkind: Rollout # "quoted" \\ and ünïcode'
    code, _out, err = withdraw(capsys, fleet, "nav@1.0.0", "--reason", reason, *AUTHOR)

    assert code == Exit.OK, err
    doc = yaml.safe_load((fleet.root / PATH).read_text())
    assert (doc["kind"], doc["app"], doc["version"]) == ("Withdrawal", "nav", "1.0.0")
    assert doc["reason"] == " ".join(reason.split())  # one line, every character kept
    assert [d for d in fleet.validate().diagnostics if d.file == PATH and d.severity == "error"] == []


def test_withdrawing_a_release_that_does_not_exist_is_refused_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], fleet: FleetRepoBuilder
) -> None:
    before = head(fleet)
    code, _out, err = withdraw(capsys, fleet, "nav@7.7.7", "--reason", "typo", *AUTHOR)

    assert code == Exit.INVALID, err
    assert "7.7.7" in err
    assert head(fleet) == before
    assert not (fleet.root / withdrawal_path("nav", "7.7.7")).exists()
    assert fleet.git("status", "--porcelain") == ""


def test_withdrawing_twice_changes_nothing_the_second_time(
    capsys: pytest.CaptureFixture[str], fleet: FleetRepoBuilder
) -> None:
    assert withdraw(capsys, fleet, "nav@1.0.0", "--reason", "first", *AUTHOR)[0] == Exit.OK
    first = head(fleet)
    text = (fleet.root / PATH).read_bytes()

    code, out, _err = withdraw(capsys, fleet, "nav@1.0.0", "--reason", "second", *AUTHOR)

    assert code == Exit.OK
    assert f"nothing to do: {PATH} already withdraws it" in out
    assert head(fleet) == first and (fleet.root / PATH).read_bytes() == text


def test_no_commit_leaves_the_file_for_a_pull_request_with_the_message_to_use(
    capsys: pytest.CaptureFixture[str], fleet: FleetRepoBuilder
) -> None:
    before = head(fleet)
    code, out, err = withdraw(capsys, fleet, "nav@1.0.0", "--reason", "leaks a token", "--no-commit")

    assert code == Exit.OK, err
    assert head(fleet) == before
    assert fleet.git("status", "--porcelain", "--untracked-files=all").split() == ["??", PATH]
    assert f"edited {PATH} (not committed); suggested commit message:" in out
    assert "    Withdraw nav 1.0.0" in out


@pytest.mark.parametrize("spec", ["nav", "nav@", "@1.0.0", "Nav Stack@1.0.0", "../x@1.0.0"])
def test_a_release_that_is_not_app_at_version_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], fleet: FleetRepoBuilder, spec: str
) -> None:
    code, _out, err = withdraw(capsys, fleet, spec, "--reason", "x")
    assert code == Exit.USAGE
    assert "expected APP@VERSION" in err
    assert not (fleet.root / "withdrawals").exists()
