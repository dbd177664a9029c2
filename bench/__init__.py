"""Benchmarks of fleetcd's foundations (loading, validation, hostile inputs); run them with ``dev/bench``."""
