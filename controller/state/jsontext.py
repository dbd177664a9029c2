"""The state branch's JSON text: sorted keys, one value per line, written without the slow encoder.

``json.dumps(value, indent=1, sort_keys=True)`` is the format of every state file (git diffs stay
readable), but the standard library's C encoder does not indent: with ``indent`` it falls back to
its pure-Python generator chain, which costs about 1 ms per device file, and a reconcile that
dispatches to 1,000 robots rewrites 1,000 device files. :func:`dumps_indented` writes the same
bytes with one list of chunks and the C string escaper: several times faster, byte-for-byte equal
(tests/test_state_jsontext.py compares it with ``json.dumps`` on real state files and on edge
cases). Values other than the JSON types (``model_dump(mode="json")`` gives only those) fall
back to ``json.dumps``. Pure.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _string
from typing import Any

_INFINITY = float("inf")


class _NotPlainJson(Exception):
    """A value json.dumps must render itself (a non-string key, an unknown type)."""


def dumps_indented(value: Any) -> str:
    """``json.dumps(value, indent=1, sort_keys=True)``, the same text, faster."""
    out: list[str] = []
    try:
        _encode(value, "\n", out)
    except _NotPlainJson:
        return json.dumps(value, indent=1, sort_keys=True)
    return "".join(out)


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == _INFINITY:
        return "Infinity"
    if value == -_INFINITY:
        return "-Infinity"
    return float.__repr__(value)


def _encode(value: Any, newline: str, out: list[str]) -> None:
    """Append ``value``'s text to ``out``; ``newline`` is a line break and the current indent."""
    kind = type(value)
    if kind is dict:
        if not value:
            out.append("{}")
            return
        inner = newline + " "
        separator = "{" + inner
        for key, item in sorted(value.items()):
            if type(key) is not str:
                raise _NotPlainJson
            scalar = _scalar(item)
            if scalar is None:
                out.append(f"{separator}{_string(key)}: ")
                _encode(item, inner, out)
            else:
                out.append(f"{separator}{_string(key)}: {scalar}")
            separator = "," + inner
        out.append(newline + "}")
    elif kind is list or kind is tuple:
        if not value:
            out.append("[]")
            return
        inner = newline + " "
        separator = "[" + inner
        for item in value:
            scalar = _scalar(item)
            if scalar is None:
                out.append(separator)
                _encode(item, inner, out)
            else:
                out.append(separator + scalar)
            separator = "," + inner
        out.append(newline + "]")
    else:
        scalar = _scalar(value)
        if scalar is None:
            raise _NotPlainJson
        out.append(scalar)


def _scalar(value: Any) -> str | None:
    """The text of a string, number, boolean or null; None for anything else."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        return _float(value)
    return None
