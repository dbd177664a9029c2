"""Ref names as a trust boundary (fleetcd.git.refs) and removing desired-state refs the controller no
longer owns against a real server (controller.delivery.prune.remove_stale).

A ref name decides whose state a commit is: ``refs/fleetcd/status/dev-1/report`` must never be read as
robot ``dev-10``'s, a namespaced ref must belong to the robot whose namespace holds it, and a name
that only looks like a desired-state ref must not be taken for one (nor deleted as one). Removal
runs against a real bare repository with the git CLI's leases: a ref that moved since the
reconcile saw it is left alone, and a failed push leaves the mirror as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pygit2
import pytest

from controller.delivery.prune import remove_stale, stale_refs
from fleetcd.errors import TransportError
from fleetcd.git import gitcli, refs
from tests.gitrepos import bare_repo, git, rev_parse

# --- ref names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device", ["", "../r1", "r1/report", "r 1", "r1\n", ".r1", "r1.lock-", "x" * 65, "r1~1", "r1^"], ids=repr
)
def test_a_device_id_that_cannot_name_a_ref_is_refused_before_any_ref_is_built(device: str) -> None:
    for build in (refs.desired_ref, refs.status_ref, refs.status_prefix, refs.namespace_prefix):
        with pytest.raises(ValueError, match="cannot name a git ref"):
            build(device)


def test_the_layout_spells_each_ref_once() -> None:
    assert refs.desired_ref("r1") == "refs/fleetcd/desired/r1"
    assert refs.status_ref("r1") == "refs/fleetcd/status/r1/report"
    assert refs.status_prefix("r1") == "refs/fleetcd/status/r1/"
    assert refs.namespace_prefix("r1") == "refs/namespaces/r1/"
    assert refs.physical_desired_ref("r1") == "refs/namespaces/r1/refs/fleetcd/desired/r1"
    assert refs.desired_names("r1") == (
        "refs/namespaces/r1/refs/fleetcd/desired/r1",
        "refs/fleetcd/desired/r1",
    )


def test_one_robots_status_prefix_never_covers_another_robots_ref() -> None:
    # gitolite grants RW on the prefix: dev-1 must not be able to write dev-10's report.
    assert not refs.status_ref("dev-10").startswith(refs.status_prefix("dev-1"))
    assert refs.status_ref("dev-1").startswith(refs.status_prefix("dev-1"))


@pytest.mark.parametrize(
    ("ref", "device"),
    [
        ("refs/fleetcd/status/r1/report", "r1"),
        ("refs/fleetcd/status/r1/report/x", None),
        ("refs/fleetcd/status/r1/other", None),
        ("refs/fleetcd/status/r1", None),
        ("refs/fleetcd/status//report", None),
        ("refs/fleetcd/status/../report", None),
        ("refs/fleetcd/desired/r1", None),
        ("refs/namespaces/r1/refs/fleetcd/status/r1/report", None),
    ],
    ids=["report", "deeper", "other-leaf", "no-leaf", "empty-id", "dotdot", "desired", "namespaced"],
)
def test_only_a_well_formed_status_ref_names_a_device(ref: str, device: str | None) -> None:
    assert refs.device_of_status_ref(ref) == device


@pytest.mark.parametrize(
    ("ref", "owner"),
    [
        ("refs/fleetcd/desired/r1", ("r1", False)),
        ("refs/namespaces/r1/refs/fleetcd/desired/r1", ("r1", True)),
        ("refs/namespaces/r1/refs/fleetcd/desired/r2", None),  # r2's ref in r1's namespace
        ("refs/namespaces/r1/refs/heads/main", None),
        ("refs/namespaces/r1/refs/fleetcd/desired/r1/x", None),
        ("refs/namespaces/r1/fleetcd/desired/r1", None),
        ("refs/fleetcd/desired/r1/extra", None),
        ("refs/fleetcd/desired/", None),
        ("refs/fleetcd/desired/..", None),
        ("refs/fleetcd/status/r1/report", None),
        ("refs/heads/fleetcd/desired/r1", None),
    ],
    ids=[
        "flat",
        "namespaced",
        "other-robots-namespace",
        "namespaced-branch",
        "deeper",
        "namespace-without-refs",
        "flat-deeper",
        "empty",
        "dotdot",
        "status",
        "branch-lookalike",
    ],
)
def test_a_desired_ref_belongs_to_the_robot_it_names_and_in_whose_namespace_it_is(
    ref: str, owner: tuple[str, bool] | None
) -> None:
    assert refs.desired_ref_device(ref) == owner


def test_namespaced_refuses_a_short_ref_name() -> None:
    with pytest.raises(ValueError, match="not a full ref name"):
        refs.namespaced("r1", "heads/main")


# --- remove_stale against a real server ---------------------------------------------------------------


class Fleet:
    """A bare server and the controller's mirror holding the same desired-state refs."""

    def __init__(self, root: Path) -> None:
        self.server = bare_repo(root / "server.git")
        self.mirror_path = bare_repo(root / "mirror.git")
        self.mirror = pygit2.Repository(str(self.mirror_path))
        sig = pygit2.Signature("controller", "c@fleet.test", 1_700_000_000, 0)
        tree = self.mirror.TreeBuilder().write()
        self.commits = [self.mirror.create_commit(None, sig, sig, f"bundle {i}", tree, []) for i in range(3)]

    def put(self, ref: str, index: int = 0) -> None:
        self.mirror.references.create(ref, self.commits[index], force=True)

    def publish(self) -> None:
        gitcli.push(self.mirror_path, str(self.server), ["+refs/*:refs/*"])

    def push(self, refspecs: list[str], leases: Mapping[str, str | None]) -> None:
        gitcli.push(self.mirror_path, str(self.server), refspecs, leases=leases)

    def listing(self) -> dict[str, pygit2.Oid]:
        found = {name: self.mirror.references[name].target for name in self.mirror.references}
        return {name: target for name, target in found.items() if isinstance(target, pygit2.Oid)}

    def on_server(self) -> set[str]:
        return set(git("for-each-ref", "--format=%(refname)", cwd=self.server).split())


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


def test_stale_refs_are_deleted_on_the_server_and_in_the_mirror(fleet: Fleet) -> None:
    for ref in (
        "refs/fleetcd/desired/r1",
        "refs/fleetcd/desired/gone",
        "refs/namespaces/r1/refs/fleetcd/desired/r1",
    ):
        fleet.put(ref)
    fleet.publish()
    listed = fleet.listing()
    stale = stale_refs(listed, ["r1"], namespaces=True)
    assert sorted(stale) == ["refs/fleetcd/desired/gone", "refs/fleetcd/desired/r1"]

    removed = remove_stale(fleet.mirror, stale, fleet.push)

    assert removed == ["refs/fleetcd/desired/gone", "refs/fleetcd/desired/r1"]
    assert fleet.on_server() == {"refs/namespaces/r1/refs/fleetcd/desired/r1"}
    assert set(fleet.mirror.references) == {"refs/namespaces/r1/refs/fleetcd/desired/r1"}


def test_a_ref_that_moved_since_the_reconcile_saw_it_is_left_alone(fleet: Fleet) -> None:
    fleet.put("refs/fleetcd/desired/old")
    fleet.put("refs/heads/main", 1)  # so that the server has the commit the ref moves to
    fleet.publish()
    seen = {"refs/fleetcd/desired/old": fleet.commits[0]}
    git("update-ref", "refs/fleetcd/desired/old", str(fleet.commits[1]), cwd=fleet.server)  # moved meanwhile

    removed = remove_stale(fleet.mirror, seen, fleet.push)

    assert removed == []
    assert rev_parse(fleet.server, "refs/fleetcd/desired/old") == str(fleet.commits[1])


def test_a_failed_push_is_logged_and_leaves_the_mirror_as_it_was(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    fleet.put("refs/fleetcd/desired/old")

    def unreachable(refspecs: list[str], leases: Mapping[str, str | None]) -> None:
        raise TransportError("connection refused")

    with caplog.at_level(logging.WARNING, logger="fleetcd.controller"):
        removed = remove_stale(fleet.mirror, {"refs/fleetcd/desired/old": fleet.commits[0]}, unreachable)
    assert removed == []
    assert "refs/fleetcd/desired/old" in set(fleet.mirror.references)
    assert "retried next reconcile" in caplog.text


def test_nothing_stale_pushes_nothing(fleet: Fleet) -> None:
    calls: list[list[str]] = []
    assert remove_stale(fleet.mirror, {}, lambda specs, leases: calls.append(specs)) == []
    assert calls == []


def test_a_ref_already_gone_from_the_mirror_is_still_removed_on_the_server(fleet: Fleet) -> None:
    fleet.put("refs/fleetcd/desired/old")
    fleet.publish()
    target = fleet.commits[0]
    fleet.mirror.references.delete("refs/fleetcd/desired/old")
    assert remove_stale(fleet.mirror, {"refs/fleetcd/desired/old": target}, fleet.push) == [
        "refs/fleetcd/desired/old"
    ]
    assert fleet.on_server() == set()


def test_refs_of_other_shapes_on_the_server_are_never_deleted(fleet: Fleet) -> None:
    for ref in (
        "refs/heads/main",
        "refs/fleetcd/status/r1/report",
        "refs/fleetcd/desired/r1/extra",
        "refs/namespaces/r1/refs/heads/main",
        "refs/namespaces/r1/refs/fleetcd/desired/r2",
    ):
        fleet.put(ref)
    fleet.publish()
    before = fleet.on_server()
    listed = fleet.listing()
    assert stale_refs(listed, [], namespaces=True) == {}
    assert remove_stale(fleet.mirror, stale_refs(listed, [], namespaces=False), fleet.push) == []
    assert fleet.on_server() == before
