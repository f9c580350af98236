"""Transforms, anchors and warps on exact synthetic geometry."""

import cv2
import numpy as np
import pytest

from maskgen.align import align_face, canonical_points, paste_back, similarity_transform, transform_points
from maskgen.face_points import box_from_five_points, estimate_yaw, five_points
from maskgen.mask import face_anchors, warp_template
from maskgen.neckwear import NECK_TYPES, reach_neck
from maskgen.templates import MASK_TYPES, builtin_template


def _rotation(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, size=(5, 2))
    truth = _rotation(17.0, 1.7, 30.0, -12.0)
    est = similarity_transform(src, transform_points(src, truth))
    np.testing.assert_allclose(est, truth, atol=1e-9)


def test_similarity_transform_never_reflects():
    src = np.array([[0, 0], [1, 0], [0, 1.0]])
    mirrored = src * [-1, 1]
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def synthetic_face(cx=100.0, cy=110.0, size=60.0, angle=0.0) -> np.ndarray:
    """68 landmarks of a frontal face shape (enough structure for anchors and alignment)."""
    pts = np.zeros((68, 2))
    t = np.linspace(np.pi * 0.95, np.pi * 0.05, 17)  # jaw from the image-left ear, under the chin, to the right
    pts[0:17] = np.c_[np.cos(t) * size * 0.95, np.sin(t) * size * 1.05 - 0.05 * size]
    pts[17:27] = np.c_[np.linspace(-0.7, 0.7, 10) * size, np.full(10, -0.55 * size)]  # brows
    pts[27:31] = np.c_[np.zeros(4), np.linspace(-0.4, 0.05, 4) * size]  # nose bridge to tip
    pts[31:36] = np.c_[np.linspace(-0.2, 0.2, 5) * size, np.full(5, 0.12 * size)]
    for start, ex in ((36, -0.38), (42, 0.38)):  # eyes: rings of six points
        ang = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        pts[start:start + 6] = np.c_[ex * size + 0.12 * size * np.cos(ang), -0.35 * size + 0.05 * size * np.sin(ang)]
    ang = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    pts[48:68] = np.c_[0.3 * size * -np.cos(ang), 0.45 * size + 0.08 * size * np.sin(ang)]
    pts[48] = [-0.3 * size, 0.45 * size]
    pts[54] = [0.3 * size, 0.45 * size]
    rot = _rotation(angle, 1.0, cx, cy)
    return transform_points(pts, rot)


@pytest.mark.parametrize("res", [128, 256, 512])
def test_align_puts_the_face_on_the_template(res):
    pts = synthetic_face(angle=25.0)
    image = np.full((240, 220, 3), 90, np.uint8)
    face = align_face(image, pts, res)
    assert face.image.shape == (res, res, 3)
    got = five_points(face.landmarks)
    want = canonical_points(res)
    # Least squares over five points: eyes land within a few percent of the crop.
    assert np.abs(got[:2] - want[:2]).max() < 0.04 * res
    # Rotation removed: the eyes are level.
    assert abs(got[0, 1] - got[1, 1]) < 0.005 * res  # the template itself tilts by 0.2%
    assert np.all((face.landmarks > 0) & (face.landmarks < res))
    assert face.upsampled == (face.scale > 1)


def test_align_and_paste_back_round_trip():
    rng = np.random.default_rng(1)
    photo = cv2.GaussianBlur(rng.integers(0, 255, (300, 280, 3), dtype=np.uint8), (0, 0), 3)
    pts = synthetic_face(cx=140, cy=150, size=70, angle=-10)
    face = align_face(photo, pts, 256)
    back = paste_back(photo, face.image, face.matrix)
    centre = tuple(np.round(pts[30]).astype(int))
    y, x = centre[1], centre[0]
    # Where the crop is pasted, the photo comes back (up to two resamplings of a smooth image).
    assert np.abs(back[y - 20:y + 20, x - 20:x + 20].astype(int) - photo[y - 20:y + 20, x - 20:x + 20]).mean() < 6


def test_anchors_are_ordered_and_around_the_lower_face():
    pts = synthetic_face()
    a, b, c, d, e, f = face_anchors(pts)
    assert a[0] < b[0] < c[0] and d[0] < e[0] < f[0]
    assert b[1] < e[1] and a[1] < d[1] and c[1] < f[1]
    assert pts[27, 1] < b[1] < pts[30, 1]  # on the nose bridge
    assert e[1] > pts[8, 1]  # below the chin
    jaw_left, jaw_right = pts[0:17, 0].min(), pts[0:17, 0].max()
    assert a[0] <= jaw_left + 0.2 * (jaw_right - jaw_left) and c[0] >= jaw_right - 0.2 * (jaw_right - jaw_left)


def test_anchors_follow_a_rotated_face():
    base = face_anchors(synthetic_face(angle=0))
    turned = face_anchors(synthetic_face(angle=30))
    rot = _rotation(30, 1.0, 0, 0)
    # Rotating the face about its centre rotates the anchors the same way.
    centre = np.array([100.0, 110.0])
    np.testing.assert_allclose(transform_points(base - centre, rot), turned - centre, atol=1e-6)


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_template_anchors_land_on_face_anchors(kind):
    template = builtin_template(kind)
    dst = face_anchors(synthetic_face(cx=128, cy=110, size=70))
    if kind in NECK_TYPES:  # down the neck: d, e, f past the crop's bottom edge (only a, b, c land on it)
        dst = reach_neck(dst, 256)
    # A template whose only drawn pixels are small discs at its anchors shows where they land.
    probe = np.zeros_like(template.alpha)
    for x, y in template.anchors:
        cv2.circle(probe, (int(round(x)), int(round(y))), 6, 1.0, -1)
    from dataclasses import replace

    warped, alpha, (x0, y0, x1, y1) = warp_template(
        replace(template, alpha=np.maximum(probe, template.alpha * 0.01)), probe, dst, (256, 256))
    assert warped.shape == alpha.shape == (y1 - y0, x1 - x0)
    heat = np.zeros((256, 256), np.float32)
    heat[y0:y1, x0:x1] = warped
    for x, y in dst:
        xi, yi = int(round(x)), int(round(y))
        if 0 <= xi < 256 and 0 <= yi < 256:
            assert heat[max(0, yi - 3):yi + 4, max(0, xi - 3):xi + 4].max() > 0.5, (kind, x, y)


def test_yaw_sign_and_box_from_five_points():
    pts = synthetic_face()
    assert abs(estimate_yaw(pts)) < 0.05
    turned = pts.copy()
    turned[30, 0] += 15  # nose moves to the image's right
    assert estimate_yaw(turned) > 0.1
    left, top, right, bottom = box_from_five_points(five_points(pts))
    assert left < pts[36:48, 0].min() and right > pts[36:48, 0].max()
    assert top < pts[36:48, 1].min() and bottom > pts[48:68, 1].max()


@pytest.mark.parametrize("res", [256, 512])
def test_upsampling_warp_matches_the_direct_bicubic_warp(celeba_images, res):
    """Enlarging crops are built from resizes and a bilinear warp: same geometry, bicubic look."""
    from maskgen.align import _upsampling_warp
    from maskgen.landmarks import detect
    from maskgen.source import load_image

    image = load_image(celeba_images[3])
    face = align_face(image, detect(image).points, res)
    assert (1 < face.scale < 2) if res == 256 else face.scale > 2  # both paths from 178 px CelebA
    direct = cv2.warpAffine(image, face.matrix, (res, res), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    inner = (slice(16, -16), slice(16, -16))  # borders are reflected at another scale
    mse = np.mean((direct[inner].astype(float) - face.image[inner]) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 40
    bilinear = cv2.warpAffine(image, face.matrix, (res, res), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    assert mse < np.mean((direct[inner].astype(float) - bilinear[inner]) ** 2)  # closer to bicubic than bilinear is
    # Shifting the matrix by one crop pixel must be seen: the composite mapping is exact.
    shifted = face.matrix.copy()
    shifted[0, 2] += 1
    moved = _upsampling_warp(image, shifted, res, face.scale)
    a, b = res // 5, 4 * res // 5
    np.testing.assert_allclose(moved[a:b, a + 1:b].astype(float), face.image[a:b, a:b - 1], atol=40)
    assert np.abs(moved[a:b, a:b - 1].astype(float) - face.image[a:b, a:b - 1]).mean() > \
        np.abs(moved[a:b, a + 1:b].astype(float) - face.image[a:b, a:b - 1]).mean()


def test_mask_shading_follows_the_light_not_the_features():
    """The light plane ignores dark features (a mouth under the mask) and keeps the lighting gradient."""
    from maskgen.mask import _light_plane, composite

    h, w = 120, 160
    ys, xs = np.mgrid[0:h, 0:w]
    lit = (80 + 0.6 * xs).astype(np.float32)  # light from the image's right
    mouth = lit.copy()
    mouth[50:80, 50:110] = 20  # a dark open mouth under the mask
    cover = np.ones((h, w), np.uint8)
    plane = _light_plane(mouth.astype(np.uint8), cover)
    small_truth = _light_plane(lit.astype(np.uint8), cover)
    assert np.abs(plane - small_truth).max() < 6  # the mouth does not pull the light down
    assert plane[:, -1].mean() > plane[:, 0].mean() + 60  # the gradient is kept

    face = np.repeat(lit[..., None], 3, axis=2).astype(np.uint8)
    with_mouth = np.repeat(mouth[..., None], 3, axis=2).astype(np.uint8)
    rgb = np.full((h, w, 3), 200, np.float32)
    alpha = np.ones((h, w), np.float32)
    plain, _ = composite(face, rgb, alpha, (0, 0, w, h))
    ghost, _ = composite(with_mouth, rgb, alpha, (0, 0, w, h))
    assert np.abs(plain.astype(int) - ghost).max() <= 6  # no dark ghost of the mouth on the mask
    assert plain[:, -10:].mean() > plain[:, :10].mean() + 20  # but the light's direction shows


def test_template_caches_never_give_one_template_another_ones_values():
    """The per-template caches key templates by id; a template made after another was freed can take its
    id. Then the old entry (here: planted) must not be used: a probe template's corners once came back for
    a builtin template drawn later, and its masks covered almost nothing."""
    from dataclasses import replace

    from maskgen import mask as mask_module

    template = builtin_template("kn95")
    probe = replace(template, alpha=np.zeros_like(template.alpha))
    probe.alpha[:2, :2] = 1
    mask_module._CORNERS[id(template)] = (probe, np.zeros((4, 2), np.float32))
    mask_module._HALVES[id(template)] = (probe, (probe.alpha, probe.alpha))
    corners = mask_module._drawn_corners(template)
    left, right = mask_module._alpha_halves(template)
    ys, xs = np.nonzero(template.alpha > 0.02)
    assert corners.tolist() == [[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.max() + 1, ys.max() + 1],
                                [xs.min(), ys.max() + 1]]
    assert np.array_equal(np.maximum(left, right), template.alpha)


def test_a_turned_template_drawn_far_outside_its_thin_quad_stays_on_the_face():
    """MaskTheFace's gas_left: anchors a, b, e, d span a narrow strip of the template and its filter
    cartridge lies far to their left. Four-point homographies extrapolate it across their horizon into
    streaks over the crop; the warp must keep the drawing near the face anchors."""
    from maskgen.templates import MaskTemplate

    anchors = np.array([[239, 238], [317, 42], [965, 239], [224, 404], [337, 502], [963, 406]], np.float64)
    alpha = np.zeros((560, 1000), np.float32)
    cv2.fillPoly(alpha, [np.array([[224, 230], [317, 42], [965, 239], [963, 406], [337, 502], [224, 404]],
                                  np.int32)], 1.0)
    cv2.circle(alpha, (110, 330), 110, 1.0, -1)  # the cartridge, left of the a-d edge
    template = MaskTemplate(name="gas_left", mask_type="gas", variant="left", alpha=alpha,
                            shade=np.ones_like(alpha), anchors=anchors)
    dst = face_anchors(synthetic_face(cx=128, cy=110, size=70))
    _, warped, (x0, y0, x1, y1) = warp_template(template, template.shade, dst, (256, 256))
    ys, xs = np.nonzero(warped > 0.5)
    span = dst[2, 0] - dst[0, 0]
    # (the extrapolating warp reached the crop's left edge, 0.37 spans away, and drew 1.35 hexagons)
    assert xs.min() + x0 > dst[:, 0].min() - 0.25 * span and xs.max() + x0 < dst[:, 0].max() + 0.25 * span
    assert ys.min() + y0 > dst[:, 1].min() - 0.25 * span and ys.max() + y0 < dst[:, 1].max() + 0.25 * span
    hexagon = cv2.contourArea(dst[[0, 1, 2, 5, 4, 3]].astype(np.float32))
    assert 0.6 * hexagon < len(xs) < 1.25 * hexagon
