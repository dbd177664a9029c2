"""What every console script shares: the exit codes and the one handler that maps errors to them.

The commands themselves live with their script: ``fleetcd`` in :mod:`controller.cli`,
``fleetcd-agent`` in :mod:`agent.cli`.
"""
