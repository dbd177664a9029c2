"""Maintenance windows for dispatch: the pure rules live in :mod:`fleetcd.planning.windows`, which
``fleetcd plan`` shares to say when a wave could start."""

from fleetcd.planning.windows import in_window, window_open

__all__ = ["in_window", "window_open"]
