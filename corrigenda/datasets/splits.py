"""Deterministic, leak-free splits.

An example's split is a pure function of its cluster id (near-duplicates share a cluster)
and the project's ratios, so near-duplicates never straddle splits and an example keeps
its split however much data arrives later. Examples without a cluster fall back to their
own id (they have no known near-duplicates).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

SPLIT_ORDER = ("train", "validation", "test")
DEFAULT_RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}


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


def bucket(key: str, project_id: int) -> float:
    """A stable number in [0, 1) for ``key``, the same on every machine and Python version."""
    digest = hashlib.blake2b(f"{project_id}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Splitter:
    """``splitter(cluster_id, example_id) -> split name`` for one project's ratios."""

    def __init__(self, project_id: int, ratios: Mapping[str, float] | None) -> None:
        self.project_id = project_id
        self.ratios = normalize_ratios(ratios)
        bounds, running = [], 0.0
        for name, ratio in self.ratios.items():
            running += ratio
            bounds.append((running, name))
        self._bounds = bounds

    def __call__(self, cluster_id: int | None, example_id: int) -> str:
        value = bucket(split_key(cluster_id, example_id), self.project_id)
        for bound, name in self._bounds:
            if value < bound:
                return name
        return self._bounds[-1][1]
