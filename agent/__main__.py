"""``python -m agent``: the ``fleetcd-agent`` console script, for when the script is not installed."""

from agent.cli import main

if __name__ == "__main__":
    main()
