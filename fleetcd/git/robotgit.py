"""The robot's git: its local bare repository and its transport, all through the ``git`` CLI.

The agent runs on Python 3.10–3.13 without pygit2 (nothing here imports it, directly or through
another module), so everything is a ``git`` subprocess with an argv list, a clean environment
(:data:`CLEAN_ENV`: no system or global config, no prompts, C locale) and a timeout after which
the whole process group is killed. What the CLI gives the robot over libgit2:

* **O(1) polls.** Protocol v2's ``ls-refs`` carries a ref prefix per requested name, so the server
  lists only the robot's own ref, with or without ``GIT_NAMESPACE``, however many robots it serves.
* **Real negotiation on local paths.** libgit2's local transport sends the whole repository; git
  sends only the objects the robot lacks.
* **A real byte cap.** ``fetch.unpackLimit=1`` keeps every fetch as one pack file, and git runs
  under ``ulimit -f`` (RLIMIT_FSIZE, with SIGXFSZ ignored so the write fails with EFBIG instead of
  dumping core): ``index-pack`` cannot write a pack larger than the cap. That is
  :class:`~fleetcd.git.gitcli.TransferTooLarge`; the partial pack is deleted. So is one a fetch
  killed with the robot left (a power cut), by the next fetch once it is stale
  (:func:`~fleetcd.git.packfile.remove_stale_temp_files`).
* **Refusals are never success.** ``git push --porcelain`` prints each ref's verdict; a hook or ACL
  refusal is :class:`~fleetcd.errors.PushRejected` naming the ref (:func:`fleetcd.git.gitcli.check_push`).
* **No lock blocks for good.** A git killed holding a ref's lock (a power cut, the agent's cgroup
  killed) leaves it, and git never removes one: every later fetch of that ref failed. A command
  that fails on a lock of the robot's repository older than :data:`STALE_LOCK_S` removes it and
  runs again.
* **SSH as OpenSSH does it.** ``GIT_SSH_COMMAND`` logs in with only the robot's key, never prompts;
  a pinned host key (``SHA256:...``) is enforced by a ``KnownHostsCommand``
  (:mod:`fleetcd.git.knownhosts`, OpenSSH ≥ 8.5) with ``StrictHostKeyChecking=yes`` and no
  known_hosts file; without a pin, ``~/.ssh/known_hosts`` decides, as libgit2 did.

Requires git ≥ 2.32 (``GIT_CONFIG_GLOBAL``; ``--no-write-fetch-head`` is 2.29) and, for pins,
OpenSSH ≥ 8.5. Network and server failures are :class:`~fleetcd.errors.TransportError` (retry).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fleetcd.errors import RefConflict, SetupError, TransportError
from fleetcd.git.gitcli import (
    SshKey,
    TransferTooLarge,
    check_push,
    checked_url,
    git_binary,
    is_local,
    local_path,
)
from fleetcd.git.knownhosts import HostKeyPolicy, known_hosts_command
from fleetcd.git.packfile import remove_stale_temp_files

log = logging.getLogger("fleetcd.git")
DEFAULT_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 15.0
LOCAL_TIMEOUT_S = 30.0  # commands that only touch the robot's own repository
CLEAN_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
    "LANGUAGE": "C",
}
_INHERITED_ENV = ("PATH", "HOME", "TMPDIR")  # ssh finds ~/.ssh; git finds its helpers
_ULIMIT_BLOCK = 512  # POSIX sh's ``ulimit -f`` counts 512-byte blocks
# Run git with a file size limit: SIGXFSZ ignored (inherited across exec) makes the write fail.
_CAPPED = 'trap "" XFSZ; ulimit -c 0; ulimit -f "$1"; shift; exec "$@"'
_MISSING_REF = re.compile(r"couldn't find remote ref (\S+)")
_TOO_LARGE = "File too large"
_PIN_REFUSED = "is not one of the pinned keys"
_HOST_KEY_FAILED = "Host key verification failed"
_ZERO_OID = "0" * 40
_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_FILE_MODE = "100644"
_LOCK_EXISTS = re.compile(r"Unable to create '([^']+\.lock)': File exists")
# A git lock file in the robot's repository this much older than now (or newer: a clock set back
# after a power cut) is no live git's, which holds one for milliseconds, but a killed one's.
STALE_LOCK_S = 120.0
_STALE_LOCKS_MAX = 8  # removed for one command at most (a fetch locks two refs and packed-refs)


@dataclass(frozen=True)
class RobotRemote:
    """Where the robot's git server is and how to log in: URL, SSH key, host key pins, timeout."""

    url: str
    credentials: SshKey | None = None
    host_keys: HostKeyPolicy | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    def env(self) -> dict[str, str]:
        """``GIT_SSH_COMMAND`` for SSH URLs (empty for local ones)."""
        return {} if is_local(self.url) else {"GIT_SSH_COMMAND": self.ssh_command()}

    def ssh_command(self) -> str:
        """ssh with only the robot's key, no prompts, and the host key checked as the policy says."""
        connect = max(1, int(min(self.timeout_s, CONNECT_TIMEOUT_S)))
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect}"]
        if self.credentials is not None:
            argv += ["-i", str(self.credentials.private_key), "-o", "IdentitiesOnly=yes"]
            if not _url_names_user(self.url):  # ssh's -l would override the URL's user: only without one
                argv += ["-l", self.credentials.username]
        policy = self.host_keys or HostKeyPolicy()
        if policy.insecure_accept_any_host_key:
            argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        elif policy.pinned_sha256:
            argv += [
                "-o", "StrictHostKeyChecking=yes",
                "-o", "UserKnownHostsFile=/dev/null",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "CheckHostIP=no",
                "-o", f"KnownHostsCommand={known_hosts_command(policy.pinned_sha256, sys.executable)}",
            ]  # fmt: skip
        else:
            argv += ["-o", "StrictHostKeyChecking=yes"]
        return shlex.join(argv)


@dataclass(frozen=True)
class Done:
    """A finished git command."""

    returncode: int
    stdout: bytes
    stderr: str


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout_s: float = LOCAL_TIMEOUT_S,
    what: str,
    cap_bytes: int | None = None,
) -> Done:
    """Run ``argv`` in its own process group (killed whole on timeout: ssh and index-pack too)."""
    full = dict(CLEAN_ENV)
    full.update({k: os.environ[k] for k in _INHERITED_ENV if k in os.environ})
    full.update(env or {})
    command = list(argv)
    if cap_bytes is not None:
        blocks = max(1, cap_bytes // _ULIMIT_BLOCK)
        command = ["/bin/sh", "-c", _CAPPED, "sh", str(blocks), *command]
    try:
        process = subprocess.Popen(
            command,
            env=full,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise TransportError(f"{what}: cannot run git: {exc}") from exc
    try:
        out, err = process.communicate(stdin, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        _kill_group(process)
        raise TransportError(f"{what}: no answer within {timeout_s:g} s") from exc
    except BaseException:
        _kill_group(process)
        raise
    return Done(process.returncode, out, err.decode("utf-8", "replace"))


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def _url_names_user(url: str) -> bool:
    """``ssh://user@host/...`` or ``user@host:path``."""
    if "://" in url:
        authority = url.split("://", 1)[1].split("/", 1)[0]
        return "@" in authority
    return "@" in url.split(":", 1)[0]


def _failure(what: str, done: Done, remote: RobotRemote | None = None) -> TransportError:
    stderr = done.stderr.strip()
    for line in stderr.splitlines():
        if _PIN_REFUSED in line:
            return TransportError(f"{what} failed: {line.removeprefix('fleetcd: ')}")
    if _HOST_KEY_FAILED in stderr and remote is not None:
        pins = (remote.host_keys or HostKeyPolicy()).pinned_sha256
        if pins:
            return TransportError(f"{what} failed: the host key {_PIN_REFUSED} {', '.join(pins)}")
        return TransportError(
            f"{what} failed: the host key is not in ~/.ssh/known_hosts; pin its fingerprint or add it there"
        )
    return TransportError(f"{what} failed: {stderr or f'git exited {done.returncode}'}")


class RobotRepository:
    """The robot's bare repository (``paths.repo``), created with ``git init --bare`` when missing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not (path / "HEAD").exists():
            path.mkdir(parents=True, exist_ok=True)
            done = run([git_binary(), "init", "--quiet", "--bare", str(path)], what=f"creating {path}")
            if done.returncode != 0:
                raise SetupError(f"{path}: cannot create the robot's repository: {done.stderr.strip()}")

    def git(
        self,
        *args: str,
        what: str,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> Done:
        """``git --git-dir <repo> <args>`` on the local repository; a failure is a SetupError."""
        argv = [git_binary(), "--git-dir", str(self.path), *args]
        done = run(argv, env=env, stdin=stdin, what=what)
        for _ in range(_STALE_LOCKS_MAX):
            if not self._removed_stale_lock(done):
                break
            done = run(argv, env=env, stdin=stdin, what=what)
        if check and done.returncode != 0:
            raise SetupError(f"{self.path}: {what} failed: {done.stderr.strip() or done.returncode}")
        return done

    def _removed_stale_lock(self, done: Done) -> bool:
        """Whether ``done`` failed on a lock file of this repository that a killed git left (its
        age past :data:`STALE_LOCK_S`), now removed: the command may run again."""
        found = _LOCK_EXISTS.search(done.stderr) if done.returncode != 0 else None
        if found is None:
            return False
        named = Path(found.group(1))
        try:
            lock = named.parent.resolve() / named.name  # the lock itself is not followed
            if self.path.resolve() not in lock.parents:
                return False
            age = time.time() - lock.lstat().st_mtime
        except OSError:
            return False
        if abs(age) <= STALE_LOCK_S:
            return False  # a live git's, or one just left: the next poll looks again
        lock.unlink(missing_ok=True)
        log.warning("%s: removed; a git killed %.0f s ago left it and it blocked the robot's git", lock, age)
        return True

    # --- refs ---------------------------------------------------------------------------------------
    def refs(self, names: Sequence[str]) -> dict[str, str]:
        """The local value of each of ``names`` that exists (exact full ref names)."""
        if not names:
            return {}
        listed = self.git("for-each-ref", "--format=%(objectname) %(refname)", *names, what="listing refs")
        wanted = set(names)
        found: dict[str, str] = {}
        for line in listed.stdout.decode("utf-8", "replace").splitlines():
            oid, _, ref = line.partition(" ")
            if ref in wanted:
                found[ref] = oid
        return found

    def ref_target(self, ref: str) -> str | None:
        return self.refs([ref]).get(ref)

    def has_loose_ref(self, ref: str) -> bool:
        """Whether ``ref`` is a loose ref file here: a cheap hint, no process (packed refs say no)."""
        return (self.path / ref).is_file()

    def update_ref(self, ref: str, new: str, old: str | None, *, message: str) -> None:
        """Move ``ref`` from ``old`` (None: absent) to ``new``; already at ``new`` counts as done."""
        done = self.git(
            "update-ref", "-m", message, ref, new, old or _ZERO_OID, what=f"moving {ref}", check=False
        )
        if done.returncode != 0:
            actual = self.ref_target(ref)
            if actual != new:
                raise RefConflict(ref, old, actual)

    def delete_ref(self, ref: str) -> None:
        """Delete ``ref`` here (already absent counts as done)."""
        self.git("update-ref", "-d", ref, what=f"deleting {ref}")

    # --- objects ------------------------------------------------------------------------------------
    def blob_sizes(
        self, rev: str, paths: Sequence[str]
    ) -> tuple[str | None, dict[str, tuple[str, int] | None]]:
        """The commit ``rev`` (an id or a ref) names, and (blob id, size) of each of its ``paths``,
        from the object headers alone (one ``cat-file --batch-check``); None where there is none."""
        if not rev or rev.startswith("-") or any(c.isspace() or c == ":" for c in rev):
            raise ValueError(f"{rev!r} is not a commit id or ref name")
        query = "".join(f"{line}\n" for line in [rev, *(f"{rev}:{path}" for path in paths)]).encode()
        done = self.git("cat-file", "--batch-check", stdin=query, what=f"reading the headers of {rev}")
        lines = done.stdout.decode("utf-8", "replace").splitlines()
        if len(lines) != len(paths) + 1:
            raise SetupError(f"{self.path}: cat-file answered {len(lines)} lines for {len(paths) + 1} names")
        commit = _header(lines[0], "commit")
        sizes = {path: _header(line, "blob") for path, line in zip(paths, lines[1:], strict=True)}
        return (commit[0] if commit else None), (sizes if commit else dict.fromkeys(paths))

    def read_blobs(self, blobs: Sequence[tuple[str, int]]) -> list[bytes]:
        """The contents of ``blobs`` ((id, size) from :meth:`blob_sizes`), in one ``cat-file --batch``."""
        query = "".join(f"{oid}\n" for oid, _ in blobs).encode()
        out = self.git("cat-file", "--batch", stdin=query, what="reading blobs").stdout
        contents, at = [], 0
        for oid, size in blobs:
            header_end = out.index(b"\n", at)
            header = out[at:header_end].decode("ascii", "replace").split()
            if header != [oid, "blob", str(size)]:
                raise SetupError(f"{self.path}: blob {oid} changed or vanished while read ({header})")
            start = header_end + 1
            contents.append(out[start : start + size])
            at = start + size + 1  # the newline after each object's content
        return contents

    def read_blob(self, commit: str, path: str, max_bytes: int) -> bytes | None:
        """``path`` of ``commit`` when it is a blob of at most ``max_bytes``, else None."""
        found = self.blob_sizes(commit, [path])[1][path]
        if found is None or found[1] > max_bytes:
            return None
        return self.read_blobs([found])[0]

    def commit_file(
        self,
        name: str,
        data: bytes,
        *,
        parent: str | None,
        message: str,
        author: tuple[str, str],
        when: datetime,
    ) -> str:
        """A commit holding one file, by ``author`` (also the committer) at ``when``: deterministic."""
        offset = when.utcoffset()
        if offset is None:
            raise ValueError(f"commit time {when.isoformat()} has no time zone")
        if "/" in name or name in {"", ".", ".."} or any(c in name for c in "\t\n\0"):
            raise ValueError(f"{name!r} is not a plain file name")
        blob = self._oid(self.git("hash-object", "-w", "--stdin", stdin=data, what="writing a blob"))
        tree_entry = f"{_FILE_MODE} blob {blob}\t{name}\n".encode()
        tree = self._oid(self.git("mktree", stdin=tree_entry, what="writing a tree"))
        minutes = int(offset.total_seconds()) // 60
        sign, minutes = ("-", -minutes) if minutes < 0 else ("+", minutes)
        date = f"@{int(when.timestamp())} {sign}{minutes // 60:02d}{minutes % 60:02d}"
        name_, email = author
        who = {
            "GIT_AUTHOR_NAME": name_, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_NAME": name_, "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": date,
        }  # fmt: skip
        parents = ["-p", parent] if parent is not None else []
        text = message if message.endswith("\n") else f"{message}\n"
        done = self.git("commit-tree", tree, *parents, stdin=text.encode(), env=who, what="writing a commit")
        return self._oid(done)

    def _oid(self, done: Done) -> str:
        oid = done.stdout.decode("ascii", "replace").strip()
        if not _OID.fullmatch(oid):
            raise SetupError(f"{self.path}: git printed {oid!r}, not an object id")
        return oid

    # --- transport ----------------------------------------------------------------------------------
    def fetch(
        self, remote: RobotRemote, refspecs: Sequence[str], *, max_bytes: int, prune: bool = False
    ) -> list[str]:
        """Fetch ``+src:dst`` refspecs; returns the dst of every exact src the server has.

        git refuses a whole fetch when one exactly named ref is missing, after listing the refs and
        before any object moved: the refused names are dropped and the rest asked again. A pattern
        (one ``*`` on each side) never fails: it fetches what matches, possibly nothing, and with
        ``prune`` the local refs under its dst that the server no longer has are deleted, so the
        local refs say what the server holds (read them with :meth:`refs`). At most ``max_bytes``
        of pack are written (:class:`TransferTooLarge` beyond).
        """
        what = f"fetch from {checked_url(remote.url)}"
        if is_local(remote.url) and not local_path(remote.url).is_dir():
            raise TransportError(f"{what} failed: no repository at {local_path(remote.url)}")
        specs = {_source(spec): spec for spec in refspecs}
        remove_stale_temp_files(self.path / "objects" / "pack")  # a fetch killed with the robot's
        locks_removed = 0
        while specs:
            done = self._fetch_once(remote, list(specs.values()), max_bytes, what, prune=prune)
            if done.returncode == 0:
                return [spec.partition(":")[2] for spec in specs.values() if "*" not in spec]
            if locks_removed < _STALE_LOCKS_MAX and self._removed_stale_lock(done):
                locks_removed += 1
                continue
            missing = _MISSING_REF.search(done.stderr)
            if missing is None or missing.group(1) not in specs:
                raise _failure(what, done, remote)
            del specs[missing.group(1)]
        return []

    def _fetch_once(
        self, remote: RobotRemote, refspecs: list[str], max_bytes: int, what: str, *, prune: bool
    ) -> Done:
        argv = [
            git_binary(), "-c", "protocol.version=2",
            "-c", "fetch.unpackLimit=1", "-c", "transfer.unpackLimit=1",  # one pack file: the cap holds
            "--git-dir", str(self.path),
            "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-gc",
            "--no-recurse-submodules", *(["--prune"] if prune else []), "--", remote.url, *refspecs,
        ]  # fmt: skip
        done = run(argv, env=remote.env(), timeout_s=remote.timeout_s, what=what, cap_bytes=max_bytes)
        if done.returncode != 0:
            partial = self._drop_partial_packs()
            if _TOO_LARGE in done.stderr or partial >= max_bytes - _ULIMIT_BLOCK:
                raise TransferTooLarge(remote.url, max_bytes, partial)
        return done

    def _drop_partial_packs(self) -> int:
        """Delete what an aborted index-pack left behind; the size of the largest piece."""
        largest = 0
        for leftover in (self.path / "objects" / "pack").glob("tmp_*"):
            try:
                largest = max(largest, leftover.stat().st_size)
                leftover.unlink()
            except OSError:
                continue
        return largest

    def push(self, remote: RobotRemote, refspecs: Sequence[str]) -> None:
        """``git push --porcelain``; a refused ref raises PushRejected naming it (never success)."""
        what = f"push to {checked_url(remote.url)}"
        if is_local(remote.url) and not local_path(remote.url).is_dir():
            raise TransportError(f"{what} failed: no repository at {local_path(remote.url)}")
        argv = [
            git_binary(), "-c", "protocol.version=2", "--git-dir", str(self.path),
            "push", "--porcelain", "--no-verify", "--", remote.url, *refspecs,
        ]  # fmt: skip
        done = run(argv, env=remote.env(), timeout_s=remote.timeout_s, what=what)
        if done.returncode != 0 and not done.stdout.strip():
            raise _failure(what, done, remote)
        check_push(
            subprocess.CompletedProcess(argv, done.returncode, done.stdout.decode(), done.stderr), what
        )


def _header(line: str, kind: str) -> tuple[str, int] | None:
    """(id, size) from a ``cat-file --batch-check`` line for an object of ``kind``, else None."""
    parts = line.split()
    if len(parts) == 3 and _OID.fullmatch(parts[0]) and parts[1] == kind and parts[2].isdigit():
        return parts[0], int(parts[2])
    return None


def _source(refspec: str) -> str:
    src, sep, dst = refspec.removeprefix("+").partition(":")
    if not sep or not src.startswith("refs/") or not dst.startswith("refs/"):
        raise ValueError(f"refspec {refspec!r} must be a [+]refs/...:refs/... mapping")
    # A pattern's '*' sits between two '/': the ref prefix the server lists for it (everything
    # before the '*') then ends at a '/' and names one subtree, never a longer name beside it.
    stars = (src.count("*"), dst.count("*"))
    if stars not in {(0, 0), (1, 1)} or (stars == (1, 1) and ("/*/" not in src or "/*/" not in dst)):
        raise ValueError(f"refspec {refspec!r}: exact names, or one '/*/' component on each side")
    if any(c.isspace() or c in "~^?[\\" for c in src + dst) or ".." in src + dst:
        raise ValueError(f"refspec {refspec!r} holds characters a ref name cannot")
    return src
