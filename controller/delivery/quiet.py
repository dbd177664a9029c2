"""Per-robot desired state, step 6 (write) of a reconcile: which robots' inputs cannot have changed (pure).

A wave to 1,000 robots of 100,000, or an ingest of 1,000 reports, leaves 99,000 robots exactly as
the last reconcile found them. Every per-robot pass of :func:`controller.reconcile.delivery_step.deliver`
(historic evidence, inputs digests, the published-ref comparison, selection) cost a few
microseconds per robot, about 1.6 s per reconcile at 100,000 robots (issue 12, profiled). This memo
lets those passes skip a **quiet** robot: one whose

- device file is the very object the last reconcile that delivered found and left alone (the
  state branch's cache hands an unchanged robot the same object; the memo keeps it alive, so its
  identity is its own: a robot whose file changed is not quiet), its inputs then being its
  recorded ones (neither built nor moved); or
- device file was written by that reconcile with a new record (its ref moved, or its inputs
  digest was relabelled), and now holds that record and the very records (by value: the state
  cache parses a written file anew) its inputs digest was computed from; a fan-out's or a
  bootstrap's robots are quiet in the next reconcile that runs, so a wave after one reads the
  wave's robots alone;
- bundle inputs are computed under the same :func:`scope_of`: the recipe, trust-root version and
  every rollout's evidence on main (:meth:`~controller.delivery.inputs.BundleInputs.scope`), the
  sha256 of every release file and the ref layout, for every robot; and, for the rollouts it has
  records of, their generations and the commits that put their releases out (where historic
  evidence is read from).

Everything a quiet robot's inputs digest is computed from is then what it was, so its digest is
its recorded one and its bundle holds the recorded content: it is not built, its historic
evidence is not read, and only its ref (kept or not), its expiry and its renewal slot are looked
at. The memo can miss a robot (it then takes the full path) but never hold a stale one:
tests/test_reconcile_passes.py checks every reconcile of a scripted life against a cold
computation. ``controller reconcile --once`` keeps no memo and computes everything. No I/O.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from itertools import compress
from operator import is_not

from controller.records.model import DeploymentRecord
from controller.state.model import DeviceFile, PublishedDesired, RolloutState


@dataclass(frozen=True)
class Scope:
    """What robots' delivery depends on besides their own device files: ``fixed`` for every robot,
    and per rollout state the parts a robot's historic evidence is read by, which matter only to
    the robots with a record of that rollout."""

    fixed: Hashable
    history: Mapping[str, Hashable]

    def changed_rollouts(self, before: Scope) -> frozenset[str]:
        """The rollouts whose generation or release commits differ from ``before``'s (or that
        appeared or went since)."""
        names = self.history.keys() | before.history.keys()
        return frozenset(n for n in names if self.history.get(n) != before.history.get(n))


def scope_of(
    inputs_scope: str,
    rollouts: Mapping[str, RolloutState],
    release_sha256: Mapping[str, str],
    *,
    namespaces: bool,
) -> Scope:
    """What every robot's delivery depends on besides its own device file (see the module)."""
    history = {
        name: (state.generation, tuple(sorted(state.release_commits.items())))
        for name, state in rollouts.items()
    }
    return Scope((inputs_scope, tuple(sorted(release_sha256.items())), namespaces), history)


@dataclass
class QuietMemo:
    """The robots of the last reconcile that delivered, kept between reconciles by ``controller
    run`` (:class:`~controller.reconcile.memo.RobotMemo`): every robot's device file as that
    reconcile found it, and of those it gave a new record, the record and the records it was
    digested from. Every other robot it had was left alone.

    The next reconcile compares its robots with these by identity, in C (the ids as one list, the
    files as one list beside it: about 4 ms at 100,000 robots), and gets the robots that are **not**
    quiet: a ``set`` of the robots the change touched, not the fleet's quiet robots. Everything the
    delivery step then does per robot is over those (:mod:`controller.delivery.standing` keeps the
    quiet robots' selection by group)."""

    scope: Scope | None = None
    ids: list[str] = field(default_factory=list)  # the robots of that reconcile, in its order
    files: list[DeviceFile] = field(default_factory=list)  # each one's device file then, beside ``ids``
    # Robots that reconcile gave a new record (moved, or a new inputs digest): their device file
    # is written and parsed anew, so it is a new object next time. Robot -> (the records its inputs
    # were digested from, the record written): quiet next time while its file holds both (by value).
    settled: dict[str, tuple[tuple[DeploymentRecord, ...], PublishedDesired]] = field(default_factory=dict)
    loose: frozenset[str] = frozenset()  # robots neither left alone nor settled: the full way next time

    @property
    def robots(self) -> dict[str, DeviceFile]:
        """The robots left alone, with the device file each was found with (a pass over the fleet:
        for tests and tools, not for a reconcile)."""
        return {
            device: data
            for device, data in zip(self.ids, self.files, strict=True)
            if device not in self.settled and device not in self.loose
        }

    def quiet(self, scope: Scope, devices: Mapping[str, DeviceFile]) -> frozenset[str]:
        """The robots of ``devices`` that are quiet under ``scope`` (a pass over the fleet: for
        tests and tools; a reconcile asks :meth:`touched`)."""
        found = self.touched(scope, devices)
        return frozenset() if found is None else frozenset(devices.keys() - found.touched)

    def touched(self, scope: Scope, devices: Mapping[str, DeviceFile]) -> Touched | None:
        """The robots of ``devices`` that are not quiet under ``scope`` (None: no robot is quiet,
        the fixed scope changed or nothing is remembered): those whose device file is not the very
        one the memo holds and that are not settled by the record last written, the memo's loose
        ones, and, where a rollout's generation or release commits changed (or its state appeared
        or went), the robots with a record of it (the others' historic evidence is untouched)."""
        if self.scope is None or scope.fixed != self.scope.fixed:
            return None
        ids = list(devices)
        if ids == self.ids:  # the same robots in the same order (the usual case): compared in C
            differ = set(compress(ids, map(is_not, devices.values(), self.files)))
            gone: set[str] = set()
        else:
            held = dict(zip(self.ids, self.files, strict=True))
            differ = set(compress(ids, map(is_not, devices.values(), map(held.get, ids))))
            gone = held.keys() - devices.keys()
        settled = set()
        for device, (records, written) in self.settled.items():
            data = devices.get(device)
            if (
                data is not None
                and _same_record(data.desired, written)
                and (data.records is records or data.records == records)
            ):
                settled.add(device)
        touched = (differ | self.settled.keys()) - settled
        touched.update(self.loose)
        changed = scope.changed_rollouts(self.scope)
        if changed:  # rare (a new generation, a release put out): a pass over the robots' records
            touched.update(
                d for d, data in devices.items() if any(r.rollout in changed for r in data.records)
            )
        touched = {device for device in touched if device in devices}  # not the robots gone
        return Touched(touched, frozenset(settled - touched), frozenset(gone))

    def remember(
        self,
        scope: Scope,
        devices: Mapping[str, DeviceFile],
        settled: Mapping[str, PublishedDesired] | None = None,
        loose: AbstractSet[str] = frozenset(),
    ) -> None:
        """After a reconcile over ``devices`` (as it found them): the robots ``settled`` by a new
        record (robot -> the record, whose inputs digest is that of its records now) and the
        ``loose`` ones (neither left alone nor settled); every other robot was left alone (inputs
        as recorded, not moved, no new record). Two lists of references and the settled robots:
        nothing is done per robot left alone."""
        self.scope = scope
        self.ids, self.files = list(devices), list(devices.values())
        self.settled = {
            device: (devices[device].records, written) for device, written in (settled or {}).items()
        }
        self.loose = frozenset(loose)


@dataclass(frozen=True)
class Touched:
    """What :meth:`QuietMemo.touched` finds: the robots not quiet, the quiet ones settled by the
    record last written (their records are a new object), and the memo's robots gone since."""

    touched: set[str]
    settled: frozenset[str]
    gone: frozenset[str]


def _same_record(found: PublishedDesired | None, written: PublishedDesired) -> bool:
    """``found`` holds the same record as ``written``, field by field (the model's ``==`` costs
    about 3 us a robot, most of it not in the comparison: the reconcile after a fan-out asks for
    every robot)."""
    return found is written or (found is not None and found.__dict__ == written.__dict__)
