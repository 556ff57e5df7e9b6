"""Regenerate migrations/versions/0001 from the models.

Only while Corrigenda has no release: once a release ships, schema changes get new revisions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command

from corrigenda.migrate import MIGRATIONS_DIR, alembic_config

for old in (MIGRATIONS_DIR / "versions").glob("0001_*.py"):
    old.unlink()
with tempfile.TemporaryDirectory() as tmp:
    url = f"sqlite:///{Path(tmp) / 'empty.db'}"
    command.revision(
        alembic_config(url), message="create initial tables", autogenerate=True, rev_id="0001"
    )
