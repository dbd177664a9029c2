"""The transport jobs the git CLI does better than libgit2, behind :mod:`fleetcd.git.remote`.

* **Push to a local repository.** libgit2's local transport (plain paths and ``file://``) writes the
  objects and refs itself and never runs the target's ``pre-receive``/``update`` hooks (measured:
  a pre-receive that rejects everything still let a pygit2 push through). ``git push`` starts a
  real receive-pack, so the server's policy applies the same as over SSH. It also does what
  libgit2 cannot: wildcard refspecs, ``--atomic`` (all refs or none) and ``--force-with-lease``.
* **Pack a local repository's refs** (``git pack-refs --all``): 10,000 loose ref files cost every
  later ref listing; one packed file does not.
* **List a local repository's refs.** libgit2's local transport peels every ref it lists (0.4 s
  for 20,000 refs here); ``git ls-remote`` takes 0.07 s, which keeps an idle controller's poll cheap.
* **Everything the robot does** (:mod:`fleetcd.git.robotgit`): the agent runs without pygit2, so
  the shared pieces it needs — :class:`SshKey`, :class:`TransferTooLarge`, :func:`is_local`,
  :func:`check_push` — live here, free of pygit2, and :mod:`fleetcd.git.remote` re-exports them.
* **Fetch one ref with protocol v2.** libgit2 speaks protocol v0, where the server first advertises
  every ref it has; the CLI's v2 ``ls-refs`` asks only for the ref it wants, so a robot's no-op poll
  costs the same with 10 or 10,000 robots (``bench/git_poll_bytes.py``).

Byte counts come from git's own packet trace (``GIT_TRACE_PACKET``, ``GIT_TRACE_PACKFILE``): the
pkt-lines the client received (framing included; trailing newlines, which the trace hides, counted
as one byte each) plus the pack.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetcd.errors import PushRejected, SetupError, TransportError

DEFAULT_TIMEOUT_S = 60.0
_REMOTE_OUTPUT_MAX_LINES = 20
_TRACE_LINE = re.compile(r"packet:\s+(?P<who>[\w-]+)(?P<dir>[<>]) (?P<payload>.*)$")
_SPECIAL_PACKETS = frozenset({"0000", "0001", "0002"})
_OCTAL_ESCAPE = re.compile(r"\\[0-7]{1,3}")
_MISSING_REF = "couldn't find remote ref"
# How git says the server's ref is not an ancestor of what we push ("fetch first": the server's
# commit is not even known here).
_NON_FAST_FORWARD = ("(non-fast-forward)", "(fetch first)")
_STALE_LEASE = "(stale info)"  # --force-with-lease: the server's ref is not the expected one
# Refused only because another ref of the push was: git says "failed" when it refused on its own side
# and "failure" when the server refused (a hook); "(atomic push fail" matches both.
_ATOMIC_FOLLOWER = "(atomic push fail"
_OTHERS_NAMED = 5  # an atomic push of 10,000 refs fails all of them: name a few


class TransferTooLarge(TransportError):
    """A fetch received more than its byte cap (endless data, or a pack far above what was asked for)."""

    def __init__(self, url: str, limit_bytes: int, seen_bytes: int) -> None:
        self.url, self.limit_bytes, self.seen_bytes = url, limit_bytes, seen_bytes
        super().__init__(f"fetch from {url}: received {seen_bytes} bytes, over the cap of {limit_bytes}")


@dataclass(frozen=True)
class SshKey:
    """A robot's (or the controller's) SSH identity; the URL's user name wins over ``username``."""

    username: str
    private_key: Path
    public_key: Path | None = None
    passphrase: str = ""


def checked_url(url: str) -> str:
    """``url`` unchanged; refused when git would read it as an option (git itself refuses those too)."""
    if not url or url.startswith("-"):
        raise ValueError(f"remote URL {url!r} is empty or starts with '-'")
    return url


def is_local(url: str) -> bool:
    """A path or ``file://`` URL; like git, ``host:path`` (no slash before the colon) is SSH."""
    if url.startswith("file://"):
        return True
    if "://" in url:
        return False
    colon, slash = url.find(":"), url.find("/")
    return colon == -1 or (slash != -1 and slash < colon)


_SCP_HOST = re.compile(r"^(?:[^@/]*@)?(\[[^\]]*\]|[^:/\[]*):")


def server_host(url: str) -> str | None:
    """The host name a remote URL reaches (``ssh://user@host:22/x``, ``user@host:x``,
    ``https://host/x`` → ``host``; ``[::1]`` → ``::1``), lower-cased as SSH compares it; None for a
    local URL or one with no host."""
    if is_local(url):
        return None
    if "://" in url:
        host = url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
        host = host.split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
    else:
        scp = _SCP_HOST.match(url)
        host = scp.group(1) if scp else ""
    return host.strip("[]").lower() or None


def local_path(url: str) -> Path:
    """The directory a local URL (:func:`is_local`) names."""
    return Path(url.removeprefix("file://")) if url.startswith("file://") else Path(url)


def git_dir_of(path: Path) -> Path:
    """The git directory of the local repository at ``path``: itself when bare, else its ``.git``."""
    return path / ".git" if (path / ".git").is_dir() else path


def git_binary() -> str:
    found = shutil.which("git")
    if found is None:
        raise SetupError("the git command-line tool is required here but is not on PATH (Debian: git)")
    return found


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a git child process: never prompt (a robot has no terminal) and keep
    messages in English (they are parsed)."""
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C", **(extra or {})}


def _run(
    argv: Sequence[str], *, env: Mapping[str, str], timeout_s: float, what: str
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv),
            env=git_env(env),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TransportError(f"{what}: no answer within {timeout_s:g} s") from exc
    except OSError as exc:
        raise TransportError(f"{what}: cannot run git: {exc}") from exc


@dataclass(frozen=True)
class _PorcelainLine:
    flag: str
    src: str
    dst: str
    summary: str


def _porcelain(stdout: str) -> list[_PorcelainLine]:
    lines = []
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and len(parts[0]) == 1 and ":" in parts[1]:
            src, _, dst = parts[1].partition(":")
            lines.append(_PorcelainLine(parts[0], src, dst, parts[2]))
    return lines


def _remote_output(stderr: str) -> str:
    said = [
        line.removeprefix("remote:").strip() for line in stderr.splitlines() if line.startswith("remote:")
    ]
    return " | ".join(s for s in said[:_REMOTE_OUTPUT_MAX_LINES] if s)


def push(
    git_dir: Path,
    url: str,
    refspecs: Sequence[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    atomic: bool = False,
    leases: Mapping[str, str | None] | None = None,
) -> None:
    """``git push --porcelain``; a ref the server refuses raises PushRejected naming it.

    ``atomic``: the server updates every ref or none (``--atomic``). ``leases``: ref → the value
    the server must still hold for the push to update it (None: the ref must not exist), checked
    against what the server advertises and again, under its ref lock, by receive-pack.
    """
    what = f"push to {url}"
    options = ["--atomic"] if atomic else []
    options += [f"--force-with-lease={ref}:{expected or ''}" for ref, expected in (leases or {}).items()]
    argv = [git_binary(), "--git-dir", str(git_dir), "push", "--porcelain", "--no-verify", *options]
    argv += [url, *refspecs]
    check_push(_run(argv, env={}, timeout_s=timeout_s, what=what), what)


def check_push(done: subprocess.CompletedProcess[str], what: str) -> None:
    """Raise for a finished ``git push --porcelain``: PushRejected naming the first refused ref,
    TransportError when git failed otherwise. A refusal is never read as success."""
    rejected = [line for line in _porcelain(done.stdout) if line.flag == "!"]
    # Name the ref that made an atomic push fail, not one refused only because of it.
    rejected.sort(key=lambda line: _ATOMIC_FOLLOWER in line.summary)
    if rejected:
        first = rejected[0]
        detail = first.summary
        if any(reason in detail for reason in _NON_FAST_FORWARD):
            detail = (
                f"non-fast-forward {detail}: the server's {first.dst} is not an ancestor of what was pushed"
            )
        elif _STALE_LEASE in detail:
            detail = f"{detail}: the server's {first.dst} is no longer the value this push expected"
        if len(rejected) > 1:
            others = [r.dst for r in rejected[1:]]
            more = f" and {len(others) - _OTHERS_NAMED} more" if len(others) > _OTHERS_NAMED else ""
            detail += f" (also rejected: {', '.join(others[:_OTHERS_NAMED])}{more})"
        said = _remote_output(done.stderr)
        raise PushRejected(first.dst, f"{detail}; server said: {said}" if said else detail)
    if done.returncode != 0:
        raise TransportError(f"{what} failed: {done.stderr.strip() or f'git exited {done.returncode}'}")


def pack_refs(path: Path, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """``git pack-refs --all`` in the local repository at ``path`` (bare, or a work tree, as a
    push URL may name either): every loose ref file into ``packed-refs``; then the directories it
    leaves empty are removed (:func:`remove_empty_ref_dirs`)."""
    what = f"packing the refs of {path}"
    done = _run(
        [git_binary(), "-C", str(path), "pack-refs", "--all"],
        env={},
        timeout_s=timeout_s,
        what=what,
    )
    if done.returncode != 0:
        raise TransportError(f"{what} failed: {done.stderr.strip() or f'git exited {done.returncode}'}")
    git_dir = git_dir_of(path)
    remove_empty_ref_dirs(git_dir / "refs")


def remove_empty_ref_dirs(refs_dir: Path) -> int:
    """Remove the empty directories below ``refs_dir``'s own subdirectories; how many were removed.

    ``git pack-refs`` (2.39) deletes each loose ref file but leaves its directory: one
    ``refs/fleetcd/status/<id>/`` per robot that ever pushed, four levels per namespaced desired
    ref. Every later ref listing reads them all, a robot's status push included (278 ms of server
    CPU per push at 10,000 robots against 27 ms without them; docs/scaling.md). ``refs/heads`` and
    the like stay. A ref being created meanwhile is safe: git makes its directories again when one
    vanishes under it, and a directory that is no longer empty is left (``rmdir`` refuses).
    """
    removed = 0
    if not refs_dir.is_dir():
        return 0
    for top in (p for p in refs_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        for here, _dirs, _files in os.walk(top, topdown=False):
            if Path(here) == top:
                continue
            try:
                Path(here).rmdir()
            except OSError:
                continue  # not empty (a ref lives here), or gone already
            removed += 1
    return removed


@dataclass(frozen=True)
class FetchedRef:
    """The outcome of a v2 fetch of one ref: whether the server has it, and what asking cost."""

    found: bool
    bytes_received: int


def fetch_ref_v2(
    git_dir: Path,
    url: str,
    ref: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> FetchedRef:
    """``git -c protocol.version=2 fetch --no-tags <url> +<ref>:<ref>`` into ``git_dir``."""
    what = f"fetch of {ref} from {url}"
    with tempfile.TemporaryDirectory(prefix="fleetcd-trace-") as tmp:
        packets, pack = Path(tmp) / "packets", Path(tmp) / "pack"
        trace = {"GIT_TRACE_PACKET": str(packets), "GIT_TRACE_PACKFILE": str(pack)}
        argv = [
            git_binary(), "-c", "protocol.version=2", "--git-dir", str(git_dir),
            "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url, f"+{ref}:{ref}",
        ]  # fmt: skip
        done = _run(argv, env={**(env or {}), **trace}, timeout_s=timeout_s, what=what)
        received = received_bytes(packets, pack)
    if done.returncode == 0:
        return FetchedRef(True, received)
    if _MISSING_REF in done.stderr:
        return FetchedRef(False, received)
    raise TransportError(f"{what} failed: {done.stderr.strip() or f'git exited {done.returncode}'}")


def ls_remote(
    url: str,
    patterns: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, str]:
    """``git ls-remote --refs <url> <patterns>``: ref → object id (hex), nothing fetched.

    git matches a pattern against the *end* of a ref name, so callers filter the result exactly.
    """
    what = f"listing the refs of {url}"
    argv = [git_binary(), "-c", "protocol.version=2", "ls-remote", "--refs", url, *patterns]
    done = _run(argv, env=env or {}, timeout_s=timeout_s, what=what)
    if done.returncode != 0:
        raise TransportError(f"{what} failed: {done.stderr.strip() or f'git exited {done.returncode}'}")
    listed: dict[str, str] = {}
    for line in done.stdout.splitlines():
        oid, _, ref = line.partition("\t")
        if ref:
            listed[ref] = oid
    return listed


def received_bytes(packet_trace: Path, pack_trace: Path) -> int:
    """Bytes the fetching client read, from git's packet trace files (see the module docstring)."""
    total = pack_trace.stat().st_size if pack_trace.exists() else 0
    if not packet_trace.exists():
        return total
    for line in packet_trace.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _TRACE_LINE.search(line)
        if match is None or match["dir"] != "<" or match["who"] in {"upload-pack", "receive-pack"}:
            continue
        payload = match["payload"]
        if payload in _SPECIAL_PACKETS:
            total += 4
        elif payload != "PACK ...":
            total += 4 + len(_OCTAL_ESCAPE.sub("x", payload)) + 1
    return total
