"""Documents already loaded, kept by their exact content so that loading a similar snapshot again
parses only the files that changed.

Loading one document (:func:`fleetcd.loading.documents.load_document`: strict YAML, JSON Schema,
frozen model) is a pure function of its path, its bytes, the model type, the YAML limits and the
schema flag: it reads no clock, no file, no key. A long-running caller — the controller's
``ReconcileCache`` — keeps a :class:`DocumentMemo` and passes it explicitly
(``validate_snapshot(..., memo=)`` → ``load_spec(..., memo=)``); there is no module-level cache.
Only the loading of single documents is kept here: whatever relates files to each other, to keys
or to the clock (references, signatures, approvals, the trust-root chain, expiry) is not. What of
that a new validation may reuse is :mod:`fleetcd.validation.incremental`'s decision.

Errors are kept too, as the diagnostics they carry, and raised again as a new
:class:`~fleetcd.errors.InvalidContent` each time: the same bytes give the same file:line errors, so
a main with a thousand broken files does not parse them again for every commit that fixes one.

Memory stays one snapshot's documents, holding the snapshot's own bytes (an equal copy read
from a newer tree replaces the one held): each :meth:`DocumentMemo.round` is one load of a snapshot,
and at its end every entry that round did not ask for (files that left the snapshot, or whose bytes
changed) is dropped. A round that ends in an exception drops nothing; the next round prunes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TypeVar, cast

from pydantic import BaseModel

from fleetcd.errors import Diagnostic, InvalidContent
from fleetcd.loading.documents import Loaded, load_document
from fleetcd.loading.strict_yaml import YamlLimits

M = TypeVar("M", bound=BaseModel)
_DEFAULT_LIMITS = YamlLimits()


@dataclass(frozen=True)
class _Entry:
    """One path's document: what it was loaded from and with, and the result."""

    raw: bytes
    model_type: type[BaseModel]
    limits: YamlLimits
    schema: bool
    loaded: Loaded[BaseModel] | None  # None: the document is invalid, see problems
    problems: tuple[Diagnostic, ...] = ()

    def serves(self, raw: bytes, model_type: type[BaseModel], limits: YamlLimits, schema: bool) -> bool:
        return (
            self.model_type is model_type
            and self.schema == schema
            and (self.limits is limits or self.limits == limits)
            and (self.raw is raw or self.raw == raw)
        )


@dataclass
class RoundStats:
    """What one round did: documents loaded afresh (their paths) and documents reused."""

    parsed: list[str] = field(default_factory=list)
    reused: int = 0


@dataclass
class DocumentMemo:
    """Loaded documents (and invalid ones' diagnostics) of the latest snapshot, one per path, by
    exact content: a path loaded from other bytes, as another kind, under other limits or without
    the schema pass is loaded afresh and replaces the entry."""

    _entries: dict[str, _Entry] = field(default_factory=dict, repr=False)
    _used: set[str] | None = field(default=None, repr=False)
    last: RoundStats = field(default_factory=RoundStats)  # the latest round (counted by tests)
    parsed: int = 0  # documents loaded afresh through this memo, ever
    reused: int = 0  # documents served from it, ever

    def __len__(self) -> int:
        return len(self._entries)

    def paths(self) -> frozenset[str]:
        """The paths of the documents held."""
        return frozenset(self._entries)

    def loaded(self) -> list[Loaded[BaseModel]]:
        """The valid documents held, shared by every validation that reuses them."""
        return [entry.loaded for entry in self._entries.values() if entry.loaded is not None]

    def forget(self, paths: Iterable[str]) -> None:
        """Drop the documents held for ``paths``: files that left the snapshot when it was loaded
        outside a round (:mod:`fleetcd.validation.incremental` loads only the changed files)."""
        for path in paths:
            self._entries.pop(path, None)

    @contextmanager
    def round(self) -> Iterator[RoundStats]:
        """One load of a snapshot; entries it did not ask for are dropped when it ends normally."""
        used: set[str] = set()
        self._used, self.last = used, RoundStats()
        try:
            yield self.last
        finally:
            self._used = None
        if len(used) != len(self._entries):
            self._entries = {path: entry for path, entry in self._entries.items() if path in used}

    def load(
        self,
        path: str,
        raw: bytes,
        model_type: type[M],
        limits: YamlLimits | None = None,
        *,
        schema: bool = True,
    ) -> Loaded[M]:
        """:func:`~fleetcd.loading.documents.load_document`, or its kept result for the same input."""
        limits = limits or _DEFAULT_LIMITS
        if self._used is not None:
            self._used.add(path)
        entry = self._entries.get(path)
        if entry is not None and entry.serves(raw, model_type, limits, schema):
            self.reused += 1
            self.last.reused += 1
            if entry.raw is not raw:  # equal bytes read afresh from a new tree: hold one copy, theirs
                loaded = None if entry.loaded is None else replace(entry.loaded, raw=raw)
                entry = replace(entry, raw=raw, loaded=loaded)
                self._entries[path] = entry
        else:
            entry = self._load(path, raw, model_type, limits, schema)
        if entry.loaded is None:
            raise InvalidContent(entry.problems)
        return cast(Loaded[M], entry.loaded)

    def _load(
        self, path: str, raw: bytes, model_type: type[BaseModel], limits: YamlLimits, schema: bool
    ) -> _Entry:
        self.parsed += 1
        self.last.parsed.append(path)
        try:
            loaded: Loaded[BaseModel] = load_document(path, raw, model_type, limits, schema=schema)
        except InvalidContent as exc:
            entry = _Entry(raw, model_type, limits, schema, None, exc.diagnostics)
        else:
            entry = _Entry(raw, model_type, limits, schema, loaded)
        self._entries[path] = entry
        return entry
