"""The agent's durable local state: atomic file writes (``atomic``) and the converge journal."""
