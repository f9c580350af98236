"""The build's shortcuts for numpy routines must give exactly numpy's results: the dataset's bytes
depend on them (the same seed gives the same draws, the same light plane)."""

from __future__ import annotations

import cv2
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
    # Cells on one column of the coarse grid (INTER_NEAREST samples x = 8k): no slope in x to fit, the
    # normal equations are singular, and the fit falls back to least squares' minimum-norm plane.
    strip = np.zeros((h, w), np.uint8)
    strip[:, 56:64] = 1
    size = (w // 8, h // 8)
    small = cv2.resize(lum.astype(np.uint8), size, interpolation=cv2.INTER_AREA).astype(np.float64)
    inside = cv2.resize(strip, size, interpolation=cv2.INTER_NEAREST).astype(bool)
    assert 3 <= inside.sum() and len(set(np.nonzero(inside)[1])) == 1
    gy, gx = np.mgrid[0:size[1], 0:size[0]]
    values = small[inside]
    bright = values >= np.quantile(values, 0.4)
    design = np.stack([np.ones(bright.sum()), gx[inside][bright], gy[inside][bright]], axis=1)
    coef = np.linalg.lstsq(design, values[bright], rcond=None)[0]
    expected = (coef[0] + coef[1] * gx + coef[2] * gy).astype(np.float32)
    np.testing.assert_array_equal(_light_plane(lum.astype(np.uint8), strip), expected)
    # a well-conditioned fit (the normal equations) equals the least-squares plane to float32
    full = np.ones((h, w), np.uint8)
    values = small.ravel()
    bright = values >= np.quantile(values, 0.4)
    design = np.stack([np.ones(bright.sum()), gx.ravel()[bright], gy.ravel()[bright]], axis=1)
    coef = np.linalg.lstsq(design, values[bright], rcond=None)[0]
    np.testing.assert_allclose(_light_plane(lum.astype(np.uint8), full),
                               (coef[0] + coef[1] * gx + coef[2] * gy).astype(np.float32), rtol=1e-6)


def test_shard_headers_are_tarfiles():
    import tarfile

    from maskgen.shard import TAR_MODE, TAR_MTIME, TAR_OWNER, _header

    names = ["a.jpg", "000001_00.masked.jpg", "x" * 100, "x" * 101, "caf\u00e9.json", "dir/k.png", ""]
    for name in names:
        for size in (0, 1, 511, 512, 12_345_678, 8 ** 11 - 1, 8 ** 11):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = size, TAR_MTIME, TAR_MODE
            info.uname = info.gname = TAR_OWNER
            assert _header(name, size) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), (name, size)
