"""Deterministic, leak-free splits.

An example's split is a pure function of its cluster id (near-duplicates share a cluster)
and the project's ratios, so near-duplicates never straddle splits and an example keeps
its split however much data arrives later. Examples without a cluster fall back to their
own id (they have no known near-duplicates).

The function is SHA-256 (first 8 bytes, big-endian) of ``"<project id>:<key>"`` compared
with integer thresholds, because PostgreSQL computes exactly the same thing in SQL
(``Splitter.sql``): the fast export path assigns splits in the database.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

SPLIT_ORDER = ("train", "validation", "test")
DEFAULT_RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}
SPACE = 2**64


class SplitRatioError(ValueError):
    """The project's split ratios cannot be used; the message says why."""


def normalize_ratios(ratios: Mapping[str, float] | None) -> dict[str, float]:
    """Ratios in canonical order (train, validation, test, then others by name), summing to 1."""
    ratios = dict(ratios or DEFAULT_RATIOS)
    if not ratios or any(not isinstance(v, int | float) or v < 0 for v in ratios.values()):
        raise SplitRatioError("split ratios must be non-negative numbers")
    total = float(sum(ratios.values()))
    if not math.isfinite(total) or total <= 0:
        raise SplitRatioError("split ratios must add up to more than 0")
    names = [n for n in SPLIT_ORDER if n in ratios] + sorted(set(ratios) - set(SPLIT_ORDER))
    return {name: ratios[name] / total for name in names}


def split_key(cluster_id: int | None, example_id: int) -> str:
    return f"c{cluster_id}" if cluster_id is not None else f"e{example_id}"


def hash64(key: str, project_id: int) -> int:
    """A stable integer in [0, 2**64) for ``key``, the same on every machine and in SQL."""
    digest = hashlib.sha256(f"{project_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def bucket(key: str, project_id: int) -> float:
    """``hash64`` as a number in [0, 1)."""
    return hash64(key, project_id) / SPACE


class Splitter:
    """``splitter(cluster_id, example_id) -> split name`` for one project's ratios."""

    def __init__(self, project_id: int, ratios: Mapping[str, float] | None) -> None:
        self.project_id = project_id
        self.ratios = normalize_ratios(ratios)
        self.names = list(self.ratios)
        # Integer upper bounds (exclusive) of each split's share of the hash space.
        bounds, running = [], 0.0
        for ratio in self.ratios.values():
            running += ratio
            bounds.append(int(running * SPACE))
        self._bounds = bounds

    def __call__(self, cluster_id: int | None, example_id: int) -> str:
        value = hash64(split_key(cluster_id, example_id), self.project_id)
        for bound, name in zip(self._bounds, self.names, strict=True):
            if value < bound:
                return name
        return self.names[-1]

    def sql_position(
        self, cluster: str = "e.cluster_id", ident: str = "e.id"
    ) -> tuple[str, dict[str, Any]]:
        """The same function in PostgreSQL: a 0-based index into ``names`` (and parameters).

        ``width_bucket`` counts the thresholds at or below the digest. bytea compares
        bytewise, so the 32-byte digest sorts against an 8-byte big-endian threshold exactly
        as its first 8 bytes (the Python hash) sort against the integer. Thresholds past
        the hash space can never be reached: left out. The key holds only ASCII digits,
        letters and ':', so ``::bytea`` reads it as its UTF-8 bytes.
        """
        thresholds = [b.to_bytes(8, "big") for b in self._bounds[:-1] if b < SPACE]
        if not thresholds:
            return "0", {}
        key = f"coalesce('c' || {cluster}, 'e' || {ident})"
        digest = f"sha256(('{int(self.project_id)}:' || {key})::bytea)"
        return f"width_bucket({digest}, :split_thresholds::bytea[])", {
            "split_thresholds": thresholds
        }

    def sql(self, cluster: str = "e.cluster_id", ident: str = "e.id") -> tuple[str, dict[str, Any]]:
        """The split name as a PostgreSQL expression (and its parameters)."""
        position, params = self.sql_position(cluster, ident)
        return f"(:split_names::text[])[{position} + 1]", {**params, "split_names": self.names}
