"""The controller's state on ``refs/heads/fleetcd/state``: models and file layout (no I/O here)."""
