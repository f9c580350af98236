"""Prediction on aligned crops and on real photos, with a tiny trained model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from maskgen.compose import image_to_triplets
from maskgen.landmarks import NoFace
from maskgen.source import load_image
from tests.maskgen.test_bad_input import LIMIT_W, png_header_only
from tests.unmask.testutils import tiny_config
from unmask.cli import main
from unmask.predict import Unmasker, grow_maps, plan_outputs
from unmask.training.loop import train
from unmask.training.options import RunOptions


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
    np.testing.assert_array_equal(maps[0], t.map)  # the map given, not grown
    # Stage 2 fills the map grown by a pixel (MAP_GROWTH, at least one): the rim round it is repainted too.
    filled = cv2.dilate(t.map, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))) > 0
    np.testing.assert_array_equal(grow_maps(t.map) > 0, filled)
    np.testing.assert_array_equal(outputs[0][~filled], t.masked[~filled])  # MURF, exactly
    rim = filled & (t.map == 0)
    assert rim.sum() > 20 and np.any(outputs[0][rim] != t.masked[rim])
    # grow=False (an exact ground-truth map): only the map itself is filled; a bool map is the same map.
    exact, _ = unmasker.unmask_crops(t.masked[None], t.map[None] > 0, grow=False)
    np.testing.assert_array_equal(exact[0][t.map == 0], t.masked[t.map == 0])
    assert np.any(exact[0][t.map > 0] != t.masked[t.map > 0])
    # With predicted maps, the map is binary and the output keeps the input wherever the grown map is 0.
    outputs, maps = unmasker.unmask_crops(t.masked[None])
    assert set(np.unique(maps)) <= {0, 255}
    kept = grow_maps(maps[0]) == 0
    np.testing.assert_array_equal(outputs[0][kept], t.masked[kept])


def test_grow_maps_grows_by_a_share_of_the_crop():
    one = np.zeros((2, 128, 128), np.uint8)
    one[0, 60, 60] = 255
    grown = grow_maps(one)
    assert grown.shape == one.shape and grown.dtype == np.uint8 and not grown[1].any()
    assert grown[0].sum() // 255 == 5  # a one-pixel disc: the pixel and its four neighbours
    big = np.zeros((512, 512), bool)
    big[200:300, 200:300] = True
    ring = (grow_maps(big) > 0) & ~big
    assert ring[199, 250] and ring[196, 250] and not ring[195, 250]  # 4 px at 512
    np.testing.assert_array_equal(grow_maps(big.astype(np.uint8) * 255), grow_maps(big))
    assert grow_maps(np.zeros((0, 64, 64), np.uint8)).shape == (0, 64, 64)
    with pytest.raises(ValueError, match="not 0/1"):  # would read as an empty map
        grow_maps(big.astype(np.uint8))
    assert not grow_maps(np.zeros((64, 64), np.float32)).any()


def test_unmask_a_real_face_photo_pastes_back_only_near_the_map(tiny_run, celeba_images):
    unmasker = Unmasker.from_checkpoint(tiny_run)
    photo = load_image(celeba_images[1])
    result = unmasker(photo)
    assert not result.aligned and result.image.shape == photo.shape and result.map.shape == photo.shape[:2]
    size = result.crop_map.shape[0]  # the training crop and its context (unmask.views)
    assert size == 64 + 2 * unmasker.margin and result.crop_output.shape == (size, size, 3)
    changed = np.any(result.image != photo, axis=2)
    if result.map.any():
        ys, xs = np.nonzero(result.map)
        margin = 0.25 * photo.shape[0]
        far = np.ones_like(changed)
        far[max(0, int(ys.min() - margin)):int(ys.max() + margin),
            max(0, int(xs.min() - margin)):int(xs.max() + margin)] = False
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


def test_outputs_of_faces_comparisons_and_folders_never_meet(tmp_path):
    photos = tmp_path / "photos"
    for rel in ("a.jpg", "a_face00.jpg", "a_FACE3_MAP.jpg", "a_compare.jpg", "results.jsonl/e.jpg",
                "sub/results.jsonl/f.jpg"):
        _touch(photos / rel)
    plan, skipped = plan_outputs([photos], tmp_path / "out")
    out = {p.source.relative_to(photos).as_posix(): p for p in plan}
    assert out["a.jpg"].image.name == "a.png" and out["a.jpg"].face(0, "crop").name == "a_face00.png"
    assert out["a.jpg"].face(12, "output").name == "a_face12_unmasked.png"
    assert out["a.jpg"].compare.name == "a_compare.png"
    # a_face00.png is a.jpg's first face's crop, a_FACE3_MAP.png its fourth face's map (ignoring case).
    assert out["a_face00.jpg"].image.name == "a_face00.jpg.png"
    assert out["a_FACE3_MAP.jpg"].image.name == "a_FACE3_MAP.jpg.png"
    assert out["a_compare.jpg"].image.name == "a_compare.jpg.png"
    assert out["sub/results.jsonl/f.jpg"].image == tmp_path / "out/sub/results.jsonl/f.png"  # only the top one is taken
    assert skipped == [(str(photos / "results.jsonl/e.jpg"),
                        f"its outputs would go into {tmp_path / 'out/results.jsonl'}, "
                        "the results file: rename its folder")]
    names = [str(q).casefold() for p in plan for q in (p.image, p.map, p.compare, *(p.face(k, kind) for k in range(12)
                                                                              for kind in ("crop", "output", "map")))]
    assert len(names) == len(set(names))

    # A folder given by name (b.png) and a file whose image would have that name: the folder keeps it.
    folder = _touch(tmp_path / "b.png" / "c.jpg").parent
    loose = _touch(tmp_path / "loose" / "b.jpg")
    plan, _ = plan_outputs([loose, photos, folder], tmp_path / "out")
    images = {p.source: p.image.relative_to(tmp_path / "out").as_posix() for p in plan}
    assert images[folder / "c.jpg"] == "b.png/c.png" and images[loose] == "b.jpg.png"


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
    results = photos / "out" / "results.jsonl"  # times differ from run to run; the rest is the same
    written = {p: p.read_bytes() for p in photos.rglob("*") if p.is_file() and p != results}
    second = CliRunner().invoke(main, args)
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert "1 unmasked" in second.output and "0 skipped" in second.output, second.output
    assert sorted(p.relative_to(photos).as_posix() for p in written) == ["face.jpg", "out/face.png", "out/face_map.png"]
    assert {p: p.read_bytes() for p in photos.rglob("*") if p.is_file() and p != results} == written
    assert {json.loads(line)["input"] for line in results.read_text().splitlines()} == {str(photos / "face.jpg")}


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


def test_predict_cli_records_every_face_and_writes_crops_maps_and_comparisons(tiny_run, real_masked_dir, tmp_path):
    photos = tmp_path / "in"
    _touch(photos / "group.jpg").write_bytes((real_masked_dir / "0761.jpg").read_bytes())  # three people
    cv2.imwrite(str(photos / "blank.png"), np.full((120, 200, 3), 128, np.uint8))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["predict", str(photos), "-o", str(out), "--checkpoint", str(tiny_run),
                                    "--save-crops", "--save-maps", "--compare"])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert records[0] == {"input": str(photos / "blank.png"), "skipped": "no face detected"}
    faces = records[1:]
    assert len(faces) >= 2 and f"1 unmasked ({len(faces)} faces)" in res.output, res.output
    photo = _read(photos / "group.jpg")
    h, w = photo.shape[:2]
    for k, face in enumerate(faces):
        assert face["input"] == str(photos / "group.jpg") and face["image"] == str(out / "group.png")
        assert face["face"] == k
        x0, y0, x1, y1 = face["box"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and len(face["points"]) == 5
        assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in face["points"][:2])  # the eyes are in the box
        assert 0 <= face["coverage"] <= 1 and face["seconds"] > 0
        crop, output, crop_map = (_read(out / f"group_face{k:02d}{suffix}.png") for suffix in ("", "_unmasked", "_map"))
        size, m = face["crop_size"], (face["crop_size"] - 64) // 2  # the crop and the context around it
        assert crop.shape == output.shape == (size, size, 3) and crop_map.shape == (size, size) and size > 64
        # the coverage is of the face crop's part on the photo
        assert set(np.unique(crop_map)) <= {0, 255} and face["coverage"] >= (crop_map[m:-m, m:-m] > 0).mean() - 1e-6
        assert isinstance(face["map_at_crop_edge"], bool) and isinstance(face["map_at_photo_edge"], bool)
    sheet = _read(out / "group_compare.png")
    assert sheet.shape[0] == h and 3 * w < sheet.shape[1] < 3.1 * w
    np.testing.assert_array_equal(sheet[:, :w], photo)
    np.testing.assert_array_equal(sheet[:, -w:], _read(out / "group.png"))
    assert not list(out.glob("blank_*"))

    again = tmp_path / "again"
    res = CliRunner().invoke(main, ["predict", str(photos / "group.jpg"), "-o", str(again),
                                    "--checkpoint", str(tiny_run), "--max-faces", "1"])
    assert res.exit_code == 0 and "1 unmasked (1 faces)" in res.output, res.output
    (only,) = [json.loads(line) for line in (again / "results.jsonl").read_text().splitlines()]
    assert only["box"] == faces[0]["box"] and sorted(p.name for p in again.iterdir()) == [
        "group.png", "group_map.png", "results.jsonl"]
    res = CliRunner().invoke(main, ["predict", str(photos / "group.jpg"), "-o", str(again),
                                    "--checkpoint", str(tiny_run), "--min-face", "5000"])
    assert res.exit_code == 1 and "no face of at least 5000 px (--min-face" in res.output, res.output
    for bad in (["--max-faces", "0"], ["--min-face", "0"], ["--max-faces", "1000"]):
        res = CliRunner().invoke(main, ["predict", str(photos), "-o", str(again), "--checkpoint", str(tiny_run), *bad])
        assert res.exit_code == 2 and bad[0] in res.output, res.output


def test_predict_cli_fails_when_nothing_is_done(tiny_run, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    res = CliRunner().invoke(main, ["predict", str(bad), "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_run)])
    assert res.exit_code == 1 and "skipped" in res.output and "no input could be unmasked" in res.output


def test_predict_cli_stops_with_one_line_when_a_write_fails(tiny_run, celeba_images, tmp_path, monkeypatch):
    import errno

    import unmask.predict_files

    def full_disk(path, image):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(unmask.predict_files, "write_png_atomic", full_disk)
    res = CliRunner().invoke(main, ["predict", str(celeba_images[2]), "-o", str(tmp_path / "out"),
                                    "--checkpoint", str(tiny_run)])
    assert res.exit_code == 1 and res.exception is not None and isinstance(res.exception, SystemExit)
    assert f"cannot write {tmp_path / 'out' / celeba_images[2].stem}.png: No space left on device" in res.output


def test_predict_cli_says_in_one_line_when_the_results_file_cannot_be_written(tiny_run, celeba_images, tmp_path,
                                                                              monkeypatch):
    import errno

    import unmask.predict_files

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(unmask.predict_files, "write_bytes_atomic", full_disk)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["predict", str(celeba_images[2]), "-o", str(out), "--checkpoint", str(tiny_run)])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    last_line = res.output.strip().splitlines()[-1]
    assert last_line == f"Error: cannot write {out / 'results.jsonl'}: No space left on device"
    assert (out / f"{celeba_images[2].stem}.png").is_file()  # the images were written before
