"""Inter-annotator agreement for nominal labels: Cohen's kappa, Fleiss' kappa and
Krippendorff's alpha. Pure functions over plain Python data; ``None`` when undefined."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Agreement of two raters who labeled the same items, beyond chance."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[k] * second[k] for k in first) / (n * n)
    if expected == 1:
        return 1.0 if observed == 1 else None
    return (observed - expected) / (1 - expected)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Rows are items, columns categories, cells how many raters chose it. Every item must
    have the same number of raters (>= 2)."""
    if not counts:
        return None
    raters = sum(counts[0])
    if raters < 2 or any(sum(row) != raters for row in counts):
        return None
    items = len(counts)
    per_item = [(sum(c * c for c in row) - raters) / (raters * (raters - 1)) for row in counts]
    observed = sum(per_item) / items
    totals = [sum(row[j] for row in counts) for j in range(len(counts[0]))]
    expected = sum((t / (items * raters)) ** 2 for t in totals)
    if expected == 1:
        return 1.0 if observed == 1 else None
    return (observed - expected) / (1 - expected)


def krippendorff_alpha(units: Sequence[Sequence[Hashable | None]]) -> float | None:
    """Nominal alpha. Each unit lists the values its raters gave (``None`` = missing);
    units with fewer than two values are not pairable and are ignored."""
    coincidence: Counter[tuple[Hashable, Hashable]] = Counter()
    for unit in units:
        values = [v for v in unit if v is not None]
        m = len(values)
        if m < 2:
            continue
        for i, a in enumerate(values):
            for j, b in enumerate(values):
                if i != j:
                    coincidence[(a, b)] += 1 / (m - 1)
    total = sum(coincidence.values())
    if total == 0:
        return None
    marginals: Counter[Hashable] = Counter()
    for (a, _), weight in coincidence.items():
        marginals[a] += weight
    disagree_observed = sum(w for (a, b), w in coincidence.items() if a != b)
    disagree_expected = sum(
        marginals[a] * marginals[b] for a in marginals for b in marginals if a != b
    ) / (total - 1)
    if disagree_expected == 0:
        return 1.0 if disagree_observed == 0 else None
    return 1 - disagree_observed / disagree_expected


def units_to_fleiss(units: Sequence[Sequence[Hashable]]) -> list[list[int]]:
    """Category counts per item, for the items that have the most common number of raters."""
    sized = [u for u in units if len(u) >= 2]
    if not sized:
        return []
    size = Counter(len(u) for u in sized).most_common(1)[0][0]
    chosen = [u for u in sized if len(u) == size]
    categories = sorted({str(v) for u in chosen for v in u})
    return [[sum(str(v) == c for v in u) for c in categories] for u in chosen]
