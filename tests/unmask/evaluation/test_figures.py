"""Figure building blocks: bounded selections and contact sheets."""

from __future__ import annotations

import math

import numpy as np

from unmask.evaluation.figures import FirstPerGroup, WorstK, as_rgb_tile, contact_sheet, tile_size


def test_worst_k_keeps_the_lowest_finite_scores():
    worst = WorstK(3)
    for index, score in enumerate([5.0, 1.0, math.nan, 3.0, math.inf, 0.5, 3.0, 9.0]):
        worst.add(score, index)
    assert worst.items() == [(0.5, 5), (1.0, 1), (3.0, 3)]  # ties: the earlier sample stays


def test_first_per_group():
    first = FirstPerGroup(2)
    for index, group in enumerate("aabab"):
        first.add(group, index)
    assert first.groups == {"a": [0, 1], "b": [2, 4]}


def test_contact_sheet_layout():
    image = np.zeros((64, 64, 3), np.uint8)
    sheet = contact_sheet([[image, np.ones((64, 64), bool), None]], ["a", "b", "c"], ["label"],
                          tile_size(64), "heading")
    assert sheet.shape[1] == 3 * 128 and sheet.dtype == np.uint8
    assert as_rgb_tile(np.full((64, 64), 255, np.uint8), 128).min() == 255  # a 0/255 map is white
    wide = as_rgb_tile(np.full((50, 100, 3), 200, np.uint8), 128)
    assert wide[0, 0].tolist() == [0, 0, 0] and wide[64, 64].tolist() == [200, 200, 200]  # letterboxed
