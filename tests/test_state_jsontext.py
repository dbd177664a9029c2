"""State files keep their exact bytes although they are written without ``json.dumps``' slow path.

:func:`controller.state.jsontext.dumps_indented` must equal ``json.dumps(value, indent=1,
sort_keys=True)`` byte for byte: a state file that changed format would be rewritten although
nothing in it changed, and its git diff would show every line. Compared on edge cases and on the
real state files a controller writes.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.reconcile.statebranch import dump
from controller.state.jsontext import dumps_indented
from tests.gpgkeys import KeyFactory
from tests.sim.world import STAGING, make_world

CASES: dict[str, Any] = {
    "empty containers": {"a": {}, "b": [], "c": [[], {}], "d": ()},
    "scalars": [None, True, False, 0, -7, 2**64, 1.5, -0.0, 1e-07, 1e300, "", "x"],
    "escapes": {'quote"back\\slash': "tab\there\nnewline\r\x00\x1f\x7f", "/": "</script>"},
    "non-ascii": {"é": "ünïcødé", "emoji": "😀 \u2028 \ud7ff", "cjk": "机器人"},
    "sorted keys": {"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "m": None}, "A": 0, "_": 1, "10": 2, "9": 3},
    "deep": {"a": [[[[{"b": [[]]}]]]]},
    "top-level scalar": "just a string",
    "top-level list": [1, "two", {"three": 3}],
    "special floats": [math.inf, -math.inf, math.nan],
}


@pytest.mark.parametrize("name", sorted(CASES), ids=sorted(CASES))
def test_the_text_is_json_dumps_text(name: str) -> None:
    value = CASES[name]
    assert dumps_indented(value) == json.dumps(value, indent=1, sort_keys=True)


def test_values_json_would_render_its_own_way_fall_back_to_json() -> None:
    """Non-string keys and str subclasses are json.dumps' business; the text is still its text."""

    class Name(str):
        pass

    for value in ({1: "a", 2: "b"}, {"k": Name("v")}, [Name("x")], {"k": True, "n": {3: 4}}):
        assert dumps_indented(value) == json.dumps(value, indent=1, sort_keys=True)


def test_real_state_files_are_written_byte_for_byte_as_before(tmp_path: Path, keys: KeyFactory) -> None:
    """Device files with records and events, rollout files with waves, state.json: after a wave
    and reports, each file on the state branch is what ``dump`` writes and what json.dumps wrote."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    world.report_all(STAGING, "deployed")
    world.clock.tick(timedelta(seconds=10).total_seconds())
    world.reconcile()
    state = world.state()
    models = [state.meta, *state.rollouts.values(), *state.devices.values()]
    assert any(f.records for f in state.devices.values()) and state.rollouts
    for model in models:
        expected = json.dumps(model.model_dump(mode="json"), indent=1, sort_keys=True).encode() + b"\n"
        assert dump(model) == expected
    written = {path: data for path, data in state.files.items() if path.endswith(".json")}
    assert written and all(dump(model) in written.values() for model in models)
