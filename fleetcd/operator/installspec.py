"""Where a new fleet's CI installs fleetcd from: the one requirements file ``fleetcd init`` writes.

Every workflow in the template runs ``pip install -r .github/fleetcd-requirements.txt`` (and the
pre-commit hook calls the ``fleetcd`` on PATH), so moving a fleet to another fleetcd is a one-line
pull request on that file. This module decides what goes in it.

Deciding is pure: :func:`choose_install_spec` takes what :func:`running_fleetcd` read from the
installed distribution (its version and PEP 610 ``direct_url.json``) and returns the spec with the
reason it was chosen. In order:

1. ``--install-spec`` (:func:`explicit_install_spec`) always wins;
2. installed from a VCS URL: ``fleetcd @ git+URL@COMMIT``, pinned to the commit that was installed;
3. installed from a remote archive URL: ``fleetcd @ URL`` (with its sha256 when pip recorded one);
4. installed from an index (no ``direct_url.json``): ``fleetcd==VERSION``;
5. a local directory, an editable install or a local file: nothing CI could reach, so the file gets
   a placeholder URL under ``.invalid`` that fails pip loudly, and ``init`` warns.

Values are checked before they are written: a requirement must name ``fleetcd`` and pin a version
or give a URL, and no value may hold whitespace that would smuggle another line into the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

from fleetcd.compat import StrEnum
from fleetcd.errors import SetupError

REQUIREMENTS_FILE = ".github/fleetcd-requirements.txt"
DISTRIBUTION = "fleetcd"
# Under .invalid (RFC 2606) so it can never resolve: pip fails and prints this URL, which says where to look.
PLACEHOLDER_URL = "https://set-the-fleetcd-install-spec.invalid/in/.github/fleetcd-requirements.txt"

_VERSION_CLAUSE = r"(?:~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9][A-Za-z0-9.*+!_-]*"
_REQUIREMENT = re.compile(
    rf"(?i:fleetcd)\s*(?:\[\s*[A-Za-z0-9._-]+(?:\s*,\s*[A-Za-z0-9._-]+)*\s*\])?\s*"
    rf"(?:@\s*(?P<url>[A-Za-z][A-Za-z0-9+.-]*://\S+)"
    rf"|(?P<versions>{_VERSION_CLAUSE}(?:\s*,\s*{_VERSION_CLAUSE})*))"
)
_LOCATION = re.compile(r"[^\s-]\S*")  # one token, not an option


class SpecSource(StrEnum):
    """Why the requirements file holds what it holds (printed by ``init``)."""

    OPTION = "option"  # --install-spec
    VCS = "vcs"  # the running fleetcd came from a VCS URL; pinned to its commit
    URL = "url"  # the running fleetcd came from a remote archive URL
    INDEX = "index"  # the running fleetcd came from a package index; same version
    PLACEHOLDER = "placeholder"  # local checkout, editable install or local file: CI cannot reach it


@dataclass(frozen=True)
class RunningFleetcd:
    """What the installed ``fleetcd`` distribution says about itself (None: not installed at all)."""

    version: str | None
    direct_url: Mapping[str, Any] | None  # parsed PEP 610 direct_url.json; None from an index


@dataclass(frozen=True)
class InstallSpec:
    """One pip requirement for ``fleetcd`` and the pip options CI needs to find it."""

    requirement: str
    source: SpecSource
    why: str
    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    @property
    def is_placeholder(self) -> bool:
        return self.source is SpecSource.PLACEHOLDER


def check_requirement(text: str) -> str:
    """``text`` stripped, if it is a fleetcd requirement pip can install in CI; else SetupError."""
    value = text.strip()
    if len(value.splitlines()) > 1 or not _REQUIREMENT.fullmatch(value):  # pip reads line by line
        raise SetupError(
            f"install spec {text!r}: expected fleetcd with a pinned version or a URL, e.g. "
            "'fleetcd==0.2.0' or 'fleetcd @ git+https://git.example.com/fleetcd.git@v0.2.0'"
        )
    return value


def check_location(option: str, text: str) -> str:
    """An --index-url or --find-links value: one token (URL or path), not another option."""
    value = text.strip()
    if not _LOCATION.fullmatch(value):
        raise SetupError(f"{option} {text!r}: expected one URL or path without spaces")
    return value


def explicit_install_spec(requirement: str) -> InstallSpec:
    """The operator's ``--install-spec``: taken as given once it parses."""
    return InstallSpec(check_requirement(requirement), SpecSource.OPTION, "given with --install-spec")


def with_pip_options(
    spec: InstallSpec, *, index_url: str | None, find_links: tuple[str, ...], no_index: bool
) -> InstallSpec:
    """``spec`` plus where pip looks (an internal index, wheel directories, or no index at all)."""
    return replace(
        spec,
        index_url=None if index_url is None else check_location("--index-url", index_url),
        find_links=tuple(check_location("--find-links", link) for link in find_links),
        no_index=no_index,
    )


def choose_install_spec(running: RunningFleetcd) -> InstallSpec:
    """The install spec that reproduces the running fleetcd in CI, or a placeholder (pure)."""
    if running.version is None:
        return _placeholder("fleetcd is not installed as a distribution (running from a source tree)")
    direct = running.direct_url
    if direct is None:
        return InstallSpec(
            f"{DISTRIBUTION}=={running.version}",
            SpecSource.INDEX,
            f"the running fleetcd {running.version} was installed from a package index",
        )
    url = direct.get("url")
    if not isinstance(url, str) or not url:
        return _placeholder("the running fleetcd's direct_url.json has no url")
    subdirectory = direct.get("subdirectory")
    sub = [f"subdirectory={subdirectory}"] if isinstance(subdirectory, str) and subdirectory else []
    if urlsplit(url).scheme == "file":
        dir_info = direct.get("dir_info")
        editable = isinstance(dir_info, Mapping) and dir_info.get("editable") is True
        what = "an editable install of" if editable else "installed from"
        return _placeholder(f"the running fleetcd is {what} {url}, a path on this machine")
    vcs = direct.get("vcs_info")
    if isinstance(vcs, Mapping):
        commit, kind = vcs.get("commit_id"), vcs.get("vcs")
        if not isinstance(commit, str) or not isinstance(kind, str):
            return _placeholder(f"the running fleetcd came from {url} but no commit was recorded")
        requested = vcs.get("requested_revision")
        asked = f" (requested {requested})" if isinstance(requested, str) else ""
        return _checked(
            f"{DISTRIBUTION} @ {kind}+{url}@{commit}{_fragment(sub)}",
            SpecSource.VCS,
            f"the running fleetcd was installed from {kind} {url}{asked}; pinned to commit {commit}",
        )
    if isinstance(direct.get("archive_info"), Mapping):
        sha256 = _archive_sha256(direct["archive_info"])
        pinned = [f"sha256={sha256}"] if sha256 else []
        return _checked(
            f"{DISTRIBUTION} @ {url}{_fragment(pinned + sub)}",
            SpecSource.URL,
            f"the running fleetcd was installed from {url}",
        )
    # dir_info over a non-file URL does not occur (PEP 610); treat anything else as unreachable.
    return _placeholder(f"the running fleetcd was installed from {url}, which CI cannot install from")


def running_fleetcd() -> RunningFleetcd:
    """Read the installed distribution's version and ``direct_url.json`` (the only I/O here)."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return RunningFleetcd(version=None, direct_url=None)
    raw = dist.read_text("direct_url.json")
    if raw is None:
        return RunningFleetcd(version=dist.version, direct_url=None)
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = {}
    return RunningFleetcd(version=dist.version, direct_url=parsed if isinstance(parsed, dict) else {})


def default_install_spec() -> InstallSpec:
    return choose_install_spec(running_fleetcd())


def render_requirements(spec: InstallSpec) -> str:
    """The text of ``.github/fleetcd-requirements.txt`` (a pip requirements file)."""
    lines = [
        "# Where CI installs fleetcd from. Every workflow in .github/workflows runs",
        f"#   pip install -r {REQUIREMENTS_FILE}",
        "# and the pre-commit hook runs the fleetcd it installs, so moving this fleet to another fleetcd",
        "# is a one-line pull request here (CODEOWNERS: security reviews .github/).",
        "# Examples: fleetcd==0.2.0",
        "#           fleetcd @ git+https://git.example.com/fleetcd.git@v0.2.0",
        "#           fleetcd @ file:///opt/wheels/fleetcd-0.2.0-py3-none-any.whl",
        "# Air-gapped runners: put `--index-url https://pypi.internal.example/simple` (an internal",
        "# index) or `--no-index` and `--find-links /opt/wheels` (a wheel directory holding fleetcd and",
        "# its dependencies) on lines of their own above the requirement.",
        # The reason quotes direct_url.json (a URL, a requested revision): one line, whatever it holds.
        f"# Chosen by `fleetcd init`: {' '.join(spec.why.split())}.",
    ]
    if spec.is_placeholder:
        lines += [
            "# TODO: this placeholder cannot be installed; replace it before the first pull request",
            "# (or run `fleetcd init --install-spec SPEC`).",
        ]
    lines += pip_options(spec)
    lines.append(spec.requirement)
    return "\n".join(lines) + "\n"


def pip_options(spec: InstallSpec) -> list[str]:
    """The option lines above the requirement, one per line as pip's requirements files take them."""
    lines = ["--no-index"] if spec.no_index else []
    if spec.index_url is not None:
        lines.append(f"--index-url {spec.index_url}")
    return lines + [f"--find-links {link}" for link in spec.find_links]


def _placeholder(why: str) -> InstallSpec:
    return InstallSpec(f"{DISTRIBUTION} @ {PLACEHOLDER_URL}", SpecSource.PLACEHOLDER, why)


def _checked(requirement: str, source: SpecSource, why: str) -> InstallSpec:
    # A URL with spaces (or anything else odd) from direct_url.json would not survive the file.
    try:
        return InstallSpec(check_requirement(requirement), source, why)
    except SetupError:
        return _placeholder(f"{why}, but {requirement!r} is not a requirement pip can read")


def _fragment(parts: list[str]) -> str:
    # pip reads both sha256= and subdirectory= from one fragment joined by '&'.
    return "#" + "&".join(parts) if parts else ""


def _archive_sha256(info: Mapping[str, Any]) -> str | None:
    hashes = info.get("hashes")
    if isinstance(hashes, Mapping) and isinstance(hashes.get("sha256"), str):
        return str(hashes["sha256"])
    legacy = info.get("hash")  # PEP 610's older single "hash": "sha256=<hex>"
    if isinstance(legacy, str) and legacy.startswith("sha256="):
        return legacy.removeprefix("sha256=")
    return None
