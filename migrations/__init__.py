"""Alembic migrations; run them with ``corrigenda migrate``."""
