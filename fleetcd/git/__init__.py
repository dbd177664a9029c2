"""Git plumbing adapters: read trees, commit, fetch, push.

The controller's side goes through pygit2 (``repo``, ``objects``, ``remote``, ``hostkeys``, ...), the
only modules that import it; the robot's side (``robotgit``, with ``gitcli``, ``knownhosts`` and
``refs``) runs the ``git`` CLI and never imports pygit2, so the agent runs where pygit2 does not.
"""
