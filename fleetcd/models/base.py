"""Shared building blocks of the format v1 models: the frozen base class and constrained types.

Every model is frozen, forbids unknown fields and is strict (no coercion: ``"1"`` is not ``1`` and
``1.1`` is not a version string), so a YAML typo becomes a validation error instead of a surprise.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import semver
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from fleetcd.compat import StrEnum

API_VERSION_V1 = "fleetcd.dev/v1"
ApiVersion = Literal["fleetcd.dev/v1"]

# Names become path segments (devices/<id>.yaml, releases/<app>/...): alphanumerics joined by single
# '.', '_' or '-', so no separators, no '..', no control characters, no leading dot.
SAFE_NAME_PATTERN = r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$"
SAFE_NAME_MAX = 64
SafeName = Annotated[str, StringConstraints(pattern=SAFE_NAME_PATTERN, max_length=SAFE_NAME_MAX)]

FINGERPRINT_PATTERN = r"^[0-9A-F]{40}$"
Fingerprint = Annotated[str, StringConstraints(pattern=FINGERPRINT_PATTERN)]

SHA256_PATTERN = r"^[0-9a-f]{64}$"
Sha256 = Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]

# HH:MM on a 24 h clock; quoted or not, the strict loader keeps "02:30" a string (no base-60).
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
ClockTime = Annotated[str, StringConstraints(pattern=CLOCK_PATTERN)]

# semver.org 2.0.0 grammar, for editors; the semver library does the real parsing and ordering.
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


# A fleet has a few distinct versions, and every deployment record and bundle names one: the
# semver library's parse (~25 us) runs once per distinct string, not once per record.
@functools.lru_cache(maxsize=4096)
def _is_semver(value: str) -> bool:
    return bool(semver.Version.is_valid(value))


def _check_semver(value: str) -> str:
    if not _is_semver(value):
        raise ValueError(f"{value!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. '1.10.0')")
    return value


SemVer = Annotated[
    str,
    AfterValidator(_check_semver),
    WithJsonSchema({"type": "string", "pattern": SEMVER_PATTERN}),
]


def parse_version(value: str) -> semver.Version:
    """The one place versions are parsed: ordering and bounds always go through semver."""
    return semver.Version.parse(value)


@functools.cache
def _known_timezones() -> frozenset[str]:
    # available_timezones() walks the whole tz database on every call (~20 ms): once per process.
    return frozenset(available_timezones())


def _check_timezone(value: str) -> str:
    if value not in _known_timezones():
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'Europe/Berlin', 'UTC')") from exc
    return value


TimeZoneName = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_check_timezone)]

Percent = Annotated[float, Field(gt=0, le=100)]


class Stage(StrEnum):
    """Release stages in order of blast radius; approvals needed grow along it."""

    STAGING = "staging"
    CANARY = "canary"
    PRODUCTION = "production"

    @property
    def rank(self) -> int:
        return list(Stage).index(self)


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


# Strict mode accepts only enum *instances* from Python data; documents hold the value text.
StageName = Annotated[Stage, Field(strict=False)]
WeekdayName = Annotated[Weekday, Field(strict=False)]


class FrozenModel(BaseModel):
    """Base of every model: immutable, strict, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)


class Document(FrozenModel):
    """A top-level YAML document: carries ``apiVersion`` and ``kind``."""

    api_version: ApiVersion = Field(alias="apiVersion")


class MaintenanceWindow(FrozenModel):
    """A recurring window, in the device's own time zone unless ``timezone`` says otherwise.

    ``end`` before ``start`` means the window crosses midnight (e.g. 22:00–04:00).
    """

    days: list[WeekdayName] = Field(default_factory=lambda: list(Weekday), min_length=1)
    start: ClockTime
    end: ClockTime
    timezone: TimeZoneName | None = None


def is_safe_name(value: str) -> bool:
    return len(value) <= SAFE_NAME_MAX and re.fullmatch(SAFE_NAME_PATTERN, value) is not None
