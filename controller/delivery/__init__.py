"""Per-robot desired state, step 6 of a reconcile: build the bundles that change, sign once, write refs.

``bundles`` decides what each robot's bundle says, ``inputs`` whether it changed (without building
it when what it is built from did not) and ``select`` which robots' refs move (pure);
``published`` judges the refs found against what the state branch recorded (pure); ``write``
signs one root over the moving robots' bundles and writes one small commit per robot (git I/O
through ``fleetcd.git`` only); ``prune`` removes the desired-state refs nobody owns.
"""

from controller.delivery.bundles import DeliverySource, Evidence, bundle_for
from controller.delivery.inputs import BundleInputs, content_digest
from controller.delivery.write import (
    CONTROLLER_IDENTITY,
    DeliveryResult,
    delivery_ref,
    read_targets,
    write_desired_state,
)

__all__ = [
    "CONTROLLER_IDENTITY",
    "BundleInputs",
    "DeliveryResult",
    "DeliverySource",
    "Evidence",
    "bundle_for",
    "content_digest",
    "delivery_ref",
    "read_targets",
    "write_desired_state",
]
