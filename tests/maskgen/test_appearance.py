"""Photographed look: camera effects on both images alike, new textures, drawn styles."""

import numpy as np
import pytest

from maskgen import appearance, textures
from maskgen import templates as tpl
from maskgen.compose import MaskOptions, encode, image_to_triplets


@pytest.fixture(scope="module")
def faces(celeba_images):
    return celeba_images[:: max(1, len(celeba_images) // 12)][:12]


def _with_camera(faces, options=None, res=128, want=3):
    """(face index, triplet) pairs whose sample got camera effects."""
    found = []
    for i, path in enumerate(faces):
        for t in image_to_triplets(path, n=2, res=res, seed=i, options=options):
            if t.meta.camera_noise > 0:
                found.append((i, t))
        if len(found) >= want:
            break
    assert len(found) >= want, "too few samples with camera effects"
    return found


def test_camera_keeps_the_pair_equal_outside_the_map(faces):
    for _, t in _with_camera(faces, want=4):
        inside = t.map > 0
        changed = np.any(t.masked != t.unmasked, axis=2)
        assert not np.any(changed & ~inside)
        assert changed[inside].mean() > 0.9


def test_camera_changes_the_unmasked_face(faces, celeba_images):
    """The unmasked image is the degraded face, not the aligned crop as it was."""
    from maskgen.align import align_face
    from maskgen.landmarks import locate
    from maskgen.source import load_image

    i, t = _with_camera(faces, want=1)[0]
    image = load_image(faces[i])
    face = align_face(image, locate(image).points, 128)
    assert np.abs(face.image.astype(int) - t.unmasked).mean() > 0.5


def test_camera_parameters_in_meta(faces):
    metas = [t.meta for p in faces[:8] for t in image_to_triplets(p, n=2, res=128, seed=3)]
    on = [m for m in metas if m.camera_noise > 0]
    off = [m for m in metas if m.camera_noise == 0]
    assert on and off  # a share of samples, not all or none
    for m in on:
        assert appearance.NOISE_SIGMA[0] <= m.camera_noise <= appearance.NOISE_SIGMA[1]
        assert 0 <= m.camera_blur <= appearance.BLUR_SIGMA_128 + 1e-6
        assert m.camera_jpeg == 0 or appearance.JPEG_QUALITY[0] <= m.camera_jpeg <= appearance.JPEG_QUALITY[1]
        assert abs(m.camera_cast) <= appearance.CAST
    for m in off:
        assert (m.camera_blur, m.camera_jpeg, m.camera_cast) == (0, 0, 0)
    d = on[0].as_dict()
    assert all(isinstance(d[k], (int, float)) for k in ("camera_noise", "camera_blur", "camera_jpeg", "camera_cast"))


def test_camera_sample_is_byte_reproducible(faces):
    i, t = _with_camera(faces, want=1)[0]
    again = [x for x in image_to_triplets(faces[i], n=2, res=128, seed=i) if x.meta.key == t.meta.key][0]
    assert encode(t) == encode(again)
    assert np.array_equal(t.masked, again.masked) and np.array_equal(t.unmasked, again.unmasked)


def test_camera_on_a_pack_template(faces, template_pack):
    opts = MaskOptions.create(templates=template_pack)
    for _, t in _with_camera(faces, options=opts, want=2):
        assert not np.any(np.any(t.masked != t.unmasked, axis=2) & (t.map == 0))


def test_apply_camera_degrades_both_alike():
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    masked = face.copy()
    masked[20:40, 10:50] = 200
    binary = np.zeros((64, 64), np.uint8)
    binary[20:40, 10:50] = 255
    for seed in range(20):
        m, u, cam = appearance.apply_camera(face, masked, binary, (10, 20, 50, 40), np.random.default_rng(seed))
        assert np.array_equal(m[binary == 0], u[binary == 0])
        if cam.active:
            assert not np.array_equal(u, face)
        else:
            assert m is masked and u is face


@pytest.mark.parametrize("texture", ["plaid", "camo"])
def test_new_textures_have_their_colours(texture):
    shape = (210, 280)
    for variant in range(3):
        first = textures.texture_pattern(texture, variant, shape, 0.5)
        second = textures.second_pattern(texture, variant, shape, 0.5)
        assert first.shape == second.shape == shape
        base = (first < 0.05) & (second < 0.05)
        # the base colour, the accent and the third colour each cover a real share
        assert base.mean() > 0.1 and (first > 0.45).mean() > 0.05 and (second > 0.45).mean() > 0.02
        assert not np.any((first + second) > 1.0 + 1e-5)


def test_drawn_shading_has_relief_and_grain():
    for kind in tpl.MASK_TYPES:
        t = tpl.builtin_template(kind)
        inside = t.alpha > 0.99
        shade = t.shade[inside]
        assert shade.std() > 0.04, kind  # shaded, not flat
        # fabric grain: neighbouring pixels differ (local variance), not only broad gradients
        grain = np.abs(np.diff(t.shade, axis=1))[inside[:, 1:] & inside[:, :-1]]
        assert np.median(grain) > 0.003, kind
        # darker at the sides (turning away) than in the middle
        h, w = t.alpha.shape
        centre = (slice(h // 3, 2 * h // 3), slice(w // 2 - 20, w // 2 + 20))
        middle = t.shade[centre][inside[centre]]
        ys, xs = np.nonzero(inside)
        left = t.shade[inside & (np.arange(w)[None, :] < xs.min() + 40)]
        assert left.mean() < middle.mean() - 0.05, kind


def test_styles_differ_and_keep_their_outline():
    plain, valve = tpl.builtin_template("n95", 0), tpl.builtin_template("n95", 1)
    assert np.array_equal(plain.alpha, valve.alpha)
    assert np.abs(plain.shade - valve.shade).max() > 0.2
    counts = [tpl.choose_style("n95", np.random.default_rng(s)) for s in range(200)]
    assert 0.15 < np.mean(counts) < 0.55


def test_every_texture_renders(faces):
    """Each texture in TEXTURES gets drawn on a face with both of its colours visible."""
    from maskgen.align import align_face
    from maskgen.compose import MaskChoice
    from maskgen.landmarks import locate
    from maskgen.mask import composite, face_anchors
    from maskgen.source import load_image

    image = load_image(faces[0])
    face = align_face(image, locate(image).points, 256)
    anchors = face_anchors(face.landmarks)
    for texture in textures.TEXTURES:
        choice = MaskChoice(tpl.builtin_template("cloth"), "navy", texture, 1, textures.COLORS["yellow"])
        rgb, alpha, box = choice.place(anchors, 256, np.random.default_rng(0))
        masked, binary = composite(face.image, rgb, alpha, box)
        pixels = masked[binary > 0].astype(float)
        lum = pixels @ [0.299, 0.587, 0.114]
        if texture == "solid":
            assert np.percentile(lum, 95) - np.percentile(lum, 5) < 80
        else:
            assert np.percentile(lum, 95) - np.percentile(lum, 5) > 60, texture


def test_a_choice_without_accent_draws_one(faces):
    """Direct API use: a respirator with parts, or a patterned mask, made without an accent colour."""
    from maskgen.align import align_face
    from maskgen.compose import MaskChoice
    from maskgen.landmarks import locate
    from maskgen.mask import composite, face_anchors
    from maskgen.source import load_image

    image = load_image(faces[0])
    face = align_face(image, locate(image).points, 256)
    anchors = face_anchors(face.landmarks)
    for kind, texture in (("gas", "solid"), ("cloth", "dots")):
        choice = MaskChoice(tpl.builtin_template(kind), "black", texture, 1)
        rgb, alpha, box = choice.place(anchors, 256, np.random.default_rng(0))
        masked, binary = composite(face.image, rgb, alpha, box)
        lum = masked[binary > 0].astype(float) @ [0.299, 0.587, 0.114]
        assert np.percentile(lum, 99) - np.percentile(lum, 1) > 60, kind  # parts / pattern in a second colour
        again = choice.place(anchors, 256, np.random.default_rng(0))[0]
        np.testing.assert_array_equal(again, rgb)  # the drawn accent comes from the sample's stream
