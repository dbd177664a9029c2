"""fleetcd agent role: one per robot; pulls its own desired state, verifies, converges, reports.

It never imports ``controller``.
"""
