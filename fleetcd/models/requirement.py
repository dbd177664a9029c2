"""``requires:`` of a Release: another app this release needs running on the same robot.

A requirement names an app and a version range, one to four comma-separated comparisons that all
must hold (``">=1.2.0"``, ``">=1.2.0, <2.0.0"``, ``"==1.4.2"``); versions compare as semver, so
``1.10.0 > 1.9.0`` and a pre-release sorts before its release. The controller dispatches a
deployment only to a robot that runs a satisfying version of every required app
(:mod:`controller.engine.requires`), the robot checks it again before it switches
(:mod:`agent.converge.requires`), and ``fleetcd validate`` refuses an unknown app, a range no
release on main satisfies and a cycle (:mod:`fleetcd.validation.requires`). Pure.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated

import semver
from pydantic import AfterValidator, Field, WithJsonSchema

from fleetcd.models.base import FrozenModel, SafeName, parse_version

MAX_REQUIREMENTS = 16  # apps one release may require
MAX_CLAUSES = 4
_SEMVER = r"(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
_CLAUSE = rf"(>=|<=|>|<|==)\s*({_SEMVER})"
RANGE_PATTERN = rf"^\s*{_CLAUSE}(?:\s*,\s*{_CLAUSE}){{0,{MAX_CLAUSES - 1}}}\s*$"
_CLAUSE_RE = re.compile(_CLAUSE)
_COMPARE: dict[str, Callable[[semver.Version, semver.Version], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}


def clauses(text: str) -> list[tuple[str, semver.Version]]:
    """The comparisons of a version range (already matched against :data:`RANGE_PATTERN`)."""
    return [(op, parse_version(version)) for op, version in _CLAUSE_RE.findall(text)]


def _check_range(text: str) -> str:
    if not re.fullmatch(RANGE_PATTERN, text):
        raise ValueError(
            f"{text!r} is not a version range: one to {MAX_CLAUSES} comparisons (>=, >, <=, <, ==) "
            "with semantic versions, comma-separated, e.g. '>=1.2.0, <2.0.0'"
        )
    if _empty(clauses(text)):
        raise ValueError(f"{text!r} is satisfied by no version at all")
    return text


def _empty(parts: list[tuple[str, semver.Version]]) -> bool:
    """True when no version can satisfy every comparison (the bounds cross)."""
    low: tuple[semver.Version, bool] | None = None  # (version, inclusive)
    high: tuple[semver.Version, bool] | None = None
    for op, version in parts:
        if op in (">=", ">", "=="):
            bound = (version, op != ">")
            if low is None or bound[0] > low[0] or (bound[0] == low[0] and not bound[1]):
                low = bound
        if op in ("<=", "<", "=="):
            bound = (version, op != "<")
            if high is None or bound[0] < high[0] or (bound[0] == high[0] and not bound[1]):
                high = bound
    if low is None or high is None:
        return False
    return low[0] > high[0] or (low[0] == high[0] and not (low[1] and high[1]))


VersionRange = Annotated[
    str,
    AfterValidator(_check_range),
    WithJsonSchema({"type": "string", "pattern": RANGE_PATTERN, "maxLength": 256}),
    Field(max_length=256),
]


class Requirement(FrozenModel):
    """``{app: navstack, version: ">=1.2.0"}``: ``app`` must run at a version in ``version``."""

    app: SafeName
    version: VersionRange

    def allows(self, version: str | None) -> bool:
        """True when ``version`` (None: the app does not run) satisfies the range."""
        if version is None:
            return False
        try:
            parsed = parse_version(version)
        except ValueError:
            return False
        return all(_COMPARE[op](parsed, bound) for op, bound in clauses(self.version))

    def __str__(self) -> str:
        return f"{self.app} {self.version}"


def first_unmet(requirements: Iterable[Requirement], running: Callable[[str], str | None]) -> str | None:
    """Why ``requirements`` are not met given ``running(app)`` (its version, None when it does not
    run); None when they all are. Shared wording for the controller's plan and the robot."""
    for requirement in requirements:
        version = running(requirement.app)
        if not requirement.allows(version):
            runs = "does not run" if version is None else f"runs {version}"
            return f"requires {requirement} ({requirement.app} {runs})"
    return None


@dataclass(frozen=True)
class Dependent:
    """A release of another app that requires this one: ``app`` ``version`` needs ``requirement``."""

    app: str
    version: str
    requirement: Requirement


def broken_dependent(
    version: str, dependents: Iterable[Dependent], running: Callable[[str], str | None]
) -> str | None:
    """Why switching to ``version`` would break an app that runs and requires it; None when not."""
    for dependent in dependents:
        if running(dependent.app) == dependent.version and not dependent.requirement.allows(version):
            return f"{dependent.app} {dependent.version} runs and requires {dependent.requirement}"
    return None
