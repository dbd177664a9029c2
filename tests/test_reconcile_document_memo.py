"""``controller run`` parses only main's changed documents; gpg's and the clock's checks run every time.

Counted through the memo's own counters (``MainCache.documents``, a
:class:`fleetcd.loading.memo.DocumentMemo`), over the real ``reconcile_once`` with real git and gpg
(:mod:`tests.sim.world`). What must hold:

* a commit changing one device file parses that file and no other;
* a changed file with an invalid field still stalls the controller with its file:line error, as a
  controller without the cache does, and the error is kept: a later commit fixing another file
  parses only that one and still names the broken file;
* signatures and keys are judged afresh on every validation: a swapped key file or a re-signed
  release stalls although not one YAML document is parsed again;
* memory: documents of files that left main are dropped, and nothing the reconcile does mutates a
  kept document (its data and model equal a fresh load of its bytes).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from controller.reconcile.cache import VALIDATION_MAX_AGE, ReconcileCache
from controller.reconcile.steps import reconcile_once
from fleetcd.layout import device_path, release_signature_path
from fleetcd.loading.documents import load_document
from fleetcd.validation.incremental import Reuse
from fleetcd.validation.pipeline import check_content
from tests.gpgkeys import KeyFactory
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, make_world

DOCUMENTS = 8 + 3 + 1 + 1 + 1 + 1  # devices, cohorts, release, rollout, fleet.yaml, trust root


def cached(world: ControllerWorld) -> ReconcileCache:
    cache = ReconcileCache()
    world.settings = replace(world.settings, cache=cache)
    return cache


def heartbeat(world: ControllerWorld, seconds: float = 10) -> None:
    """A robot reports: the idle fast path cannot skip the next reconcile."""
    world.sim.push_report(STAGING[0], world.clock.now)
    world.clock.tick(seconds)


def started(tmp_path: Path, keys: KeyFactory) -> tuple[ControllerWorld, ReconcileCache]:
    world = make_world(tmp_path, keys)
    cache = cached(world)
    world.reconcile()
    memo = cache.main.documents
    assert memo.parsed == len(memo.last.parsed) == len(memo) == DOCUMENTS
    return world, cache


def test_a_commit_changing_one_device_file_parses_only_that_file(tmp_path: Path, keys: KeyFactory) -> None:
    world, cache = started(tmp_path, keys)
    memo = cache.main.documents
    world.fleet.device(PRODUCTION[1], labels={"dock": "north"})
    world.merge("prod-2 moves to the north dock")
    heartbeat(world)
    world.reconcile()

    assert cache.main.validations == 2
    assert memo.last.parsed == [device_path(PRODUCTION[1])]
    # Only a robot file changed: rechecked from the kept index, the other documents not even asked for.
    assert cache.main.reuses.get(Reuse.ROBOTS) == 1
    assert memo.last.reused == 0 and memo.parsed == DOCUMENTS + 1 and len(memo) == DOCUMENTS
    validation = cache.main.validation
    assert validation is not None and validation.spec.devices[PRODUCTION[1]].model.labels == {"dock": "north"}


def test_the_same_tree_revalidated_after_the_maximum_age_parses_nothing(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world, cache = started(tmp_path, keys)
    heartbeat(world, seconds=VALIDATION_MAX_AGE.total_seconds())
    world.reconcile()
    memo = cache.main.documents
    assert cache.main.validations == 2  # validated again: signatures, approvals, the trust root
    # The same bytes: their content checks are kept whole, the memo is not even asked.
    assert cache.main.reuses == {Reuse.NONE: 1, Reuse.SAME: 1}
    assert memo.parsed == DOCUMENTS and memo.reused == 0 and len(memo) == DOCUMENTS


def test_a_changed_device_with_an_invalid_field_is_refused_with_its_file_and_line(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world, cache = started(tmp_path, keys)
    memo = cache.main.documents
    path = device_path(CANARY[0])
    world.fleet.device(CANARY[0], hardware={"model": "mk2", "revision": "three"})
    world.merge("can-1's revision is not a number")
    line = world.fleet.line_of(path, "revision:")
    heartbeat(world)

    parsed = memo.parsed
    stalled = reconcile_once(world.settings).stalled
    assert memo.parsed == parsed + 1  # tried on the robot path, then served to the full check it takes
    assert stalled is not None and f"{path}:{line}" in stalled and "hardware.revision" in stalled
    heartbeat(world)
    assert reconcile_once(replace(world.settings, cache=None)).stalled == stalled

    # The broken file's error is kept with its bytes: a commit touching another file parses that
    # one alone and still stalls on the same file:line.
    world.fleet.device(PRODUCTION[0], labels={"dock": "south"})
    world.merge("prod-1 moves to the south dock; can-1 still broken")
    heartbeat(world)
    again = reconcile_once(world.settings).stalled
    assert memo.last.parsed == [device_path(PRODUCTION[0])]
    assert again is not None and f"{path}:{line}" in again

    world.fleet.device(CANARY[0])
    world.merge("can-1 fixed")
    heartbeat(world)
    world.reconcile()
    assert memo.last.parsed == [path]


def test_a_swapped_key_file_stalls_on_revalidation_although_no_document_is_parsed(
    tmp_path: Path, keys: KeyFactory
) -> None:
    """The trust root still names the release signer's fingerprint; its key file now holds another
    key. Only ``keys/`` changed, so every YAML document comes from the memo: the signature check
    must still run, against the new keys."""
    world, cache = started(tmp_path, keys)
    signer = world.fleet.release_signers[0]
    world.fleet.file(signer.key_file, keys.key("mallory").public)
    world.merge("the release signer's key file replaced")
    heartbeat(world)

    stalled = reconcile_once(world.settings).stalled
    # Only an .asc file changed: the documents and their cross-file checks are kept whole.
    assert cache.main.reuses.get(Reuse.TRUST_FILES) == 1 and cache.main.documents.parsed == DOCUMENTS
    assert stalled is not None and "releases/nav/1.0.0.yaml" in stalled
    heartbeat(world)
    assert reconcile_once(replace(world.settings, cache=None)).stalled == stalled


def test_a_release_signed_by_an_untrusted_key_stalls_although_its_yaml_is_memoized(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world, cache = started(tmp_path, keys)
    signer, mallory = world.fleet.release_signers[0], keys.key("mallory")
    release = world.fleet.read("releases/nav/1.0.0.yaml")
    forged = keys.sign(release, mallory)
    world.fleet.signers_of["releases/nav/1.0.0.yaml"] = []  # write() must not sign it again
    world.fleet.file(release_signature_path("nav", "1.0.0", signer.fingerprint), forged)
    world.merge("the release signature made by mallory, filed under the signer's name")
    heartbeat(world)

    stalled = reconcile_once(world.settings).stalled
    # Only an .asc file changed: the documents and their cross-file checks are kept whole.
    assert cache.main.reuses.get(Reuse.TRUST_FILES) == 1 and cache.main.documents.parsed == DOCUMENTS
    assert stalled is not None and "releases/nav/1.0.0.yaml" in stalled


def test_documents_of_files_that_left_main_are_dropped(tmp_path: Path, keys: KeyFactory) -> None:
    world, cache = started(tmp_path, keys)
    memo = cache.main.documents
    extra = device_path("spare-1")
    world.fleet.device("spare-1")
    world.merge("a spare robot")
    heartbeat(world)
    world.reconcile()
    assert extra in memo.paths() and len(memo) == DOCUMENTS + 1

    world.fleet.remove(extra)
    world.fleet.device(PRODUCTION[2], labels={"dock": "east"})
    world.merge("the spare robot leaves; prod-3 moves")
    heartbeat(world)
    world.reconcile()
    assert extra not in memo.paths() and len(memo) == DOCUMENTS
    assert memo.last.parsed == [device_path(PRODUCTION[2])]  # one entry per path: the old bytes' gone


def test_a_reconcile_mutates_no_kept_document(tmp_path: Path, keys: KeyFactory) -> None:
    """Kept documents are shared by every later validation: whatever reads them (planning, approval
    payloads, delivery) must leave them as a fresh load of their bytes would be."""
    world, cache = started(tmp_path, keys)
    world.sim.report(STAGING[0], "nav", "deployed", world.clock.now)
    world.clock.tick(120)
    world.reconcile()
    heartbeat(world, seconds=VALIDATION_MAX_AGE.total_seconds())
    world.reconcile()
    memo = cache.main.documents
    assert cache.main.reuses.get(Reuse.SAME) == 1  # the kept documents and checks, judged again
    assert cache.main.content is not None
    assert {d.path for d in cache.main.content.spec.devices.values()} <= memo.paths()
    for kept in memo.loaded():
        fresh = load_document(kept.path, kept.raw, type(kept.model))
        assert kept.data == fresh.data and kept.model == fresh.model, kept.path
    # The kept content check's spec (its dicts are shared by every later validation) too.
    content = cache.main.content
    assert content is not None
    assert content.spec == check_content(content.files, problems=content.problems).spec
