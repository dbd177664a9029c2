"""A memo in front of the robots' real signature checks, so 1,000 virtual robots do not need 1,000
gpg runs for the one root signature they all receive.

Robots of one serial receive the same ``root.json`` and ``root.json.asc``; robots getting one release
receive the same release file and signatures, and the same rollout approvals. Checking a detached
signature is a pure function of (data, signature, keyring), so the result of the first check is the
result of every later one with the same bytes. Each robot still runs the whole
:func:`fleetcd.desired.verify_bundle` on its own bytes — sizes, root parsing, its inclusion proof,
device, serial, expiry, release and rollout contents, config schema — only gpg is asked once per
distinct (data, signature). ``calls`` counts the real gpg checks, ``hits`` the ones answered here.
Robots verify on several threads (:mod:`controller.sim.clock`): one lock keeps gpg to one check per
pair of bytes, so the counts do not depend on timing.
"""

from __future__ import annotations

import hashlib
import threading

from fleetcd.trust.gpg import VerifyResult
from fleetcd.trust.policy import Verifier


class CachingVerifier:
    """A :class:`~fleetcd.trust.policy.Verifier` that asks ``inner`` once per distinct pair of bytes."""

    def __init__(self, inner: Verifier) -> None:
        self.inner = inner
        self._results: dict[tuple[bytes, bytes], VerifyResult] = {}
        self._lock = threading.Lock()
        self.calls = 0
        self.hits = 0

    def verify_detached(self, data: bytes, signature: bytes) -> VerifyResult:
        key = (hashlib.sha256(data).digest(), hashlib.sha256(signature).digest())
        with self._lock:
            found = self._results.get(key)
            if found is not None:
                self.hits += 1
                return found
            self.calls += 1
            result = self.inner.verify_detached(data, signature)
            self._results[key] = result
            return result
