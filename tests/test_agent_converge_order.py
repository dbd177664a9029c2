"""The order a robot converges its apps in (``agent.converge.requires.converge_order``), as a table.

Required apps converge first in a cycle so a dependent app can start in the same cycle as what it
needs; the order is otherwise by name (deterministic across robots and runs), and a cycle, which
validation refuses, never stops the robot from converging every app.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from agent.converge.fallback import join
from agent.converge.requires import converge_order
from agent.state.journal import REASON_MAX_CHARS

ORDER_CASES = [
    pytest.param(["b", "a", "c"], {}, ["a", "b", "c"], id="no-requirements-by-name"),
    pytest.param(["nav", "maps"], {"maps": ["nav"]}, ["nav", "maps"], id="required-first-against-name-order"),
    pytest.param(
        ["ui", "nav", "maps"],
        {"ui": ["nav"], "nav": ["maps"]},
        ["maps", "nav", "ui"],
        id="a-chain-in-dependency-order",
    ),
    pytest.param(
        ["d", "c", "b", "a"],
        {"a": ["b", "c"], "b": ["d"], "c": ["d"]},
        ["d", "b", "c", "a"],
        id="a-diamond",
    ),
    pytest.param(["a", "b"], {"a": ["not-here"]}, ["a", "b"], id="a-requirement-on-an-app-not-assigned"),
    pytest.param(["a", "b"], {"a": ["a"]}, ["a", "b"], id="an-app-requiring-itself"),
    pytest.param(["b", "a"], {"a": ["b"], "b": ["a"]}, ["a", "b"], id="a-cycle-falls-back-to-name-order"),
    pytest.param(
        ["z", "a", "b"],
        {"a": ["b"], "b": ["a"], "z": []},
        ["z", "a", "b"],
        id="apps-outside-a-cycle-come-first",
    ),
    pytest.param(["a", "a", "b"], {}, ["a", "b"], id="duplicates-once"),
    pytest.param([], {"a": ["b"]}, [], id="nothing-assigned"),
]


@pytest.mark.parametrize(("apps", "requires", "expected"), ORDER_CASES)
def test_apps_converge_after_what_they_require(
    apps: Sequence[str], requires: Mapping[str, Sequence[str]], expected: list[str]
) -> None:
    order = converge_order(apps, requires)
    assert order == expected
    assert sorted(order) == sorted(set(apps))  # every app converges, each once


def test_the_order_does_not_depend_on_the_order_apps_are_listed_in() -> None:
    requires = {"ui": ["nav"], "nav": ["maps"], "logs": []}
    first = converge_order(["ui", "nav", "maps", "logs"], requires)
    assert converge_order(["logs", "maps", "nav", "ui"], requires) == first
    assert converge_order(reversed(first), requires) == first


def test_a_hundred_apps_in_one_long_chain_are_ordered() -> None:
    apps = [f"app-{n:03d}" for n in range(100)]
    requires = {apps[n]: [apps[n + 1]] for n in range(99)}  # each needs the next one
    assert converge_order(apps, requires) == list(reversed(apps))


# --- reasons a rollback records: clipped to what a journal entry holds ---------------------------


def test_a_long_reason_is_clipped_to_the_journals_bound_and_says_so() -> None:
    text = join("probe healthz failed: " + "x" * (2 * REASON_MAX_CHARS), "back to 1.0.0 (rollback.target)")
    assert len(text) == REASON_MAX_CHARS
    assert text.endswith("…")
    assert text.startswith("probe healthz failed")


def test_empty_parts_of_a_reason_are_left_out() -> None:
    assert join("probe failed", None, "", "kept") == "probe failed; kept"
    assert join() == ""
