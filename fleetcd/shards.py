"""Status shards: which git repository each robot pushes its status report to (pure, shared).

Past one git server, robots' status pushes can be spread over several repositories or servers
(docs/scaling.md, "Going past one git server"). The controller reads every shard and ``fleetcd
robot add`` writes each robot's shard into its ``agent.yaml`` (``remote.status``); both decide
the shard with :func:`shard_of`, so they cannot disagree, and the controller refuses a report
found in any other shard (a robot speaks only for itself, and only where it was told to).

The rule is rendezvous hashing over the shard *names*: a robot goes to the shard whose
``sha256(name + "/" + robot id)`` is highest. It depends on nothing but the names, so the
controller, provisioning and a test all compute it without a lookup table; adding a shard moves
only the robots that now hash highest to it (about 1/N of them), and removing one moves only its
own robots. Shards are named, not numbered, so a reordered list changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

SHARD_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SHARD_NAME_MAX = 32
MAX_SHARDS = 64  # each is one fetch per reconcile: more is a setup mistake, not a fleet


@dataclass(frozen=True)
class ShardSpec:
    """One status shard: its name (stable: it decides which robots it holds) and its URL."""

    name: str
    url: str


def check_shard_name(name: str) -> str:
    """``name`` when it is a valid shard name; ValueError saying what one looks like otherwise."""
    if len(name) > SHARD_NAME_MAX or not SHARD_NAME.fullmatch(name):
        raise ValueError(
            f"shard name {name!r}: lower-case letters and digits joined by single '-', "
            f"at most {SHARD_NAME_MAX} characters"
        )
    return name


def parse_shard(text: str) -> ShardSpec:
    """``NAME=URL`` (the ``--status-shard`` option) as a :class:`ShardSpec`; ValueError if malformed."""
    name, sep, url = text.partition("=")
    if not sep or not url.strip():
        raise ValueError(f"{text!r}: expected NAME=URL, e.g. eu-1=ssh://git@eu-1.example.com/fleet")
    if len(url) > 2048:
        raise ValueError(f"{name}: the URL is {len(url)} characters long (at most 2048)")
    return ShardSpec(check_shard_name(name), url)


def check_shards(shards: Iterable[ShardSpec]) -> tuple[ShardSpec, ...]:
    """The shards in name order; ValueError on a repeated name or URL, or too many of them."""
    listed = tuple(sorted(shards, key=lambda s: s.name))
    if len(listed) > MAX_SHARDS:
        raise ValueError(f"{len(listed)} status shards: at most {MAX_SHARDS}")
    for field in ("name", "url"):
        seen: set[str] = set()
        for shard in listed:
            value = getattr(shard, field)
            if value in seen:
                raise ValueError(f"status shard {field} {value!r} is given twice")
            seen.add(value)
    return listed


def _weight(name: str, device: str) -> bytes:
    return hashlib.sha256(f"{name}/{device}".encode()).digest()


def shard_of(device: str, names: Iterable[str]) -> str:
    """The name of the shard robot ``device`` pushes its status to (rendezvous hashing)."""
    listed = list(names)
    if not listed:
        raise ValueError("no status shards to choose from")
    return max(listed, key=lambda name: (_weight(name, device), name))
