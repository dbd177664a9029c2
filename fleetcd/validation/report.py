"""Rendering a :class:`~fleetcd.validation.ValidationResult` for people, programs and CI.

The last step of ``fleetcd validate``. Three formats, all pure string building:

* ``text``: one ``file:line: severity: field: message [reason]`` line per finding (editors and
  terminals jump to ``file:line``), then a summary line.
* ``json``: ``{"ok": bool, "errors": [...], "warnings": [...], "files": N}``, each finding a
  :meth:`~fleetcd.errors.Diagnostic.as_dict`.
* ``github``: workflow commands (``::error file=F,line=L,title=...::message``) that GitHub Actions
  turns into annotations on the pull request's diff, then the summary line.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from fleetcd.compat import StrEnum
from fleetcd.errors import Diagnostic
from fleetcd.validation.pipeline import ValidationResult

ANNOTATION_TITLE = "fleetcd validate"


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"
    GITHUB = "github"


def render(result: ValidationResult, fmt: Format) -> str:
    """The whole report in ``fmt``, newline-terminated."""
    renderers: dict[Format, Callable[[ValidationResult], str]] = {
        Format.TEXT: render_text,
        Format.JSON: render_json,
        Format.GITHUB: render_github,
    }
    return renderers[fmt](result)


def summary(result: ValidationResult) -> str:
    files = len(result.spec.files)
    counts = f"{_plural(len(result.errors), 'error')}, {_plural(len(result.warnings), 'warning')}"
    verdict = "valid" if result.ok else "INVALID"
    strict = " (strict: warnings count as errors)" if result.strict else ""
    return f"fleetcd validate: {verdict}: {counts} in {_plural(files, 'file')}{strict}"


def text_line(diagnostic: Diagnostic) -> str:
    where = diagnostic.file if diagnostic.line is None else f"{diagnostic.file}:{diagnostic.line}"
    what = f"{diagnostic.field}: {diagnostic.message}" if diagnostic.field else diagnostic.message
    return f"{where}: {diagnostic.severity}: {what} [{diagnostic.reason.value}]"


def render_text(result: ValidationResult) -> str:
    return "".join(f"{text_line(d)}\n" for d in result.diagnostics) + summary(result) + "\n"


def render_json(result: ValidationResult) -> str:
    document = {
        "ok": result.ok,
        "errors": [d.as_dict() for d in result.errors],
        "warnings": [d.as_dict() for d in result.warnings],
        "files": len(result.spec.files),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def github_line(diagnostic: Diagnostic) -> str:
    command = "error" if diagnostic.severity == "error" else "warning"
    properties = [f"file={escape_property(diagnostic.file)}"]
    if diagnostic.line is not None:
        properties.append(f"line={diagnostic.line}")
    properties.append(f"title={escape_property(ANNOTATION_TITLE)}")
    what = f"{diagnostic.field}: {diagnostic.message}" if diagnostic.field else diagnostic.message
    return f"::{command} {','.join(properties)}::{escape_data(f'{what} [{diagnostic.reason.value}]')}"


def render_github(result: ValidationResult) -> str:
    return "".join(f"{github_line(d)}\n" for d in result.diagnostics) + summary(result) + "\n"


def escape_data(text: str) -> str:
    """Escape a workflow command's message (GitHub's toolkit ``escapeData``): % first, then CR, LF."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command property value (``escapeProperty``): as data, plus ':' and ','."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
