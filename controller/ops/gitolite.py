"""A gitolite-admin checkout as ``fleetcd robot`` changes it: key files and the ``@robots`` group.

gitolite knows a robot by its key file's name (``keydir/<id>.pub``; also ``keydir/<sub>/<id>.pub``
and ``keydir/<id>@<host>.pub``, gitolite's ways of giving one user several keys) and grants it what
docs/git-server.md's ``repo fleet`` block grants ``@robots``: read the repository (each robot is
shown only its own desired-state ref) and write its own status ref. Enrolling a robot is therefore
one key file plus its id on an ``@robots = ...`` line of ``conf/gitolite.conf``; revoking it
removes every key file of that user and the id from the group. The server applies a change when
the checkout is pushed (gitolite's post-update hook rewrites ``authorized_keys``). Status shards
on other servers have their own checkouts (:class:`ShardAdmin`, :func:`shard_checkouts`).

The edits are decided on text (:func:`conf_with_robot`, :func:`conf_without_robot`,
:func:`key_owner`), keeping every comment and line of the conf; :class:`AdminCheckout` reads the
checkout, writes changed files atomically, commits them and pushes when asked.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from controller.ops.sshkeys import PublicKey
from fleetcd.errors import InvalidContent, SetupError, TransportError
from fleetcd.git.gitcli import git_binary
from fleetcd.git.worktree import changed_paths, commit_all, configured_author
from fleetcd.operator.repo import write_atomic
from fleetcd.reasons import Reason

CONF = "conf/gitolite.conf"
KEYDIR = "keydir"
GROUP = "@robots"
PUSH_TIMEOUT_SECONDS = 120
# ``@robots = a b  # comment``; ``#@robots =`` (hash first, no members) is the placeholder left
# when the last robot goes: gitolite warns about an empty group definition, so it is commented out.
_GROUP_LINE = re.compile(
    rf"^(?P<off>#?)(?P<head>[ \t]*{re.escape(GROUP)}[ \t]*=)(?P<members>[^#\r\n]*?)"
    r"(?P<tail>[ \t]*#[^\r\n]*)?(?P<eol>\r?\n|$)",
    re.MULTILINE,
)


def key_owner(rel: str) -> str | None:
    """The gitolite user a ``keydir/...`` file authenticates, or None when it is no key file.

    ``alice.pub`` and ``sub/alice.pub`` are alice; ``alice@laptop.pub`` is alice too, but
    ``alice@example.com.pub`` is the user ``alice@example.com`` (gitolite: a ``.`` after the ``@``
    makes it part of the name).
    """
    path = PurePosixPath(rel)
    if path.parts[:1] != (KEYDIR,) or path.suffix != ".pub":
        return None
    name = path.name[: -len(".pub")]
    user, at, host = name.partition("@")
    return user if at and "." not in host else name


def _members(match: re.Match[str]) -> list[str]:
    return match["members"].split()


def _active(conf: str) -> list[re.Match[str]]:
    return [m for m in _GROUP_LINE.finditer(conf) if not m["off"]]


def robots_in(conf: str) -> set[str]:
    """Every member of ``@robots`` over all of its lines (gitolite adds them up)."""
    return {m for match in _active(conf) for m in _members(match)}


def conf_with_robot(conf: str, robot: str) -> str:
    """``conf`` with ``robot`` on the last ``@robots = ...`` line (unchanged if it is there); the
    placeholder the last retired robot left is used when no such line is left."""
    placeholders = [m for m in _GROUP_LINE.finditer(conf) if m["off"] and not _members(m)]
    lines = _active(conf) or placeholders[-1:]
    if not lines:
        raise InvalidContent.at(
            CONF,
            f"has no '{GROUP} = ...' line to enrol {robot!r} in; add the fleet's block as "
            "docs/git-server.md shows",
            reason=Reason.UNKNOWN_REFERENCE,
        )
    if robot in robots_in(conf):
        return conf
    last = lines[-1]
    members = " ".join([*_members(last), robot])
    line = f"{last['head']} {members}{last['tail'] or ''}{last['eol']}"
    return conf[: last.start()] + line + conf[last.end() :]


def conf_without_robot(conf: str, robot: str) -> str:
    """``conf`` with ``robot`` taken off every ``@robots = ...`` line; a line left without members
    becomes the placeholder ``#@robots =``."""
    out, at = [], 0
    for match in _active(conf):
        members = _members(match)
        if robot not in members:
            continue
        kept = " ".join(m for m in members if m != robot)
        out.append(conf[at : match.start()])
        head = f"{match['head']} {kept}" if kept else f"#{match['head']}"  # gitolite: no empty groups
        out.append(f"{head}{match['tail'] or ''}{match['eol']}")
        at = match.end()
    return "".join(out) + conf[at:]


@dataclass(frozen=True)
class AdminCheckout:
    """A gitolite-admin work tree: ``conf/gitolite.conf`` and every key file under ``keydir/``."""

    root: Path
    conf: str
    keys: Mapping[str, str]  # 'keydir/...pub' -> its text

    @classmethod
    def open(cls, root: Path) -> AdminCheckout:
        conf_path = root / CONF
        if not conf_path.is_file() or not (root / KEYDIR).is_dir():
            raise SetupError(f"{root}: not a gitolite-admin checkout (no {CONF} and {KEYDIR}/)")
        keys = {
            path.relative_to(root).as_posix(): path.read_text(encoding="utf-8", errors="replace")
            for path in sorted((root / KEYDIR).rglob("*.pub"))
            if path.is_file()
        }
        return cls(root, conf_path.read_text(encoding="utf-8"), keys)

    def key_files_of(self, user: str) -> list[str]:
        return sorted(rel for rel in self.keys if key_owner(rel) == user)

    def owner_of(self, key: PublicKey) -> str | None:
        """Who already logs in with ``key`` (gitolite refuses one key for two users)."""
        for rel, text in self.keys.items():
            if any(" ".join(line.split()[:2]) == key.body for line in text.splitlines() if line.strip()):
                return key_owner(rel)
        return None

    def enrol(self, robot: str, key: PublicKey) -> dict[str, str | None]:
        """The files that give ``robot`` (with ``key``) the fleet's robot access; refuses an id or
        a key already known to gitolite."""
        existing = self.key_files_of(robot)
        if existing:
            raise InvalidContent.at(
                existing[0], f"gitolite already has a key for {robot!r}", reason=Reason.DUPLICATE_ID
            )
        self._refuse_reused(robot, key)
        return {f"{KEYDIR}/{robot}.pub": key.line + "\n", CONF: conf_with_robot(self.conf, robot)}

    def revoke(self, robot: str) -> dict[str, str | None]:
        """The changes that take every key of ``robot`` and its ``@robots`` membership away."""
        changes: dict[str, str | None] = dict.fromkeys(self.key_files_of(robot))
        conf = conf_without_robot(self.conf, robot)
        if conf != self.conf:
            changes[CONF] = conf
        return changes

    def rotate(self, robot: str, key: PublicKey) -> dict[str, str | None]:
        """``robot``'s keys replaced by ``key`` alone (its membership stays as it is)."""
        existing = self.key_files_of(robot)
        if not existing:
            raise InvalidContent.at(
                f"{KEYDIR}/{robot}.pub",
                f"gitolite has no key for {robot!r} to rotate; enrol it with `fleetcd robot add`",
                reason=Reason.UNKNOWN_REFERENCE,
            )
        self._refuse_reused(robot, key)
        changes: dict[str, str | None] = dict.fromkeys(existing)
        changes[f"{KEYDIR}/{robot}.pub"] = key.line + "\n"
        return changes

    def _refuse_reused(self, robot: str, key: PublicKey) -> None:
        owner = self.owner_of(key)
        if owner is None:
            return
        if owner == robot:
            raise InvalidContent.at(
                f"{KEYDIR}/{robot}.pub",
                f"the new key {key.fingerprint} is the key {robot!r} already has; rotating needs a new key",
                reason=Reason.DUPLICATE_ID,
            )
        raise InvalidContent.at(
            next(iter(self.key_files_of(owner)), KEYDIR),
            f"key {key.fingerprint} already belongs to {owner!r}; every robot needs its own key",
            reason=Reason.DUPLICATE_ID,
        )

    # --- I/O ----------------------------------------------------------------------------------------
    def prepare_commit(self, author: str | None) -> str:
        """The author of the commit this change will be; refuses a checkout with other edits."""
        found = author if author is not None else configured_author(self.root)
        if found is None:
            raise SetupError(f"{self.root}: git has no user.name/user.email configured; pass --author")
        dirty = changed_paths(self.root)
        if dirty:
            raise SetupError(
                f"{self.root} has uncommitted changes ({', '.join(dirty[:5])}); commit them first"
            )
        return found

    def snapshot(self, paths: Mapping[str, object]) -> dict[str, bytes | None]:
        """The bytes on disk now of ``paths`` (None: absent), to put back if a later step fails."""
        return {p: (self.root / p).read_bytes() if (self.root / p).is_file() else None for p in paths}

    def write(self, changes: Mapping[str, str | bytes | None]) -> None:
        for rel, text in sorted(changes.items()):
            target = self.root / rel
            if text is None:
                target.unlink(missing_ok=True)
            else:
                write_atomic(target, text.encode("utf-8") if isinstance(text, str) else text)

    def commit(self, message: str, author: str) -> str:
        return commit_all(self.root, message, author)

    def push(self) -> None:
        """``git push`` of the checkout, with the operator's own git and SSH set-up."""
        try:
            done = subprocess.run(
                [git_binary(), "-C", str(self.root), "push", "--quiet"],
                capture_output=True,
                text=True,
                timeout=PUSH_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TransportError(f"{self.root}: git push timed out after {PUSH_TIMEOUT_SECONDS} s") from exc
        if done.returncode != 0:
            raise TransportError(f"{self.root}: git push failed: {done.stderr.strip()}")


# --- the checkouts of the status shards' servers (``--shard-admin NAME=PATH``) -------------------------
@dataclass(frozen=True)
class ShardAdmin:
    """The gitolite-admin checkout of the server holding status shard ``name`` (``--shard-admin``)."""

    name: str
    path: Path


@dataclass(frozen=True)
class AdminEdit:
    """The decided change to one status shard's gitolite-admin checkout, and its commit's author."""

    shard: str
    checkout: AdminCheckout
    changes: Mapping[str, str | None]
    author: str | None


@dataclass(frozen=True)
class AdminResult:
    """What was written to one status shard's checkout, for the CLI to print."""

    shard: str
    root: Path
    paths: tuple[str, ...]
    commit: str | None


def shard_checkouts(
    shard_admins: Sequence[ShardAdmin], primary: Path | None
) -> list[tuple[str, AdminCheckout]]:
    """Each shard's checkout, opened; one that is the primary's checkout (a shard on the primary's
    server) is left out, the primary's own change covers it. A checkout given twice is refused."""
    opened: list[tuple[str, AdminCheckout]] = []
    seen = {primary.resolve()} if primary is not None else set()
    for shard in shard_admins:
        root = shard.path.resolve()
        if primary is not None and root == primary.resolve():
            continue
        if root in seen:
            raise SetupError(f"{shard.path}: given for two status shards; give each checkout once")
        seen.add(root)
        opened.append((shard.name, AdminCheckout.open(shard.path)))
    return opened
