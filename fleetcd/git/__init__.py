"""Git plumbing adapters (the only modules that import pygit2): read trees, commit, fetch, push."""
