"""Settling a label from several opinions: weighted majority, and Dawid–Skene reliabilities.

Why our own Dawid–Skene instead of crowd-kit: crowd-kit pulls hundreds of MB of
dependencies and several of its methods break with current scikit-learn; the EM below is a
few dozen lines of numpy (docs/benchmarks.md compares it with majority vote).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from .normalize import normalize_text


def label_key(value: Any, task_type: str) -> str:
    """A canonical string for comparing labels: sorted list for multilabel, collapsed
    whitespace for free text, the label itself for classification."""
    if task_type == "multilabel":
        items = value if isinstance(value, list) else [value]
        return orjson.dumps(sorted({str(v) for v in items})).decode()
    if task_type == "text":
        return normalize_text(str(value), {"strip_quoted": False, "strip_signature": False})
    return str(value)


@dataclass(frozen=True)
class Vote:
    user: str
    label: str
    weight: float = 1.0


@dataclass
class Tally:
    """The votes on one item, by label; ``agreement`` is the winner's share of the weight."""

    weights: dict[str, float] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)
    top: str | None = None
    agreement: float = 0.0
    tie: bool = False

    @property
    def total(self) -> float:
        return sum(self.weights.values())


def weighted_majority(votes: Iterable[Vote]) -> Tally:
    """Majority by weight; ``tie`` when the two leading labels weigh the same."""
    tally = Tally()
    for vote in votes:
        tally.weights[vote.label] = tally.weights.get(vote.label, 0.0) + vote.weight
        tally.users.setdefault(vote.label, set()).add(vote.user)
    if not tally.weights:
        return tally
    ranked = sorted(tally.weights.items(), key=lambda kv: (-kv[1], kv[0]))
    tally.top = ranked[0][0]
    tally.agreement = ranked[0][1] / tally.total if tally.total else 0.0
    tally.tie = len(ranked) > 1 and abs(ranked[0][1] - ranked[1][1]) < 1e-9
    return tally


@dataclass
class DawidSkene:
    """Result of EM: per-item posteriors, per-worker confusion matrices and accuracy."""

    labels: list[str]
    posteriors: np.ndarray
    confusion: np.ndarray
    priors: np.ndarray

    def worker_accuracy(self) -> np.ndarray:
        """Each worker's probability of giving the true label, weighted by class priors."""
        diagonal = np.einsum("wkk->wk", self.confusion)
        return diagonal @ self.priors


def dawid_skene(
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
    *,
    n_labels: int,
    iterations: int = 50,
    tolerance: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dawid–Skene EM over (item, worker, label) integer triples, initialised by majority.

    Returns posteriors (items × labels), confusion (workers × true × given) and priors.
    """
    n_items, n_workers = int(items.max()) + 1, int(workers.max()) + 1
    cells = n_items * n_labels
    posteriors = np.bincount(items * n_labels + labels, minlength=cells).reshape(n_items, -1)
    posteriors = posteriors / posteriors.sum(axis=1, keepdims=True)
    worker_label = workers * n_labels + labels
    confusion = np.zeros((n_workers, n_labels, n_labels))
    priors = np.full(n_labels, 1.0 / n_labels)
    for _ in range(iterations):
        # bincount per true class: scatter-adds without np.add.at's slowness.
        for k in range(n_labels):
            sums = np.bincount(worker_label, posteriors[items, k], n_workers * n_labels)
            confusion[:, k, :] = sums.reshape(n_workers, n_labels) + 0.01
        confusion /= confusion.sum(axis=2, keepdims=True)
        priors = posteriors.mean(axis=0) + 1e-9
        log_post = np.tile(np.log(priors), (n_items, 1))
        for k in range(n_labels):
            log_post[:, k] += np.bincount(items, np.log(confusion[workers, k, labels]), n_items)
        log_post -= log_post.max(axis=1, keepdims=True)
        updated = np.exp(log_post)
        updated /= updated.sum(axis=1, keepdims=True)
        change = float(np.abs(updated - posteriors).max())
        posteriors = updated
        if change < tolerance:
            break
    return posteriors, confusion, priors / priors.sum()


def reliabilities(triples: list[tuple[Any, str, str]], *, min_items: int = 2) -> dict[str, float]:
    """Dawid–Skene accuracy per worker from ``(item, worker, label)`` triples.

    Only workers with at least ``min_items`` items on items labeled by two or more workers
    are estimated: with no overlap there is nothing to learn a reliability from.
    """
    per_item: dict[Any, set[str]] = defaultdict(set)
    for item, worker, _ in triples:
        per_item[item].add(worker)
    shared = [t for t in triples if len(per_item[t[0]]) > 1]
    counts: dict[str, int] = defaultdict(int)
    for _, worker, _ in shared:
        counts[worker] += 1
    shared = [t for t in shared if counts[t[1]] >= min_items]
    if not shared:
        return {}
    item_ids, worker_ids, label_ids = (_index(column) for column in zip(*shared, strict=True))
    _, confusion, priors = dawid_skene(
        item_ids[1], worker_ids[1], label_ids[1], n_labels=len(label_ids[0])
    )
    accuracy = np.einsum("wkk->wk", confusion) @ priors
    return {worker: float(accuracy[i]) for i, worker in enumerate(worker_ids[0])}


def _index(values: tuple[Any, ...]) -> tuple[list[Any], np.ndarray]:
    names = sorted(set(values), key=str)
    position = {name: i for i, name in enumerate(names)}
    return names, np.array([position[v] for v in values], dtype=np.int64)


def error_cost(policy: dict[str, Any], true_label: str | None, predicted: str | None) -> float:
    """Cost of predicting ``predicted`` when ``true_label`` is right (``cost_matrix[true][pred]``;
    0 on a match, ``default_error_cost`` (1) otherwise) — the metrics' convention."""
    row = (policy.get("cost_matrix") or {}).get(true_label or "", {})
    if isinstance(row, dict) and predicted in row:
        return float(row[predicted])
    if true_label is not None and true_label == predicted:
        return 0.0
    return float(policy.get("default_error_cost", 1.0))


def review_priority(
    policy: dict[str, Any], tally: Tally, model_label: str | None, confidence: float | None
) -> float:
    """Expected error cost of keeping the model's label × uncertainty of the evidence.

    The model counts as one pseudo-vote split by its confidence, so a confident model
    contradicted by one person ranks above an unsure one, and conflicts rank highest.
    """
    conf = 0.5 if confidence is None else min(max(confidence, 0.0), 1.0)
    weights = dict(tally.weights)
    if model_label is not None:
        weights[model_label] = weights.get(model_label, 0.0) + conf
    weights["\x00other"] = weights.get("\x00other", 0.0) + (1.0 - conf)
    total = sum(weights.values()) or 1.0
    expected = top = 0.0  # one pass: this runs once per routed cluster
    for label, weight in weights.items():
        p = weight / total
        top = max(top, p)
        expected += p * error_cost(policy, None if label == "\x00other" else label, model_label)
    uncertainty = 1.0 - top
    return round(expected * uncertainty, 6)
