"""A robot's ``status.json`` under seeded one-edit mutations: ingest's strict reader and the model agree.

:func:`controller.ingest.reports.parse_report` is what the controller ingests through (bounded
integers, no duplicate keys, no NaN); readers that skip it (the agent reading its own report back,
``history --at``) call ``StatusReport.model_validate_json`` and count on the model to refuse the
same things. Over edits of an honest report — a value replaced by another type or an absurd one, a
key removed, an unknown key, the JSON text cut, re-spaced or given a second copy of a key — this
checks:

* ``parse_report`` raises nothing but :class:`~controller.ingest.reports.ReportRejected`, naming
  the ref it was given;
* what it accepts the model accepts as the same report, and that report's canonical bytes parse
  back to it (a report the controller stores can be read again);
* what it refuses the model refuses too, except a repeated key, which JSON readers resolve
  differently (the model keeps the last value): only ``parse_report`` is fit for robots' refs.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from pydantic import ValidationError

from controller.ingest.reports import ReportRejected, parse_report
from fleetcd.desired.bundle import canonical_bytes
from fleetcd.reasons import Reason
from fleetcd.reports import StatusReport
from tests.datatree import DataPath, nodes
from tests.test_reports_hostile import honest

WHERE = "refs/fleetcd/status/amr-001/report"
SEED = 20_261_209
HONEST = honest()


def edited(path: DataPath, value: Any, *, remove: bool = False) -> dict[str, Any]:
    out = copy.deepcopy(HONEST)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    if remove:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**53 + 1,
    10**25,
    0.5,
    1e308,
    "",
    "x" * 600,
    "../../etc/passwd",
    "\u202e",
    [],
    {},
    "2026-13-45T99:00:00Z",
    "9999-12-31T23:59:59+00:00",
]


def structural_cases(rng: random.Random) -> list[tuple[str, bytes]]:
    cases: list[tuple[str, bytes]] = []
    for path, value in nodes(HONEST):
        if not path:
            continue
        for other in rng.sample(ODD_VALUES, 5):
            if other != value or type(other) is not type(value):
                cases.append((f"{path} = {other!r:.20}", json.dumps(edited(path, other)).encode()))
        if isinstance(path[-1], str):
            cases.append((f"{path} removed", json.dumps(edited(path, None, remove=True)).encode()))
        if isinstance(value, dict):
            cases.append((f"{path} + unknown", json.dumps(edited((*path, "extra"), 1)).encode()))
    return cases


def textual_cases(rng: random.Random) -> list[tuple[str, bytes]]:
    text = json.dumps(HONEST)
    cases = [
        ("pretty", json.dumps(HONEST, indent=4).encode()),
        ("compact", json.dumps(HONEST, separators=(",", ":")).encode()),
        ("escaped unicode", json.dumps(HONEST, ensure_ascii=True).encode()),
        ("surrounding space", b" \n\t" + text.encode() + b"\n"),
        ("NaN seq", text.replace('"seq": 7', '"seq": NaN').encode()),
        ("Infinity serial", text.replace('"bundle_serial": 12', '"bundle_serial": Infinity').encode()),
        ("huge int", text.replace('"seq": 7', '"seq": ' + "9" * 5000).encode()),
        ("deep", b'{"format": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ("latin-1", text.replace("0.9.0", "0.9.0\u00e9").encode("latin-1")),
        ("two documents", (text + text).encode()),
        ("not an object", b"[1, 2]"),
        ("empty", b""),
    ]
    for n in range(12):
        cut = rng.randrange(1, len(text))
        cases.append((f"cut at {cut} ({n})", text[:cut].encode()))
    return cases


def duplicate_cases() -> list[tuple[str, bytes]]:
    text = json.dumps(HONEST)
    return [
        ("seq twice", text.replace('"seq": 7', '"seq": 7, "seq": 8').encode()),
        (
            "device twice",
            text.replace('"device": "amr-001"', '"device": "amr-001", "device": "amr-002"').encode(),
        ),
        (
            "event key twice",
            text.replace('"activity": "applying"', '"activity": "applying", "activity": "failed"').encode(),
        ),
    ]


def model_verdict(raw: bytes) -> StatusReport | None:
    try:
        return StatusReport.model_validate_json(raw)
    except (ValidationError, ValueError, RecursionError):
        return None


def strict_verdict(raw: bytes) -> StatusReport | None:
    try:
        return parse_report(raw, WHERE)
    except ReportRejected as exc:
        assert exc.diagnostic.file == WHERE
        assert exc.diagnostic.message
        return None


CASES = structural_cases(random.Random(SEED)) + textual_cases(random.Random(SEED + 1))


def test_the_honest_report_is_accepted_by_both_and_its_canonical_bytes_read_back() -> None:
    report = strict_verdict(json.dumps(HONEST).encode())
    assert report is not None and model_verdict(json.dumps(HONEST).encode()) == report
    assert strict_verdict(canonical_bytes(report)) == report


@pytest.mark.parametrize(("what", "raw"), CASES, ids=[what for what, _ in CASES])
def test_ingest_and_the_model_agree_on_every_edit(what: str, raw: bytes) -> None:
    strict = strict_verdict(raw)
    lenient = model_verdict(raw)
    if strict is None:
        assert lenient is None, f"{what}: the model accepts what ingest refuses"
        return
    assert lenient == strict, what
    assert strict_verdict(canonical_bytes(strict)) == strict, f"{what}: stored bytes do not read back"


@pytest.mark.parametrize(("what", "raw"), duplicate_cases(), ids=[what for what, _ in duplicate_cases()])
def test_a_repeated_key_is_refused_by_ingest_naming_the_key(what: str, raw: bytes) -> None:
    with pytest.raises(ReportRejected) as raised:
        parse_report(raw, WHERE)
    assert raised.value.diagnostic.reason is Reason.DUPLICATE_KEY
    assert raised.value.diagnostic.field in ("seq", "device", "activity"), what


def test_mutations_reach_both_verdicts() -> None:
    verdicts = [strict_verdict(raw) is not None for _, raw in CASES]
    assert sum(verdicts) >= 5 and verdicts.count(False) >= 50
