import importlib.util

import numpy as np
import pytest

from unmask import metrics
from unmask.metrics.brisque import ImageTooSmallError, brisque, load_model

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("brisque") is None, reason="brisque package not installed (it ships the model)")


def test_model_files_load():
    model = load_model()
    assert model.support_vectors.shape == (770, 36)
    assert model.gamma == 0.05 and model.rho == pytest.approx(-155.845)


def test_matches_the_brisque_package_on_standard_images(brisque_package, astronaut, camera):
    for image in (astronaut, np.stack([camera] * 3, axis=-1)):
        assert brisque(image) == pytest.approx(brisque_package(image), abs=1e-8)


def test_matches_the_brisque_package_at_256_px(brisque_package, face256):
    assert brisque(face256) == pytest.approx(brisque_package(face256), abs=1e-8)


def test_rises_with_noise_and_blur_on_a_face(face256, add_noise, blur):
    # Clearly visible levels: light noise (sigma ~5) on this upsampled, smooth CelebA face lowers
    # BRISQUE, because it masks the upsampling blur that BRISQUE also penalizes.
    noisy = [brisque(add_noise(face256, sigma)) for sigma in (0, 20, 40)]
    blurred = [brisque(blur(face256, sigma)) if sigma else brisque(face256) for sigma in (0, 1, 2, 3)]
    assert noisy == sorted(noisy) and len(set(noisy)) == 3
    assert blurred == sorted(blurred) and len(set(blurred)) == 4


def test_gray_equals_replicated_rgb(camera):
    assert brisque(camera) == pytest.approx(brisque(np.stack([camera] * 3, axis=-1)), abs=1e-8)


def test_minimum_size():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    assert np.isfinite(brisque(image))
    with pytest.raises(ImageTooSmallError, match="32"):
        brisque(image[:31])


def test_registry_entry(face256):
    entry = metrics.get("brisque")
    assert entry.kind == metrics.PER_IMAGE and entry.direction == "lower" and not entry.needs_target
    acc = entry.accumulator()
    acc.update(face256)
    assert acc.result().value == brisque(face256)


def test_unavailable_without_the_package(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "brisque" else real_find_spec(name, *a))
    availability = metrics.get("brisque").availability()
    assert not availability and "pip install brisque" in availability.reason
