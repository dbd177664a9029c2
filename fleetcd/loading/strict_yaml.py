"""Strict YAML: the first step of loading any file from the fleet repository.

Flow: raw bytes (signatures already checked on these exact bytes where they apply) → size, binary
and UTF-8 checks → the YAML subset check (:mod:`fleetcd.loading.yaml_subset`) → parser *events* →
plain data composed here → JSON Schema → typed models.

``yaml.safe_load`` is never used on untrusted input: libyaml's C composer recurses and segfaults on
~50,000-deep nesting; aliases let 300 bytes expand to gigabytes; duplicate keys silently keep the
last one; and YAML 1.1 resolution quietly changes values (``NO`` → False, ``012`` → 10, ``12:30`` →
750, ``1.10`` → 1.1). Here depth, size and node counts are checked on the event stream before
anything recursive could see the document, and plain scalars resolve YAML-1.2-core style; one that
YAML readers disagree on is an error asking the author to quote it.

Two parsers produce the events: libyaml (``CSafeLoader``, the controller's and CI's, ~10x faster)
and PyYAML's pure-Python one (``SafeLoader``: robots whose PyYAML has no libyaml). Both are state
machines, so every guarantee holds on either. The subset check runs first on the text, the same
code whatever the parser, and refuses what the two parsers were found to read differently, so a
file gets the same verdict and the same data on both; ``backend=`` picks one for tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    Event,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
    StreamEndEvent,
)

from fleetcd.errors import Diagnostic, InvalidContent
from fleetcd.limits import MAX_DOCUMENT_BYTES
from fleetcd.loading.yaml_subset import check_subset
from fleetcd.reasons import Reason

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlLimits:
    """Bounds on one file, all enforced before or while streaming, never after building it."""

    max_bytes: int = MAX_DOCUMENT_BYTES  # whole file; checked before any parsing
    max_depth: int = 32  # nesting of mappings/sequences
    max_nodes: int = 20_000  # scalars (keys included) and collections; real documents hold 100-1,000
    max_scalar_bytes: int = 256 * 1024


@dataclass(frozen=True)
class ParsedYaml:
    """Plain data (dict[str, ...], list, str, int, float, bool, None) and where each node came from.

    A mapping value's line is its key's line, so ``hardware:`` points at the key, not its first child.
    """

    data: Any
    lines: Mapping[Path, int]  # JSON path of every node -> 1-based line; () is the root

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest ancestor present in the file."""
        key = tuple(path)
        while True:
            line = self.lines.get(key)
            if line is not None or not key:
                return line
            key = key[:-1]


class _EventSource(Protocol):
    def get_event(self) -> Event | None: ...
    def dispose(self) -> None: ...


Loader = type[yaml.CSafeLoader] | type[yaml.SafeLoader]
# The parsers this PyYAML offers, by name; "libyaml" is missing where PyYAML was built without it.
BACKENDS: dict[str, Loader] = {"python": yaml.SafeLoader}
if yaml.__with_libyaml__:
    BACKENDS["libyaml"] = yaml.CSafeLoader
# The default: libyaml where there is one. Tests replace it to run the fallback.
_LOADER: Loader = BACKENDS.get("libyaml", yaml.SafeLoader)

_BOM = b"\xef\xbb\xbf"
# C0 controls (but tab, LF, CR) and DEL, plus NEL/LS/PS: YAML counts those three as line breaks
# and editors do not, which would make every line number after them wrong.
_UNWANTED_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\xc2\x85|\xe2\x80[\xa8\xa9]")
_CONTROL_CHAR = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SHOW_CHARS = 60

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NUMBER_START = frozenset("0123456789+-.")
_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
# Plain decimal notation only: exponent forms are text to YAML 1.1 readers and numbers to 1.2 ones.
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
_NUMBER_LIKE = {
    "a hexadecimal, octal or binary number to some YAML readers and text to others": re.compile(
        r"[-+]?0(?:[xX][0-9a-fA-F_]+|[oO][0-7_]+|[bB][01_]+)"
    ),
    "infinity or not-a-number to YAML readers": re.compile(r"[-+]?\.(?:inf|Inf|INF|nan|NaN|NAN)"),
    "an octal number to YAML 1.1 readers (leading zero)": re.compile(r"[-+]?0[0-9_]+"),
    "a number written in a form YAML readers disagree on ('_', exponent or bare '.')": re.compile(
        r"[-+]?(?=\.?[0-9])[0-9_]*\.?[0-9_]*(?:[eE][-+]?[0-9]+)?"
    ),
}
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class _Reject(Exception):  # internal: becomes InvalidContent once the position is known
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def field_path(path: Sequence[str | int]) -> str:
    """``("artifacts", 0, "sha256")`` → ``artifacts[0].sha256``; unusual keys as ``labels["a.b"]``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _SIMPLE_KEY.fullmatch(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out)


def parse_strict(
    data: bytes, file: str, limits: YamlLimits = YamlLimits(), *, backend: str | None = None
) -> ParsedYaml:
    """Parse one single-document YAML file into plain data and a line map, or raise InvalidContent.

    ``backend`` names one of :data:`BACKENDS` (KeyError if this PyYAML lacks it); None is the default.
    """
    loader = _LOADER if backend is None else BACKENDS[backend]
    if len(data) > limits.max_bytes:
        message = f"file is {len(data)} bytes, over the limit of {limits.max_bytes}"
        raise _invalid(file, None, (), Reason.TOO_LARGE, message)
    unwanted = _UNWANTED_BYTES.search(data)
    if unwanted is not None:
        at, found = unwanted.start(), unwanted.group()
        line = data.count(b"\n", 0, at) + 1
        if len(found) == 1:
            message = f"holds binary data: control byte 0x{found[0]:02X} at offset {at} (line {line})"
        else:
            message = (
                f"holds U+{ord(found.decode()):04X} at offset {at} (line {line}), a line break to YAML "
                "but not to editors; remove it"
            )
        raise _invalid(file, line, (), Reason.BINARY, message)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"is not UTF-8 text: byte 0x{data[exc.start]:02X} at offset {exc.start} (line {line})"
        raise _invalid(file, line, (), Reason.NOT_UTF8, message) from None
    if data.startswith(_BOM):
        data, text = data[len(_BOM) :], text[1:]
    refusal = check_subset(text, limits.max_depth)
    if refusal is not None:
        raise _invalid(file, refusal.line, (), refusal.reason, refusal.message)
    return _compose(file, data, limits, loader, last_line=text.count("\n") + 1)


class _Frame:
    """One open mapping or sequence; ``key`` is a mapping key still waiting for its value."""

    __slots__ = ("container", "key", "path")

    def __init__(self, path: Path, container: dict[str, Any] | list[Any]) -> None:
        self.path = path
        self.container = container
        self.key: str | None = None


def _compose(file: str, body: bytes, limits: YamlLimits, loader: Loader, last_line: int) -> ParsedYaml:
    """Build plain data from events with an explicit stack of open collections; no recursion.

    Lines are capped at ``last_line``: libyaml puts an empty document's node on the line after a
    final ``---`` without a newline, the pure-Python parser on the marker's line.
    """
    source: _EventSource | None = None
    lines: dict[Path, int] = {}
    stack: list[_Frame] = []
    root: Any = None
    documents = nodes = 0
    line = 1
    where: Path = ()  # path of the node at hand, for diagnostics
    try:
        source = loader(body)
        while True:
            event = source.get_event()
            if event is None:
                break
            mark = event.start_mark
            line = min(mark.line + 1, last_line) if mark is not None else line
            if not isinstance(event, NodeEvent):
                if isinstance(event, CollectionEndEvent):
                    stack.pop()
                elif isinstance(event, DocumentStartEvent):
                    where = ()
                    documents += 1
                    _check_document(event, documents)
                elif isinstance(event, StreamEndEvent):
                    break
                continue
            top = stack[-1] if stack else None
            is_key = False
            if top is None:
                where = ()
            elif isinstance(top.container, list):
                where = (*top.path, len(top.container))
            elif top.key is not None:
                key = top.key
                where = (*top.path, key)
            else:  # a mapping key: reported at its mapping until it is known
                where, is_key = top.path, True
            nodes += 1
            if nodes > limits.max_nodes:
                raise _Reject(Reason.TOO_LARGE, f"more than {limits.max_nodes} YAML nodes")
            if is_key:
                assert top is not None and isinstance(top.container, dict)  # narrows for mypy
                key = _key(event, limits)
                where = (*top.path, key)
                if key in top.container:
                    message = f"duplicate key {key!r}: first at line {lines[where]}, again at line {line}"
                    raise _Reject(Reason.DUPLICATE_KEY, message)
                lines[where] = line
                top.key = key
                continue
            value = _value(event, limits)
            lines.setdefault(where, line)  # a mapping value keeps its key's line
            if top is None:
                root = value
            elif isinstance(top.container, list):
                top.container.append(value)
            else:
                top.container[key] = value
                top.key = None
            if isinstance(value, (dict, list)):
                if len(stack) >= limits.max_depth:
                    raise _Reject(Reason.TOO_DEEP, f"nested deeper than {limits.max_depth} levels")
                stack.append(_Frame(where, value))
    except _Reject as exc:
        raise _invalid(file, line, where, exc.reason, exc.message) from None
    except yaml.YAMLError as exc:
        raise _syntax_error(file, body, exc, last_line) from None
    finally:
        if source is not None:
            source.dispose()
    lines.setdefault((), 1)
    return ParsedYaml(root, MappingProxyType(lines))


def _check_document(event: DocumentStartEvent, documents: int) -> None:
    if documents > 1:
        raise _Reject(Reason.INVALID, "holds more than one YAML document ('---'); one document per file")
    if event.version is not None or event.tags:
        # A %YAML 1.1 directive promises 1.1 meanings (yes → true) that this loader never gives.
        raise _Reject(Reason.INVALID, "YAML directives (%YAML, %TAG) are not allowed")


def _check_node(event: NodeEvent) -> None:
    if isinstance(event, AliasEvent):
        raise _Reject(
            Reason.ALIAS_FORBIDDEN, f"YAML aliases (*{_cut(str(event.anchor))}) are not allowed; write it out"
        )
    if event.anchor is not None:
        raise _Reject(Reason.ALIAS_FORBIDDEN, f"YAML anchors (&{_cut(event.anchor)}) are not allowed")
    if isinstance(event, ScalarEvent | CollectionStartEvent) and event.tag is not None:
        short = _cut(event.tag.replace("tag:yaml.org,2002:", "!!"))
        raise _Reject(
            Reason.TAG_FORBIDDEN, f"explicit YAML tags ({short}) are not allowed; quote text instead"
        )


def _key(event: NodeEvent, limits: YamlLimits) -> str:
    if not isinstance(event, ScalarEvent) or event.anchor is not None or event.tag is not None:
        _check_node(event)
        raise _Reject(Reason.INVALID, "mapping keys must be text, not a mapping or a list")
    value = _scalar(event, limits)
    if isinstance(value, str):
        return value
    shown = "empty" if event.value == "" else f"{_cut(event.value)} (read as {type(value).__name__})"
    raise _Reject(Reason.INVALID, f"mapping keys must be text, not {shown}; quote it")


def _value(event: NodeEvent, limits: YamlLimits) -> Any:
    """A scalar's value, or a new empty container for a collection that starts here."""
    if isinstance(event, ScalarEvent) and event.anchor is None and event.tag is None:
        return _scalar(event, limits)
    _check_node(event)
    return {} if isinstance(event, MappingStartEvent) else []


def _scalar(event: ScalarEvent, limits: YamlLimits) -> Any:
    text = event.value
    if len(text) * 4 > limits.max_scalar_bytes and len(text.encode()) > limits.max_scalar_bytes:
        raise _Reject(Reason.TOO_LARGE, f"a value is longer than {limits.max_scalar_bytes} bytes")
    if not event.style:  # plain ('' from libyaml, None from the pure-Python parser)
        return _resolve_plain(text)
    if event.style == '"' and _CONTROL_CHAR.search(text):
        raise _Reject(Reason.BINARY, f"the text {_cut(text)!r} holds a control character (from an escape)")
    return text  # quoted and block scalars are always text, exactly as written


def _resolve_plain(text: str) -> Any:
    """None, bool, int, a float that round-trips, or the text; raises where YAML readers disagree."""
    if text in _NULLS:
        return None
    flag = _BOOLS.get(text)
    if flag is not None:
        return flag
    if text == "<<":
        raise _Reject(Reason.MERGE_KEY_FORBIDDEN, "YAML merge keys (<<) are not allowed; write the keys out")
    if text[0] not in _NUMBER_START:
        return text
    if _INT.fullmatch(text):
        try:
            return int(text)
        except ValueError:  # over Python's limit on digits converted from text
            raise _Reject(Reason.TOO_LARGE, f"the integer {_cut(text)} has too many digits") from None
    unsigned = text[1:] if text[0] == "+" else text
    if _FLOAT.fullmatch(unsigned):
        number = float(unsigned)
        if repr(number) == unsigned:
            return number
        message = f"{_cut(text)} would be read as the number {number!r}; quote it: '{_cut(text)}'"
        raise _Reject(Reason.AMBIGUOUS_SCALAR, message)
    for why, pattern in _NUMBER_LIKE.items():
        if pattern.fullmatch(text):
            message = f"{_cut(text)} is {why}; quote it: '{_cut(text)}'"
            raise _Reject(Reason.AMBIGUOUS_SCALAR, message)
    return text


def _syntax_error(file: str, body: bytes, exc: yaml.YAMLError, last_line: int) -> InvalidContent:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = min(mark.line + 1, last_line) if mark is not None else None
        detail = exc.problem or "invalid YAML"
        if exc.context:
            detail = f"{detail} ({exc.context})"
        return _invalid(file, line, (), Reason.YAML_SYNTAX, f"YAML syntax error: {detail}")
    if isinstance(exc, yaml.reader.ReaderError):
        line = body.count(b"\n", 0, exc.position) + 1
        message = f"holds a character YAML does not allow (U+{exc.character:04X})"
        return _invalid(file, line, (), Reason.BINARY, message)
    return _invalid(file, None, (), Reason.YAML_SYNTAX, f"YAML syntax error: {exc}")


def _invalid(file: str, line: int | None, where: Path, reason: Reason, message: str) -> InvalidContent:
    return InvalidContent([Diagnostic(file, line, field_path(where) or None, message, reason)])


def _cut(text: str) -> str:
    return text if len(text) <= _SHOW_CHARS else text[: _SHOW_CHARS - 3] + "..."
