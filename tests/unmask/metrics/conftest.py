"""Shared fixtures: standard images and the reference packages (shimmed); the real face image
(``face256``) is tests/unmask/conftest.py's."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut portrait (512x512 RGB), shipped with the package."""
    if importlib.util.find_spec("skimage") is None:
        pytest.skip("scikit-image not installed (standard test images come from it)")
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def camera() -> np.ndarray:
    if importlib.util.find_spec("skimage") is None:
        pytest.skip("scikit-image not installed (standard test images come from it)")
    from skimage import data

    return data.camera()


@pytest.fixture
def skvideo_niqe(monkeypatch):
    """scikit-video's own NIQE on an RGB or gray uint8 image, with shims for current numpy/scipy.

    Its code uses ``np.int``/``np.float`` (removed in numpy 1.24) and ``scipy.misc.imresize``
    (removed in scipy 1.3). The shim of the latter is the old scipy code path for
    ``imresize(img, 0.5, interp="bicubic", mode="F")``: a PIL 32-bit float image resized bicubically.
    """
    if importlib.util.find_spec("skvideo") is None:
        pytest.skip("scikit-video not installed (reference NIQE)")
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy.misc is deprecated; only the shim goes into it
        import scipy.misc

    def imresize(arr, size, interp="bilinear", mode=None):
        assert mode == "F" and interp == "bicubic" and isinstance(size, float)
        image = Image.fromarray(np.asarray(arr, dtype=np.float32))
        new_size = tuple((np.array(image.size) * size).astype(int))
        return np.array(image.resize(new_size, resample=Image.BICUBIC))

    monkeypatch.setattr(np, "int", int, raising=False)
    monkeypatch.setattr(np, "float", float, raising=False)
    monkeypatch.setattr(scipy.misc, "imresize", imresize, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import skvideo.measure
        import skvideo.utils

    def reference(image: np.ndarray) -> float:
        gray = image.astype(np.float64) if image.ndim == 2 else skvideo.utils.rgb2gray(image[None])[0, :, :, 0]
        return float(skvideo.measure.niqe(gray)[0])

    return reference


@pytest.fixture(scope="session")
def brisque_package():
    """The brisque package's own score on an RGB uint8 image, with a shim for numpy >= 2.4.

    Its AGGD fit returns 1-element arrays, which ``float()`` no longer accepts in
    ``scale_features``; the shim unwraps them first. Everything else is the package's code.
    """
    for module in ("brisque", "skimage", "libsvm", "cv2"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} not installed (reference BRISQUE needs brisque, scikit-image, libsvm)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brisque import BRISQUE

    class ShimmedBRISQUE(BRISQUE):
        def scale_features(self, features):
            return super().scale_features([np.ravel(f)[0] for f in features])

    model = ShimmedBRISQUE(url=False)

    def reference(image: np.ndarray) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(model.score(image))

    return reference


def _add_noise(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noisy = image + np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), sigma)


@pytest.fixture(scope="session")
def add_noise():
    """``add_noise(image, sigma)``: additive Gaussian noise, fixed seed, rounded and clipped."""
    return _add_noise


@pytest.fixture(scope="session")
def blur():
    """``blur(image, sigma)``: Gaussian blur."""
    return _blur
