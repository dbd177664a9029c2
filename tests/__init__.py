"""fleetcd test suite: real git, real gpg, real services where they run."""
