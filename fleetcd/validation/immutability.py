"""Published releases are immutable: compared with ``--base``, a release file never changes or goes.

Signatures and approvals are over a release file's exact bytes, and robots may already run it; an
edit (even whitespace) or a deletion would make history lie. A fix is a new version. Works on two
snapshots (path → bytes), so the CLI (work tree vs a git ref) and the controller (new commit vs
last processed commit) share it. Signature files may come and go (keys rotate); only
``releases/<app>/<version>.yaml`` itself is frozen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from fleetcd.errors import Diagnostic
from fleetcd.layout import FileKind, classify
from fleetcd.reasons import Reason


def check(files: Mapping[str, bytes], base: Mapping[str, bytes]) -> Iterator[Diagnostic]:
    for path in sorted(base):
        where = classify(path)
        if where is None or where.kind is not FileKind.RELEASE:
            continue
        if path not in files:
            yield Diagnostic(
                path,
                None,
                None,
                f"published release {where.name} {where.version} was deleted; releases are immutable "
                "(robots may run it and audit records point at it): restore the file",
                Reason.RELEASE_DELETED,
            )
        elif files[path] != base[path]:
            yield Diagnostic(
                path,
                first_difference(base[path], files[path]),
                None,
                f"published release {where.name} {where.version} was modified; releases are immutable: "
                "restore the file and publish a new version instead",
                Reason.RELEASE_MODIFIED,
            )


def first_difference(old: bytes, new: bytes) -> int:
    """1-based line in ``new`` of the first difference (clamped to its last line when lines were cut)."""
    old_lines = old.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    for number, (a, b) in enumerate(zip(old_lines, new_lines, strict=False), start=1):
        if a != b:
            return number
    return max(1, min(len(old_lines) + 1, len(new_lines)))
