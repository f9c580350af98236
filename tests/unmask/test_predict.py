"""Prediction on aligned crops and on real photos, with a tiny trained model."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from maskgen.compose import image_to_triplets
from maskgen.landmarks import NoFace
from maskgen.source import load_image
from unmask.cli import main
from unmask.predict import Unmasker
from unmask.training.loop import train
from unmask.training.options import RunOptions
from tests.unmask.testutils import tiny_config


@pytest.fixture(scope="module")
def tiny_run(dataset_dir, tmp_path_factory, monkeypatch_module):
    run = tmp_path_factory.mktemp("predict-run")
    cfg = tiny_config(**{"train.resolution": 64, "train.steps": 2})
    train(cfg, RunOptions(data_dir=dataset_dir, run_dir=run, device="cpu", progress=False))
    return run


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    # No VGG weights here; the trainer disables the perceptual term (and says so) by itself.
    mp.setenv("TORCH_HOME", "/nonexistent-torch-home")
    yield mp
    mp.undo()


def test_unmask_aligned_crops_keeps_pixels_outside_the_map(tiny_run, celeba_images):
    unmasker = Unmasker.from_checkpoint(tiny_run)
    (t,) = image_to_triplets(celeba_images[0], n=1, res=64, seed=0)
    outputs, maps = unmasker.unmask_crops(t.masked[None], t.map[None])
    assert outputs.shape == (1, 64, 64, 3) and outputs.dtype == np.uint8
    np.testing.assert_array_equal(maps[0], t.map)
    outside = t.map == 0
    np.testing.assert_array_equal(outputs[0][outside], t.masked[outside])  # MURF, exactly
    # With predicted maps, the map is binary and the output keeps the input wherever the map is 0.
    outputs, maps = unmasker.unmask_crops(t.masked[None])
    assert set(np.unique(maps)) <= {0, 255}
    np.testing.assert_array_equal(outputs[0][maps[0] == 0], t.masked[maps[0] == 0])


def test_unmask_a_real_face_photo_pastes_back_only_near_the_map(tiny_run, celeba_images):
    unmasker = Unmasker.from_checkpoint(tiny_run)
    photo = load_image(celeba_images[1])
    result = unmasker(photo)
    assert not result.aligned and result.image.shape == photo.shape and result.map.shape == photo.shape[:2]
    assert result.crop_output.shape == (64, 64, 3)
    changed = np.any(result.image != photo, axis=2)
    if result.map.any():
        ys, xs = np.nonzero(result.map)
        margin = 0.25 * photo.shape[0]
        far = np.ones_like(changed)
        far[max(0, int(ys.min() - margin)):int(ys.max() + margin), max(0, int(xs.min() - margin)):int(xs.max() + margin)] = False
        assert not changed[far].any()
    else:
        assert not changed.any()


def test_unmask_real_masked_photos_or_report_no_face(tiny_run, real_masked_dir):
    unmasker = Unmasker.from_checkpoint(tiny_run)
    outcomes = []
    for path in sorted(real_masked_dir.glob("*.jpg"))[:4]:
        try:
            result = unmasker(path, aligned=False)
            assert result.image.shape == load_image(path).shape
            outcomes.append("ok")
        except NoFace:
            outcomes.append("no face")
    assert len(outcomes) == 4 and "ok" in outcomes


def test_predict_cli_writes_outputs_and_counts_failures(tiny_run, celeba_images, tmp_path):
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((120, 200, 3), 128, np.uint8))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["predict", str(celeba_images[2]), str(blank), "-o", str(out),
                                    "--checkpoint", str(tiny_run)])
    assert res.exit_code == 0, res.output
    assert (out / f"{celeba_images[2].stem}.png").is_file() and (out / f"{celeba_images[2].stem}_map.png").is_file()
    assert "1 skipped" in res.output and "no face" in res.output
