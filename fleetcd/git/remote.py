"""Fetching and pushing refs: the one transport both the controller and the agents use.

Remotes are anonymous (nothing is written to ``.git/config``); URLs may be local paths, ``file://``,
``ssh://`` (or ``user@host:path``), ``git://`` and ``https://``. Every failure becomes a
:class:`~fleetcd.errors.TransportError` (retry with backoff); a ref the server refuses becomes
:class:`~fleetcd.errors.PushRejected` naming it — libgit2 reports hook and ACL refusals only through
the ``push_update_reference`` callback and returns success, so a rejected status push would
otherwise look delivered. Non-fast-forward pushes are refused before anything is sent.

Pushes to a local repository go through ``git push`` (see :mod:`fleetcd.git.gitcli`: libgit2's
local transport skips the target's hooks). SSH host keys are checked by :mod:`fleetcd.git.hostkeys`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import shlex
from collections.abc import Iterable, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import CredentialType, FetchPrune, FileMode, ObjectType

from fleetcd.errors import PushRejected, SetupError, TransportError
from fleetcd.git import gitcli
from fleetcd.git.gitcli import SshKey, TransferTooLarge, checked_url, is_local, local_path
from fleetcd.git.hostkeys import HostKeyCheck, HostKeyPolicy
from fleetcd.git.objects import delete_refs, disk_problems, land_objects, object_size, update_refs
from fleetcd.git.packedrefs import read_refs
from fleetcd.git.reflisting import RefListingMemo
from fleetcd.git.untrusted import drop_unnegotiable_refs

__all__ = [
    "Refspec",
    "SshKey",
    "TransferTooLarge",
    "fetch",
    "fetch_own_ref_cli",
    "is_local",
    "list_remote",
    "push",
    "ssh_command",
]

DEFAULT_TIMEOUT_S = 60.0
log = logging.getLogger("fleetcd.git")
CONNECT_TIMEOUT_S = 15.0
_REMOTE_SAID_MAX_LINES = 20
_MAX_KEY_ATTEMPTS = 1  # libgit2 asks again after a refused key, forever: one refusal is final
_LIBGIT2_ERRORS = (pygit2.GitError, KeyError, ValueError, OSError)
_ABSENT = "0" * 40  # how libgit2 reports a ref the server does not have


@dataclass(frozen=True)
class Refspec:
    """``[+]src[:dst]`` with at most one ``*`` on each side."""

    force: bool
    src: str
    dst: str | None

    @classmethod
    def parse(cls, text: str) -> Refspec:
        body = text.removeprefix("+")
        src, sep, dst = body.partition(":")
        sides = [src, dst] if sep else [src]
        if body.startswith("-") or any(c.isspace() for c in body):
            raise ValueError(f"refspec {text!r} must not start with '-' or contain spaces")
        if any(side.count("*") > 1 for side in sides) or (sep and src.count("*") != dst.count("*")):
            raise ValueError(f"refspec {text!r}: '*' must appear once on both sides or not at all")
        return cls(text.startswith("+"), src, dst if sep else None)

    def map(self, name: str) -> str | None:
        """The local name a remote ref ``name`` lands at (its own name when there is no ``dst``)."""
        if "*" not in self.src:
            return (self.dst or name) if name == self.src else None
        head, _, tail = self.src.partition("*")
        if not (name.startswith(head) and name.endswith(tail) and len(name) >= len(head) + len(tail)):
            return None
        middle = name[len(head) : len(name) - len(tail)]
        return self.dst.replace("*", middle) if self.dst else name


class _Callbacks(pygit2.RemoteCallbacks):
    def __init__(
        self,
        repo: pygit2.Repository,
        key: SshKey | None,
        policy: HostKeyPolicy | None,
        specs: Sequence[Refspec],
        leases: Mapping[str, str | None] | None = None,
    ) -> None:
        super().__init__()
        self.repo = repo
        self.key = key
        self.host_check = HostKeyCheck(policy or HostKeyPolicy())
        self.forced = {spec.dst or spec.src: spec.force for spec in specs}
        self.leases = dict(leases or {})
        self.key_attempts = 0
        self.rejected: dict[str, str] = {}
        self.remote_said: list[str] = []
        self.max_bytes: int | None = None
        self.url = ""

    def transfer_progress(self, stats: pygit2.remotes.TransferProgress) -> None:
        # Raising here makes libgit2 abort the transfer; pygit2 re-raises this exception afterwards.
        if self.max_bytes is not None and stats.received_bytes > self.max_bytes:
            raise TransferTooLarge(self.url, self.max_bytes, stats.received_bytes)

    def __setattr__(self, name: str, value: Any) -> None:
        # pygit2 stores its libgit2 options struct here just before the call: swap in our own host
        # key callback, which (unlike pygit2's) gets to see the key. Only needed for pinned keys.
        check = self.__dict__.get("host_check")
        if name in ("fetch_options", "push_options") and check is not None and check.policy.pinned_sha256:
            value.callbacks.certificate_check = check.c_callback()
        elif name == "remote_callbacks" and check is not None and check.policy.pinned_sha256:
            value.certificate_check = check.c_callback()  # Remote.connect (list_remote)
        super().__setattr__(name, value)

    def certificate_check(self, certificate: None, valid: bool, host: bytes | str) -> bool:
        name = host.decode("utf-8", "replace") if isinstance(host, bytes) else host
        return self.host_check.decide(None, valid, name)

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> pygit2.Keypair | pygit2.Username:
        if self.key is None:
            raise TransportError(f"{url} asks for credentials but no SSH key is configured")
        username = username_from_url or self.key.username
        if allowed_types & CredentialType.SSH_KEY:
            self.key_attempts += 1
            if self.key_attempts > _MAX_KEY_ATTEMPTS:
                raise TransportError(
                    f"{url}: the server refused SSH key {self.key.private_key} for {username}"
                )
            return _keypair(self.key, username)
        if allowed_types & CredentialType.USERNAME:
            return pygit2.Username(username)
        raise TransportError(f"{url} offers no SSH key authentication ({allowed_types!r})")

    def sideband_progress(self, string: str) -> None:
        if len(self.remote_said) < _REMOTE_SAID_MAX_LINES:
            self.remote_said.extend(s.strip() for s in string.splitlines() if s.strip())

    def push_negotiation(self, updates: list[pygit2.remotes.PushUpdate]) -> None:
        # libgit2 would refuse a non-fast-forward too, but with a message that names no ref.
        for update in updates:
            old, new, ref = update.src, update.dst, update.dst_refname
            if ref in self.leases and old != new and str(old) != (self.leases[ref] or _ABSENT):
                expected = self.leases[ref] or "no such ref"
                raise PushRejected(ref, f"stale info: the server has {old}, not the {expected} expected")
            if self.forced.get(ref, False) or old.raw == bytes(20) or new.raw == bytes(20) or old == new:
                continue
            if old not in self.repo.odb or not self.repo.descendant_of(new, old):
                raise PushRejected(ref, f"non-fast-forward: the server has {old}, not an ancestor of {new}")

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.rejected[refname] = message

    @contextlib.contextmanager
    def remote(self, url: str, what: str, timeout_s: float) -> Iterator[pygit2.Remote]:
        """An anonymous remote for ``url``; libgit2's errors in the block become one TransportError."""
        _timeouts(timeout_s)
        try:
            yield self.repo.remotes.create_anonymous(url)
        except _LIBGIT2_ERRORS as exc:
            reason = self.host_check.rejection or str(exc) or type(exc).__name__
            raise TransportError(f"{what} failed: {reason}") from exc


def _keypair(key: SshKey, username: str) -> pygit2.Keypair:
    public = key.public_key or key.private_key.with_name(key.private_key.name + ".pub")
    return pygit2.Keypair(username, str(public), str(key.private_key), key.passphrase)


def _require_local_repository(url: str, what: str) -> None:
    # libgit2 reports a missing local repository as "unsupported URL protocol": say what is wrong.
    if is_local(url) and not local_path(url).is_dir():
        raise TransportError(f"{what} failed: no repository at {local_path(url)}")


def _timeouts(timeout_s: float) -> None:
    # Process-wide libgit2 settings; every call sets its own before talking to the server.
    pygit2.settings.server_connect_timeout = int(min(timeout_s, CONNECT_TIMEOUT_S) * 1000)
    pygit2.settings.server_timeout = int(timeout_s * 1000)


def fetch(
    repo: pygit2.Repository,
    url: str,
    refspecs: Sequence[str],
    *,
    credentials: SshKey | None = None,
    host_keys: HostKeyPolicy | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int | None = None,
) -> dict[str, pygit2.Oid]:
    """Fetch ``refspecs`` from ``url``; returns what the server has for every ref they match.

    Keys are local names (the refspec's destination; the remote name when it has none); the objects
    are in ``repo`` afterwards. A requested ref the server lacks is simply absent from the result.
    With ``max_bytes`` the transfer is aborted (:class:`TransferTooLarge`) once more than that
    arrived, so a server sending endless data cannot fill a robot's disk.
    """
    specs = [Refspec.parse(s) for s in refspecs]
    callbacks = _Callbacks(repo, credentials, host_keys, specs)
    callbacks.max_bytes, callbacks.url = max_bytes, url
    what = f"fetch from {checked_url(url)}"
    _require_local_repository(url, what)
    with callbacks.remote(url, what, timeout_s) as remote:
        remote.fetch(list(refspecs), callbacks=callbacks, prune=FetchPrune.NO_PRUNE)
        heads = remote.list_heads(callbacks=callbacks, connect=False)
    found: dict[str, pygit2.Oid] = {}
    for head in heads:
        if head.name is None:
            continue
        for spec in specs:
            local = spec.map(head.name)
            if local is not None:
                found[local] = head.oid
                break
    return found


def fetch_untrusted(
    repo: pygit2.Repository,
    url: str,
    refspecs: Sequence[str],
    *,
    credentials: SshKey | None = None,
    host_keys: HostKeyPolicy | None = None,
) -> dict[str, pygit2.Oid]:
    """:func:`fetch` of refs robots write. A robot may point its ref at a blob or a tag; once
    fetched, libgit2 fails every later fetch into this repository. So when a fetch fails, refs that
    cannot be walked as commits are deleted here (the server keeps them; ingest refuses them by
    name) and the fetch runs once more. An honest fleet pays nothing for this."""
    try:
        return fetch(repo, url, refspecs, credentials=credentials, host_keys=host_keys)
    except TransportError:
        dropped = drop_unnegotiable_refs(repo)
        if not dropped:
            raise
        for ref, why in sorted(dropped.items()):
            log.warning("%s %s: dropped from the mirror so that fetches work again", ref, why)
        return fetch(repo, url, refspecs, credentials=credentials, host_keys=host_keys)


# When more than a quarter of the refs may have changed (a fan-out, a first fetch of many robots),
# the two listings are compared whole as sets (in C) and the caller rebuilds what it keeps in one
# pass: a Python step per changed ref costs more there (at 30,000 robots a wave's fetch took
# 0.11 s compared whole, 0.17-0.20 s ref by ref).
WHOLE_FROM_SHARE = 4


def fetch_moved(
    repo: pygit2.Repository,
    url: str,
    names: Sequence[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memo: RefListingMemo | None = None,
) -> Mapping[str, pygit2.Oid]:
    """The server's refs under ``names`` copied into ``repo`` (same names), touching only what moved;
    returns ref → object id for every ref the server has there. Local repositories only.

    :func:`fetch` with wildcard refspecs costs the whole fleet every time: libgit2 reads all 200,000
    advertised refs of a 100,000-robot server, offers all of ours and updates ref by ref (25.6 s at
    load 9 with nothing new); ``git fetch`` of the moved refs alone still marks every local ref
    complete and checks connectivity against all of them (13.5 s for 1,000 moved refs). Here the
    server's refs are read from the bytes that store them (:class:`~fleetcd.git.reflisting.RefReader`;
    ``git ls-remote`` when those cannot be read consistently), compared with ours read the same way
    from ``packed-refs`` and the loose files, and only refs that differ are touched: objects the
    mirror lacks are copied from the server's object database (what libgit2's local transport does
    for a whole fetch, here only from the moved tips down to objects the mirror has), each one
    re-hashed on the way, then the refs are set in one update. A ref the server moves again after
    the listing is set to the listed value, whose objects the server keeps; the next reconcile sees
    the newer one.

    With ``memo`` (kept by ``controller run``), both sides' ``packed-refs`` are parsed only where
    their bytes changed since the last fetch, and only the refs that may differ are compared: those
    either reader saw change since the last fetch, and those that fetch moved or deleted (after
    it, the mirror held the server's listing but for them). Anyone writing the mirror in between
    (git run by hand, the controller's own pushes and deletions) changes its bytes, which its
    reader sees. The returned listing's :attr:`ListedRefs.changed` names the refs whose value may
    differ from the last fetch's (None: any), so the caller can patch what it keeps from it.
    """
    if not is_local(url):
        raise ValueError(f"{url}: fetch_moved reads the server's objects directly: local repositories only")
    memo = memo or RefListingMemo()
    touched, memo.touched = memo.touched, None  # known again only once this fetch has finished
    server = gitcli.git_dir_of(local_path(url))
    # No repository there (moved away, not yet created): git says so, as a transport error.
    reader = memo.server_reader(names)
    listed = reader.read(server) if (server / "refs").is_dir() else None
    read_both = listed is not None
    theirs_changed = reader.take_changed() if listed is not None else None
    if listed is None:
        listed = _ls_remote(url, names, timeout_s)
    mirror = memo.mirror_reader(names)
    ours = mirror.read(Path(repo.path))
    read_both = read_both and ours is not None
    ours_changed = mirror.take_changed() if ours is not None else None
    if ours is None:
        ours = read_refs(Path(repo.path), tuple(names))
    changed = None  # unknown: the listings are compared whole
    if touched is not None and theirs_changed is not None and ours_changed is not None:
        changed = theirs_changed | ours_changed | touched
        if len(changed) * WHOLE_FROM_SHARE > len(listed):  # a fan-out: compared whole, in C
            changed = None
    if changed is None:
        differ = listed.items() - ours.items()
        deleted = ours.keys() - listed.keys()
    else:
        differ = {(ref, listed[ref]) for ref in changed if ref in listed and ours.get(ref) != listed[ref]}
        deleted = {ref for ref in changed if ref in ours and ref not in listed}
    moved = {ref: pygit2.Oid(hex=oid) for ref, oid in differ}
    if moved:
        # copy_objects looks each tip up in the mirror once (asking here first cost a second lookup)
        copy_objects(_open_server(url), repo, set(moved.values()))
        update_refs(
            repo,
            {ref: (_oid_or_none(ours.get(ref)), oid) for ref, oid in moved.items()},
            message=f"fleetcd: as on {checked_url(url)}",
        )
    # Deleted on the server: deleted here too, or the mirror would hold a robot's report (or any
    # other ref) that the server no longer has, for ever.
    gone = {ref: pygit2.Oid(hex=ours[ref]) for ref in deleted}
    delete_refs(repo, gone, message=f"fleetcd: deleted on {checked_url(url)}")
    if read_both:  # the next fetch's readers name what changed since these listings
        memo.touched = moved.keys() | gone.keys()
    return ListedRefs(listed, changed)


class ListedRefs(Mapping[str, pygit2.Oid]):
    """Ref → object id over a listing of hex ids: an :class:`pygit2.Oid` is made only for the refs
    read (making 200,000 of them for every fetch cost more than the rest of a quiet fetch)."""

    def __init__(self, listed: Mapping[str, str], changed: set[str] | None = None) -> None:
        self.hex = listed
        # The refs whose value may differ from the previous fetch's listing (None: unknown, any).
        self.changed = changed

    def __getitem__(self, ref: str) -> pygit2.Oid:
        return pygit2.Oid(hex=self.hex[ref])

    def __contains__(self, ref: object) -> bool:
        return ref in self.hex

    def keys(self) -> KeysView[str]:
        return self.hex.keys()  # a dict's: set operations on it run in C

    def __iter__(self) -> Iterator[str]:
        return iter(self.hex)

    def __len__(self) -> int:
        return len(self.hex)


# A blob this small under a tree the mirror lacked is copied without asking the mirror for it
# first: a lookup that misses cost ~35 us here (libgit2 rescans its storage on every miss), three
# times a robot's report (commit, tree, blob) and as much again inside libgit2's own write; a
# duplicate object in the new pack costs git nothing. Larger blobs are looked up, so a tree naming
# many of the mirror's big blobs does not make every fetch copy their bytes again.
UNCHECKED_BLOB_BYTES = 4096
_KIND_NAMES = {
    ObjectType.COMMIT: b"commit",
    ObjectType.TREE: b"tree",
    ObjectType.BLOB: b"blob",
    ObjectType.TAG: b"tag",
}


def copy_objects(source: pygit2.Repository, target: pygit2.Repository, tips: Iterable[pygit2.Oid]) -> int:
    """Every object reachable from ``tips`` that ``target`` lacks, copied from ``source`` as one pack;
    the walk stops at objects ``target`` has. Returns how many were copied.

    Each object is hashed again before it is kept (sha1 of git's header and the bytes), so a
    damaged or lying object database is a :class:`~fleetcd.errors.TransportError`, never a wrong
    object under a trusted id. Objects are collected here and written once
    (:func:`~fleetcd.git.objects.land_objects`), not through libgit2's write, which looks every
    object up in ``target`` again first.
    """
    have = target.odb
    objects: dict[pygit2.Oid, tuple[int, bytes]] = {}
    stack = [(oid, True) for oid in tips]
    while stack:
        oid, ask = stack.pop()
        if oid in objects or (ask and oid in have):
            continue
        try:
            kind, data = source.odb.read(oid)[:2]
            found = source[oid]
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise TransportError(f"{source.path}: object {oid} is missing or unreadable: {exc}") from exc
        digest = hashlib.sha1(b"%s %d\x00" % (_KIND_NAMES.get(kind, b"?"), len(data)), usedforsecurity=False)
        digest.update(data)
        if digest.digest() != oid.raw:
            raise TransportError(f"{source.path}: object {oid} does not hash to its id")
        objects[oid] = (kind, data)
        if isinstance(found, pygit2.Commit):
            stack.append((found.tree_id, True))
            stack.extend((parent, True) for parent in found.parent_ids)
        elif isinstance(found, pygit2.Tree):
            for entry in found:
                if entry.filemode == FileMode.COMMIT:
                    continue
                small = entry.type == ObjectType.BLOB and _size(source, entry.id) <= UNCHECKED_BLOB_BYTES
                stack.append((entry.id, not small))
        elif isinstance(found, pygit2.Tag):
            stack.append((found.target, True))
    if objects:
        with disk_problems(target.path):
            land_objects(target, objects)
    return len(objects)


def _size(source: pygit2.Repository, oid: pygit2.Oid) -> int:
    """``oid``'s size in ``source``; a missing or unreadable one counts as large: it is looked up
    in the mirror first, then read from ``source``, which names it in a TransportError."""
    try:
        return object_size(source, oid)
    except (KeyError, ValueError, pygit2.GitError):
        return UNCHECKED_BLOB_BYTES + 1


def _open_server(url: str) -> pygit2.Repository:
    path = local_path(url)
    try:
        return pygit2.Repository(str(path))
    except pygit2.GitError as exc:
        raise TransportError(f"{url}: not a git repository: {exc}") from exc


def _oid_or_none(hex_id: str | None) -> pygit2.Oid | None:
    return None if hex_id is None else pygit2.Oid(hex=hex_id)


def list_remote(
    repo: pygit2.Repository,
    url: str,
    names: Sequence[str],
    *,
    credentials: SshKey | None = None,
    host_keys: HostKeyPolicy | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, pygit2.Oid]:
    """What the server's refs point at, fetching nothing: ref → object id.

    ``names`` are full ref names, or prefixes ending in ``/`` (every ref below). Local repositories
    are listed by ``git ls-remote`` (see :mod:`fleetcd.git.gitcli`), others through libgit2 with
    the same credentials and host key checks as :func:`fetch`.
    """
    what = f"list refs of {checked_url(url)}"
    _require_local_repository(url, what)
    if is_local(url):
        return {ref: pygit2.Oid(hex=oid) for ref, oid in _ls_remote(url, names, timeout_s).items()}
    callbacks = _Callbacks(repo, credentials, host_keys, [])
    with callbacks.remote(url, what, timeout_s) as remote:
        listed = {head.name: head.oid for head in remote.list_heads(callbacks=callbacks) if head.name}
    exact = {name for name in names if not name.endswith("/")}
    prefixes = tuple(name for name in names if name.endswith("/"))
    return {ref: oid for ref, oid in listed.items() if ref in exact or ref.startswith(prefixes)}


def _ls_remote(url: str, names: Sequence[str], timeout_s: float) -> dict[str, str]:
    """A local repository's refs under ``names`` (full names, or prefixes ending in ``/``) through
    ``git ls-remote``: ref → object id (hex). A pattern also matches refs it is only a suffix of,
    so what git lists is kept only when it is one of the names or below one."""
    exact = {name for name in names if not name.endswith("/")}
    prefixes = tuple(name for name in names if name.endswith("/"))
    patterns = [f"{name}*" if name.endswith("/") else name for name in names]
    listed = gitcli.ls_remote(url, patterns, timeout_s=timeout_s)
    return {ref: oid for ref, oid in listed.items() if ref in exact or ref.startswith(prefixes)}


def push(
    repo: pygit2.Repository,
    url: str,
    refspecs: Sequence[str],
    *,
    credentials: SshKey | None = None,
    host_keys: HostKeyPolicy | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    leases: Mapping[str, str | None] | None = None,
    atomic: bool = False,
) -> None:
    """Push ``refspecs``; raises PushRejected naming the first ref the server refused.

    ``leases``: ref → the value the server must hold for the push to update it (None: absent),
    checked against the server's advertisement before anything is sent. ``atomic`` (every ref or
    none) and wildcard refspecs need the git CLI, so local repositories only: libgit2 has neither,
    and its server updates the refs one by one in refspec order.
    """
    specs = [Refspec.parse(s) for s in refspecs]
    if is_local(checked_url(url)):
        gitcli.push(Path(repo.path), url, refspecs, timeout_s=timeout_s, atomic=atomic, leases=leases)
        return
    if atomic or any("*" in spec.src for spec in specs):
        raise ValueError(f"{url}: atomic and wildcard pushes need a local repository (libgit2 has neither)")
    callbacks = _Callbacks(repo, credentials, host_keys, specs, leases)
    with callbacks.remote(url, f"push to {url}", timeout_s) as remote:
        remote.push(list(refspecs), callbacks=callbacks)
    if callbacks.rejected:
        ref, message = sorted(callbacks.rejected.items())[0]
        others = sorted(set(callbacks.rejected) - {ref})
        detail = message + (f" (also rejected: {', '.join(others)})" if others else "")
        said = " | ".join(callbacks.remote_said)
        raise PushRejected(ref, f"{detail}; server said: {said}" if said else detail)


def ssh_command(key: SshKey, *, known_hosts: Path | None, insecure_accept_any_host_key: bool = False) -> str:
    """A ``GIT_SSH_COMMAND`` for the git CLI that uses only ``key`` and checks the host strictly."""
    argv = ["ssh", "-i", str(key.private_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
    if insecure_accept_any_host_key:
        argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    elif known_hosts is not None:
        argv += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"]
    else:
        argv += ["-o", "StrictHostKeyChecking=yes"]
    return shlex.join(argv)


def fetch_own_ref_cli(
    url: str,
    ref: str,
    *,
    git_dir: Path,
    credentials: SshKey | None = None,
    known_hosts: Path | None = None,
    insecure_accept_any_host_key: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[pygit2.Oid | None, int]:
    """Fetch one ref with the git CLI over protocol v2; returns (its value or None, bytes received).

    The O(1) poll: v2's ``ls-refs`` with a ref prefix makes the server list only this ref, however
    many robots share the repository. SSH host keys are checked against ``known_hosts`` (OpenSSH
    cannot pin a bare fingerprint).
    """
    if not re.fullmatch(r"refs/[^\s:*?\[\\^~]+", ref) or not pygit2.reference_is_valid_name(ref):
        raise ValueError(f"{ref!r} is not a full ref name")
    checked_url(url)
    env: dict[str, str] = {}
    if credentials is not None:
        env["GIT_SSH_COMMAND"] = ssh_command(
            credentials, known_hosts=known_hosts, insecure_accept_any_host_key=insecure_accept_any_host_key
        )
    elif known_hosts is not None:
        raise SetupError("known_hosts is only used together with an SSH key")
    fetched = gitcli.fetch_ref_v2(git_dir, url, ref, env=env, timeout_s=timeout_s)
    if not fetched.found:
        return None, fetched.bytes_received
    try:
        local = pygit2.Repository(str(git_dir)).references.get(ref)
    except pygit2.GitError as exc:
        raise SetupError(f"{git_dir}: not a git repository: {exc}") from exc
    target = local.resolve().target if local is not None else None
    if not isinstance(target, pygit2.Oid):
        raise TransportError(f"fetch of {ref} from {url} succeeded but left no {ref} in {git_dir}")
    return target, fetched.bytes_received
