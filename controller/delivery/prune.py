"""Per-robot desired state, after the push: remove the desired-state refs the controller no longer owns.

The controller owns exactly one desired-state ref per robot on main: :func:`delivery_ref` of the
layout it writes. Everything else of that shape on the server is left over or planted:

- after a switch of layouts (``--flat-refs`` on or off), every robot's ref of the old layout;
- the refs of robots no longer in the fleet (their device file deleted from main);
- a ref planted under the layout not in use, for example a flat ref holding an old signed bundle.

On a server that applies no namespace a robot sees both of its names (docs/git-server.md). It
follows the better one and reports a layout conflict (:mod:`agent.sync.layout`), and this module
makes the conflict go away: a reconcile that applies removes every well-formed desired-state ref of
either layout that it does not own. Refs of other shapes are not the controller's business and
robots never read them.

:func:`stale_refs` decides (pure); :func:`remove_stale` pushes the deletions, each one
compare-and-swapped on the commit this reconcile saw (a ref moved since is left for the next
reconcile), and drops them from the mirror so that the next wildcard push cannot bring them back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet

from controller.delivery.write import delivery_ref
from fleetcd.errors import TransportError
from fleetcd.git import refs
from fleetcd.git.objects import list_refs
from fleetcd.git.repo import Oid, Repository

log = logging.getLogger("fleetcd.controller")

# Pushes ``refspecs`` with ``leases`` (ref -> the value the server must still hold).
Push = Callable[[list[str], Mapping[str, str | None]], None]


def owned_refs(devices: Iterable[str], *, namespaces: bool) -> set[str]:
    """The desired-state refs the controller writes: one per robot in the fleet, in its layout."""
    return {delivery_ref(device, namespaces=namespaces) for device in devices}


def stale_refs(
    listed: Mapping[str, Oid],
    devices: Iterable[str],
    *,
    namespaces: bool,
    owned: AbstractSet[str] | None = None,
) -> dict[str, Oid]:
    """The well-formed desired-state refs of either layout in ``listed`` that the controller does
    not own (``devices``: the robots on main; ``namespaces``: the layout it writes; ``owned``:
    :func:`owned_refs` of them when the caller holds it)."""
    owned = owned_refs(devices, namespaces=namespaces) if owned is None else owned
    # A set difference first: at 100,000 robots nearly every listed ref is owned, and sorting and
    # parsing only the others keeps this pass a few milliseconds.
    others = sorted(listed.keys() - owned)
    return {ref: listed[ref] for ref in others if refs.desired_ref_device(ref) is not None}


def list_desired(repo: Repository) -> dict[str, Oid]:
    """Every desired-state ref of both layouts in the mirror, which holds the server's after the
    fetch (:func:`controller.reconcile.source.fetch_all`): one pass over the mirror's refs."""
    return list_refs(repo, (refs.NAMESPACES_PREFIX, refs.DESIRED_PREFIX))


def read_stale(repo: Repository, devices: Iterable[str], *, namespaces: bool) -> dict[str, Oid]:
    """:func:`stale_refs` of the mirror (:func:`list_desired`)."""
    return stale_refs(list_desired(repo), devices, namespaces=namespaces)


def deletion_refspecs(stale: Mapping[str, Oid]) -> list[str]:
    """``:ref`` for each stale ref, sorted: what a push deletes them with."""
    return [f":{ref}" for ref in sorted(stale)]


def remove_stale(repo: Repository, stale: Mapping[str, Oid], push: Push) -> list[str]:
    """Delete ``stale`` on the server (each only if it still holds the commit seen) and in the
    mirror; the refs removed. A failed push is logged and retried by the next reconcile that
    applies: the desired state robots follow is already published, so nothing waits for it."""
    if not stale:
        return []
    leases = {ref: str(oid) for ref, oid in stale.items()}
    try:
        push(deletion_refspecs(stale), leases)
    except TransportError as exc:
        log.warning("stale desired-state refs not removed (retried next reconcile): %s", exc)
        return []
    for ref in sorted(stale):
        if repo.references.get(ref) is not None:
            repo.references.delete(ref)
    log.info("removed %d desired-state refs the controller no longer owns", len(stale))
    return sorted(stale)
