"""Config instances on the robot: written atomically where the app reads them, and watched for drift.

:mod:`agent.configfiles.write` renders the merged, schema-checked values of the release's config
(``config.path``, ``config.format``) and compares what is on disk with what was written (the hash
check each cycle is the source of truth); :mod:`agent.configfiles.watch` notices local edits at
once (watchfiles) so the drift is reported without waiting for the next cycle.
"""
