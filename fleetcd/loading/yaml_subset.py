"""The YAML subset fleetcd accepts: a lexical pass run before either YAML parser sees the text.

Place in the flow: :func:`fleetcd.loading.strict_yaml.parse_strict` decodes the bytes, calls
:func:`check_subset`, and only then hands the text to libyaml (``CSafeLoader``) or to PyYAML's
pure-Python parser (``SafeLoader``: robots whose PyYAML has no libyaml). The two parsers disagree at
the edges of the YAML grammar: ``name: navstack<TAB>`` is accepted by libyaml and refused by the
pure-Python scanner, ``[a, b:]`` the other way round, ``"\\U00110000"`` crashes the pure-Python
one. A controller, a CI job and a robot must reach the same verdict on every file, so this pass
refuses every construct where they were found to differ (``tests/test_yaml_backends.py`` runs both
on a corpus per class and on a seeded random set); what remains parses identically.

Why refuse rather than normalise: rewriting the text (say, tabs to spaces) would sign one thing and
load another, and would need a second parser's worth of rules to do safely. Refusing keeps the
bytes authoritative, and every refused construct has a plain spelling (quote it, use spaces).

It is one linear pass over lines with a few regular expressions, keeping only what the rules need:
the flow depth, whether a quoted scalar or a block scalar is open, whether a plain scalar may
continue on the next line, and the stack of block indentations (as both scanners keep it, to know
where a block scalar or a multi-line plain scalar ends). It refuses:

* a tab anywhere but inside a quoted scalar, a comment, or block scalar content after its indent;
* a byte order mark after the start, a carriage return not followed by a line feed, and any
  character YAML does not allow (so both parsers never see one);
* ``%`` directives, a second ``---`` or one after content, content after ``---`` on its line, ``...``;
* ``?`` in a flow collection, and ``:`` directly followed by ``,[]{}`` in one;
* ``#`` right after something other than a space (``[a]#c``): a comment needs a space before it;
* a block scalar header other than ``|``/``>`` with optional indicators and `` # comment``, a block
  scalar inside a flow collection, and a tab at the start of a block scalar line;
* a mapping key spanning lines or longer than :data:`MAX_KEY_CHARS` (the parsers' 1,024 limit);
* in double-quoted text, ``\\u``/``\\U`` escapes of surrogates or past U+10FFFF;
* flow collections nested deeper than the depth limit (see :func:`check_subset`);
* tags, anchors and aliases with names outside ``[A-Za-z0-9_-]`` (well-formed ones are refused by
  the composer, which knows the field).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleetcd.reasons import Reason

MAX_KEY_CHARS = 1000  # below the 1,024 characters both scanners allow for an implicit key

# Everything YAML's reader allows except NEL/LS/PS (refused earlier, at the byte level) and U+FEFF.
_NOT_ALLOWED = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_LONE_CR = re.compile("\r(?!\n)")
_MARKER = re.compile(r"(?:---|\.\.\.)(?=[ \t]|$)")
_AFTER_MARKER = re.compile(r" *(?: #.*)?")
_BLOCK_HEADER = re.compile(r"[|>](?:([1-9])[+-]?|[+-]([1-9])?)?(?: +(?:#.*)?)?")
_NAME = re.compile(r"(?:!!?|[&*])[A-Za-z0-9_-]*")
# Inside a plain scalar, the characters that may end it or that need a rule.
_PLAIN_STOP_BLOCK = re.compile(r"[\t:#]")
_PLAIN_STOP_FLOW = re.compile(r"[\t:#,\[\]{}?]")
_SINGLE_BODY = re.compile(r"(?:[^']|'')*")
_DOUBLE_BODY = re.compile(r'(?:[^"\\]|\\.)*')
_ESCAPE = re.compile(r"\\(?:U([0-9a-fA-F]{8})|u([0-9a-fA-F]{4})|.)")
_FLOW_INDICATORS = ",[]{}"


@dataclass(frozen=True)
class Refusal:
    """Why a text is outside the subset: the 1-based line, a reason and a message for the author."""

    line: int
    reason: Reason
    message: str


class _Refused(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def check_subset(text: str, max_depth: int) -> Refusal | None:
    """The first construct of ``text`` (a decoded file, BOM removed) outside the subset, or None.

    Flow collections nested deeper than ``max_depth`` are refused here too: libyaml has a nesting
    limit of its own (PyYAML 6.0.4's wheels) and the pure-Python parser none, so left to them
    ``[[[...`` 50,000 deep would be a syntax error on one and "too deep" on the other.
    """
    bad = _NOT_ALLOWED.search(text)
    if bad is not None:
        char = bad.group()
        if char == "\ufeff":
            message = "holds a byte order mark (U+FEFF) after the start of the file; remove it"
        else:
            message = f"holds a character YAML does not allow (U+{ord(char):04X})"
        return Refusal(text.count("\n", 0, bad.start()) + 1, Reason.BINARY, message)
    cr = _LONE_CR.search(text)
    if cr is not None:
        message = "holds a carriage return without a line feed: a line break to YAML, not to editors"
        return Refusal(text.count("\n", 0, cr.start()) + 1, Reason.BINARY, message)
    lexer = _Lexer(max_depth)
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        lexer.number = number
        try:
            lexer.line(line[:-1] if line.endswith("\r") else line)
        except _Refused as exc:
            return Refusal(number, exc.reason, exc.message)
    # Left to the parsers, an unclosed one ends in a syntax error at a place that differs by parser,
    # sometimes after the composer has refused something else.
    if lexer.quote:
        return Refusal(
            lexer.quote_at, Reason.YAML_SYNTAX, f"the quoted text opened here ({lexer.quote}) never ends"
        )
    if lexer.flow:
        return Refusal(lexer.flow_at, Reason.YAML_SYNTAX, "the '[' or '{' opened here is never closed")
    return None


class _Lexer:
    """Just enough of a YAML scanner to know, for every character, if it is inside quoted text,
    block scalar content, a comment, a plain scalar or structure."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.number = 0  # the line at hand
        self.quote_at = self.flow_at = 0  # where the open quoted text, the outermost [ or { started
        self.flow = 0  # depth of [ and {
        self.quote = ""  # the open quoted scalar's quote character, or ""
        self.indents = [-1]  # block indentation stack, as the scanners keep it
        self.block: tuple[int, int] | None = None  # open block scalar: (indent or 0 if unknown, minimum)
        self.blank_indent = 0  # widest blank line before a block scalar's first line
        self.plain = False  # a plain scalar ended the previous line and may continue
        self.content = False  # a node was seen (so a later --- starts a second document)
        self.marker = False
        self.key_start = -1  # column where the node that could be a mapping key started, on this line
        self.flow_starts: list[int] = []

    def line(self, line: str) -> None:
        column = 0
        # Starts saved on an earlier line: a mapping key there would span lines.
        self.key_start = -2 if self.key_start >= 0 else self.key_start
        self.flow_starts = [-2 if start >= 0 else start for start in self.flow_starts]
        if self.block is not None and not self._block_line(line):
            return
        if line.startswith(("%", "---", "...")):
            self._line_start_indicator(line)
            return
        if self.quote:
            column = self._quoted(line, 0)
            if self.quote:
                return
        else:
            spaces = len(line) - len(line.lstrip(" "))
            rest = line[spaces:]
            if rest.startswith("\t"):
                raise _Refused(Reason.YAML_SYNTAX, "a tab in indentation; indent with spaces")
            if not rest or rest.startswith("#"):
                self.plain = self.plain and not rest  # a comment line ends a plain scalar
                return
            if self.plain and (self.flow or spaces > self.indents[-1]):
                column = self._plain(line, spaces, spaces)  # the plain scalar goes on
            else:
                self.plain = False
                if not self.flow:
                    while self.indents[-1] > spaces:
                        self.indents.pop()
                column = spaces
                self.key_start = -1
        self._tokens(line, column)

    def _line_start_indicator(self, line: str) -> None:
        if line.startswith("%"):
            raise _Refused(Reason.INVALID, "YAML directives (%YAML, %TAG) are not allowed")
        if self.quote or self.block is not None or _MARKER.match(line) is None:
            if line.startswith("..."):
                raise _Refused(Reason.YAML_SYNTAX, "'...' at the start of a line; quote the text")
            raise _Refused(Reason.YAML_SYNTAX, "'---' at the start of a line; quote the text")
        if line.startswith("..."):
            raise _Refused(Reason.INVALID, "the document end marker '...' is not allowed")
        if self.content or self.marker:
            raise _Refused(Reason.INVALID, "holds more than one YAML document ('---'); one document per file")
        if _AFTER_MARKER.fullmatch(line, 3) is None:
            raise _Refused(Reason.YAML_SYNTAX, "nothing but a comment may follow '---' on its line")
        self.marker = True

    def _block_line(self, line: str) -> bool:
        """One line while a block scalar is open; True when the block ended before this line."""
        assert self.block is not None
        indent, minimum = self.block
        spaces = len(line) - len(line.lstrip(" "))
        rest = line[spaces:]
        if rest.startswith("\t") and (indent == 0 or spaces < indent):
            raise _Refused(Reason.YAML_SYNTAX, "a tab in a block scalar's indentation; indent with spaces")
        if not rest:
            self.blank_indent = max(self.blank_indent, spaces)
            return False
        if indent == 0:  # the first line with text sets the indentation
            if spaces >= minimum and self.blank_indent > spaces:
                message = "a blank line at the start of a block scalar is indented more than its first line"
                raise _Refused(Reason.YAML_SYNTAX, message)
            if spaces >= minimum:
                self.block = (spaces, minimum)
                return False
        elif spaces >= indent:
            return False
        self.block = None
        return True

    def _tokens(self, line: str, column: int) -> None:
        """Structure from ``column`` to the end of ``line``."""
        end = len(line)
        while column < end:
            char = line[column]
            if char == " ":
                column += 1
                continue
            if char == "\t":
                raise _Refused(Reason.YAML_SYNTAX, "a tab outside quoted text; use spaces")
            if char == "#":
                if column and line[column - 1] != " ":
                    raise _Refused(Reason.YAML_SYNTAX, "a comment needs a space before '#'")
                return
            self.content = True
            after = line[column + 1] if column + 1 < end else " "
            if char in "'\"":
                self.key_start = column
                self.quote = char
                self.quote_at = self.number
                column = self._quoted(line, column + 1)
                if self.quote:
                    return
            elif char in "-?" and after == " ":
                if self.flow:
                    raise _Refused(Reason.YAML_SYNTAX, f"'{char} ' inside a flow collection; use a block one")
                if column > self.indents[-1]:
                    self.indents.append(column)
                column += 1
            elif char == ":" and (after == " " or self.flow):  # in flow, ':' never starts text
                self._value_indicator(column)
                column += 1
            elif char in "[{":
                self.flow_starts.append(column)
                self.key_start = -1
                self.flow_at = self.flow_at if self.flow else self.number
                self.flow += 1
                if self.flow > self.max_depth:
                    raise _Refused(Reason.TOO_DEEP, f"nested deeper than {self.max_depth} levels")
                column += 1
            elif char in "]}":
                self.flow = max(self.flow - 1, 0)
                self.key_start = self.flow_starts.pop() if self.flow_starts else column
                column += 1
            elif char == ",":
                self.key_start = -1
                column += 1
            elif char in "|>":
                self._block_header(line, column)
                return
            elif char in "!&*":
                column = self._name(line, column)
            else:
                self.key_start = column
                column = self._plain(line, column, column)
                if self.plain:
                    return

    def _value_indicator(self, column: int) -> None:
        start = self.key_start
        if start == -2:
            raise _Refused(Reason.INVALID, "a mapping key must fit on one line")
        if column - start > MAX_KEY_CHARS and start >= 0:
            raise _Refused(Reason.INVALID, f"a mapping key longer than {MAX_KEY_CHARS} characters")
        indent = start if start >= 0 else column  # a key's column, or a lone ':' (after '? key')
        if not self.flow and indent > self.indents[-1]:
            self.indents.append(indent)
        self.key_start = -1

    def _plain(self, line: str, column: int, start: int) -> int:
        """Scan a plain scalar from ``column``; its end (or the line's end, leaving it open)."""
        stops = _PLAIN_STOP_FLOW if self.flow else _PLAIN_STOP_BLOCK
        self.plain = False
        while True:
            found = stops.search(line, column)
            if found is None:
                self.plain = True
                return len(line)
            column = found.start()
            char = line[column]
            after = line[column + 1] if column + 1 < len(line) else " "
            if char == "\t":
                raise _Refused(Reason.YAML_SYNTAX, "a tab outside quoted text; use spaces or quote the text")
            if char == "#":
                if line[column - 1] == " ":
                    return column
            elif char == ":":
                if after == " ":
                    if start != self.key_start or self.key_start < 0:
                        raise _Refused(Reason.INVALID, "a mapping key must fit on one line")
                    return column
                if self.flow and after in _FLOW_INDICATORS:
                    raise _Refused(
                        Reason.YAML_SYNTAX, f"':{after}' in a flow collection; write ': ' or quote the text"
                    )
            elif char == "?":
                raise _Refused(Reason.YAML_SYNTAX, "'?' in text inside a flow collection; quote the text")
            else:  # , [ ] { } end a plain scalar in a flow collection
                return column
            column += 1

    def _quoted(self, line: str, column: int) -> int:
        """Scan quoted text from ``column``; the column after its closing quote, or the line's end."""
        if self.quote == "'":
            end = _SINGLE_BODY.match(line, column).end()  # type: ignore[union-attr]  # always matches
        else:
            end = _DOUBLE_BODY.match(line, column).end()  # type: ignore[union-attr]
            for escape in _ESCAPE.finditer(line, column, end):
                digits = escape.group(1) or escape.group(2)
                if digits is not None:
                    code = int(digits, 16)
                    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                        raise _Refused(
                            Reason.YAML_SYNTAX,
                            f"the escape {escape.group()} is not a Unicode character"
                            " (a surrogate or past U+10FFFF)",
                        )
        if end < len(line):  # the closing quote
            self.quote = ""
            return end + 1
        return end

    def _block_header(self, line: str, column: int) -> None:
        if self.flow:
            raise _Refused(Reason.YAML_SYNTAX, "a block scalar (| or >) inside a flow collection")
        header = _BLOCK_HEADER.fullmatch(line, column)
        if header is None:
            message = "a block scalar header takes only indicators (|-, >+, |2) and a comment after a space"
            raise _Refused(Reason.YAML_SYNTAX, message)
        parent = self.indents[-1]
        minimum = max(parent + 1, 1)
        explicit = header.group(1) or header.group(2)
        indent = (parent + int(explicit) if parent >= 0 else int(explicit)) if explicit else 0
        self.block = (indent, minimum)
        self.blank_indent = 0
        self.plain = False

    def _name(self, line: str, column: int) -> int:
        """A tag, anchor or alias: well-formed ones go on to the composer, which names the field."""
        found = _NAME.match(line, column)
        assert found is not None
        end = found.end()
        follow = line[end] if end < len(line) else " "
        # libyaml wants a space after a tag even before ',]}' in a flow collection; PyYAML does not.
        closes = self.flow and follow in ",]}" and line[column] != "!"
        if end - column > 1 and (follow == " " or closes):
            return end
        shown = re.split(r"[ ,\]}]", line[column : column + 40])[0] or line[column]
        if line[column] == "!":
            raise _Refused(
                Reason.TAG_FORBIDDEN, f"explicit YAML tags ({shown}) are not allowed; quote text instead"
            )
        if line[column] == "&":
            raise _Refused(Reason.ALIAS_FORBIDDEN, f"YAML anchors ({shown}) are not allowed")
        raise _Refused(Reason.ALIAS_FORBIDDEN, f"YAML aliases ({shown}) are not allowed; write it out")
