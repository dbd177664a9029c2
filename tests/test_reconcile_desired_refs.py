"""Which refs under the desired-state prefixes the mirror keeps (``is_desired_ref``).

The fetch drops every ref under ``refs/namespaces/`` and ``refs/fleetcd/desired/`` that is not a
robot's desired-state ref, so the wildcard push never publishes one. The check is one regular
expression per layout; these tests hold it to the rule as ``fleetcd.git.refs`` spells it (the
device id a safe name, the namespace's id the ref's) on names a robot or a hand-edited server
could leave there.
"""

from __future__ import annotations

import random

import pytest

from controller.reconcile.source import is_desired_ref
from fleetcd.git.refs import DESIRED_PREFIX, NAMESPACES_PREFIX, device_of_desired_ref


def by_the_rule(ref: str) -> bool:
    """The rule from fleetcd.git.refs, one helper at a time (the reference)."""
    if ref.startswith(DESIRED_PREFIX):
        return device_of_desired_ref(ref) is not None
    if not ref.startswith(NAMESPACES_PREFIX):
        return False
    device, sep, inner = ref.removeprefix(NAMESPACES_PREFIX).partition("/refs/")
    return bool(sep) and device_of_desired_ref("refs/" + inner) == device


LONGEST = "r" * 64
CASES = {
    "refs/fleetcd/desired/robot-1": True,
    "refs/namespaces/robot-1/refs/fleetcd/desired/robot-1": True,
    f"refs/fleetcd/desired/{LONGEST}": True,
    f"refs/namespaces/{LONGEST}/refs/fleetcd/desired/{LONGEST}": True,
    f"refs/fleetcd/desired/{LONGEST}r": False,  # 65 characters
    f"refs/namespaces/{LONGEST}r/refs/fleetcd/desired/{LONGEST}r": False,
    "refs/namespaces/robot-1/refs/fleetcd/desired/robot-2": False,  # another robot's ref
    "refs/namespaces/robot-1/refs/fleetcd/desired/robot-1/x": False,
    "refs/namespaces/robot-1/refs/heads/main": False,
    "refs/namespaces/robot-1/refs/fleetcd/status/robot-1/report": False,
    "refs/namespaces/a/b/refs/fleetcd/desired/a/b": False,
    "refs/fleetcd/desired/": False,
    "refs/fleetcd/desired/robot..1": False,
    "refs/fleetcd/desired/-robot": False,
    "refs/fleetcd/desired/robot-": False,
    "refs/fleetcd/desired/robot-1\n": False,
    "refs/namespaces/robot-1\n/refs/fleetcd/desired/robot-1\n": False,
    "refs/fleetcd/desired/röbot": False,
    "refs/fleetcd/desired/robot 1": False,
    "refs/namespaces//refs/fleetcd/desired/": False,
    "refs/namespaces/robot-1/refs/namespaces/robot-1/refs/fleetcd/desired/robot-1": False,
}


@pytest.mark.parametrize(("ref", "expected"), CASES.items(), ids=list(CASES))
def test_a_ref_is_kept_only_when_it_is_a_robots_own_desired_state_ref(ref: str, expected: bool) -> None:
    assert is_desired_ref(ref) is expected
    assert by_the_rule(ref) is expected


def test_random_names_under_both_prefixes_get_the_rules_answer() -> None:
    rng = random.Random(12)
    alphabet = "aZ09._-/ \n\0é"
    for _ in range(20_000):
        device = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        other = device if rng.random() < 0.7 else "".join(rng.choice(alphabet) for _ in range(3))
        for ref in (
            f"{DESIRED_PREFIX}{device}",
            f"{NAMESPACES_PREFIX}{device}/{DESIRED_PREFIX}{other}",
            f"{NAMESPACES_PREFIX}{device}/refs/{other}",
        ):
            assert is_desired_ref(ref) is by_the_rule(ref), repr(ref)
