"""The builder's shortcuts for numpy routines must give exactly numpy's results: the dataset's bytes
depend on them (the same seed gives the same draws, the same light plane)."""

from __future__ import annotations

import numpy as np

from maskgen.compose import _cdf, _draw_index, _pick
from maskgen.mask import _light_plane, _lower_quantile


def test_draw_index_is_numpy_choice_with_weights():
    for seed in range(500):
        p = np.random.default_rng(seed).uniform(0, 1, 6)
        p[seed % 6] = 0.0  # a zero weight is never drawn
        mine, theirs = np.random.default_rng(seed + 1), np.random.default_rng(seed + 1)
        for _ in range(4):
            assert _draw_index(_cdf(p), mine) == int(theirs.choice(6, p=p / p.sum()))
        assert mine.random() == theirs.random()  # the same share of the stream consumed
    weights = {"a": 0.0, "b": 2.0, "c": 1.0}
    picks = [_pick(weights, np.random.default_rng(s)) for s in range(600)]
    assert "a" not in picks and 0.58 < picks.count("b") / 600 < 0.75


def test_lower_quantile_is_numpy_quantile():
    rng = np.random.default_rng(0)
    for n in list(range(1, 60)) + [97, 256]:
        for values in (rng.uniform(0, 255, n), np.round(rng.uniform(0, 255, n)), np.full(n, 7.0)):
            for q in (0.0, 0.1, 0.4, 0.5, 0.75, 1.0):
                assert _lower_quantile(values, q) == np.quantile(values, q)


def test_light_plane_fits_a_lit_plane_and_ignores_dark_features():
    h, w = 96, 128
    ys, xs = np.mgrid[0:h, 0:w]
    lum = (100 + 0.5 * xs + 0.25 * ys).astype(np.float32)
    dark = lum.copy()
    dark[40:56, 50:80] = 20  # a mouth: among the darkest cells, left out of the fit
    cover = np.ones((h, w), np.uint8)
    for image in (lum, dark):
        plane = _light_plane(image.astype(np.uint8), cover)
        gh, gw = plane.shape
        assert (gh, gw) == (h // 8, w // 8)
        # the plane on the coarse grid: 8 px per cell, so 4 luminance units per cell in x, 2 in y
        np.testing.assert_allclose(np.diff(plane, axis=1), 4.0, atol=0.3)
        np.testing.assert_allclose(np.diff(plane, axis=0), 2.0, atol=0.3)
    strip = np.zeros((h, w), np.uint8)
    strip[:, 60:64] = 1  # one column of cells: no slope in x to fit; still a finite plane
    assert np.all(np.isfinite(_light_plane(lum.astype(np.uint8), strip)))
