"""Prediction on aligned crops and on real photos, with a tiny trained model."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from maskgen.compose import image_to_triplets
from maskgen.landmarks import NoFace
from maskgen.source import load_image
from unmask.cli import main
from unmask.predict import Unmasker, plan_outputs
from unmask.training.loop import train
from unmask.training.options import RunOptions
from tests.maskgen.test_bad_input import LIMIT_W, png_header_only
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
    cv2.imwrite(str(blank), np.full((120, 200, 3), 128, np.uint8))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["predict", str(celeba_images[2]), str(blank), "-o", str(out),
                                    "--checkpoint", str(tiny_run)])
    assert res.exit_code == 0, res.output
    assert (out / f"{celeba_images[2].stem}.png").is_file() and (out / f"{celeba_images[2].stem}_map.png").is_file()
    assert "1 skipped" in res.output and "no face" in res.output


NOT_UTF8 = os.fsdecode(b"c caf\xe9.jpg")  # a Latin-1 name, as old cameras and archives write them


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_outputs_mirror_the_input_tree_and_never_share_a_name(tmp_path):
    photos = tmp_path / "photos"
    long_name = "l" * 250 + ".jpg"
    for rel in ("sub1/face.jpg", "sub2/face.jpg", "a.jpg", "a.png", "x.jpg", "x_map.jpg", NOT_UTF8, long_name):
        _touch(photos / rel)
    (photos / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    plan, skipped = plan_outputs([photos], tmp_path / "out")
    out = {os.fsdecode(p.source.relative_to(photos)): p for p in plan}
    assert out["sub1/face.jpg"].image == tmp_path / "out/sub1/face.png"
    assert out["sub2/face.jpg"].image == tmp_path / "out/sub2/face.png"
    assert out["sub2/face.jpg"].map == tmp_path / "out/sub2/face_map.png"
    assert {out["a.jpg"].image.name, out["a.png"].image.name} == {"a.png", "a.png.png"}
    assert out["x_map.jpg"].image.name == "x_map.jpg.png"  # x_map.png is x.jpg's map
    assert out[NOT_UTF8].image == tmp_path / "out" / (NOT_UTF8[:-4] + ".png")
    assert all(len(os.fsencode(p.map.name)) <= 255 and p.map.name == p.image.name[:-4] + "_map.png" for p in plan)
    assert out[long_name].image.name.startswith("l" * 200) and out[long_name].image.parent == tmp_path / "out"
    assert skipped == [(str(photos / "gone.jpg"), "dangling symbolic link (its target does not exist)")]
    names = [str(q).casefold() for p in plan for q in (p.image, p.map)]
    assert len(names) == len(set(names)) == 2 * len(plan) == 16

    # Several folders (two of them named alike) and a file from elsewhere: kept apart.
    other = _touch(tmp_path / "other" / "photos" / "a.jpg").parent
    single = _touch(tmp_path / "single" / "a.jpg")
    plan, _ = plan_outputs([photos, other, single], tmp_path / "out")
    images = [p.image.relative_to(tmp_path / "out").as_posix() for p in plan]
    assert "photos/sub1/face.png" in images and "photos-2/a.png" in images and images[-1] == "a.png"
    assert len(set(images)) == len(images)


def _read(path: str | Path) -> np.ndarray:
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)


def test_predict_cli_on_odd_names_duplicates_a_corrupt_file_and_a_large_photo(tiny_run, celeba_images, tmp_path):
    photos = tmp_path / "in"
    for rel, image in (("sub1/face.jpg", celeba_images[3]), ("sub2/face.jpg", celeba_images[4]),
                       ("a good ü.jpg", celeba_images[5]), (NOT_UTF8, celeba_images[6])):
        _touch(photos / rel).write_bytes(image.read_bytes())
    (photos / "b corrupt.jpg").write_bytes(celeba_images[7].read_bytes()[:300])  # between good ones
    face = cv2.imread(str(celeba_images[8]))
    large = np.full((660, 4200, 3), 90, np.uint8)  # wider than load_image's MAX_SIDE (4096)
    large[:, 1800:1800 + 534] = cv2.resize(face, (534, 660), interpolation=cv2.INTER_CUBIC)
    assert cv2.imencode(".jpg", large)[1].tofile(photos / "large.jpg") is None
    loose = tmp_path / "elsewhere" / os.fsdecode(b"\xff.jpg")  # a file argument named with a bad byte
    _touch(loose).write_bytes(celeba_images[9].read_bytes())
    (photos / "bomb.png").write_bytes(png_header_only(LIMIT_W + 1, 20000))  # past the pixel limit: never decoded
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["predict", str(photos), str(loose), "-o", str(out), "--checkpoint", str(tiny_run)])
    assert res.exit_code == 0, res.output
    assert "6 unmasked" in res.output and "2 skipped" in res.output and "b corrupt.jpg" in res.output
    assert f"skipped {photos / 'bomb.png'}: image too large ({LIMIT_W + 1}x20000 px" in res.output
    expected = {"sub1/face.png": celeba_images[3], "sub2/face.png": celeba_images[4],
                "a good ü.png": celeba_images[5], NOT_UTF8[:-4] + ".png": celeba_images[6],
                "large.png": photos / "large.jpg", os.fsdecode(b"\xff.png"): loose}
    for rel, source in expected.items():
        result, result_map = _read(out / rel), _read(out / rel.replace(".png", "_map.png"))
        assert result.shape == _read(source).shape and result_map.shape == result.shape[:2], rel
    assert not (out / "b corrupt.png").exists()


def test_predict_cli_reruns_into_an_output_folder_inside_the_inputs_without_taking_outputs_as_inputs(
        tiny_run, celeba_images, tmp_path):
    photos = tmp_path / "photos"
    _touch(photos / "face.jpg").write_bytes(celeba_images[3].read_bytes())
    args = ["predict", str(photos), "-o", str(photos / "out"), "--checkpoint", str(tiny_run)]
    first = CliRunner().invoke(main, args)
    written = {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()}
    second = CliRunner().invoke(main, args)
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert "1 unmasked" in second.output and "0 skipped" in second.output, second.output
    assert sorted(p.relative_to(photos).as_posix() for p in written) == ["face.jpg", "out/face.png", "out/face_map.png"]
    assert {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()} == written


def test_predict_cli_refuses_a_checkpoint_without_stage_1_in_one_line(tiny_run, celeba_images, tmp_path):
    gan = tiny_run / "checkpoints" / "gan.pt"
    res = CliRunner().invoke(main, ["predict", str(celeba_images[2]), "-o", str(tmp_path / "out"),
                                    "--checkpoint", str(gan)])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert lines[0] == (f"Error: {gan} holds no stage-1 (M-Seg) model to predict the maps its generator needs: "
                        "give a run directory with both checkpoints (seg.pt and gan.pt)")
    assert not (tmp_path / "out").exists()
    # In Python, a caller that passes the maps itself may use it.
    unmasker = Unmasker.from_checkpoint(gan, maps_given=True)
    crops, maps = np.zeros((1, 64, 64, 3), np.uint8), np.full((1, 64, 64), 255, np.uint8)
    assert unmasker.unmask_crops(crops, maps)[0].shape == (1, 64, 64, 3)


def test_predict_cli_fails_when_nothing_is_done(tiny_run, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    res = CliRunner().invoke(main, ["predict", str(bad), "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_run)])
    assert res.exit_code == 1 and "skipped" in res.output and "no input could be unmasked" in res.output


def test_predict_cli_stops_with_one_line_when_a_write_fails(tiny_run, celeba_images, tmp_path, monkeypatch):
    import errno

    import unmask.predict

    def full_disk(path, image):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(unmask.predict, "write_png_atomic", full_disk)
    res = CliRunner().invoke(main, ["predict", str(celeba_images[2]), "-o", str(tmp_path / "out"),
                                    "--checkpoint", str(tiny_run)])
    assert res.exit_code == 1 and res.exception is not None and isinstance(res.exception, SystemExit)
    assert f"cannot write {tmp_path / 'out' / celeba_images[2].stem}.png: No space left on device" in res.output
