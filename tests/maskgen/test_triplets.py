"""Triplet invariants on real CelebA faces."""

import numpy as np
import pytest

from maskgen.compose import MaskOptions, encode, image_to_triplets
from maskgen.face_points import CHIN, MOUTH, NOSE_TIP, five_points
from maskgen.format import WEARS
from maskgen.landmarks import detect, from_five_points
from maskgen.neckwear import NECK_TYPES
from maskgen.source import load_image
from maskgen.templates import MASK_TYPES


@pytest.fixture(scope="module")
def faces(celeba_images):
    return celeba_images[:: max(1, len(celeba_images) // 24)][:24]




def _check_triplet(t, res):
    assert t.masked.shape == t.unmasked.shape == (res, res, 3)
    assert t.map.shape == (res, res) and t.map.dtype == np.uint8
    assert set(np.unique(t.map)) <= {0, 255}
    changed = np.any(t.masked != t.unmasked, axis=2)
    inside = t.map > 0
    # Outside the map the masked image is exactly the unmasked one (before encoding) ...
    assert not np.any(changed & ~inside)
    # ... and inside it the mask really replaces the face.
    assert changed[inside].mean() > 0.9
    # A face mask covers a plausible share of an aligned face crop (a mask on the chin less, a neck
    # covering more: it runs down to the crop's bottom edge; an occluder hides some of it).
    low = (0.02 if t.meta.wear == "mouth" else 0.05) * (1 - t.meta.occluded)
    assert low < t.meta.coverage < (0.6 if t.meta.mask_type in NECK_TYPES else 0.40)
    assert abs(t.meta.coverage - inside.mean()) < 1e-6
    lm = np.asarray(t.meta.landmarks)
    assert lm.shape == (68, 2) and np.all((lm >= 0) & (lm < res))

    def covered(points):
        points = np.atleast_2d(points)
        return inside[np.round(points[:, 1]).astype(int), np.round(points[:, 0]).astype(int)].mean()

    # What the mask covers is what its wear says: never the eyes (a pack's own art may reach them, e.g.
    # MaskTheFace's gas mask seen from the side); the nose tip only when worn correctly or below the
    # chin; the mouth unless it sits on the chin; the chin tip unless lifted off it.
    assert covered(lm[36:48]) == 0 or t.meta.generator != "builtin"
    if t.meta.occluder != "none":  # a hand, hair or a phone hides part of the mask: its pixels are not in the map
        return
    wear = t.meta.wear
    assert (covered(lm[NOSE_TIP]) == 1) == (wear in ("correct", "chin")), wear
    if wear == "mouth":
        assert covered(lm[MOUTH]) == 0 and covered(lm[CHIN]) == 1
    else:
        assert covered(lm[MOUTH]) > 0.9, wear
        assert covered(lm[CHIN]) == (0 if wear == "chin" else 1), wear


@pytest.mark.parametrize("res", [128, 256, 512])
def test_triplet_invariants_on_real_faces(faces, res):
    n_ok = 0
    for i, path in enumerate(faces[:8]):
        for t in image_to_triplets(path, n=2, res=res, seed=i):
            _check_triplet(t, res)
            n_ok += 1
    assert n_ok == 16


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_every_mask_type(faces, kind):
    opts = MaskOptions.create([kind])
    for i, path in enumerate(faces[:4]):
        (t,) = image_to_triplets(path, n=1, res=256, seed=i, options=opts)
        assert t.meta.mask_type == kind
        _check_triplet(t, 256)


@pytest.mark.parametrize("wear", WEARS)
def test_every_wear_on_every_mask_type(faces, wear):
    for kind in MASK_TYPES:
        if wear == "chin" and kind in NECK_TYPES:  # they cover the chin: refused (test_real_photo_masks.py)
            continue
        opts = MaskOptions.create([kind], wear=[wear])
        for i, path in enumerate(faces[:3]):
            (t,) = image_to_triplets(path, n=1, res=128, seed=i, options=opts)
            assert (t.meta.wear, t.meta.mask_type, t.meta.generator) == (wear, kind, "builtin")
            _check_triplet(t, 128)


def test_wear_weights_are_followed(faces):
    opts = MaskOptions.create(wear={"correct": 0.5, "chin": 0.5, "nose": 0})
    wears = [t.meta.wear for i, path in enumerate(faces[:10]) for t in image_to_triplets(path, n=4, res=128, seed=i,
                                                                                         options=opts)]
    assert set(wears) == {"correct", "chin"}
    assert 10 <= wears.count("chin") <= 30


def test_template_share_mixes_packs_with_builtin_masks(faces, template_pack):
    opts = MaskOptions.create(templates=[template_pack], template_share=0.5)
    metas = [t.meta for i, path in enumerate(faces[:10]) for t in image_to_triplets(path, n=4, res=128, seed=i,
                                                                                     options=opts)]
    pack = [m for m in metas if m.generator != "builtin"]
    assert {m.generator for m in pack} == {template_pack.name}
    assert all(m.color == "template" for m in pack) and all(m.color != "template" for m in metas if m not in pack)
    assert 10 <= len(pack) <= 30
    # share 0: packs are checked but never used; share 1 (the default with packs): packs only
    assert all(t.meta.generator == "builtin" for t in image_to_triplets(
        faces[0], n=4, res=128, options=MaskOptions.create(templates=template_pack, template_share=0)))
    assert all(t.meta.generator == template_pack.name for t in image_to_triplets(
        faces[0], n=4, res=128, options=MaskOptions.create(templates=template_pack)))


@pytest.mark.parametrize("kwargs, message", [
    ({"wear": {"correct": 1, "sideways": 1}}, "unknown wear(s) sideways"),
    ({"wear": {"correct": -1, "nose": 2}}, "wear weights must be non-negative"),
    ({"wear": {"correct": 0, "nose": 0}}, "wear weights must be non-negative and not all zero"),
    ({"mask_types": {"surgical": 0}}, "mask type weights must be non-negative and not all zero"),
    ({"template_share": 0.5}, "--template-share needs --templates"),
])
def test_bad_mask_options_are_refused_with_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MaskOptions.create(**kwargs)


def test_unreadable_pack_is_refused_before_anything_is_made(tmp_path, template_pack):
    (tmp_path / "masks.cfg").write_text("[broken]\nmask_a = 1, 2\n")
    with pytest.raises(ValueError, match="mask_a..mask_f"):
        MaskOptions.create(templates=[template_pack, tmp_path])
    with pytest.raises(ValueError, match="template-share must be in 0..1"):
        MaskOptions.create(templates=template_pack, template_share=1.5)


def test_masktheface_pack(faces, template_pack):
    opts = MaskOptions.create(templates=template_pack)
    seen = set()
    for i, path in enumerate(faces[:12]):
        (t,) = image_to_triplets(path, n=1, res=256, seed=i, options=opts)
        _check_triplet(t, 256)
        assert t.meta.color == "template"
        seen.add(t.meta.template)
    assert len(seen) >= 3


def test_same_seed_same_bytes_other_seed_other_mask(faces):
    a = [encode(t) for t in image_to_triplets(faces[0], n=3, res=256, seed=7)]
    b = [encode(t) for t in image_to_triplets(faces[0], n=3, res=256, seed=7)]
    c = [encode(t) for t in image_to_triplets(faces[0], n=3, res=256, seed=8)]
    assert a == b
    assert [x["masked.jpg"] for x in a] != [x["masked.jpg"] for x in c]
    # The variants of one face differ from each other.
    assert len({x["masked.jpg"] for x in a}) == 3


def test_landmarks_from_a_celeba_five_point_row_match_detection(faces):
    errors = []
    for path in faces[:10]:
        image = load_image(path)
        found = detect(image)
        placed = from_five_points(image, five_points(found.points))
        eye_dist = np.linalg.norm(found.points[42:48].mean(0) - found.points[36:42].mean(0))
        errors.append(np.abs(placed.points - found.points).mean() / eye_dist)
    # The box derived from 5 points lets the predictor find the same 68 points (within 10% of
    # the eye distance on average).
    assert np.median(errors) < 0.1, errors


@pytest.mark.parametrize("pad", [False, True])
def test_respirator_cartridges_take_a_colour_of_their_own(pad, monkeypatch):
    """A solid respirator's filters are drawn on the crop as round discs that stand out past the
    facepiece's sides (as real ones do past the cheeks): canisters in the choice's part colour, pads in
    light felt; the rest of the body keeps the body colour."""
    from maskgen import cartridges
    from maskgen.compose import MaskChoice
    from maskgen.mask import warp_template
    from maskgen.templates import builtin_template, scaled_for
    from maskgen.textures import COLORS

    monkeypatch.setattr(cartridges, "PAD_SHARE", 1.0 if pad else 0.0)
    template = builtin_template("gas")
    anchors = np.array([[70, 120], [128, 95], [186, 120], [78, 175], [128, 215], [178, 175]], np.float64)
    choice = MaskChoice(template, "black", "solid", 0, COLORS["yellow"])
    rgb, alpha, box = choice.place(anchors, 256, np.random.default_rng(0))
    level, _ = scaled_for(template, float(anchors[2, 0] - anchors[0, 0]))
    _, body_alpha, body_box = warp_template(level, level.shade, anchors, (256, 256))
    x0, y0, x1, y1 = box
    assert x0 <= body_box[0] and x1 >= body_box[2] and y0 <= body_box[1] and y1 >= body_box[3]
    body = np.zeros_like(alpha)
    body[body_box[1] - y0:body_box[3] - y0, body_box[0] - x0:body_box[2] - x0] = body_alpha
    yy, xx = np.mgrid[y0:y1, x0:x1]
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    covered = alpha > 0.9
    outside = covered & (body < 0.1)  # the filters reach past the facepiece (its body and straps)
    assert outside.sum() > 200
    yellowness = np.median(rgb[outside][:, 0] - rgb[outside][:, 2])
    if pad:
        assert np.median(luma[outside]) > 150 and yellowness < 30  # light felt (the ring is a thin rim)
    else:
        assert np.median(luma[outside]) > 100 and yellowness > 60  # the yellow part colour
    middle = covered & (np.abs(xx - 128) < 20) & (np.abs(yy - 160) < 20)
    assert middle.sum() > 500 and np.median(luma[middle]) < 40  # the black facepiece
    # the filters sit beside the anchors' sides, below the cheek line, one on each side
    left, right = covered & (xx < anchors[0, 0] - 5), covered & (xx > anchors[2, 0] + 5)
    assert left.sum() > 100 and right.sum() > 100
    assert anchors[0, 1] < np.median(yy[left]) < anchors[3, 1] + 40


def _seed_for(pad: bool) -> int:
    """A seed whose respirator gets pads (or canisters)."""
    from maskgen.cartridges import PAD_SHARE

    return next(s for s in range(100) if (np.random.default_rng(s).random() < PAD_SHARE) == pad)


@pytest.mark.parametrize("pad", [False, True])
def test_cartridges_sit_beside_the_facepiece_and_turn_with_the_face(pad):
    from maskgen.cartridges import CANISTER, PAD, PAD_SHARE, sample_cartridges

    anchors = np.array([[70, 120], [128, 95], [186, 120], [78, 175], [128, 215], [178, 175]], np.float64)
    a, d = anchors[0], anchors[3]
    style = PAD if pad else CANISTER
    span = anchors[2, 0] - anchors[0, 0]
    seeds = [s for s in range(60) if (np.random.default_rng(s).random() < PAD_SHARE) == pad][:12]
    for seed in seeds:
        rng, twin = np.random.default_rng(seed), np.random.default_rng(seed)
        left, right = sample_cartridges(anchors, rng)
        twin.random(7)
        twin.integers(2 ** 31)
        assert rng.random() == twin.random()  # a fixed number of draws
        assert left.pad == right.pad == pad
        assert left.half_axes == pytest.approx(right.half_axes)  # a frontal face: mirror images
        assert left.centre[0] + right.centre[0] == pytest.approx(anchors[0, 0] + anchors[2, 0])
        assert style.radius[0] * span <= left.half_axes[1] <= style.radius[1] * span
        assert left.half_axes[0] <= 1.02 * left.half_axes[1]
        down = (left.centre[1] - a[1]) / (d[1] - a[1])  # the side line a-d at the centre's height
        assert style.down[0] - 1e-9 <= down <= style.down[1] + 1e-9
        side_x = a[0] + down * (d[0] - a[0])
        assert -style.outset[1] * span - 1e-6 <= left.centre[0] - side_x <= -style.outset[0] * span + 1e-6
    turned = anchors.copy()
    turned[[1, 4], 0] += 25  # the nose line moves right: the face turns, its right half foreshortened
    near, far = sample_cartridges(turned, np.random.default_rng(seeds[0]))
    assert near.half_axes[0] > 1.2 * far.half_axes[0] and near.half_axes[1] == far.half_axes[1]


def test_filter_pads_are_bigger_lower_and_light_felt_in_a_ring_of_the_part_colour():
    """Pads reach further than any canister (below and outside), are near-white felt with a grain,
    and their retainer ring takes the part colour."""
    from maskgen.cartridges import CANISTER, PAD, add_cartridges, sample_cartridges

    assert PAD.radius[1] > CANISTER.radius[1] and PAD.down[1] > CANISTER.down[1]
    assert PAD.outset[1] > CANISTER.outset[1]
    anchors = np.array([[70, 120], [128, 95], [186, 120], [78, 175], [128, 215], [178, 175]], np.float64)
    seed = _seed_for(True)
    left, _ = sample_cartridges(anchors, np.random.default_rng(seed))
    ring_colour = (200.0, 30.0, 160.0)  # magenta
    rgb = np.zeros((1, 1, 3), np.float32)
    alpha = np.zeros((1, 1), np.float32)
    out, cover, (x0, y0, x1, y1) = add_cartridges(rgb, alpha, (128, 150, 129, 151), anchors, ring_colour,
                                                  (256, 256), np.random.default_rng(seed))
    yy, xx = np.mgrid[y0:y1, x0:x1]
    rx, ry = left.half_axes
    rho = np.hypot((xx - left.centre[0]) / rx, (yy - left.centre[1]) / ry)  # a frontal face: no tilt
    felt, ring = out[(rho < 0.6) & (cover > 0.99)], out[(rho > 0.91) & (rho < 0.97)]
    assert len(felt) > 300 and len(ring) > 30
    assert felt.min() > 150  # light
    assert np.all(np.ptp(felt, axis=1) < 45)  # white to cream or grey, not coloured
    # a grain: pixel-to-pixel changes well above the smooth shading's (under 1 level per pixel)
    inner = (rho[:, 1:] < 0.6) & (rho[:, :-1] < 0.6) & (cover[:, 1:] > 0.99) & (cover[:, :-1] > 0.99)
    steps = np.abs(np.diff(out.mean(2), axis=1))[inner]
    assert np.median(steps) > 2
    assert np.median(ring[:, 0]) > 2 * np.median(ring[:, 1])  # the ring is the part colour
    # drawn again from the same seed: the same bytes
    again, _, _ = add_cartridges(rgb, alpha, (128, 150, 129, 151), anchors, ring_colour, (256, 256),
                                 np.random.default_rng(seed))
    assert np.array_equal(out, again)


def test_narrowed_pulls_the_sides_towards_the_middle_line():
    from maskgen.mask import narrowed

    anchors = np.array([[70, 120], [128, 95], [186, 120], [78, 175], [128, 215], [178, 175]], np.float64)
    same = narrowed(anchors, 1.0)
    assert np.array_equal(same, anchors) and same is not anchors
    half = narrowed(anchors, 0.5)
    assert np.array_equal(half[[1, 4]], anchors[[1, 4]])  # b and e stay
    assert half[:, 1] == pytest.approx(anchors[:, 1])  # a vertical middle line: sides move across only
    assert half[[0, 3], 0] == pytest.approx(128 - 0.5 * (128 - anchors[[0, 3], 0]))
    assert half[[2, 5], 0] == pytest.approx(128 + 0.5 * (anchors[[2, 5], 0] - 128))
    # a tilted middle line: each side moves towards its foot on that line, along the perpendicular
    tilted = anchors.copy()
    tilted[4] = [148, 215]
    axis = (tilted[4] - tilted[1]) / np.linalg.norm(tilted[4] - tilted[1])
    moved = narrowed(tilted, 0.6)
    normal = np.array([-axis[1], axis[0]])
    for i in (0, 2, 3, 5):
        along = lambda p: float((p - tilted[1]) @ axis)  # noqa: E731
        across = lambda p: float((p - tilted[1]) @ normal)  # noqa: E731
        assert along(moved[i]) == pytest.approx(along(tilted[i]))
        assert across(moved[i]) == pytest.approx(0.6 * across(tilted[i]))


def test_n95_cups_come_in_widths_narrower_than_the_face():
    """Drawn N95s get a width per sample (FIT_RANGE): some reach the jaw, some sit well inside it;
    the other kinds keep the face's width."""
    from maskgen.compose import MaskChoice
    from maskgen.templates import FIT_RANGE, builtin_template
    from maskgen.textures import COLORS

    anchors = np.array([[70, 120], [128, 95], [186, 120], [78, 175], [128, 215], [178, 175]], np.float64)

    def body_width(kind: str, seed: int) -> int:
        choice = MaskChoice(builtin_template(kind), "white", "solid", 0, COLORS["grey"])
        _, alpha, (x0, y0, _, _) = choice.place(anchors, 256, np.random.default_rng(seed))
        row = alpha[int(anchors[3, 1]) - y0] > 0.5  # across the lower sides, below the straps
        return int(row.sum())

    n95 = [body_width("n95", s) for s in range(12)]
    surgical = [body_width("surgical", s) for s in range(6)]
    assert min(n95) < FIT_RANGE["n95"][0] * 1.1 * max(n95)
    assert max(n95) <= max(surgical) + 1  # never wider than the face's full width
    assert max(surgical) - min(surgical) <= 3
