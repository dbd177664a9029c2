"""Pure planning core shared by ``fleetcd plan`` and the controller: who gets what, in which wave."""
