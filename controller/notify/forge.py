"""Commit statuses on the git host: what the controller made of main's head, shown next to the commit.

Optional, configured on the controller (flags or environment, never the fleet repository):

============  ==================================================  ==============================
forge         ``POST``                                            token header
============  ==================================================  ==============================
``github``    ``{api}/repos/{owner}/{repo}/statuses/{sha}``        ``Authorization: Bearer …``
``gitea``     ``{api}/repos/{owner}/{repo}/statuses/{sha}``        ``Authorization: token …``
``gitlab``    ``{api}/projects/{url-encoded id or path}/statuses/{sha}``  ``PRIVATE-TOKEN: …``
============  ==================================================  ==============================

The verdict (:func:`verdict`, pure): ``failure`` when main stalls on invalid content or a rollout
is halted or rolling back, ``error`` when the reconcile failed on a bug, ``pending`` while a
rollout is scheduled, progressing or paused, ``success`` when every rollout is done. GitLab names
``failure``/``error`` ``failed``.

A post never stops the reconcile: it is retried within the reconcile like a webhook (bounded) and,
if it still fails, by the next full reconcile, at least every 10 minutes (the last status the
forge accepted is kept in the mirror, a cache: losing it only means posting it again).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from fleetcd.compat import StrEnum
from fleetcd.git.mirror import replace_file

STATUS_CONTEXT = "fleetcd"
DESCRIPTION_CHARS = 140  # GitHub refuses longer descriptions
POSTED_FILE = "fleetcd-commit-status.json"  # in the mirror: the last status the forge accepted
_REPO = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)+")
_GITLAB_ID = re.compile(r"[0-9]+")
MAX_REPO_CHARS = 255
MAX_TOKEN_BYTES = 4096
TOKEN_ENV = "FLEETCD_COMMIT_STATUS_TOKEN"  # noqa: S105 - the variable's name, not a token
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

PENDING_PHASES = frozenset({"scheduled", "progressing", "paused"})
FAILED_PHASES = frozenset({"halted", "rolling_back", "stalled"})


class ForgeKind(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    GITEA = "gitea"


class CommitState(StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


class ForgeError(ValueError):
    """A commit-status setting that cannot work; names the option, never the token."""


@dataclass(frozen=True)
class Forge:
    """Where and how to post commit statuses; ``repr`` never shows the token."""

    kind: ForgeKind
    api_url: str  # e.g. https://api.github.com, https://gitlab.example/api/v4, https://gitea.example/api/v1
    repo: str  # owner/repo (GitHub, Gitea); a project id or path (GitLab)
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ForgeError(f"--commit-status-api: not an http(s) API base URL: {self.api_url!r}")
        dots = any(part in (".", "..") for part in self.repo.split("/"))
        if (
            dots
            or len(self.repo) > MAX_REPO_CHARS
            or not (
                (_REPO.fullmatch(self.repo) and (self.kind is ForgeKind.GITLAB or self.repo.count("/") == 1))
                or (self.kind is ForgeKind.GITLAB and _GITLAB_ID.fullmatch(self.repo))
            )
        ):
            shape = "a project id or group/project path" if self.kind is ForgeKind.GITLAB else "OWNER/REPO"
            raise ForgeError(f"--commit-status-repo: {self.repo!r} is not {shape}")
        if not self.token or len(self.token.encode()) > MAX_TOKEN_BYTES or not self.token.isprintable():
            raise ForgeError(f"the commit-status token must be 1..{MAX_TOKEN_BYTES} printable characters")

    def url(self, sha: str) -> str:
        if not _SHA.fullmatch(sha):
            raise ValueError(f"not a commit id: {sha!r}")
        base = self.api_url.rstrip("/")
        if self.kind is ForgeKind.GITLAB:
            return f"{base}/projects/{quote(self.repo, safe='')}/statuses/{sha}"
        return f"{base}/repos/{self.repo}/statuses/{sha}"

    def headers(self) -> dict[str, str]:
        if self.kind is ForgeKind.GITLAB:
            return {"PRIVATE-TOKEN": self.token}
        scheme = "Bearer" if self.kind is ForgeKind.GITHUB else "token"
        return {"Authorization": f"{scheme} {self.token}", "Accept": "application/json"}

    def body(self, state: CommitState, description: str) -> bytes:
        text = description[:DESCRIPTION_CHARS]
        if self.kind is ForgeKind.GITLAB:
            gitlab = "failed" if state in (CommitState.FAILURE, CommitState.ERROR) else state.value
            data = {"state": gitlab, "name": STATUS_CONTEXT, "description": text}
        else:
            data = {"state": state.value, "context": STATUS_CONTEXT, "description": text}
        return json.dumps(data, sort_keys=True).encode()


def verdict(
    stalled: str | None, failed: str | None, phases: Iterable[tuple[str, str]]
) -> tuple[CommitState, str]:
    """The commit's state and description from the reconcile's outcome and its rollouts' phases
    (``(rollout, phase)`` pairs)."""
    if failed is not None:
        return CommitState.ERROR, f"controller error: {failed}"
    if stalled is not None:
        return CommitState.FAILURE, f"stalled: {stalled}"
    listed = sorted(phases)
    bad = [f"{name} {phase}" for name, phase in listed if phase in FAILED_PHASES]
    if bad:
        return CommitState.FAILURE, "rollout " + ", ".join(bad)
    going = [f"{name} {phase}" for name, phase in listed if phase in PENDING_PHASES]
    if going:
        return CommitState.PENDING, "rollout " + ", ".join(going)
    return CommitState.SUCCESS, "applied; no rollout in progress"


@dataclass(frozen=True)
class Posted:
    sha: str
    state: str
    description: str


def already_posted(mirror: Path, posted: Posted) -> bool:
    try:
        seen = json.loads((mirror / POSTED_FILE).read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(seen, dict) and seen == posted.__dict__


def remember_posted(mirror: Path, posted: Posted) -> None:
    if not mirror.is_dir():
        return
    replace_file(mirror, POSTED_FILE, json.dumps(posted.__dict__, sort_keys=True).encode())


def load_token(file: Path | None, env: str | None) -> str | None:
    """The token from ``file`` (one trailing newline ignored) or the environment's value; both set
    is refused."""
    if file is not None and env:
        raise ForgeError(f"--commit-status-token-file and {TOKEN_ENV} are both set; use one")
    if file is not None:
        try:
            with file.open("rb") as handle:
                data = handle.read(MAX_TOKEN_BYTES + 3)
        except OSError as exc:
            raise ForgeError(f"{file}: cannot read the commit-status token: {exc.strerror}") from exc
        try:
            return data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise ForgeError(f"{file}: the commit-status token is not UTF-8 text") from exc
    return env or None
