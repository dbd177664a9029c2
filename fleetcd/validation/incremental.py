"""Validating a snapshot again at the cost of what changed since the last validation of it.

A long-running caller (the controller's ``ReconcileCache``) keeps the last
:class:`~fleetcd.validation.pipeline.ContentCheck` and hands it back with the next snapshot;
:func:`recheck_content` returns the content check of the new snapshot, equal to a fresh
:func:`~fleetcd.validation.pipeline.check_content`, reusing what provably did not change:

* nothing changed (the same tree, its validation aged): the content check is a pure function of
  the bytes, so it is the kept one as is. Only :func:`~fleetcd.validation.pipeline.judge` runs
  again: the trust-root chain, signatures, approvals and withdrawals through gpg (which judges key
  and signature expiry against its clock) and the trust root's expiry against ``now``;
* only signatures, approvals or keys changed (every changed path is one of
  :data:`~fleetcd.loading.fleetspec.TRUST_FILE_KINDS`, all ``.asc``): no document changed and no
  cross-file check reads those files, so the documents' findings and the cross-file checks are
  kept, and the files are attached to the kept documents again
  (:func:`~fleetcd.loading.fleetspec.reattach`);
* anything else (a document added, removed or changed, an unexpected file, other findings of the
  reader, a base to compare against): the content check runs in full, parsing only the documents
  whose bytes the memo does not hold. The cross-file checks relate every robot to every cohort,
  rollout and config, and report robots in groups, so which of them one changed file can affect is
  not worked out here: they run over the whole fleet.

Pure: no gpg, no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fleetcd.compat import StrEnum
from fleetcd.errors import Diagnostic
from fleetcd.layout import classify
from fleetcd.loading.fleetspec import TRUST_FILE_KINDS, reattach
from fleetcd.loading.memo import DocumentMemo
from fleetcd.validation.pipeline import ContentCheck, check_content


class Reuse(StrEnum):
    """How much of the previous content check a recheck kept."""

    SAME = "same"  # the snapshot's bytes are the previous one's: all of it
    TRUST_FILES = "trust-files"  # only signatures, approvals or keys changed: all but their attaching
    NONE = "none"  # documents or the reader's findings changed: checked in full


def recheck_content(
    previous: ContentCheck | None,
    files: Mapping[str, bytes],
    *,
    problems: Iterable[Diagnostic] = (),
    memo: DocumentMemo | None = None,
) -> tuple[ContentCheck, Reuse]:
    """The content check of ``files`` (no base), equal to ``check_content(files, problems=problems)``,
    and how much of ``previous`` it reused."""
    found = tuple(problems)
    if previous is None or previous.base is not None or previous.problems != found:
        return check_content(files, problems=found, memo=memo), Reuse.NONE
    changed = changed_paths(previous.files, files)
    if changed is None:
        return check_content(files, problems=found, memo=memo), Reuse.NONE
    if not changed:
        return previous, Reuse.SAME
    spec, attached = reattach(previous.spec, files)
    ctx = previous.ctx.with_spec(spec)
    content = ContentCheck(
        files, None, found, spec, ctx, previous.documents, tuple(attached), previous.checks
    )
    return content, Reuse.TRUST_FILES


def changed_paths(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> set[str] | None:
    """The paths added, removed or changed from ``old`` to ``new``, when every one of them is a
    signature, approval or key; None as soon as one is not (a document, or an unexpected file)."""
    if old is new:
        return set()
    changed = set(old.keys() ^ new.keys())
    for path, raw in new.items():
        before = old.get(path)
        if before is not None and before is not raw and before != raw:
            changed.add(path)
    for path in changed:
        where = classify(path)
        if where is None or where.kind not in TRUST_FILE_KINDS:
            return None
    return changed
