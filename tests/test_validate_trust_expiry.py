"""``fleetcd validate`` judges the trust root in force against the clock (issue 11, point 2).

Past a version's ``expires`` the controller stalls and robots install nothing new, so a fleet must
rotate before then: validate warns 30 days ahead (an error under ``--strict``) naming the file and
the field ``expires``, and an expired version is an error. Real gpg signatures over real files.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from controller.cli.validate import validate_command as command
from fleetcd.cli.main import guarded
from fleetcd.compat import UTC
from fleetcd.validation import validate_snapshot
from fleetcd.validation.trust import EXPIRY_WARNING_DAYS
from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import KeyFactory

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
V1, V2 = "trust/root/1.yaml", "trust/root/2.yaml"


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    return FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def expiry_findings(
    fleet: FleetRepoBuilder, now: datetime, *, strict: bool = False
) -> list[tuple[object, ...]]:
    result = validate_snapshot(fleet.snapshot(), now=now, strict=strict)
    return [f for f in found(result) if f[2] == "expires"]


def test_trust_root_expiring_within_30_days_warns_at_its_expires_field(fleet: FleetRepoBuilder) -> None:
    fleet.trust["expires"] = stamp(NOW + timedelta(days=12))
    fleet.write()
    line = fleet.line_of(V1, "expires:")

    result = validate_snapshot(fleet.snapshot(), now=NOW)

    assert result.ok  # a warning: nothing is wrong yet
    (warning,) = [d for d in result.warnings if d.field == "expires"]
    assert (warning.file, warning.line, warning.reason.value) == (V1, line, "expired")
    assert "expires in 12 days" in warning.message and "keys propose" in warning.message


def test_trust_root_expiring_warning_fails_under_strict(fleet: FleetRepoBuilder) -> None:
    fleet.trust["expires"] = stamp(NOW + timedelta(hours=5))
    fleet.write()

    strict = validate_snapshot(fleet.snapshot(), now=NOW, strict=True)

    assert not strict.ok
    assert [(f[0], f[4]) for f in found(strict) if f[2] == "expires"] == [(V1, "error")]
    (error,) = [d for d in strict.errors if d.field == "expires"]
    assert "within a day" in error.message


def test_trust_root_with_more_than_30_days_left_does_not_warn(fleet: FleetRepoBuilder) -> None:
    fleet.trust["expires"] = stamp(NOW + timedelta(days=EXPIRY_WARNING_DAYS, hours=1))
    fleet.write()
    assert expiry_findings(fleet, NOW) == []
    assert expiry_findings(fleet, NOW + timedelta(hours=2)) == [
        (V1, fleet.line_of(V1, "expires:"), "expires", "expired", "warning")
    ]


def test_expired_trust_root_is_an_error_the_controller_would_stall_on(fleet: FleetRepoBuilder) -> None:
    fleet.trust["expires"] = stamp(NOW - timedelta(minutes=1))
    fleet.write()

    result = validate_snapshot(fleet.snapshot(), now=NOW)

    assert not result.ok
    (error,) = result.errors
    assert (error.file, error.field, error.reason.value) == (V1, "expires", "expired")
    assert "version 1 expired at" in error.message


def test_a_newer_signed_version_clears_the_old_versions_expiry_warning(fleet: FleetRepoBuilder) -> None:
    fleet.trust["expires"] = stamp(NOW + timedelta(days=3))
    fleet.rotate(expires=stamp(NOW + timedelta(days=365)))  # the rotation that fixes it
    fleet.write()
    assert expiry_findings(fleet, NOW) == []  # only the version in force is judged


def test_an_unsigned_newer_version_does_not_hide_the_expiry_of_the_one_in_force(
    fleet: FleetRepoBuilder,
) -> None:
    fleet.trust["expires"] = stamp(NOW + timedelta(days=3))
    fleet.rotate(expires=stamp(NOW + timedelta(days=365)))
    fleet.root_signers_of[2] = []  # nobody signed version 2 yet: version 1 is still in force
    fleet.write()
    assert [(f[0], f[4]) for f in expiry_findings(fleet, NOW)] == [(V1, "warning")]


def test_validate_cli_warns_then_fails_strict_on_a_trust_root_about_to_expire(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.trust["expires"] = stamp(datetime.now(UTC) + timedelta(days=10, hours=12))
    fleet.write()
    line = fleet.line_of(V1, "expires:")

    def run_cli(*args: str) -> tuple[int, str]:
        code = guarded(
            lambda: command.main(args=list(args), prog_name="fleetcd validate", standalone_mode=False)
        )
        out, err = capsys.readouterr()
        return code, out + err

    code, out = run_cli("--repo", str(fleet.root))
    assert code == 0
    assert f"{V1}:{line}: warning: expires: trust root version 1 expires in 10 days" in out

    code, out = run_cli("--repo", str(fleet.root), "--strict")
    assert code == 1
    assert f"{V1}:{line}: error: expires: trust root version 1 expires in 10 days" in out
