"""Config instances: every robot's merged config must satisfy its release's config schema.

For each robot and app, the layers that apply are ``default`` < ``cohort-<name>`` (every cohort the
robot is in, in sorted name order) < ``device-<id>``, deep-merged (mappings merge; lists and
scalars replace). The result is checked with jsonschema against the ``config.schema`` of the
release the robot would receive (the release of the rollout that delivers that app to it). A
schema that is itself not a valid JSON Schema, or config values for a release that declares no
schema, are errors too. An error names the robots, the layers merged, the field and the reason;
robots failing the same way share one line. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing.exceptions import Unresolvable

from fleetcd.desired.configset import MAX_CONFIG_FILE_BYTES, merge_values
from fleetcd.errors import Diagnostic
from fleetcd.layout import CONFIGS_PREFIX, FileKind, classify, config_path
from fleetcd.loading.documents import Loaded
from fleetcd.loading.fleetspec import ReleaseEntry
from fleetcd.models import ConfigInstance
from fleetcd.reasons import Reason
from fleetcd.validation.context import Context, at, robots_phrase

__all__ = ["check", "config_layers", "merge_values"]

MAX_ERRORS_PER_CONFIG = 10  # per distinct merged config; the first few tell what is wrong


def config_layers(ctx: Context, app: str, device: str) -> list[Loaded[ConfigInstance]]:
    """The config files that apply to ``device`` for ``app``, lowest precedence first."""
    by_path = {doc.path: doc for doc in ctx.spec.configs.get(app, [])}
    stems = ["default", *(f"cohort-{c}" for c in ctx.memberships.get(device, ())), f"device-{device}"]
    return [by_path[p] for p in (config_path(app, stem) for stem in stems) if p in by_path]


@dataclass
class _Group:
    """One finding shared by many robots: reported once, naming them."""

    doc: Loaded[Any]
    path: tuple[str | int, ...]
    text: str
    schema: str  # the release file whose config schema was applied
    robots: list[str] = field(default_factory=list)
    layers: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Finding:
    doc: Loaded[Any] | None  # None: no layer applies, so the delivering rollout is blamed
    path: tuple[str | int, ...]
    text: str


Validators = dict[str, Validator | None]  # release path -> its schema's validator (None: broken/none)
FindingCache = dict[tuple[str, tuple[str, ...]], list[_Finding]]  # (release, layers) -> findings


def check(ctx: Context) -> Iterator[Diagnostic]:
    found, validators = release_checks(ctx)
    yield from found
    yield from robot_groups(ctx, validators)


def release_checks(ctx: Context) -> tuple[list[Diagnostic], Validators]:
    """What no device file changes: oversized config files, broken release schemas (and the
    validators of the others, which :func:`robot_groups` applies)."""
    found = list(_oversized(ctx))
    validators: Validators = {}
    for release_key in sorted(ctx.spec.releases):
        published = ctx.spec.releases[release_key]
        problems, validators[published.doc.path] = release_schema(published)
        found.extend(problems)
    return found, validators


def release_schema(entry: ReleaseEntry) -> tuple[list[Diagnostic], Validator | None]:
    """One release's config schema: its problems (a broken schema), else its validator (None
    without a schema)."""
    problems = list(_schema_problems(entry))
    return problems, None if problems else _validator(entry)


def robot_groups(
    ctx: Context, validators: Validators, cache: FindingCache | None = None
) -> Iterator[Diagnostic]:
    """Every robot's merged configs checked, robots failing the same way on one line."""
    groups: dict[tuple[str, tuple[str | int, ...], str], _Group] = {}
    cache = {} if cache is None else cache
    for (app, device), deliveries in ctx.deliveries.items():
        delivery = deliveries[0]  # several: an overlap error; the first (by name) is checked
        entry = delivery.release
        if entry is None:
            continue
        layers = config_layers(ctx, app, device)
        for finding in robot_findings(entry, layers, validators, cache):
            doc = finding.doc or ctx.spec.rollouts[delivery.rollout].doc
            spot = (doc.path, finding.path, finding.text)
            group = groups.setdefault(spot, _Group(doc, finding.path, finding.text, entry.doc.path))
            group.robots.append(device)
            group.layers.update(layer.path for layer in layers)
    for group in groups.values():
        merged = " + ".join(sorted(group.layers, key=_precedence)) or "no config files"
        where = f"merged from {merged}; schema in {group.schema}"
        yield at(
            group.doc,
            group.path,
            f"{robots_phrase(sorted(group.robots))}: {group.text} ({where})",
            Reason.CONFIG_INVALID,
        )


def robot_findings(
    entry: ReleaseEntry,
    layers: Sequence[Loaded[ConfigInstance]],
    validators: Validators,
    cache: FindingCache,
) -> list[_Finding]:
    """What is wrong with one robot's merged config for ``entry`` (empty: nothing), kept in
    ``cache`` by release and layer files: robots with the same layers are checked once."""
    key = (entry.doc.path, tuple(layer.path for layer in layers))
    if key not in cache:
        cache[key] = list(_findings(entry, layers, validators.get(entry.doc.path)))
    return cache[key]


def _oversized(ctx: Context) -> Iterator[Diagnostic]:
    """Config files travel byte for byte in robots' bundles, which refuse files over the cap."""
    for path in sorted(p for p in ctx.spec.files if p.startswith(CONFIGS_PREFIX)):
        yield from oversized(path, ctx.spec.files[path])


def oversized(path: str, raw: bytes) -> Iterator[Diagnostic]:
    """One file's :func:`_oversized` finding, if it is a config file over the cap."""
    found = classify(path)
    size = len(raw)
    if found is not None and found.kind is FileKind.CONFIG and size > MAX_CONFIG_FILE_BYTES:
        message = f"{size} bytes; robots accept config files of at most {MAX_CONFIG_FILE_BYTES} bytes"
        yield Diagnostic(path, None, None, message, Reason.TOO_LARGE)


def _findings(
    entry: ReleaseEntry, layers: Sequence[Loaded[ConfigInstance]], validator: Validator | None
) -> Iterator[_Finding]:
    release = entry.doc.model
    if release.config is None:
        for layer in layers:
            yield _Finding(
                layer,
                ("values",),
                f"would receive {release.app} {release.version}, whose release declares no config "
                "schema, so these values can be neither checked nor delivered",
            )
        return
    if validator is None:
        return  # the schema itself is broken: reported once at the release
    merged = merge_values(layer.data.get("values", {}) for layer in layers)
    try:
        errors = sorted(validator.iter_errors(merged), key=lambda e: [str(p) for p in e.absolute_path])
    except Unresolvable as exc:
        yield _Finding(None, ("release",), f"config schema of {entry.doc.path}: unresolvable $ref: {exc}")
        return
    for error in errors[:MAX_ERRORS_PER_CONFIG]:
        source, path = _source(layers, tuple(error.absolute_path))
        text = f"config for {release.app} {release.version} is invalid: {error.message}"
        yield _Finding(source, ("values", *path) if source else ("release",), text)


def _source(
    layers: Sequence[Loaded[ConfigInstance]], path: tuple[str | int, ...]
) -> tuple[Loaded[ConfigInstance] | None, tuple[str | int, ...]]:
    """The layer that set the value at ``path`` (or its closest existing ancestor): the highest one."""
    for length in range(len(path), -1, -1):
        prefix = path[:length]
        for layer in reversed(layers):
            if _has(layer.data.get("values", {}), prefix):
                return layer, prefix
    return None, ()


def _has(node: Any, path: tuple[str | int, ...]) -> bool:
    for part in path:
        in_mapping = isinstance(node, Mapping) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_mapping or in_list):
            return False
        node = node[part]
    return True


def _validator(entry: ReleaseEntry) -> Validator | None:
    config = entry.doc.model.config
    if config is None:
        return None
    cls = validator_for(config.json_schema, default=Draft202012Validator)
    return cls(config.json_schema)


def _schema_problems(entry: ReleaseEntry) -> Iterator[Diagnostic]:
    config = entry.doc.model.config
    if config is None:
        return
    cls = validator_for(config.json_schema, default=Draft202012Validator)
    try:
        cls.check_schema(config.json_schema)
    except SchemaError as exc:
        yield at(
            entry.doc,
            ("config", "schema", *exc.absolute_path),
            f"not a valid JSON Schema ({cls.__name__}): {exc.message}",
            Reason.CONFIG_INVALID,
        )


def _precedence(path: str) -> tuple[int, str]:
    stem = path.rsplit("/", 1)[-1]
    rank = 0 if stem == "default.yaml" else 1 if stem.startswith("cohort-") else 2
    return rank, path
