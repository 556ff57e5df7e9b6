"""Textbook examples with published values."""

from __future__ import annotations

import pytest

from corrigenda.agreement import cohen_kappa, fleiss_kappa, krippendorff_alpha, units_to_fleiss


def test_cohen_kappa_matches_the_textbook_example() -> None:
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)
    assert cohen_kappa([("a", "a"), ("b", "b")]) == pytest.approx(1.0)
    assert cohen_kappa([]) is None


def test_fleiss_kappa_matches_the_textbook_example() -> None:
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=0.001)
    assert fleiss_kappa([[2, 0], [1, 2]]) is None  # unequal raters per item


def test_krippendorff_alpha_matches_krippendorffs_worked_example() -> None:
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [list(column) for column in zip(*coders, strict=True)]
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=0.001)


def test_units_to_fleiss_counts_categories_for_equal_sized_units() -> None:
    assert units_to_fleiss([["a", "b"], ["a", "a"], ["b"]]) == [[1, 1], [2, 0]]
