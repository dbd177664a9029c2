"""The document memo (fleetcd.loading.memo), pure: loading a snapshot through it gives exactly what a
fresh load gives, parses only bytes it has not seen under that path, kind, limits and schema flag,
and keeps one snapshot's documents.

The controller's side (a commit changing one file parses one file) is
``tests/test_reconcile_document_memo.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetcd.errors import InvalidContent
from fleetcd.layout import device_path
from fleetcd.loading.fleetspec import load_spec
from fleetcd.loading.memo import DocumentMemo
from fleetcd.loading.strict_yaml import YamlLimits
from fleetcd.models import Device
from fleetcd.validation import validate_snapshot
from tests.fleetrepo import FleetRepoBuilder, render

BROKEN = device_path("amr-003")
MISPLACED = device_path("amr-004")


def snapshot() -> dict[str, bytes]:
    """The standard fleet with one invalid device and one whose id does not match its file."""
    builder = FleetRepoBuilder(Path("/nonexistent/fleet")).standard()
    builder.device("amr-003", hardware={"model": "mk2", "revision": "three"})
    builder.device("amr-004", id="amr-005")
    return {**{path: render(doc) for path, doc in builder.docs.items()}, **builder.raw}


def test_a_snapshot_loaded_through_the_memo_is_what_a_fresh_load_gives_the_second_time_too() -> None:
    files, memo = snapshot(), DocumentMemo()
    fresh = validate_snapshot(files)
    first = validate_snapshot(files, memo=memo)
    second = validate_snapshot(dict(files), memo=memo)  # equal bytes, other objects
    assert first.diagnostics == second.diagnostics == fresh.diagnostics
    assert first.spec.devices == second.spec.devices == fresh.spec.devices
    assert {d.file for d in fresh.errors} >= {BROKEN, MISPLACED}
    documents = sum(1 for p in files if p.endswith(".yaml"))
    assert len(memo.last.parsed) == 0 and memo.last.reused == documents
    assert memo.parsed == documents and len(memo) == documents


def test_changed_bytes_are_parsed_again_and_the_old_entry_is_dropped() -> None:
    files, memo = snapshot(), DocumentMemo()
    load_spec(files, memo)
    files[device_path("amr-001")] = files[device_path("amr-001")].replace(b"berlin", b"munich")
    spec, _ = load_spec(files, memo)
    assert memo.last.parsed == [device_path("amr-001")]
    assert spec.devices["amr-001"].model.site == "munich"
    assert len(memo) == sum(1 for p in files if p.endswith(".yaml"))


def test_an_invalid_document_is_kept_as_its_errors_and_raised_afresh_each_time() -> None:
    files, memo = snapshot(), DocumentMemo()
    raised = []
    for _ in range(3):
        with pytest.raises(InvalidContent) as caught:
            memo.load(BROKEN, files[BROKEN], Device)
        raised.append(caught.value)
    assert memo.parsed == 1 and memo.reused == 2
    assert raised[0].diagnostics == raised[2].diagnostics
    assert raised[0].diagnostics[0].field == "hardware.revision" and raised[0].diagnostics[0].line == 7
    assert raised[0] is not raised[2]  # a kept exception would grow a traceback on every raise


def test_the_same_bytes_under_other_limits_or_without_the_schema_pass_are_loaded_again() -> None:
    """One entry per path: whatever differs from what it was loaded with loads it afresh."""
    files, memo = snapshot(), DocumentMemo()
    path, raw = device_path("amr-001"), files[device_path("amr-001")]
    memo.load(path, raw, Device)
    memo.load(path, raw, Device, YamlLimits())  # the default limits: the same entry
    assert memo.parsed == 1
    with pytest.raises(InvalidContent):
        memo.load(path, raw, Device, YamlLimits(max_nodes=3))
    assert memo.load(path, raw, Device, schema=False).model.id == "amr-001"
    memo.load(device_path("amr-002"), raw, Device)  # the path is in every diagnostic: another entry
    assert memo.parsed == 4 and len(memo) == 2
    memo.load(path, raw, Device)
    assert memo.parsed == 5


def test_files_that_left_the_snapshot_are_dropped_but_not_by_a_load_that_failed() -> None:
    files, memo = snapshot(), DocumentMemo()
    load_spec(files, memo)
    held = len(memo)
    with pytest.raises(RuntimeError), memo.round():
        memo.load(device_path("amr-001"), files[device_path("amr-001")], Device)
        raise RuntimeError("a bug in the middle of a load")
    assert len(memo) == held  # nothing is dropped on the word of an unfinished round
    del files[device_path("amr-002")]
    load_spec(files, memo)
    assert device_path("amr-002") not in memo.paths() and len(memo) == held - 1


def test_a_kept_document_is_the_same_object_for_every_load() -> None:
    """What makes sharing safe is that nothing mutates a Loaded (tests/test_reconcile_document_memo.py
    checks a whole reconcile); what makes it cheap is that the memo hands back the object it holds."""
    files, memo = snapshot(), DocumentMemo()
    first, _ = load_spec(files, memo)
    second, _ = load_spec(files, memo)
    assert first.devices["amr-001"] is second.devices["amr-001"]
    assert first.devices is not second.devices  # each load builds its own spec around them


def test_equal_bytes_read_afresh_from_a_new_tree_are_held_once_and_not_parsed_again() -> None:
    """A new tree's read gives new bytes objects for unchanged files: the memo holds those, so the
    snapshot and the memo do not keep two copies of every file."""
    files, memo = snapshot(), DocumentMemo()
    first, _ = load_spec(files, memo)
    reread = {path: bytes(bytearray(raw)) for path, raw in files.items()}  # equal, not the same objects
    second, _ = load_spec(reread, memo)
    path = device_path("amr-001")
    assert memo.last.parsed == [] and second.devices["amr-001"].raw is reread[path]
    assert second.devices["amr-001"].model is first.devices["amr-001"].model  # the parse is shared
    assert all(doc.raw is reread[doc.path] for doc in memo.loaded())


def test_forgotten_documents_are_dropped_and_parsed_again_if_they_come_back() -> None:
    """A recheck that loads only changed files drops the removed ones' documents (valid or not)
    itself; a path the memo never held is no error."""
    files, memo = snapshot(), DocumentMemo()
    load_spec(files, memo)
    memo.forget([device_path("amr-002"), BROKEN, "rollouts/never-there.yaml"])
    assert device_path("amr-002") not in memo.paths() and BROKEN not in memo.paths()
    assert len(memo) == sum(1 for p in files if p.endswith(".yaml")) - 2
    load_spec(files, memo)  # they come back: parsed afresh
    assert sorted(memo.last.parsed) == sorted([BROKEN, device_path("amr-002")])
