"""Receipt bytes: canonical YAML, its detached signature, and a Markdown page for people.

Step 6 (write) of a reconcile turns a :class:`~controller.receipts.build.Receipt` into the files of
``receipts/<rollout>/<generation>``: ``.yaml`` (canonical: the same receipt always renders the same
bytes, so a replayed reconcile rewrites nothing and the signature stays valid), ``.yaml.asc`` (a
detached signature by the controller key over those exact bytes) and ``.md``. Signing goes through
a callable passed in (the real one is :meth:`fleetcd.trust.gpg.Signer.sign_detached`), verifying
through a :class:`~fleetcd.trust.policy.Verifier`; no gpg, disk or clock here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import yaml

from controller.receipts.build import NOT_DISPATCHED, DeviceResult, Receipt, ThresholdRef, WaveGate
from controller.state.layout import receipt_files
from fleetcd.errors import SetupError
from fleetcd.models.rollout import HaltPolicy
from fleetcd.trust.policy import Verifier

YAML_WIDTH = 120  # fixed so line folding never depends on a library default
SIGNATURE_SUFFIX = ".asc"
_ARMOR = b"-----BEGIN PGP SIGNATURE-----"
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def render_receipt_yaml(receipt: Receipt) -> bytes:
    """Canonical YAML: sorted keys, block style, fixed width, UTF-8, trailing newline.

    Emitted by libyaml where PyYAML has it (every PyYAML wheel does): a fan-out's receipt lists
    every robot, and the pure-Python emitter took ~2 ms a robot. Both emitters write the same
    bytes for receipts (tests/test_receipts.py), except that libyaml escapes characters beyond
    the Basic Multilingual Plane (emoji in a robot's message): the same receipt then reads back
    the same, and a receipt is rendered once, when its generation finishes.
    """
    text = yaml.dump(
        receipt.model_dump(mode="json"),
        Dumper=_DUMPER,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=YAML_WIDTH,
        explicit_start=False,
    )
    return text.encode("utf-8")


def load_receipt(data: bytes) -> Receipt:
    """Parse a receipt's YAML bytes back (``fleetcd receipt``); check its signature first."""
    return Receipt.model_validate(yaml.safe_load(data))


def sign_receipt(yaml_bytes: bytes, sign: Callable[[bytes], bytes]) -> bytes:
    """The armored detached signature over ``yaml_bytes`` that ``sign`` makes (controller key)."""
    signature = sign(yaml_bytes)
    if _ARMOR not in signature:
        raise SetupError("the receipt signer returned no armored OpenPGP signature")
    return signature


def verify_receipt(
    yaml_bytes: bytes, signature: bytes, verifier: Verifier, controller_fpr: str | frozenset[str]
) -> bool:
    """True when ``signature`` is a valid signature over exactly ``yaml_bytes`` by a controller key
    (one, or any of a set: a receipt stays valid after the controller key it was signed with rotated)."""
    result = verifier.verify_detached(yaml_bytes, signature)
    allowed = {controller_fpr.upper()} if isinstance(controller_fpr, str) else controller_fpr
    return result.valid and result.fingerprint in allowed


def receipt_signature_file(rollout: str, generation: int) -> str:
    return receipt_files(rollout, generation)[0] + SIGNATURE_SUFFIX


def receipt_outputs(receipt: Receipt, sign: Callable[[bytes], bytes]) -> dict[str, bytes]:
    """State-branch path → bytes for the receipt's ``.yaml``, ``.yaml.asc`` and ``.md``."""
    yaml_path, md_path = receipt_files(receipt.rollout, receipt.generation)
    yaml_bytes = render_receipt_yaml(receipt)
    return {
        yaml_path: yaml_bytes,
        receipt_signature_file(receipt.rollout, receipt.generation): sign_receipt(yaml_bytes, sign),
        md_path: render_receipt_md(receipt).encode("utf-8"),
    }


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")  # receipts hold UTC only


def _cell(value: object) -> str:
    """A Markdown table cell: free text (approver names, reasons) cannot break the table."""
    if value is None:
        return "–"
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or "–"


def _row(*values: object) -> str:
    return "| " + " | ".join(_cell(v) for v in values) + " |"


def _table(header: tuple[str, ...], rows: list[str]) -> list[str]:
    return [_row(*header), "|" + "---|" * len(header), *rows]


def _threshold(threshold: ThresholdRef | None) -> str:
    if threshold is None:
        return "–"
    parts = []
    if threshold.count is not None:
        parts.append(f"> {threshold.count} robots")
    if threshold.percent is not None:
        parts.append(f"> {threshold.percent:g}%")
    return " or ".join(parts)


def _gate_row(gate: WaveGate) -> str:
    c = gate.counts
    return _row(
        gate.index,
        gate.name,
        gate.action,
        gate.phase,
        gate.devices,
        c.succeeded,
        gate.failures,
        c.offline,
        f"{gate.reported} ({gate.reported_percent:g}%)",
        "–" if gate.min_reported_percent is None else f"{gate.min_reported_percent:g}%",
        _threshold(gate.failure_threshold),
        gate.soak_seconds,
        _when(gate.started_at),
        _when(gate.finished_at),
    )


_HALT_TEXT = {
    HaltPolicy.ROLLBACK_ALL: "every robot that received the release was sent back to the previous version",
    HaltPolicy.ROLLBACK_WAVE: "the failed wave's robots were sent back; passed waves keep the release",
    HaltPolicy.PAUSE: "nothing was rolled back: robots keep what they run until the operator's next commit",
}


def _halt_lines(r: Receipt) -> list[str]:
    if r.halt_policy is None:
        return []
    back = ", ".join(r.rolled_back) or "none"
    return [
        f"- **On halt:** `{r.halt_policy.value}` — {_HALT_TEXT[r.halt_policy]}",
        f"- **Rolled back:** {_cell(back)}",
    ]


def _running_cell(r: Receipt, d: DeviceResult) -> str:
    """What the robot ended on; a robot the rollout never reached says why, as the status pages do
    (``not dispatched (halted)``), rather than an "unknown" that reads like a lost report."""
    if d.outcome == NOT_DISPATCHED:
        return f"not dispatched ({r.outcome.value})"
    return d.running_version or "unknown"


def render_receipt_md(receipt: Receipt) -> str:
    """A page for people: what ran, who approved, the gates with their numbers, where it went."""
    r = receipt
    lines = [
        f"# Receipt: rollout `{r.rollout}` generation {r.generation}",
        "",
        f"- **Outcome:** {r.outcome.value}" + (f" — {_cell(r.reason)}" if r.reason else ""),
        f"- **Release:** {r.release.app} {r.release.version} (`{r.release.path}`)",
        f"- **Release file sha256:** `{r.release.sha256}`",
        f"- **Previous version:** {r.previous_version or '–'}",
        *_halt_lines(r),
        f"- **Commit:** `{r.commit}`",
        f"- **Created:** {_when(r.created_at)} · **Finished:** {_when(r.finished_at)}",
        "",
        "## What ran",
        "",
        *_table(
            ("Artifact", "Kind", "Digest", "Size (bytes)", "Source"),
            [_row(a.name, a.kind, a.digest, a.size, a.source) for a in r.release.artifacts],
        ),
        "",
        "## Who approved",
        "",
    ]
    if r.approvals:
        rows = [_row(a.name, a.fingerprint, a.commit) for a in r.approvals]
        lines += _table(("Approver", "Fingerprint", "Commit"), rows)
    else:
        lines.append("No approvals were required.")
    header = (
        "#", "Wave", "Action", "Phase", "Robots", "Succeeded", "Failed", "Offline", "Reported",
        "Min reported", "Failure threshold", "Soak (s)", "Started", "Finished",
    )  # fmt: skip
    lines += ["", "## Gates", "", *_table(header, [_gate_row(g) for g in r.waves]), "", "## Where", ""]
    lines.append(", ".join(f"{outcome}: {count}" for outcome, count in r.summary.items()) or "No robots.")
    lines.append("")
    device_rows = [
        _row(
            d.device,
            d.wave,
            d.outcome,
            d.status.value if d.status else None,
            _running_cell(r, d),
            d.rollback.outcome.value if d.rollback else None,
            d.deployment,
        )
        for d in r.devices
    ]
    lines += _table(("Robot", "Wave", "Outcome", "Status", "Running", "Rollback", "Deployment"), device_rows)
    if r.skipped:
        lines += [
            "",
            "## Skipped",
            "",
            *_table(("Robot", "Reason"), [_row(s.device, s.reason) for s in r.skipped]),
        ]
    return "\n".join(lines) + "\n"
