"""Agent step 1 (sync), the layout choice: which name of this robot's desired state it follows (pure).

The controller writes a robot's desired-state commit under one of two layouts
(:func:`fleetcd.git.refs.desired_names`): namespaced, ``refs/namespaces/<id>/refs/fleetcd/desired/<id>``,
which a server running ``GIT_NAMESPACE=<id>`` shows as ``refs/fleetcd/desired/<id>``; or flat,
``refs/fleetcd/desired/<id>``. A server that applies no namespace shows both names at once when
both exist: a flat ref left over from before the controller switched layouts, or one planted with
an old signed bundle. Following a fixed name then freezes the robot silently (it refuses that
bundle every poll, or runs the old one forever), so when both names exist and differ the robot
follows the better one and says so (docs/git-server.md, "Which ref a robot follows"):

1. a candidate the robot's own verification accepts (``judge``: controller signature, inclusion
   proof, device, a serial not below the one it holds, expiry) beats one found expired, which beats
   one refused or unreadable;
2. among accepted ones, the higher verified serial wins: the controller's serial only grows, and a
   switch of layouts signs a new root, so the newest name is the controller's current one;
3. what is still tied goes to the first name of :func:`~fleetcd.git.refs.desired_names`, the
   namespaced layout's physical name (the layout the controller writes by default).

Either way the robot reports :class:`LayoutConflict` naming both refs, so that the operator sees
it (``fleetcd get devices``) and the controller removes the ref it no longer owns
(:mod:`controller.delivery.prune`). Pure: the fetch and the verification are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fleetcd.desired import BundleExpired, BundleRejected
from fleetcd.errors import FleetcdError, InvalidContent

if TYPE_CHECKING:
    from fleetcd.wire import DesiredFiles

# The verification a candidate goes through: its verified serial, or BundleRejected/InvalidContent.
Judge = Callable[["DesiredFiles"], int]

ACCEPTED, EXPIRED, REFUSED, UNREADABLE = 3, 2, 1, 0  # tiers, best first (rule 1)


class LayoutConflict(FleetcdError):
    """Both names of this robot's desired state exist and differ: reported, never fatal."""


@dataclass(frozen=True)
class Candidate:
    """One name of the robot's desired state that the server has: its files, or why not readable."""

    ref: str
    files: DesiredFiles | None
    error: BundleRejected | None = None


@dataclass(frozen=True)
class Verdict:
    candidate: Candidate
    tier: int
    serial: int = 0
    why: str = ""  # for the report: the serial, or the first line of the refusal

    def key(self, order: int) -> tuple[int, int, int]:
        return (self.tier, self.serial, -order)


def judge_candidate(candidate: Candidate, judge: Judge | None) -> Verdict:
    """The candidate's tier and verified serial (rule 1); unjudged files count as refused."""
    if candidate.files is None:
        return Verdict(candidate, UNREADABLE, why=_first_line(candidate.error))
    if judge is None:
        return Verdict(candidate, REFUSED, why="not verified")
    try:
        serial = judge(candidate.files)
    except BundleExpired as exc:
        return Verdict(candidate, EXPIRED, why=_first_line(exc))
    except (BundleRejected, InvalidContent) as exc:
        return Verdict(candidate, REFUSED, why=_first_line(exc))
    return Verdict(candidate, ACCEPTED, serial, f"serial {serial}")


@dataclass(frozen=True)
class Choice:
    """The candidate the robot follows, and the conflict to report (None: only one name)."""

    chosen: Candidate
    conflict: LayoutConflict | None = None


def choose(candidates: Sequence[Candidate], judge: Judge | None) -> Choice | None:
    """The candidate to follow among ``candidates`` (in :func:`desired_names` order, each name at
    most once); None when there is none. Distinct commits are judged, one identical to another is not."""
    distinct: list[Candidate] = []
    for candidate in candidates:
        commit = candidate.files.commit if candidate.files is not None else None
        if commit is None or all(c.files is None or c.files.commit != commit for c in distinct):
            distinct.append(candidate)
    if len(distinct) <= 1:
        return Choice(distinct[0]) if distinct else None
    verdicts = [judge_candidate(c, judge) for c in distinct]
    best = max(range(len(verdicts)), key=lambda i: verdicts[i].key(i))
    winner = verdicts[best]
    others = "; ".join(f"{v.candidate.ref}: {v.why}" for i, v in enumerate(verdicts) if i != best)
    names = " and ".join(c.ref for c in distinct)
    message = (
        f"layout conflict: both refs {names} exist and differ; following {winner.candidate.ref} "
        f"({winner.why}); {others}"
    )
    return Choice(winner.candidate, LayoutConflict(message))


def _first_line(error: Exception | None) -> str:
    return str(error).splitlines()[0] if error is not None and str(error) else "unreadable"
