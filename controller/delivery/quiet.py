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

from collections.abc import Hashable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

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
    """The robots left alone by the last reconcile that delivered, kept between reconciles by
    ``controller run`` (:class:`~controller.reconcile.memo.RobotMemo`)."""

    scope: Scope | None = None
    robots: dict[str, DeviceFile] = field(default_factory=dict)  # robot -> its device file then
    # Robots the last reconcile gave a new record (moved, or a new inputs digest): their device file
    # is written and parsed anew, so it is a new object next time. Robot -> (the records its inputs
    # were digested from, the record written): quiet next time while its file holds both (by value).
    settled: dict[str, tuple[tuple[DeploymentRecord, ...], PublishedDesired]] = field(default_factory=dict)

    def quiet(self, scope: Scope, devices: Mapping[str, DeviceFile]) -> frozenset[str]:
        """The robots of ``devices`` that are quiet under ``scope``: none when its fixed part
        changed; where a rollout's generation or release commits changed, or its state appeared or
        went, not the robots with a record of it (the others' historic evidence is untouched)."""
        same, settled = self.split(scope, devices)
        return same | settled

    def split(self, scope: Scope, devices: Mapping[str, DeviceFile]) -> tuple[frozenset[str], frozenset[str]]:
        """:meth:`quiet`'s robots in two: those with the very device file the memo holds, and those
        settled by the record last written (their file is a new object)."""
        if self.scope is None or scope.fixed != self.scope.fixed:
            return frozenset(), frozenset()
        held = self.robots
        same = {d for d, data in devices.items() if held.get(d) is data}
        settled = set()
        for device, (records, written) in self.settled.items():
            data = devices.get(device)
            if (
                data is not None
                and _same_record(data.desired, written)
                and (data.records is records or data.records == records)
            ):
                settled.add(device)
        changed = scope.changed_rollouts(self.scope)
        if changed:
            same = {d for d in same if not any(r.rollout in changed for r in devices[d].records)}
            settled = {d for d in settled if not any(r.rollout in changed for r in devices[d].records)}
        return frozenset(same), frozenset(settled)

    def remember(
        self,
        scope: Scope,
        devices: Mapping[str, DeviceFile],
        left: Iterable[str],
        settled: Mapping[str, PublishedDesired] | None = None,
        *,
        unchanged: AbstractSet[str] = frozenset(),
    ) -> None:
        """After a reconcile: the robots ``left`` alone (inputs as recorded, not moved, no new
        record), with the device file each was found with; and the robots ``settled`` by a new
        record (robot -> the record, whose inputs digest is that of its records now).
        ``unchanged``: robots whose device file is the very one the memo holds for them (quiet by
        identity), which need no update: the robots held are changed in place, for the robots
        that left or came alone (a pass over every robot only as a set difference)."""
        left = left if isinstance(left, AbstractSet) else set(left)
        robots = self.robots
        for device in robots.keys() - left:
            del robots[device]
        for device in left - unchanged if unchanged else left:
            robots[device] = devices[device]
        self.scope = scope
        self.settled = {
            device: (devices[device].records, written) for device, written in (settled or {}).items()
        }


def _same_record(found: PublishedDesired | None, written: PublishedDesired) -> bool:
    """``found`` holds the same record as ``written``, field by field (the model's ``==`` costs
    about 3 us a robot, most of it not in the comparison: the reconcile after a fan-out asks for
    every robot)."""
    return found is written or (found is not None and found.__dict__ == written.__dict__)
