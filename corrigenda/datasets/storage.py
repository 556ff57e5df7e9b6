"""Where version files live. The seam is small so an object store can be added later.

A storage writes a version's files under a *staging* prefix, then ``publish`` makes them
visible under their final prefix in one step (a directory rename locally), so a reader
never sees half a version and a crashed build leaves nothing behind but a staging folder.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlalchemy.engine import Engine

from ..settings import Settings


class Storage(Protocol):
    def staging(self, prefix: str) -> Path: ...
    def publish(self, staging: Path, prefix: str) -> None: ...
    def path(self, prefix: str, name: str) -> Path: ...
    def open(self, prefix: str, name: str) -> BinaryIO: ...
    def delete(self, prefix: str) -> None: ...


_DATA_DIRS: dict[str, Path] = {}


def register_data_dir(engine: Engine, data_dir: Path) -> None:
    """Remember where versions of this database live (the web app calls this), so the
    in-process worker, which only gets an engine, builds into the app's data directory."""
    _DATA_DIRS[engine.url.render_as_string(hide_password=False)] = Path(data_dir)


def data_dir_for(engine: Engine) -> Path:
    """The registered data directory for ``engine``, else the one from the environment."""
    known = _DATA_DIRS.get(engine.url.render_as_string(hide_password=False))
    return known if known is not None else Settings().data_dir


class LocalStorage:
    """Files under ``<data dir>/datasets``; published versions are made read-only."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> LocalStorage:
        return cls(Path(data_dir) / "datasets")

    def staging(self, prefix: str) -> Path:
        path = self.root / ".staging" / f"{prefix.replace('/', '_')}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def publish(self, staging: Path, prefix: str) -> None:
        final = self._resolve(prefix)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a previous attempt published but did not record it
            self.delete(prefix)
        for directory, _, files in os.walk(staging):
            for name in files:
                os.chmod(Path(directory) / name, 0o444)
        staging.rename(final)

    def path(self, prefix: str, name: str) -> Path:
        return self._resolve(f"{prefix}/{name}")

    def open(self, prefix: str, name: str) -> BinaryIO:
        return self.path(prefix, name).open("rb")

    def delete(self, prefix: str) -> None:
        path = self._resolve(prefix)
        if path.exists():
            for directory, _, _files in os.walk(path):
                os.chmod(directory, 0o755)
            shutil.rmtree(path)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def _resolve(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"{relative!r} is outside the dataset storage")
        return path
