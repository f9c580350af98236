"""BRISQUE (Mittal et al. 2012, "No-reference image quality assessment in the spatial domain").

Lower is better; typical values lie in 0..100 but may fall outside it (negative for very clean
images). This reimplements the feature extraction of the ``brisque`` PyPI package (0.2.x, whose
``BRISQUE.score`` breaks on numpy >= 2.4) and evaluates its shipped model files directly, without
libsvm: ``brisque/models/svm.txt`` (the original LIVE-trained epsilon-SVR, RBF kernel, gamma 0.05)
and its per-feature min/max scaling to [-1, 1]. The package ships that scaling as a pickle, which
is never loaded here (unpickling can run code): its values were converted once to
``brisque_scaling.json`` next to this module, tied to the SVR by the SHA-256 of ``svm.txt``.

Protocol
--------
1. Gray: RGB uint8 / 255 -> ``0.2125 R + 0.7154 G + 0.0721 B`` (skimage's ``rgb2gray``), in [0, 1];
   gray input is divided by 255.
2. Two scales: the image, and a half-size copy (``cv2.resize(fx=fy=0.5, INTER_CUBIC)``).
3. Per scale, MSCN coefficients: 7x7 Gaussian window (sigma 7/6, normalized), zero padding
   (``scipy.signal.convolve2d(mode="same")``), C = 1/255 (= 1 on the 0..255 scale).
4. Per scale, 18 features: an AGGD fit (shape from the moment ratio by ``scipy.optimize.root``
   started at 0.2, like the package) of the MSCN map -> (alpha, mean of the two squared scales),
   and of the horizontal, vertical, main- and secondary-diagonal neighbour products (cropped, not
   circular) -> (alpha, mean, left variance, right variance) each.
5. Score = SVR(scaled 36-d features) = sum_i coef_i exp(-gamma |x - sv_i|^2) - rho.

Image size: no patches are involved, so any image of at least ``MIN_SIDE`` px per side can be
scored (below that the 7x7 window covers most of the half-size image and the statistics are
meaningless: ``ImageTooSmallError``). At 256x256 all pixels are used (256 and 128 px scales)
and BRISQUE rises steadily with blur and with clearly visible noise; only light noise (sigma ~5)
on an upscaled, smooth face lowers it (it masks the upscaling blur, which BRISQUE penalizes).
Like NIQE, values are only comparable between images of the same size.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import scipy.optimize
import scipy.signal
import scipy.special

from . import _inputs

MIN_SIDE = 32
MSCN_C = 1.0 / 255.0
WINDOW_SIZE = 7
WINDOW_SIGMA = 7.0 / 6.0
GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])  # skimage.color.rgb2gray (ITU-R BT.709)
SCALING_FILE = Path(__file__).with_name("brisque_scaling.json")  # the package's SVR's scaling (package data)
OWN_SCALING = "normalize.json"  # a model folder's own scaling ({"min_": [...], "max_": [...]}), for other SVRs


class ImageTooSmallError(ValueError):
    pass


@dataclass(frozen=True)
class BrisqueModel:
    support_vectors: np.ndarray  # (S, 36)
    coefficients: np.ndarray  # (S,)
    rho: float
    gamma: float
    feature_min: np.ndarray  # (36,)
    feature_max: np.ndarray  # (36,)

    def predict(self, features: np.ndarray) -> float:
        scaled = -1 + 2.0 * (features - self.feature_min) / (self.feature_max - self.feature_min)
        squared_distances = ((self.support_vectors - scaled) ** 2).sum(axis=1)
        return float(self.coefficients @ np.exp(-self.gamma * squared_distances) - self.rho)


def default_model_dir() -> tuple[Path | None, str | None]:
    """The ``brisque`` package's model folder: ``(path, None)`` or ``(None, reason)``.

    The package is only located, never imported (its import needs skimage, libsvm and OpenCV).
    """
    spec = importlib.util.find_spec("brisque")
    if spec is None or not spec.submodule_search_locations:
        return None, "BRISQUE needs the model shipped by the brisque package: pip install brisque"
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    if not (folder / "svm.txt").is_file():
        return None, f"the brisque package lacks its model file svm.txt in {folder}"
    return folder, None


def _scaling(model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(feature_min, feature_max) for the SVR in ``model_dir``: its own ``normalize.json``, else the
    shipped scaling when ``svm.txt`` is the SVR it belongs to."""
    own = model_dir / OWN_SCALING
    if own.is_file():
        scale = json.loads(own.read_text())
    else:
        scale = json.loads(SCALING_FILE.read_text())
        digest = hashlib.sha256((model_dir / "svm.txt").read_bytes()).hexdigest()
        if digest != scale["svm_sha256"]:
            raise ValueError(f"{model_dir / 'svm.txt'} is not the SVR of {SCALING_FILE.name}; give its feature "
                             f"scaling as {own} ({{\"min_\": [...], \"max_\": [...]}})")
    return np.asarray(scale["min_"], np.float64), np.asarray(scale["max_"], np.float64)


def _read_libsvm_model(path: Path, num_features: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    header: dict[str, str] = {}
    coefficients, vectors = [], []
    with open(path) as lines:
        for line in lines:
            if line.strip() == "SV":
                break
            key, _, value = line.strip().partition(" ")
            header[key] = value
        for line in lines:
            fields = line.split()
            if not fields:
                continue
            coefficients.append(float(fields[0]))
            vector = np.zeros(num_features)
            for field in fields[1:]:  # sparse "index:value", 1-based; absent means 0
                index, value = field.split(":")
                vector[int(index) - 1] = float(value)
            vectors.append(vector)
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise ValueError(f"{path}: expected an epsilon-SVR with RBF kernel, got {header}")
    return np.array(vectors), np.array(coefficients), float(header["rho"]), float(header["gamma"])


@lru_cache(maxsize=4)
def load_model(model_dir: str | Path | None = None) -> BrisqueModel:
    if model_dir is None:
        model_dir, reason = default_model_dir()
        if model_dir is None:
            raise FileNotFoundError(reason)
    model_dir = Path(model_dir)
    feature_min, feature_max = _scaling(model_dir)
    vectors, coefficients, rho, gamma = _read_libsvm_model(model_dir / "svm.txt", len(feature_min))
    return BrisqueModel(vectors, coefficients, rho, gamma, feature_min, feature_max)


def _gaussian_window() -> np.ndarray:
    y, x = np.indices((WINDOW_SIZE, WINDOW_SIZE)) - WINDOW_SIZE // 2
    window = np.exp(-(x ** 2 + y ** 2) / (2 * WINDOW_SIGMA ** 2))
    return window / window.sum()


def mscn(gray: np.ndarray) -> np.ndarray:
    """MSCN coefficients of a float64 gray image in [0, 1]."""
    window = _gaussian_window()
    mu = scipy.signal.convolve2d(gray, window, "same")
    sigma = np.sqrt(np.abs(mu ** 2 - scipy.signal.convolve2d(gray ** 2, window, "same")))
    return (gray - mu) / (sigma + MSCN_C)


def _moment_ratio(alpha):
    return scipy.special.gamma(2 / alpha) ** 2 / (scipy.special.gamma(1 / alpha) * scipy.special.gamma(3 / alpha))


def aggd_fit(values: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalized Gaussian fit: ``(alpha, mean, left_std, right_std)``."""
    values = values.ravel()
    left_std = np.sqrt(np.mean(values[values < 0] ** 2))
    right_std = np.sqrt(np.mean(values[values >= 0] ** 2))
    gamma_hat = left_std / right_std
    r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values ** 2)
    r_hat_norm = r_hat * (gamma_hat ** 3 + 1) * (gamma_hat + 1) / (gamma_hat ** 2 + 1) ** 2
    # the package solves for the shape from 0.2 with MINPACK's hybrid method; same here for agreement
    alpha = float(scipy.optimize.root(lambda a: _moment_ratio(a) - r_hat_norm, [0.2]).x[0])
    constant = np.sqrt(scipy.special.gamma(1 / alpha) / scipy.special.gamma(3 / alpha))
    mean = (right_std - left_std) * constant * scipy.special.gamma(2 / alpha) / scipy.special.gamma(1 / alpha)
    return alpha, float(mean), float(left_std), float(right_std)


def scale_features(gray: np.ndarray) -> np.ndarray:
    """The 18 BRISQUE features of one scale."""
    coefficients = mscn(gray)
    alpha, _, left, right = aggd_fit(coefficients)
    features = [alpha, (left ** 2 + right ** 2) / 2]
    products = (
        coefficients[:, :-1] * coefficients[:, 1:],  # horizontal
        coefficients[:-1, :] * coefficients[1:, :],  # vertical
        coefficients[:-1, :-1] * coefficients[1:, 1:],  # main diagonal
        coefficients[1:, :-1] * coefficients[:-1, 1:],  # secondary diagonal
    )
    for product in products:
        alpha, mean, left, right = aggd_fit(product)
        features += [alpha, mean, left ** 2, right ** 2]
    return np.array(features, np.float64)


def gray(image: np.ndarray) -> np.ndarray:
    """Gray float64 in [0, 1] from a uint8 gray or RGB image."""
    scaled = np.multiply(image, 1.0 / 255.0, dtype=np.float64)  # skimage's img_as_float, bit for bit
    return scaled if scaled.ndim == 2 else scaled @ GRAY_WEIGHTS


def brisque_features(image) -> np.ndarray:
    """The 36-d BRISQUE feature vector of a uint8 gray or RGB image."""
    g = gray(_inputs.gray_or_rgb_image(image))
    if min(g.shape) < MIN_SIDE:
        raise ImageTooSmallError(f"BRISQUE needs at least {MIN_SIDE}x{MIN_SIDE} px, got {g.shape[0]}x{g.shape[1]}")
    half = cv2.resize(g, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    return np.concatenate([scale_features(g), scale_features(half)])


def brisque(image, model_dir: str | Path | None = None) -> float:
    """BRISQUE score of one uint8 RGB (or gray) image; lower is better."""
    return load_model(model_dir).predict(brisque_features(image))
