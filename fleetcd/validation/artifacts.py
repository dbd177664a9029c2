"""Reserved artifact kinds: ``mcu_firmware`` and ``full_image_ab`` need an adapter that supports them.

The models accept these kinds so that releases can describe them, but no built-in executor
installs them; a release using one is valid only when ``fleet.yaml`` lists an adapter declaring
support. Without that check a robot would receive a release it can never install.
"""

from __future__ import annotations

from collections.abc import Iterator

from fleetcd.errors import Diagnostic
from fleetcd.models import Fleet
from fleetcd.models.release import RESERVED_ARTIFACT_KINDS
from fleetcd.reasons import Reason
from fleetcd.validation.context import Context, at


def check(ctx: Context, fleet: Fleet) -> Iterator[Diagnostic]:
    supported = fleet.supported_reserved_kinds()
    for key in sorted(ctx.spec.releases):
        doc = ctx.spec.releases[key].doc
        for index, artifact in enumerate(doc.model.artifacts):
            if artifact.kind in RESERVED_ARTIFACT_KINDS and artifact.kind not in supported:
                yield at(
                    doc,
                    ("artifacts", index, "kind"),
                    f"artifact {artifact.name!r} has the reserved kind {artifact.kind!r}, "
                    "which needs an adapter: "
                    f"list one under 'adapters:' in fleet.yaml with artifact_kinds: [{artifact.kind}]",
                    Reason.UNSUPPORTED_ARTIFACT,
                )
