"""Text edits of one top-level scalar in a YAML document, keeping every comment and the layout.

``pause``, ``resume`` and ``rollback`` change one line of a rollout file that people wrote and
review: re-dumping the YAML would drop their comments and reorder keys, and the pull request
would show a rewrite instead of a one-line diff. So the edit is textual: the top-level ``key:``
line (the only lines at column 0 besides comments and document markers) gets its value replaced,
keeping its quoting and trailing comment; a missing key is appended. Callers re-load the result
with the strict loader and check the value, so an edit this cannot do safely is refused, never
written (:class:`UneditableYaml`). Pure text in, text out.
"""

from __future__ import annotations

import re

from fleetcd.errors import SetupError


class UneditableYaml(SetupError):
    """The document is not laid out so that one line can be changed; edit it by hand."""


def _key_line(key: str) -> re.Pattern[str]:
    name = re.escape(key)
    return re.compile(
        rf"^(?P<head>(?P<q>[\"']?){name}(?P=q)[ \t]*:[ \t]*)"
        # a quoted value may hold '#': only outside quotes does ' #' start a comment
        r"(?P<value>\"[^\"\r\n]*\"|'[^'\r\n]*'|[^#\r\n]*?)"
        r"(?P<tail>[ \t]+#[^\r\n]*)?(?P<eol>\r?\n|$)",
        re.MULTILINE,
    )


def set_scalar(text: str, key: str, value: str, *, quote_like_before: bool = False, comment: str = "") -> str:
    """``text`` with top-level ``key`` set to the YAML scalar ``value`` (already formatted).

    With ``quote_like_before`` a value that was double- or single-quoted stays quoted the same way.
    A missing key is appended at the end, after ``comment`` lines when given.
    """
    matches = list(_key_line(key).finditer(text))
    if len(matches) > 1:
        raise UneditableYaml(f"top-level {key!r} appears {len(matches)} times")
    if not matches:
        if re.search(rf"^([\"']?){re.escape(key)}\1[ \t]*:", text, re.MULTILINE):
            raise UneditableYaml(
                f"top-level {key!r} is laid out so one line cannot be changed; edit it by hand"
            )
        ending = "\r\n" if "\r\n" in text else "\n"
        body = text if not text or text.endswith("\n") else text + ending
        notes = "".join(f"# {line}{ending}" if line else f"#{ending}" for line in comment.splitlines())
        return f"{body}{notes}{key}: {value}{ending}"
    match = matches[0]
    old = match["value"]
    if not old.strip():
        raise UneditableYaml(f"top-level {key!r} has its value on the following lines; edit it by hand")
    if old.startswith(("|", ">", "&", "*", "!", "[", "{")):
        raise UneditableYaml(f"top-level {key!r} is not a plain scalar ({old!r}); edit it by hand")
    if quote_like_before and old[0] in "\"'" and old.endswith(old[0]) and len(old) >= 2:
        value = f"{old[0]}{value}{old[0]}"
    replaced = f"{match['head']}{value}{match['tail'] or ''}{match['eol']}"
    return text[: match.start()] + replaced + text[match.end() :]


def append_list_item(text: str, key: str, item: str) -> str:
    """``text`` with the YAML scalar ``item`` (already formatted) appended to top-level list ``key``.

    The list may be a one-line flow list (``key: [a, b]``) or a block list on the following lines
    (``- a`` at any indent); the new entry copies the last entry's indent and lands right after it,
    before any comment or blank line that follows the list. Anything else is refused.
    """
    matches = list(_key_line(key).finditer(text))
    if len(matches) != 1:
        raise UneditableYaml(f"top-level {key!r} appears {len(matches)} times; edit it by hand")
    match = matches[0]
    value = match["value"].strip()
    if value.startswith("[") and value.endswith("]"):
        inner = value[1:-1].strip()
        replaced = f"[{inner}, {item}]" if inner else f"[{item}]"
        line = f"{match['head']}{replaced}{match['tail'] or ''}{match['eol']}"
        return text[: match.start()] + line + text[match.end() :]
    if value:
        raise UneditableYaml(f"top-level {key!r} is not a list ({value!r}); edit it by hand")
    ending = match["eol"] or "\n"
    lines = text[match.end() :].splitlines(keepends=True)
    last, indent = -1, None
    for index, line in enumerate(lines):
        entry = re.match(r"^([ \t]*)- ", line)
        if entry is not None and (indent is None or entry.group(1) == indent):
            last, indent = index, entry.group(1)
        elif line.strip() and not line.lstrip().startswith("#") and not line.startswith((" ", "\t")):
            break  # the next top-level key: the list has ended
        elif line.strip() and not line.lstrip().startswith("#") and entry is None and indent is None:
            raise UneditableYaml(f"top-level {key!r} is not a block list; edit it by hand")
    if last < 0 or indent is None:
        raise UneditableYaml(f"top-level {key!r} has no '- ' entries to add to; edit it by hand")
    if not lines[last].endswith(("\n", "\r\n")):
        lines[last] += ending
    lines.insert(last + 1, f"{indent}- {item}{ending}")
    return text[: match.end()] + "".join(lines)
