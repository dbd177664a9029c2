"""``validate_snapshot``: a whole fleet snapshot in, every problem out, sorted by file and line.

Step 3 of a reconcile and the body of ``fleetcd validate``: load every document
(:func:`fleetcd.loading.fleetspec.load_spec`), then run the cross-file checks — references,
overlap, a release's ``requires`` (unknown app, unsatisfiable range, cycles), two apps sharing
one config file on a robot, configs,
rollouts that silently do nothing (warnings), immutability against a base
snapshot, reserved artifacts, signatures and approvals. Pure apart from gpg, which sits behind
``keyring_factory``. The trust checks (the trust-root chain, then signatures and approvals against
its newest verified version) run whatever fleet.yaml holds; the artifact check needs fleet.yaml and is
skipped when it is invalid; a withdrawal its approvers did not sign is left out of the returned spec;
all others still run, so one broken file never hides the rest. With
``strict`` every warning becomes an error (``fleetcd validate --strict``).

Two halves: :func:`check_content` (loading and the cross-file checks, a pure function of the
bytes) and :func:`judge` (gpg's and the clock's checks over a content check). A long-running
caller keeps the first and judges it again as time passes (:mod:`fleetcd.validation.incremental`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from fleetcd.errors import Diagnostic
from fleetcd.loading.fleetspec import FleetSpec, load_spec_parts
from fleetcd.loading.memo import DocumentMemo
from fleetcd.trust.gpg import Keyring
from fleetcd.trust.rootchain import TrustedRoot
from fleetcd.validation import (
    apps,
    artifacts,
    configs,
    immutability,
    noops,
    overlap,
    references,
    requires,
    trust,
    withdrawals,
)
from fleetcd.validation.context import Context
from fleetcd.validation.delta import RobotIndex
from fleetcd.validation.trust import KeyringFactory


@dataclass(frozen=True)
class ValidationResult:
    """The loaded spec and every diagnostic (errors and warnings), sorted by file and line."""

    spec: FleetSpec
    diagnostics: tuple[Diagnostic, ...]
    strict: bool = False  # warnings were turned into errors
    trust: TrustedRoot | None = None  # the newest trust-root version whose chain verified

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity != "error")

    @property
    def ok(self) -> bool:
        """True when nothing is an error; warnings fail validation only once :meth:`promoted`."""
        return not self.errors

    def promoted(self) -> ValidationResult:
        """This result with every warning turned into an error (``--strict``)."""
        errors = (d if d.severity == "error" else replace(d, severity="error") for d in self.diagnostics)
        return ValidationResult(self.spec, sort_diagnostics(errors), strict=True, trust=self.trust)


@dataclass(frozen=True)
class ContentCheck:
    """What validation finds from the bytes alone: a pure function of ``files``, ``base`` and the
    reader's ``problems`` (no clock, no gpg), so one of an unchanged snapshot holds for good
    (:mod:`fleetcd.validation.incremental` reuses it). :func:`judge` adds what gpg and the clock say."""

    files: Mapping[str, bytes]
    base: Mapping[str, bytes] | None
    problems: tuple[Diagnostic, ...]  # the reader's, as given
    spec: FleetSpec  # every document, signatures attached; withdrawals not yet judged
    ctx: Context  # over spec, keeping only what the trust checks reuse (Context.for_trust)
    documents: tuple[Diagnostic, ...]  # the loader's findings on documents and unexpected files
    attached: tuple[Diagnostic, ...]  # the loader's findings on signatures, approvals and keys
    checks: tuple[Diagnostic, ...]  # the cross-file checks' findings (signatures never read)
    # ``checks`` by the part of a check that produced them (:func:`content_parts`), so that a
    # device-only change recomputes only the parts a device file feeds (:mod:`.delta`).
    parts: Mapping[str, tuple[Diagnostic, ...]] = field(default_factory=dict, compare=False, repr=False)
    # The robots' memberships, selections and findings kept for :mod:`.delta` (when asked for).
    index: RobotIndex | None = field(default=None, compare=False, repr=False)


def check_content(
    files: Mapping[str, bytes],
    base: Mapping[str, bytes] | None = None,
    *,
    problems: Iterable[Diagnostic] = (),
    memo: DocumentMemo | None = None,
    keep_index: bool = False,
) -> ContentCheck:
    """Every document loaded and every cross-file check run: all of validation but gpg and clock.
    ``keep_index`` (a long-running caller's, without ``base``) also keeps what a later device-only
    change is rechecked from (:class:`~fleetcd.validation.delta.RobotIndex`)."""
    spec, documents, attached = load_spec_parts(files, memo)
    ctx = Context(spec)
    parts: dict[str, tuple[Diagnostic, ...]] = {}
    parts[REFERENCES_ROBOTS] = tuple(references.robot_references(ctx))
    parts[REFERENCES_ROBOT_CASE] = tuple(references.robot_case_collisions(ctx))
    parts[REFERENCES_DOCUMENTS] = tuple(references.document_checks(ctx))
    parts[OVERLAP] = tuple(overlap.check(ctx))
    parts[REQUIRES_RANGES] = tuple(requires.ranges(ctx))
    parts[REQUIRES_CYCLES] = tuple(requires.cycles(ctx))
    parts[APPS] = tuple(apps.check(ctx))
    kept, validators = configs.release_checks(ctx)
    parts[CONFIGS_RELEASES] = tuple(kept)
    parts[CONFIGS_ROBOTS] = tuple(configs.robot_groups(ctx, validators))
    unknown = noops.membership_unknown(ctx)
    for name in sorted(spec.rollouts):
        parts[noops_part(name)] = () if unknown else tuple(noops.rollout_warnings(ctx, name))
    if base is not None:
        parts[IMMUTABILITY] = tuple(immutability.check(files, base))
    if spec.fleet is not None:
        parts[ARTIFACTS] = tuple(artifacts.check(ctx, spec.fleet.model))
    index = RobotIndex.build(ctx, validators, unknown) if keep_index and base is None else None
    found = tuple(d for part in parts.values() for d in part)
    return ContentCheck(
        files,
        base,
        tuple(problems),
        spec,
        ctx.for_trust(),
        tuple(documents),
        tuple(attached),
        found,
        parts,
        index,
    )


# The parts of the cross-file checks (ContentCheck.parts), by what they read.
REFERENCES_ROBOTS = "references.robots"  # every reference, robots' included
REFERENCES_ROBOT_CASE = "references.robot-case"  # robot ids equal but for letter case
REFERENCES_DOCUMENTS = "references.documents"  # no device file read
OVERLAP = "overlap"
REQUIRES_RANGES = "requires.ranges"  # no device file read
REQUIRES_CYCLES = "requires.cycles"
APPS = "apps"
CONFIGS_RELEASES = "configs.releases"  # no device file read
CONFIGS_ROBOTS = "configs.robots"
IMMUTABILITY = "immutability"
ARTIFACTS = "artifacts"  # no device file read


def noops_part(rollout: str) -> str:
    return f"noops/{rollout}"


def judge(
    content: ContentCheck,
    keyring_factory: KeyringFactory = Keyring.from_armored,
    *,
    strict: bool = False,
    now: datetime | None = None,
) -> ValidationResult:
    """``content`` with what depends on gpg and on the clock judged now: the trust-root chain,
    signatures, approvals and withdrawals (gpg judges key and signature expiry as it verifies),
    then the trust root in force against ``now`` when given."""
    spec, ctx = content.spec, content.ctx
    found: list[Diagnostic] = [*content.problems, *content.documents, *content.attached, *content.checks]
    checked = trust.check(ctx, keyring_factory)
    found.extend(checked.diagnostics)
    # An unapproved withdrawal withdraws nothing: downstream (controller, plan, pages) sees only
    # those in force, and only their rollouts are warned about.
    spec = withdrawals.approved_only(spec, checked.withdrawals_in_force)
    found.extend(references.withdrawn_rollouts(ctx.with_spec(spec)))  # its robots are ctx's own
    if now is not None and checked.trusted is not None:
        found.extend(trust.expiry(spec, checked.trusted, now))
    result = ValidationResult(spec=spec, diagnostics=sort_diagnostics(found), trust=checked.trusted)
    return result.promoted() if strict else result


def validate_snapshot(
    files: Mapping[str, bytes],
    base: Mapping[str, bytes] | None = None,
    keyring_factory: KeyringFactory = Keyring.from_armored,
    *,
    problems: Iterable[Diagnostic] = (),
    strict: bool = False,
    now: datetime | None = None,
    memo: DocumentMemo | None = None,
) -> ValidationResult:
    """Validate ``files`` (path → bytes); ``base`` is the snapshot releases must not differ from.

    ``problems`` are findings of whoever read the snapshot (symlinks in a work tree or a git tree),
    merged into the result. ``strict`` turns every warning into an error. Raises
    :class:`~fleetcd.errors.SetupError` only when gpg is needed and unusable; content problems are
    always diagnostics. ``now`` (``fleetcd validate``'s clock) also judges the trust root in force
    for expiry (:func:`fleetcd.validation.trust.expiry`); the controller judges it itself. ``memo``
    (a long-running caller's :class:`~fleetcd.loading.memo.DocumentMemo`) spares parsing documents
    whose bytes it loaded before; every check after loading runs all the same. The same as
    :func:`judge` of :func:`check_content`.
    """
    content = check_content(files, base, problems=problems, memo=memo)
    return judge(content, keyring_factory, strict=strict, now=now)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> tuple[Diagnostic, ...]:
    """Sorted by file, line (file-level first), field and message; exact repeats dropped."""
    unique = set(diagnostics)
    return tuple(sorted(unique, key=lambda d: (d.file, d.line or 0, d.field or "", d.message, d.reason)))
