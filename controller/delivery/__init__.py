"""Per-robot desired state, step 6 of a reconcile: build each robot's bundle, sign once, write refs.

``bundles`` decides what each robot's bundle says (pure); ``write`` signs one root over all of them
and writes one small commit per robot (git I/O through ``fleetcd.git`` only).
"""

from controller.delivery.bundles import (
    DeliverySource,
    Evidence,
    bundle_for,
    changed_devices,
    content_digest,
    content_digest_of,
    desired_changed,
    root_needs_refresh,
)
from controller.delivery.write import (
    CONTROLLER_IDENTITY,
    CurrentDesired,
    DeliveryResult,
    delivery_ref,
    read_current,
    write_desired_state,
)

__all__ = [
    "CONTROLLER_IDENTITY",
    "CurrentDesired",
    "DeliveryResult",
    "DeliverySource",
    "Evidence",
    "bundle_for",
    "changed_devices",
    "content_digest",
    "content_digest_of",
    "delivery_ref",
    "desired_changed",
    "read_current",
    "root_needs_refresh",
    "write_desired_state",
]
