"""Loading untrusted repository bytes: strict YAML, JSON Schema, typed models."""
