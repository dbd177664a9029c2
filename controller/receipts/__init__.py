"""Receipts of finished rollout generations: built in the plan step, rendered and signed in write.

:func:`build_receipt` (pure) collects what ran, where, who approved and which gates passed;
:mod:`controller.receipts.render` turns it into canonical YAML, its signature and Markdown.
"""

from __future__ import annotations

from controller.receipts.build import (
    FINISHED_PHASES,
    ApprovalRef,
    Receipt,
    approvals_from_state,
    build_receipt,
)
from controller.receipts.render import (
    load_receipt,
    receipt_outputs,
    receipt_signature_file,
    render_receipt_md,
    render_receipt_yaml,
    sign_receipt,
    verify_receipt,
)

__all__ = [
    "FINISHED_PHASES",
    "ApprovalRef",
    "Receipt",
    "approvals_from_state",
    "build_receipt",
    "load_receipt",
    "receipt_outputs",
    "receipt_signature_file",
    "render_receipt_md",
    "render_receipt_yaml",
    "sign_receipt",
    "verify_receipt",
]
