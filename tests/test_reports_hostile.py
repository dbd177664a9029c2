"""The status report format (fleetcd/reports.py) against what a hostile or broken robot can write.

A robot's ``status.json`` is untrusted input for the controller (ingest, ``get devices``, ``history
--at``) and for the agent reading its own report back from the server. Every number in it is bounded,
every list capped, every string length-limited, and nothing is coerced; the model itself refuses what
the controller's stricter JSON reader would also refuse, so a reader that skips that reader (the
agent, ``controller/ops/instant.py``) is just as safe. Each case here is one thing a robot could push.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from fleetcd.models.release import MAX_WATCH_SECONDS
from fleetcd.models.trustroot import MAX_TRUST_VERSION
from fleetcd.reports import (
    MAX_BUNDLE_SERIAL,
    MAX_DEPLOYMENTS,
    MAX_EVENTS,
    MAX_PROGRESS_BYTES,
    MAX_REPORT_BYTES,
    MAX_SEQ,
    MESSAGE_MAX,
    StatusReport,
)

DEPLOYMENT = "dep-" + "0123456789abcdef01234567"


def honest() -> dict[str, Any]:
    """A report as the agent writes it: one deployment with one event, no progress."""
    return {
        "format": "fleetcd.dev/status/v1",
        "device": "amr-001",
        "seq": 7,
        "agent_version": "0.9.0",
        "reported_at": "2026-05-04T09:00:00+00:00",
        "bundle_serial": 12,
        "trust_version": 1,
        "apps": [{"app": "navstack", "current": "1.1.0", "previous": "1.0.0"}],
        "deployments": [deployment()],
    }


def deployment(**changes: Any) -> dict[str, Any]:
    claim: dict[str, Any] = {
        "deployment_id": DEPLOYMENT,
        "app": "navstack",
        "version": "1.1.0",
        "activity": "deployed",
        "updated_at": "2026-05-04T08:59:00+00:00",
        "events": [{"at": "2026-05-04T08:58:00+00:00", "activity": "applying"}],
    }
    claim.update(changes)
    return claim


def with_(path: str, value: Any) -> dict[str, Any]:
    """The honest report with the field at dotted ``path`` (list indexes as numbers) set to ``value``."""
    data = honest()
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def refused_at(data: dict[str, Any]) -> str:
    """The dotted location of the first error the model reports (the test fails if it accepts)."""
    with pytest.raises(ValidationError) as caught:
        StatusReport.model_validate(data)
    return ".".join(str(part) for part in caught.value.errors()[0]["loc"])


def test_the_honest_report_is_accepted_and_round_trips_byte_for_byte() -> None:
    report = StatusReport.model_validate(honest())
    again = StatusReport.model_validate_json(report.model_dump_json())
    assert again == report
    assert "progress" not in json.loads(report.model_dump_json())  # older controllers forbid the key


# --- numbers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param("seq", MAX_SEQ + 1, id="seq-past-any-agent"),
        pytest.param("seq", 10**30, id="seq-10e30"),
        pytest.param("seq", -1, id="negative-seq"),
        pytest.param("bundle_serial", MAX_BUNDLE_SERIAL + 1, id="serial-past-any-controller"),
        pytest.param("bundle_serial", -5, id="negative-serial"),
        pytest.param("trust_version", 0, id="trust-version-zero"),
        pytest.param("trust_version", MAX_TRUST_VERSION + 1, id="trust-version-past-the-chain-cap"),
    ],
)
def test_an_integer_beyond_its_bound_is_refused_at_its_field(path: str, value: int) -> None:
    assert refused_at(with_(path, value)) == path


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("seq", MAX_SEQ),
        ("seq", 0),
        ("bundle_serial", MAX_BUNDLE_SERIAL),
        ("trust_version", MAX_TRUST_VERSION),
    ],
    ids=["seq-at-bound", "seq-zero", "serial-at-bound", "trust-version-at-bound"],
)
def test_an_integer_at_its_bound_is_still_accepted(path: str, value: int) -> None:
    assert getattr(StatusReport.model_validate(with_(path, value)), path) == value


@pytest.mark.parametrize(
    "value",
    [7.0, "7", True, None, [7], {"n": 7}],
    ids=["float", "string", "bool", "null", "list", "object"],
)
def test_a_seq_that_is_not_an_integer_is_refused_not_coerced(value: Any) -> None:
    assert refused_at(with_("seq", value)) == "seq"


def test_a_seq_of_thousands_of_digits_in_raw_json_is_refused_quickly() -> None:
    # Python's int() fails from 4,300 digits and costs quadratic time below: the model's JSON
    # reader must refuse it as a bad value, not crash or stall.
    raw = json.dumps(honest()).replace('"seq": 7', '"seq": ' + "9" * 100_000).encode()
    started = time.monotonic()
    with pytest.raises(ValidationError):
        StatusReport.model_validate_json(raw)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_non_finite_or_overflowing_number_as_seq_is_refused(constant: str) -> None:
    raw = json.dumps(honest()).replace('"seq": 7', f'"seq": {constant}').encode()
    with pytest.raises(ValidationError):
        StatusReport.model_validate_json(raw)


@pytest.mark.parametrize(
    "when",
    [10**20, 1e308, "99999-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "yesterday"],
    ids=["epoch-seconds-past-9999", "float-past-9999", "five-digit-year", "month-13", "word"],
)
def test_a_report_time_no_calendar_holds_is_refused(when: Any) -> None:
    assert refused_at(with_("reported_at", when)) == "reported_at"


# --- JSON that is not a report ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'"a report"',
        b"\xff\xfe{}",
        b"{" * 10_000 + b"}" * 10_000,
        b'{"format": "fleetcd.dev/status/v1"}',
    ],
    ids=["empty", "truncated", "array", "null", "string", "not-utf8", "nested-10000-deep", "format-only"],
)
def test_bytes_that_are_not_a_report_are_refused_as_invalid_not_a_crash(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        StatusReport.model_validate_json(raw)


def test_an_unknown_key_is_refused_so_a_typo_cannot_pass_for_a_field() -> None:
    data = honest()
    data["sequence"] = 8
    assert refused_at(data) == "sequence"


def test_another_format_version_is_refused() -> None:
    assert refused_at(with_("format", "fleetcd.dev/status/v2")) == "format"


# --- sizes -----------------------------------------------------------------------------------------------


def test_more_deployments_than_a_robot_is_ever_given_are_refused() -> None:
    data = honest()
    data["deployments"] = [deployment(deployment_id=f"dep-{i:024x}") for i in range(MAX_DEPLOYMENTS + 1)]
    assert refused_at(data) == "deployments"


def test_more_events_than_the_bound_in_one_deployment_are_refused() -> None:
    events = [{"at": "2026-05-04T08:58:00+00:00", "activity": "applying"}] * (MAX_EVENTS + 1)
    assert refused_at(with_("deployments.0", deployment(events=events))) == "deployments.0.events"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("last_error", "x" * (MESSAGE_MAX + 1)),
        ("agent_version", "1" * 65),
        ("deployments.0", deployment(message="m" * (MESSAGE_MAX + 1))),
    ],
    ids=["last-error", "agent-version", "deployment-message"],
)
def test_a_string_over_its_length_bound_is_refused(path: str, value: Any) -> None:
    assert refused_at(with_(path, value)).startswith(path.split(".")[0])


def test_the_largest_report_the_agent_may_build_fits_the_byte_cap() -> None:
    # Every list at its bound with the longest messages: the cap must not refuse an honest robot
    # that the model accepts (the agent trims events to fit, never deployments).
    events = [{"at": "2026-05-04T08:58:00+00:00", "activity": "applying"}] * 3
    data = honest()
    data["deployments"] = [
        deployment(deployment_id=f"dep-{i:024x}", message="m" * MESSAGE_MAX, events=events)
        for i in range(MAX_DEPLOYMENTS)
    ]
    data["last_error"] = "e" * MESSAGE_MAX
    report = StatusReport.model_validate(data)
    assert len(report.model_dump_json().encode()) < MAX_REPORT_BYTES


# --- names that become paths or ids ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("device", "../amr-002"),
        ("device", "amr-001/report"),
        ("device", ".hidden"),
        ("device", "a" * 65),
        ("deployments.0", deployment(deployment_id="dep-../../state")),
        ("deployments.0", deployment(deployment_id="dep-0123456789ABCDEF01234567")),
        ("deployments.0", deployment(app="nav stack")),
        ("deployments.0", deployment(version="1.1")),
        ("apps.0", {"app": "navstack", "current": "latest"}),
    ],
    ids=[
        "device-traversal",
        "device-with-slash",
        "device-hidden",
        "device-too-long",
        "deployment-id-traversal",
        "deployment-id-upper-hex",
        "app-with-space",
        "version-not-semver",
        "installed-not-semver",
    ],
)
def test_a_name_that_could_escape_a_path_or_forge_an_id_is_refused(path: str, value: Any) -> None:
    assert refused_at(with_(path, value)).startswith(path.split(".")[0])


@pytest.mark.parametrize("activity", ["switching", "deployed ", "DEPLOYED", "rolled-back", ""], ids=repr)
def test_an_activity_outside_the_reported_vocabulary_is_refused(activity: str) -> None:
    assert refused_at(with_("deployments.0", deployment(activity=activity))) == "deployments.0.activity"


# --- progress ---------------------------------------------------------------------------------


def progress(**fields: Any) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        data = honest()
        data["progress"] = {"deployment_id": DEPLOYMENT, **fields}
        return data

    return build


@pytest.mark.parametrize(
    "build",
    [
        progress(phase="downloading", done_bytes=11, total_bytes=10),
        progress(phase="watching", seconds_left=31, window_seconds=30),
        progress(phase="downloading", done_bytes=1, total_bytes=2, seconds_left=1, window_seconds=2),
        progress(phase="watching", done_bytes=1, total_bytes=2),
        progress(phase="downloading", done_bytes=1),
        progress(phase="downloading", done_bytes=0, total_bytes=MAX_PROGRESS_BYTES + 1),
        progress(phase="watching", seconds_left=0, window_seconds=MAX_WATCH_SECONDS + 1),
        progress(phase="downloading", done_bytes=-1, total_bytes=10),
        progress(phase="applying", done_bytes=1, total_bytes=2),
        progress(phase="downloading", done_bytes=1.5, total_bytes=2),
    ],
    ids=[
        "done-above-total",
        "left-above-window",
        "both-phases-numbers",
        "other-phases-numbers",
        "half-a-pair",
        "total-above-every-artifact",
        "window-above-any-release",
        "negative-bytes",
        "phase-without-progress",
        "fractional-bytes",
    ],
)
def test_progress_that_no_honest_step_reports_is_refused(build: Callable[[], dict[str, Any]]) -> None:
    assert refused_at(build()).startswith("progress")


@pytest.mark.parametrize(
    "build",
    [
        progress(phase="downloading", done_bytes=MAX_PROGRESS_BYTES, total_bytes=MAX_PROGRESS_BYTES),
        progress(phase="watching", seconds_left=0, window_seconds=MAX_WATCH_SECONDS),
    ],
    ids=["download-at-bound", "watch-at-bound"],
)
def test_progress_at_its_bounds_is_accepted_and_kept_in_the_bytes(
    build: Callable[[], dict[str, Any]],
) -> None:
    report = StatusReport.model_validate(build())
    assert report.progress is not None
    assert "progress" in json.loads(report.model_dump_json())
