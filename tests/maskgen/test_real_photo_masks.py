"""The masks real photos show: neck gaiters and bandanas, sports masks, printed masks, creases and occluders,
on real CelebA faces: their maps, their records, determinism and the checks of their options."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from maskgen import format as fmt
from maskgen import templates as tpl
from maskgen.align import align_face
from maskgen.build import BuildConfig, build
from maskgen.cli import main
from maskgen.compose import MaskOptions, image_to_triplets, make_triplet
from maskgen.face_points import CHIN, JAW, NOSE_TIP
from maskgen.landmarks import locate
from maskgen.occluders import MAX_HIDDEN, OCCLUDERS
from maskgen.prints import PRINT_MODES
from maskgen.reader import iter_raw_samples
from maskgen.source import load_image

NONE = {"occluder_share": 0, "print_share": 0, "fold_share": 0}


@pytest.fixture(scope="module")
def faces(celeba_images):
    return celeba_images[:: max(1, len(celeba_images) // 24)][:24]


def _check_map(t, res):
    """The map is the visible mask: 0/255, and masked differs from unmasked exactly there."""
    assert t.masked.shape == t.unmasked.shape == (res, res, 3)
    assert set(np.unique(t.map)) <= {0, 255}
    changed = np.any(t.masked != t.unmasked, axis=2)
    inside = t.map > 0
    assert not np.any(changed & ~inside)
    assert changed[inside].mean() > 0.9
    assert abs(t.meta.coverage - inside.mean()) < 1e-6


@pytest.mark.parametrize("res", [128, 256])
@pytest.mark.parametrize("kind", ["gaiter", "bandana"])
def test_neck_coverings_run_past_the_jaw_off_the_crop(faces, kind, res):
    opts = MaskOptions.create([kind], wear=["correct", "nose"], **NONE)
    for i, path in enumerate(faces[:6]):
        (t,) = image_to_triplets(path, n=1, res=res, seed=i, options=opts)
        assert t.meta.mask_type == kind
        _check_map(t, res)
        inside = t.map > 0
        lm = np.asarray(t.meta.landmarks)
        x, y = np.round(lm[CHIN]).astype(int)
        # below the chin, straight down to the crop's bottom edge, all of it is in the map
        assert inside[min(y + 1, res - 1):, x].all(), (path, kind)
        assert inside[-1].sum() > (0.25 if kind == "gaiter" else 0.03) * res
        # the lower jaw and a little below it (the neck) are covered; the eyes are not
        for point in lm[JAW][5:12]:
            px, py = np.round(point).astype(int)
            assert inside[min(py + 2, res - 1), px], (path, kind, point)
        assert not inside[np.round(lm[36:48, 1]).astype(int), np.round(lm[36:48, 0]).astype(int)].any()
        tip = np.round(lm[NOSE_TIP]).astype(int)
        assert inside[tip[1], tip[0]] == (t.meta.wear == "correct")


def test_a_gaiter_worn_with_the_chin_out_is_worn_correctly_or_refused(faces):
    (t,) = image_to_triplets(faces[0], n=1, res=128, options=MaskOptions.create(["gaiter", "surgical"],
                                                                                wear=["chin"], **NONE))
    assert (t.meta.mask_type, t.meta.wear) in (("gaiter", "correct"), ("surgical", "chin"))
    with pytest.raises(ValueError, match="gaiters and bandanas cover the chin"):
        MaskOptions.create(["gaiter", "bandana"], wear=["chin"])


def test_sports_masks_have_two_valves_on_the_cheeks(faces):
    template = tpl.builtin_template("sports")
    a, b, c, _, e, _ = template.anchors
    half, height = (c[0] - a[0]) / 2, e[1] - b[1]
    for du, dv in tpl.SPORTS_VALVES:  # the valve is dark plastic: much darker than the fabric around it
        x, y = int((a[0] + c[0]) / 2 + du * half), int(b[1] + dv * height)
        ring = template.shade[y - 60:y + 60, x - 60:x + 60]
        assert template.shade[y, x] < 0.75 * np.median(ring)
    opts = MaskOptions.create(["sports"], **NONE)
    for i, path in enumerate(faces[:4]):
        (t,) = image_to_triplets(path, n=1, res=128, seed=i, options=opts)
        assert t.meta.mask_type == "sports"
        _check_map(t, 128)


def test_prints_change_the_colours_not_the_map(faces):
    printed = MaskOptions.create(["cloth", "gaiter", "bandana"], occluder_share=0, fold_share=0, print_share=1)
    plain = MaskOptions.create(["cloth", "gaiter", "bandana"], **NONE)
    modes = set()
    for i, path in enumerate(faces[:12]):
        (t,) = image_to_triplets(path, n=1, res=128, seed=i, options=printed)
        (u,) = image_to_triplets(path, n=1, res=128, seed=i, options=plain)
        _check_map(t, 128)
        assert t.meta.texture == "print" and t.meta.print in PRINT_MODES and u.meta.print == "none"
        assert np.array_equal(t.map, u.map) and (t.meta.mask_type, t.meta.color) == (u.meta.mask_type, u.meta.color)
        assert np.any(t.masked != u.masked)
        modes.add(t.meta.print)
    assert modes == set(PRINT_MODES)


def test_a_photo_print_is_cut_from_the_other_image_given(faces):
    image = load_image(faces[0])
    face = align_face(image, locate(image).points, 128)
    other = load_image(faces[1])
    opts = MaskOptions.create(["cloth"], occluder_share=0, fold_share=0, print_share=1)
    seen = 0
    for v in range(20):
        t = make_triplet(face, opts, 0, f"k_{v:02d}", photo=("other.jpg", lambda: other))
        made_up = make_triplet(face, opts, 0, f"k_{v:02d}")
        if t.meta.print == "photo":
            seen += 1
            assert t.meta.print_source == "other.jpg" and made_up.meta.print_source == ""
            assert np.array_equal(t.map, made_up.map) and np.any(t.masked != made_up.masked)
        else:
            assert t.meta.print_source == "" and np.array_equal(t.masked, made_up.masked)
    assert seen


def test_creases_shade_fabric_masks_only(faces):
    creased = MaskOptions.create(["cloth"], occluder_share=0, print_share=0, fold_share=1)
    plain = MaskOptions.create(["cloth"], **NONE)
    for i, path in enumerate(faces[:4]):
        (t,) = image_to_triplets(path, n=1, res=128, seed=i, options=creased)
        (u,) = image_to_triplets(path, n=1, res=128, seed=i, options=plain)
        _check_map(t, 128)
        assert t.meta.folds > 0 and u.meta.folds == 0
        assert np.array_equal(t.map, u.map) and np.any(t.masked != u.masked)
    (t,) = image_to_triplets(faces[0], n=1, res=128, options=MaskOptions.create(["surgical"], fold_share=1))
    assert t.meta.folds == 0


@pytest.mark.parametrize("name", OCCLUDERS)
def test_occluded_pixels_leave_the_map(faces, name):
    opts = MaskOptions.create(["surgical", "gaiter", "cloth"], occluders=[name], occluder_share=1, print_share=0,
                              fold_share=0)
    clear = MaskOptions.create(["surgical", "gaiter", "cloth"], **NONE)
    drawn = 0
    for i, path in enumerate(faces[:8]):
        (t,) = image_to_triplets(path, n=1, res=128, seed=i, options=opts)
        (u,) = image_to_triplets(path, n=1, res=128, seed=i, options=clear)
        _check_map(t, 128)
        if t.meta.occluder == "none":  # it would have hidden too much of the mask
            assert np.array_equal(t.map, u.map)
            continue
        drawn += 1
        assert t.meta.occluder == name and 0 < t.meta.occluded <= MAX_HIDDEN
        # the occluder is in front of the face in both images; the pixels it hides are not in the map
        hidden = (u.map > 0) & (t.map == 0)
        assert not np.any((t.map > 0) & (u.map == 0))
        assert abs(hidden.sum() / (u.map > 0).sum() - t.meta.occluded) < 1e-3
        assert np.array_equal(t.masked[hidden], t.unmasked[hidden])
        assert np.any(t.unmasked != u.unmasked)
    assert drawn >= 5


def test_default_mix_has_the_new_kinds_and_the_old_list_its_old_weights():
    assert tpl.DEFAULT_TYPE_WEIGHTS["gaiter"] == 0.08 and tpl.DEFAULT_TYPE_WEIGHTS["bandana"] == 0.05
    assert abs(sum(tpl.DEFAULT_TYPE_WEIGHTS.values()) - 1) < 1e-6
    old = MaskOptions.create(["surgical", "n95", "kn95", "cloth", "gas"])
    assert dict(old.type_weights) == {"surgical": 0.35, "n95": 0.15, "kn95": 0.2, "cloth": 0.2, "gas": 0.1}
    default = MaskOptions()
    assert default.occluder_share == 0.1 and default.print_share > 0 and default.fold_share > 0


FEATURES = dict(res=128, pairs=24, seed=2, shard_size=8, progress=False,
                mask=MaskOptions.create(["gaiter", "bandana", "cloth", "sports"], occluder_share=0.5, print_share=0.6,
                                        fold_share=0.5))


def _samples(folder: Path) -> dict[str, dict]:
    return {raw["__key__"]: {k: v for k, v in raw.items() if not k.startswith("__")}
            for raw in iter_raw_samples(folder)}


def test_records_and_determinism_across_workers_and_parts(small_celeba, tmp_path):
    one = tmp_path / "one"
    build(BuildConfig(source=str(small_celeba), out=str(one), workers=1, **FEATURES))
    build(BuildConfig(source=str(small_celeba), out=str(tmp_path / "two"), workers=2, **FEATURES))
    assert _samples(one) == _samples(tmp_path / "two")
    for k in (0, 1):
        build(BuildConfig(source=str(small_celeba), out=str(tmp_path / "parts"), workers=1, part=(k, 2), **FEATURES))
    parts = _samples(tmp_path / "parts")
    whole = _samples(one)
    # a part plans its own pairs; a sample with the same key is the same sample, photo prints included
    same = set(parts) & set(whole)
    assert same and all(parts[k] == whole[k] for k in same)

    manifest = pd.read_parquet(one / fmt.MANIFEST)
    for column in ("print", "print_source", "folds", "occluder", "occluded"):
        assert column in manifest
    assert set(manifest["mask_type"]) <= {"gaiter", "bandana", "cloth", "sports"}
    assert (manifest["occluder"] != "none").any() and (manifest["print"] != "none").any()
    photos = manifest[manifest["print_source"] != ""]
    assert (photos["print"] == "photo").all() and (photos["print_source"] != photos["source"]).all()
    stats = json.loads((one / fmt.STATS).read_text())
    assert sum(stats["by_print"].values()) == sum(stats["by_occluder"].values()) == len(manifest)
    assert stats["folds"] == int((manifest["folds"] > 0).sum())
    meta = json.loads(next(iter(whole.values()))["json"])
    assert {"print", "print_source", "folds", "occluder", "occluded"} <= set(meta)


@pytest.mark.parametrize("args, message", [
    (["--occluders", "hand,sock"], "unknown occluder"),
    (["--occluder-share", "1.5"], "must be in 0..1"),
    (["--print-share", "-0.1"], "must be in 0..1"),
    (["--fold-share", "nan"], "must be in 0..1"),
    (["--mask-types", "gaiter", "--wear", "chin"], "cover the chin"),
])
def test_bad_options_are_one_line_before_anything_is_written(small_celeba, tmp_path, args, message):
    res = CliRunner().invoke(main, ["build", "--source", str(small_celeba), "--out", str(tmp_path / "x"), *args,
                                    "--no-progress"])
    assert res.exit_code != 0 and message in res.output, res.output
    assert len([line for line in res.output.strip().splitlines() if line.startswith("Error")]) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("shape", [(1, 40, 3), (40, 1, 3), (1, 1, 3)])
def test_a_photo_print_cut_from_a_one_pixel_image_is_that_pixel_stretched(shape):
    from maskgen.prints import _photo_patch

    photo = np.full(shape, 77, np.uint8)
    patch = _photo_patch(photo, np.random.default_rng(0), (20, 30))
    assert patch.shape == (20, 30, 3) and (patch == 77).all()
