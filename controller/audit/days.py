"""The audit log's day files by git blob id, their bytes read only when asked (no I/O of its own).

A long-running controller's log grows by one day file a day (about 45 MB at 100,000 robots), and
a reconcile needs the bytes of one of them: the newest, which it appends to. :class:`DayFiles` is
the log as a read-only mapping path → bytes that holds the blob id of every day file and the
bytes of the newest one only, once read; any other day is read through the ``read`` function it
is given (the state branch's reader, :mod:`controller.reconcile.statebranch`) each time it is
asked for, and not kept. :func:`controller.audit.chain.verify` uses the blob ids to recognise day
files it verified before (:class:`~controller.audit.memo.VerifiedDays`) without reading them; a
git id names the exact bytes, so a day whose id is unchanged is the day that was verified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping


class DayFiles(Mapping[str, bytes]):
    """Audit files (path → bytes) read through ``read(path)``; ``ids`` are their blob ids.

    ``keep`` is the one path whose bytes are held once read (the newest day file, which the
    write step appends to); ``held`` maps blob id → bytes and may be shared by copies of one
    snapshot (keyed by content, an entry is never wrong, only absent).
    """

    def __init__(
        self,
        ids: Mapping[str, str],
        read: Callable[[str], bytes],
        keep: str | None,
        held: dict[str, bytes] | None = None,
    ) -> None:
        self.ids = dict(sorted(ids.items()))  # path → blob id, in path (= chain) order
        self.keep = keep
        self.held = held if held is not None else {}
        self._read = read

    def __getitem__(self, path: str) -> bytes:
        blob = self.ids[path]
        data = self.held.get(blob)
        if data is None:
            data = self._read(path)
            if path == self.keep:
                self.held.clear()
                self.held[blob] = data
        return data

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, path: object) -> bool:
        return path in self.ids

    def blob_id(self, path: str) -> str:
        return self.ids[path]
