"""FID: Frechet distance between Inception-v3 pool3 feature distributions of two image sets.

Protocol (pytorch-fid's)
------------------------
* Features: the 2048-d final average pool of the FID Inception network
  (``pt_inception-2015-12-05-6726825d.pth``, TensorFlow's 2015-12-05 graph; see ``fid_inception``).
  uint8 RGB -> float / 255 -> bilinear resize to 299x299 (``align_corners=False``) -> [-1, 1].
* Statistics: mean ``mu`` and unbiased covariance ``sigma`` (``np.cov``, N-1) of each set, float64.
* Distance: ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrtm(sigma1 sigma2))``. When the
  product's square root is not finite (singular covariances, e.g. fewer images than dimensions),
  ``eps = 1e-6`` is added to both diagonals; an imaginary part from rounding is dropped if the
  diagonal's is below 1e-3, otherwise it is an error (all as in pytorch-fid).
* Weights: an explicit path, or ``unmask.weights``' ``fid-inception``: the torch hub cache's file under
  the pytorch-fid or torch-fidelity name, fetched there when FID's network is loaded (asking whether FID
  is available never downloads), its SHA-256 verified. Without them (offline, no network) FID is ``None``
  with a reason; no number is ever made with other weights.

FID is a dataset-level metric and biased at small N; with N < 2048 the covariance is singular.
Comparable numbers need thousands of images per set (the paper-scale test sets), and only FIDs
computed on the same real set and image size are comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg

from unmask import weights

from . import _inputs

SQRTM_EPS = 1e-6

# A feature extractor maps a uint8 (N, H, W, 3) batch to float (N, D) features.
FeatureExtractor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance of one set's features; can be saved to reuse a real set's statistics."""

    mu: np.ndarray  # (D,)
    sigma: np.ndarray  # (D, D)
    count: int

    @classmethod
    def from_features(cls, features: np.ndarray) -> FeatureStats:
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or len(features) < 2:
            raise ValueError(f"need at least 2 feature vectors (N, D), got shape {features.shape}")
        return cls(features.mean(axis=0), np.cov(features, rowvar=False), len(features))

    def save(self, path: str | Path) -> None:
        np.savez(path, mu=self.mu, sigma=self.sigma, count=self.count)

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        with np.load(path) as data:
            return cls(data["mu"], data["sigma"], int(data["count"]))


def frechet_distance(stats1: FeatureStats, stats2: FeatureStats, eps: float = SQRTM_EPS) -> float:
    """Frechet distance of two Gaussians given by their means and covariances."""
    mu1, mu2 = np.atleast_1d(stats1.mu), np.atleast_1d(stats2.mu)
    sigma1, sigma2 = np.atleast_2d(stats1.sigma), np.atleast_2d(stats2.sigma)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # singular product: regularize both covariances slightly, as pytorch-fid does
        offset = np.eye(len(sigma1)) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm has a large imaginary component {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


UNAVAILABLE = "FID Inception weights unavailable"


def unavailable_reason(path: str | Path | None = None) -> str | None:
    """Why FID cannot run with ``path`` (or the torch hub cache's file), or None: only looks (the registry's
    availability), never downloads; a missing cache file that may be downloaded counts as available."""
    if path is not None:
        return None if Path(path).is_file() else f"FID Inception weights not found at {path}"
    reason = weights.unavailable_reason("fid-inception")
    return f"{UNAVAILABLE}: {reason}" if reason else None


def find_fid_weights(path: str | Path | None = None) -> tuple[Path | None, str | None]:
    """Locate the FID Inception checkpoint: ``(path, None)`` or ``(None, reason)``.

    An explicit ``path`` must exist; without one, the verified file of the torch hub cache, downloaded there
    now unless offline (``unmask.weights``): call this when FID's network is about to be loaded.
    """
    if path is not None:
        reason = unavailable_reason(path)
        return (None, reason) if reason else (Path(path), None)
    try:
        return weights.ensure("fid-inception"), None
    except weights.WeightsError as error:
        return None, f"{UNAVAILABLE}: {error}"


def inception_feature_extractor(
    weights_path: str | Path, device: str = "cpu", batch_size: int = 32, verify_hash: bool = True,
) -> FeatureExtractor:
    """A ``FeatureExtractor`` running the FID Inception loaded from ``weights_path``."""
    import torch

    from .fid_inception import load_fid_inception

    model = load_fid_inception(weights_path, verify_hash=verify_hash).to(device)

    @torch.no_grad()
    def extract(images: np.ndarray) -> np.ndarray:
        images = _inputs.image_batch(images)
        out = []
        for start in range(0, len(images), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size].transpose(0, 3, 1, 2)))
            out.append(model(chunk.to(device).float() / 255).cpu().double().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048))

    return extract


@dataclass(frozen=True)
class FIDResult:
    value: float | None
    reason: str | None = None  # why value is None
    count_generated: int = 0
    count_real: int = 0


class FIDAccumulator:
    """Collects features of generated and real images; ``result()`` gives the FID.

    Give ``feature_extractor`` to use another network (tests use a tiny stand-in); otherwise the
    FID Inception is loaded from ``weights_path`` or the torch hub cache on first use. When the
    weights are missing, updates are ignored and ``result()`` is ``FIDResult(None, reason)``.
    ``real_stats`` replaces the real set by precomputed statistics (``FeatureStats.load``).
    """

    def __init__(
        self,
        weights_path: str | Path | None = None,
        feature_extractor: FeatureExtractor | None = None,
        real_stats: FeatureStats | None = None,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        self.reason: str | None = None
        if feature_extractor is None:
            path, self.reason = find_fid_weights(weights_path)
            if path is not None:
                try:
                    feature_extractor = inception_feature_extractor(path, device=device, batch_size=batch_size)
                except Exception as error:  # FIDWeightsError and unreadable files alike
                    self.reason = f"FID Inception weights unusable: {error}"
        self._extract = feature_extractor
        self.real_stats = real_stats
        self._generated: list[np.ndarray] = []
        self._real: list[np.ndarray] = []

    @property
    def available(self) -> bool:
        return self._extract is not None

    def update(self, pred=None, target=None) -> None:
        """Add generated image(s) ``pred`` and/or real image(s) ``target`` (an image or a batch)."""
        if not self.available:
            return
        if pred is not None:
            self._generated.append(np.asarray(self._extract(_inputs.image_batch(pred, "pred")), np.float64))
        if target is not None:
            self._real.append(np.asarray(self._extract(_inputs.image_batch(target, "target")), np.float64))

    def stats(self, which: str) -> FeatureStats:
        """``FeatureStats`` of the ``"generated"`` or ``"real"`` images seen so far."""
        if which == "real" and self.real_stats is not None:
            return self.real_stats
        chunks = self._generated if which == "generated" else self._real
        return FeatureStats.from_features(np.concatenate(chunks) if chunks else np.zeros((0, 0)))

    def result(self) -> FIDResult:
        n_gen = sum(len(c) for c in self._generated)
        n_real = self.real_stats.count if self.real_stats is not None else sum(len(c) for c in self._real)
        if not self.available:
            return FIDResult(None, self.reason, n_gen, n_real)
        if n_gen < 2 or n_real < 2:
            reason = f"FID needs at least 2 images per set (generated {n_gen}, real {n_real})"
            return FIDResult(None, reason, n_gen, n_real)
        return FIDResult(frechet_distance(self.stats("generated"), self.stats("real")), None, n_gen, n_real)
