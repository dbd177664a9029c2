"""One document at a time: strict YAML → JSON Schema → model, with file:line:field in every error."""

from __future__ import annotations

import pytest

from fleetcd.errors import InvalidContent
from fleetcd.loading.documents import load_document
from fleetcd.models import Device, Release
from fleetcd.reasons import Reason

DEVICE = b"""\
apiVersion: fleetcd.dev/v1
kind: Device
id: amr-001
family: amr
hardware:
  model: amr-x
  revision: 2
site: berlin
timezone: Europe/Berlin
"""

RELEASE = b"""\
apiVersion: fleetcd.dev/v1
kind: Release
app: navstack
version: "1.10.0"
artifacts:
  - name: app
    kind: app_tarball
    url: http://127.0.0.1:8765/navstack.tar.gz
    sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
    size: 1024
  - name: model
    kind: model
    url: http://127.0.0.1:8765/model.onnx
    sha256: NOTHEX
    size: 10
    path: models/nav.onnx
"""


def errors_of(
    path: str, raw: bytes, model: type[Device] | type[Release]
) -> list[tuple[int | None, str | None, Reason]]:
    with pytest.raises(InvalidContent) as info:
        load_document(path, raw, model)
    return [(d.line, d.field, d.reason) for d in info.value.diagnostics]


def test_valid_device_loads_into_a_frozen_model() -> None:
    loaded = load_document("devices/amr-001.yaml", DEVICE, Device)
    assert loaded.model.hardware.revision == 2
    assert loaded.raw == DEVICE
    assert loaded.line("hardware", "revision") == 7
    with pytest.raises(ValueError, match="frozen"):
        loaded.model.site = "paris"  # type: ignore[misc]


def test_unknown_field_is_named_with_its_line() -> None:
    raw = DEVICE + b"colour: red\n"
    assert errors_of("devices/amr-001.yaml", raw, Device) == [(10, "colour", Reason.SCHEMA)]


def test_nested_artifact_error_points_at_the_field() -> None:
    found = errors_of("releases/navstack/1.10.0.yaml", RELEASE, Release)
    assert found == [(14, "artifacts[1].sha256", Reason.SCHEMA)]


def test_unknown_artifact_kind_is_a_clear_error() -> None:
    raw = RELEASE.replace(b"kind: app_tarball", b"kind: tarball").replace(b"NOTHEX", b"ab" * 32)
    with pytest.raises(InvalidContent) as info:
        load_document("releases/navstack/1.10.0.yaml", raw, Release)
    (diag,) = info.value.diagnostics
    assert diag.field is not None and diag.field.startswith("artifacts[0]")
    assert diag.line is not None and 6 <= diag.line <= 10


def test_string_where_a_number_is_expected_is_not_coerced() -> None:
    raw = DEVICE.replace(b"revision: 2", b'revision: "2"')
    assert errors_of("devices/amr-001.yaml", raw, Device) == [(7, "hardware.revision", Reason.SCHEMA)]


def test_wrong_kind_for_the_location_is_rejected() -> None:
    raw = DEVICE.replace(b"kind: Device", b"kind: Cohort")
    assert errors_of("devices/amr-001.yaml", raw, Device) == [(2, "kind", Reason.WRONG_KIND)]


def test_unknown_api_version_is_rejected() -> None:
    raw = DEVICE.replace(b"fleetcd.dev/v1", b"fleetcd.dev/v2")
    assert errors_of("devices/amr-001.yaml", raw, Device) == [(1, "apiVersion", Reason.SCHEMA)]


def test_model_only_rules_report_the_field_too() -> None:
    raw = RELEASE.replace(b'"1.10.0"', b'"1.10"').replace(b"NOTHEX", b"ab" * 32)
    found = errors_of("releases/navstack/1.10.yaml", raw, Release)
    assert found == [(4, "version", Reason.SCHEMA)]


def test_unknown_time_zone_is_rejected_with_a_hint() -> None:
    raw = DEVICE.replace(b"Europe/Berlin", b"Mars/Olympus")
    with pytest.raises(InvalidContent, match="unknown IANA time zone"):
        load_document("devices/amr-001.yaml", raw, Device)


def test_empty_file_is_rejected() -> None:
    assert errors_of("devices/amr-001.yaml", b"", Device)[0][2] is Reason.INVALID


def test_path_traversal_in_device_id_is_rejected() -> None:
    raw = DEVICE.replace(b"id: amr-001", b"id: ../../etc/passwd")
    assert errors_of("devices/passwd.yaml", raw, Device) == [(3, "id", Reason.UNSAFE_NAME)]
