"""``fleetcd receipt ROLLOUT``: a finished generation's receipt, shown only once its signature verifies.

Only the receipt's YAML is signed (by the controller key, ``receipts/<rollout>/<gen>.yaml.asc``);
the Markdown next to it is a rendering nobody signed. So the page shown here is rendered again from
the verified YAML, and a stored ``.md`` that says something else is pointed out rather than shown.
The controller key is the one ``fleet.yaml`` on main names, checked in a keyring of main's ``keys/``
(:func:`controller.receipts.render.verify_receipt`). A missing receipt or a signature that does not
verify is :class:`~fleetcd.errors.InvalidContent` (exit 1).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from controller.ops.remote import RemoteView, open_keyring
from controller.receipts.render import (
    load_receipt,
    receipt_signature_file,
    render_receipt_md,
    verify_receipt,
)
from controller.state.layout import receipt_files
from fleetcd.errors import InvalidContent
from fleetcd.reasons import Reason
from fleetcd.trust.gpg import Keyring, VerifyResult
from fleetcd.trust.policy import Verifier


@dataclass(frozen=True)
class VerifiedReceipt:
    rollout: str
    generation: int
    path: str  # receipts/<rollout>/<generation>.yaml
    yaml_bytes: bytes
    markdown: str  # rendered from the verified YAML
    signer: str  # "<name> <fingerprint>" of the controller key
    stored_markdown_matches: bool


class _Recording:
    """A verifier that remembers gpg's verdict, so a failure can say why."""

    def __init__(self, inner: Verifier) -> None:
        self.inner = inner
        self.last: VerifyResult | None = None

    def verify_detached(self, data: bytes, signature: bytes) -> VerifyResult:
        self.last = self.inner.verify_detached(data, signature)
        return self.last


def generations(files: dict[str, bytes], rollout: str) -> list[int]:
    """Generations of ``rollout`` that have a receipt on the state branch, ascending."""
    pattern = re.compile(rf"^receipts/{re.escape(rollout)}/([1-9][0-9]*)\.yaml$")
    return sorted(int(m[1]) for m in (pattern.match(p) for p in files) if m)


def read_receipt(
    view: RemoteView,
    rollout: str,
    generation: int | None = None,
    keyring_factory: Callable[[dict[str, bytes]], Keyring] = open_keyring,
) -> VerifiedReceipt:
    """The receipt of ``generation`` (default: the newest) of ``rollout``, its signature verified."""
    files = view.state.files
    if generation is None:
        found = generations(files, rollout)
        if not found:
            raise InvalidContent.at(
                f"receipts/{rollout}/",
                f"no receipt for rollout {rollout!r} on the state branch "
                "(a generation gets one when it finishes)",
                reason=Reason.UNKNOWN_REFERENCE,
            )
        generation = found[-1]
    yaml_path, md_path = receipt_files(rollout, generation)
    sig_path = receipt_signature_file(rollout, generation)
    for path in (yaml_path, sig_path):
        if path not in files:
            raise InvalidContent.at(path, "not on the state branch", reason=Reason.UNKNOWN_REFERENCE)
    controller = view.spec.controller_keys_ever()
    if not controller:
        raise InvalidContent.at(
            "trust/root/1.yaml", "no trust root loads on main: no controller key to check the receipt with"
        )
    with keyring_factory(dict(view.spec.keys)) as keyring:
        recording = _Recording(keyring)
        ok = verify_receipt(files[yaml_path], files[sig_path], recording, controller)
    if not ok:
        result = recording.last
        why = result.detail if result is not None and not result.valid else f"made by {_signer(result)}"
        raise InvalidContent.at(
            sig_path,
            f"does not verify as a controller key of the trust root ({', '.join(sorted(controller))}): {why}",
            reason=Reason.SIGNATURE_INVALID,
        )
    markdown = render_receipt_md(load_receipt(files[yaml_path]))
    return VerifiedReceipt(
        rollout=rollout,
        generation=generation,
        path=yaml_path,
        yaml_bytes=files[yaml_path],
        markdown=markdown,
        signer=_signer(recording.last),
        stored_markdown_matches=files.get(md_path) == markdown.encode("utf-8"),
    )


def _signer(result: VerifyResult | None) -> str:
    return "an unknown key" if result is None or result.fingerprint is None else result.fingerprint
