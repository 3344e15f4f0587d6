"""Versioned schema migrations, one numbered SQL file per step and backend."""
