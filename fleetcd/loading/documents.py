"""One document: bytes → strict YAML → JSON Schema → typed model, every error with file:line:field.

The order matters: untrusted bytes go through the strict parser (size, depth, aliases, ambiguous
scalars), then the JSON Schema of the declared kind, and only then pydantic builds the frozen model.
Nothing downstream ever sees a half-valid document.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as ModelError

from fleetcd.errors import Diagnostic, InvalidContent
from fleetcd.loading.schemas import fast_validator_for, validator_for
from fleetcd.loading.strict_yaml import ParsedYaml, YamlLimits, field_path, parse_strict
from fleetcd.models import API_VERSION_V1, DOCUMENT_KINDS
from fleetcd.models.base import SAFE_NAME_MAX, SAFE_NAME_PATTERN
from fleetcd.reasons import Reason

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError as SchemaError

M = TypeVar("M", bound=BaseModel)
MOVED_FIELDS_KEY = "x-fleetcd-moved"  # JSON Schema annotation: field -> where it lives now
MAX_ERRORS_PER_FILE = 20


@dataclass(frozen=True)
class Loaded(Generic[M]):
    """A verified-shape document: its path, exact bytes, parsed data, line map and model."""

    path: str
    raw: bytes
    data: dict[str, Any]
    parsed: ParsedYaml
    model: M

    def line(self, *path: str | int) -> int | None:
        return self.parsed.line_of(path)


def load_document(
    path: str, raw: bytes, model_type: type[M], limits: YamlLimits | None = None, *, schema: bool = True
) -> Loaded[M]:
    """Load one document of a known kind; raise :class:`InvalidContent` listing every problem.

    ``schema=False`` skips the JSON Schema pass and lets the model (which the schema is generated
    from) judge alone: for robots, where the compiled validator costs ~10 MiB of resident memory
    and the documents were schema-checked upstream before they were signed.
    """
    parsed = parse_strict(raw, path, limits or YamlLimits())
    data = parsed.data
    kind = _expected_kind(model_type)
    if not isinstance(data, dict):
        shown = "an empty file" if data is None else f"a {type(data).__name__}"
        raise InvalidContent.at(path, f"expected a {kind} document (a mapping), found {shown}", line=1)
    _check_header(path, parsed, kind)
    schema_problems = list(_schema_diagnostics(path, parsed, kind)) if schema else []
    if schema_problems:
        raise InvalidContent(schema_problems[:MAX_ERRORS_PER_FILE])
    try:
        model = model_type.model_validate(data)
    except ModelError as exc:
        raise InvalidContent(_model_diagnostics(path, parsed, exc)) from None
    return Loaded(path=path, raw=raw, data=data, parsed=parsed, model=model)


def _expected_kind(model_type: type[BaseModel]) -> str:
    for kind, cls in DOCUMENT_KINDS.items():
        if cls is model_type:
            return kind
    raise TypeError(f"{model_type.__name__} is not a document kind")


def _check_header(path: str, parsed: ParsedYaml, kind: str) -> None:
    data = parsed.data
    version = data.get("apiVersion")
    if version != API_VERSION_V1:
        raise InvalidContent.at(
            path,
            f"expected {API_VERSION_V1!r}, found {_show(version)}",
            line=parsed.line_of(("apiVersion",)) or 1,
            field="apiVersion",
            reason=Reason.SCHEMA,
        )
    found = data.get("kind")
    if found != kind:
        raise InvalidContent.at(
            path,
            f"this location holds {kind} documents, found {_show(found)}",
            line=parsed.line_of(("kind",)) or 1,
            field="kind",
            reason=Reason.WRONG_KIND,
        )


def _schema_diagnostics(path: str, parsed: ParsedYaml, kind: str) -> Iterable[Diagnostic]:
    if fast_validator_for(kind).is_valid(parsed.data):
        return
    validator = validator_for(kind)
    for error in sorted(validator.iter_errors(parsed.data), key=lambda e: list(map(str, e.absolute_path))):
        yield from _explain(path, parsed, error)


def _explain(path: str, parsed: ParsedYaml, error: SchemaError) -> Iterable[Diagnostic]:
    location = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = set(schema.get("properties", {}))
        moved = schema.get(MOVED_FIELDS_KEY, {})  # fields an older format had here, and where they went
        for extra in sorted(k for k in error.instance if k not in allowed):
            spot = [*location, extra]
            where = f"; {moved[extra]}" if extra in moved else ""
            yield _diag(path, parsed, spot, f"unknown field {extra!r}{where}", Reason.SCHEMA)
        return
    if error.validator in ("oneOf", "anyOf") and error.context:
        branch = _matching_branch(error)
        if branch:
            for sub in branch:
                yield from _explain(path, parsed, sub)
            return
    unsafe = error.validator == "pattern" and error.validator_value == SAFE_NAME_PATTERN
    yield _diag(path, parsed, location, _message(error), Reason.UNSAFE_NAME if unsafe else Reason.SCHEMA)


def _matching_branch(error: SchemaError) -> list[SchemaError]:
    """For a tagged union (discriminator ``kind``/``type``), the errors of the branch the tag chose."""
    by_branch: dict[int, list[SchemaError]] = {}
    for sub in error.context or []:
        index = sub.relative_schema_path[0]
        if isinstance(index, int):
            by_branch.setdefault(index, []).append(sub)
    chosen = [
        errs
        for errs in by_branch.values()
        if not any(
            e.validator == "const" and list(e.relative_path)[-1:] in (["kind"], ["type"]) for e in errs
        )
        and not any(e.validator == "type" and not e.relative_path for e in errs)
    ]
    return chosen[0] if len(chosen) == 1 else []


def _message(error: SchemaError) -> str:
    if error.validator == "pattern" and error.validator_value == SAFE_NAME_PATTERN:
        # Names become path segments (devices/<id>.yaml): '../../etc/passwd' is an attack, not a typo.
        return (
            f"{_show(error.instance)} is not a safe name: names become file paths, so use letters and "
            f"digits joined by single '.', '_' or '-', at most {SAFE_NAME_MAX} characters"
        )
    if error.validator == "required":
        return str(error.message).replace("is a required property", "is required")
    if error.validator == "const":
        return f"must be {error.validator_value!r}, found {_show(error.instance)}"
    if error.validator in ("oneOf", "anyOf"):
        return f"{_show(error.instance)} matches none of the allowed forms"
    return str(error.message)


def _model_diagnostics(path: str, parsed: ParsedYaml, exc: ModelError) -> list[Diagnostic]:
    out = []
    for item in exc.errors(include_url=False)[:MAX_ERRORS_PER_FILE]:
        location = _data_path(parsed.data, item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        out.append(_diag(path, parsed, location, message, Reason.SCHEMA))
    return out


def _data_path(data: Any, loc: Sequence[Any]) -> list[str | int]:
    """Turn a pydantic error location into a path in the document.

    Tagged unions add the tag (e.g. ``'app_tarball'``) to the location; it is not a key of the data,
    so it is dropped when the node's own ``kind``/``type`` carries that value. A tag that is also a
    key of its node (``strategy: {type: waves, waves: [...]}``) is read as whichever of the two
    leads further into the data.
    """
    out: list[str | int] = []
    node = data
    for at, part in enumerate(loc):
        if _is_tag(node, part, loc[at + 1 :]):
            continue
        if isinstance(part, str | int):
            out.append(part)
        node = _child(node, part)
    return out


def _is_tag(node: Any, part: Any, rest: Sequence[Any]) -> bool:
    if not isinstance(node, dict) or part not in (node.get("kind"), node.get("type")):
        return False
    return part not in node or _walked(node, rest) > _walked(node[part], rest)


def _child(node: Any, part: Any) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    return node[part] if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node) else None


def _walked(node: Any, loc: Sequence[Any]) -> int:
    """How many leading parts of ``loc`` name nodes present under ``node``."""
    for count, part in enumerate(loc):
        present = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if not present:
            return count
        node = _child(node, part)
    return len(loc)


def _diag(
    path: str, parsed: ParsedYaml, location: Sequence[str | int], message: str, reason: Reason
) -> Diagnostic:
    return Diagnostic(
        file=path,
        line=parsed.line_of(tuple(location)),
        field=field_path(location) or None,
        message=message,
        reason=reason,
    )


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
