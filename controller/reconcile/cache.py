"""What a long-running controller keeps between reconciles: parsed git objects, keyed by their ids.

``fleetcd controller run`` hands one :class:`ReconcileCache` to every reconcile
(``ControllerSettings.cache``); ``controller reconcile --once`` has none and reads everything. A
reconcile still starts from git every time: the fetch, the refs and the ids of the trees it reads
are git's, and only the *parsing* of content already parsed under the same id is skipped. A git id
names the exact bytes, so an entry can never be stale, and nothing the cache holds came from
anywhere but git:

* main's tree, its files and their validation (strict loading, cross-file checks, signatures and
  approvals), and the fleet context built from them, under main's tree id: robots reporting while
  main stays put cost no YAML parsing at all (at 10,000 robots, loading main was 14 of a 38 s
  reconcile that ingested 1,000 reports, profiled);
* main's documents as last loaded (:class:`~fleetcd.loading.memo.DocumentMemo`), by path and exact
  bytes: when main's tree changes, the next validation parses only the documents whose bytes it
  does not hold. A commit changing one device file parses one file; invalid documents are kept as
  their file:line errors. Entries of files that left main are dropped after each load;
* the last validation's content checks (:class:`~fleetcd.validation.pipeline.ContentCheck`: the
  loaded spec, the loader's findings and the cross-file checks', all a function of the bytes), with
  the files they came from: a validation of the same bytes (the tree's validation aged) or of a
  tree whose only changes are signatures, approvals or keys keeps them and runs gpg's and the
  clock's checks only (:mod:`fleetcd.validation.incremental`); any changed document runs the
  cross-file checks over the whole fleet again. When an aged tree's new verdict equals the kept one
  (same findings, trust root, withdrawals in force), the kept validation and its fleet context stay;
* ``fleet.yaml`` and ``keys/`` of the last :data:`POLICY_TREES` trees read, by tree id: a new
  commit's commit policy comes from the last accepted tree, which is then not read again (10,000
  blobs at 10,000 robots);
* the state branch as last parsed (:class:`~controller.reconcile.statebranch.StateCache`): the
  next reconcile diffs the trees and parses only the files that changed;
* the audit log's day files as last verified (:class:`~controller.audit.memo.VerifiedDays`), by
  path and git blob id, with the first and last seq and hash of each, and how many bytes of it were
  verified with their sha256: the next reconcile checks the links between the unchanged days and
  the anchor from those summaries, without reading their bytes, and of the newest day (appended to
  by the last write) parses only the lines after the bytes it verified, once the sha256 of the new
  file's first bytes shows they are exactly those. The newest day's event keys are kept too, so
  the write step appends from the remembered head without parsing the day. The verdict is a full
  check's: anything but an append (a line rewritten anywhere, a day cut back or replaced) is parsed
  in full and refused as without the cache. Measured on a log of 365 days x 2,000 lines (292 MB),
  CPU seconds: 25.6 s for the full check (``--once``), 0.28 s with the cache after the newest day
  grew when it was keyed by sha256 (hashing every day); by blob id the older days cost nothing.
  Late in a 100,000-robot day (45 MB, ``bench/audit_day.py``), the newest day's verify went from
  1.7-2.4 s to 0.07-0.08 s of CPU and the append from 0.9-1.2 s to 0.06-0.08 s. The state
  snapshot holds the bytes of the newest day only (:class:`~controller.audit.days.DayFiles`): a
  year of a 100,000-robot log is not in memory; the kept keys take about 17 MB late in such a day
  (112,000 lines of 400 B), the set the append built and dropped on every reconcile before.

Only the newest entry of each is kept (the memo's documents are the very objects the kept
validation holds), so memory stays one parsed fleet, as one reconcile needs anyway.

Validation is a function of the files and of the clock: the controller judges the trust root's
expiry against ``now`` itself on every reconcile, but gpg judges a key's expiry when it verifies.
So a validation is reused only before the first key or subkey in main's ``keys/`` expires
(:attr:`MainCache.good_until`), and at most :data:`VALIDATION_MAX_AGE` after it was made (a
signature's own expiry, which gpg also judges, is not read out): then the same tree's signatures,
approvals and trust-root chain are verified afresh (its content checks, which read no clock and no
key, are kept: at 100,000 robots that revalidation is its few gpg calls, not a pass over the fleet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.audit.memo import VerifiedDays
from controller.pages.memo import PagesMemo
from controller.reconcile.memo import RobotMemo
from controller.reconcile.refdigest import IdleDigests
from controller.reconcile.rollouts import FleetContext
from controller.reconcile.statebranch import StateCache
from fleetcd.errors import Diagnostic
from fleetcd.git.reflisting import RefListingMemo
from fleetcd.loading.memo import DocumentMemo
from fleetcd.validation import ValidationResult
from fleetcd.validation.incremental import Reuse
from fleetcd.validation.pipeline import ContentCheck

# The longest a validation is reused for one tree: a signature's own expiry (gpg's EXPSIG) is not
# read out, so a cached verdict is at most this late to see one; the periodic full reconcile's
# interval, and one validation per 10 minutes is noise next to a reconcile per second.
VALIDATION_MAX_AGE = timedelta(minutes=10)
# Trees whose commit-policy files (fleet.yaml, keys/) are kept: the last accepted tree, which the
# next commit's policy comes from, survives a few stalled commits after it.
POLICY_TREES = 4


@dataclass
class MainCache:
    """Main's tree as last read and validated (the fleet context once a reconcile built one)."""

    tree: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)
    validation: ValidationResult | None = None
    fleet: FleetContext | None = None
    # The validation (and fleet context) is reused before this instant only: the earliest key
    # expiry in keys/, or VALIDATION_MAX_AGE after it was made.
    good_until: datetime | None = None
    validations: int = 0  # validations made through this cache (tests count them)
    # The content checks (loading and cross-file checks, no gpg, no clock) of the last validation,
    # with the files they came from: the next validation reuses what its files leave unchanged.
    content: ContentCheck | None = None
    reuses: dict[Reuse, int] = field(default_factory=dict)  # validations by how much they reused (tests)
    # Main's documents as last loaded, by path and exact bytes: a validation parses only the files
    # whose bytes it does not hold (a new commit's changed files, after a new tree).
    documents: DocumentMemo = field(default_factory=DocumentMemo)
    # tree id -> that tree's fleet.yaml and keys/, the newest POLICY_TREES trees read.
    policies: dict[str, dict[str, bytes]] = field(default_factory=dict)
    policy_reads: int = 0  # trees read in full for their commit policy alone (tests count them)

    def holds(self, tree: str) -> bool:
        return self.tree == tree

    def remember(self, tree: str, files: dict[str, bytes], problems: list[Diagnostic]) -> None:
        """A newly read tree: what was validated from another tree is dropped."""
        self.tree, self.files, self.problems = tree, files, problems
        self.forget_validation()

    def policy_of(self, tree: str) -> dict[str, bytes] | None:
        """fleet.yaml and keys/ of ``tree``, when one of the last trees read was it."""
        return self.policies.get(tree)

    def keep_policy(self, tree: str, files: dict[str, bytes]) -> None:
        self.policies.pop(tree, None)
        self.policies[tree] = files
        while len(self.policies) > POLICY_TREES:
            del self.policies[next(iter(self.policies))]

    def forget_validation(self) -> None:
        self.validation = self.fleet = self.good_until = None

    def validated(self, now: datetime) -> ValidationResult | None:
        """The kept validation of this tree while it still holds at ``now``, else None (an aged one
        stays held, for :meth:`keep` to compare the next verdict with)."""
        if self.validation is None or self.good_until is None or now >= self.good_until:
            return None
        return self.validation

    def keep(
        self, validation: ValidationResult, now: datetime, keys_expire: datetime | None, *, same_content: bool
    ) -> ValidationResult:
        """Keep ``validation`` of this tree, made at ``now``; returns the validation to act on.

        When the content checks were the held validation's own (``same_content``: this tree, its
        bytes unchanged) and gpg and the clock said the same again (equal findings, the same trust
        root in force, the same withdrawals approved), the held validation is equal to the new one in
        every field and stays, with the fleet context built from it: a same-tree revalidation then
        costs its gpg checks, not a fleet context over every robot."""
        held = self.validation
        if not (same_content and held is not None and _same_verdict(held, validation)):
            self.validation, self.fleet = validation, None
        limit = now + VALIDATION_MAX_AGE
        self.good_until = limit if keys_expire is None else min(limit, keys_expire)
        assert self.validation is not None
        return self.validation


def _same_verdict(held: ValidationResult, new: ValidationResult) -> bool:
    """Two judgements of one content check that agree on everything a reconcile acts on."""
    return (
        held.diagnostics == new.diagnostics
        and held.strict == new.strict
        and held.trust == new.trust
        and held.spec.withdrawals.keys() == new.spec.withdrawals.keys()
    )


@dataclass
class ReconcileCache:
    main: MainCache = field(default_factory=MainCache)
    state: StateCache = field(default_factory=StateCache)
    audit: VerifiedDays = field(default_factory=VerifiedDays)
    # The status pages' robot views and squares, by what they were built from (controller.pages.memo).
    pages: PagesMemo = field(default_factory=PagesMemo)
    # Per-robot values of the plan and deliver steps, by what they came from (controller.reconcile.memo).
    robots: RobotMemo = field(default_factory=RobotMemo)
    # The server's and the mirror's refs as last parsed, by the packed-refs bytes they came from,
    # and the ref names already judged (fleetcd.git.reflisting): the fetch parses what changed.
    refs: RefListingMemo = field(default_factory=RefListingMemo)
    # The idle check's and the idle mark's ref digests, by bucket (controller.reconcile.refdigest):
    # each hashes again only the buckets of the refs that changed since it last saw its listing.
    digests: IdleDigests = field(default_factory=IdleDigests)
