"""Make the binary mask labels of labels/real-masked-photos/ (``--set first``, PHOTOS) and of
labels/real-masked-photos-hard/ (``--set hard``, HARD_PHOTOS); see README.md in each.

    PYTHONPATH=. python labels/real-masked-photos/make_labels.py \
        --photos ../shared/data/real-masked-photos --out labels/real-masked-photos [--only 0007.jpg ...]
    PYTHONPATH=. python labels/real-masked-photos/make_labels.py --set hard \
        --photos ../shared/data/real-masked-photos --out labels/real-masked-photos-hard

For every photo in PHOTOS: 68 landmarks from ``maskgen.landmarks.detect`` (or the manual face box in
the photo's fixes when the detector fails or picks the wrong face), a prior of the lower face built from
the landmarks (probable mask: below the lower eyelids, inside the jaw line pushed outwards, down to below
the chin; sure mask: a small core around the mouth/nose that the mask must cover for that way of wearing;
sure background: eyes, brows, forehead and everything well outside the face), then ``cv2.grabCut``
(colour GMMs, 6 iterations, mask mode) decides the mask's real boundary. The largest connected part
touching the core is kept, holes are filled and the edge is smoothed by a 3-px open/close.

Per-photo manual corrections live in PHOTOS as data, so re-running reproduces the committed PNGs:
    "fg" / "bg":   polygons forced to sure mask / sure background before GrabCut runs,
    "pfg" / "pbg": polygons set to probable mask / probable background before GrabCut runs,
    "add" / "sub": polygons painted into / cut out of the final label after GrabCut,
    "box":         (left, top, right, bottom) face box for the 68-point predictor instead of detection,
    "chin_bg":     eye distances below the chin landmark where sure background starts (default 0.8),
    "grow":        factor on the outward push of the jaw line (default 1.0; masks that stand off the face),
All polygons are lists of (x, y) in photo pixels. DROPPED lists the candidates that were looked at and
not kept, with the reason.

GrabCut is deterministic for a given input (OpenCV seeds its k-means with a fixed RNG), so the output
is reproducible with the same OpenCV build; ``cv2.setRNGSeed(0)`` is called before each photo anyway.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hard_photos import CATEGORIES, HARD_DROPPED, HARD_PHOTOS  # noqa: E402,F401  (the hard set's data)

# photo: (mask_type, wear, fixes)
PHOTOS: dict[str, tuple[str, str, dict]] = {
    "0000.jpg": ("cloth_printed", "correct", {'fg': [[(125, 265), (145, 262), (148, 310), (128, 312)]]}),
    "0002.jpg": ("cloth", "correct", {}),
    "0006.jpg": ("cloth_printed", "correct", {}),
    "0021.jpg": ("surgical", "correct", {}),
    "0022.jpg": ("surgical", "correct", {}),
    "0026.jpg": ("surgical", "correct", {}),
    "0027.jpg": ("surgical", "correct", {}),
    "0038.jpg": ("other", "correct", {}),
    "0046.jpg": ("kn95", "correct", {}),
    "0065.jpg": ("kn95", "correct", {}),
    "0084.jpg": ("other", "correct", {}),
    "0085.jpg": ("surgical", "correct", {}),
    "0091.jpg": ("surgical", "correct", {}),
    "0097.jpg": ("n95", "correct", {}),
    "0100.jpg": ("surgical", "correct", {}),
    "0171.jpg": ("kn95", "correct", {}),
    "0194.jpg": ("cloth_printed", "correct", {}),
    "0198.jpg": ("kn95", "correct", {}),
    "0227.jpg": ("cloth_printed", "correct", {}),
    "0241.jpg": ("cloth_printed", "correct", {}),
    "0245.jpg": ("surgical", "nose", {}),
    "0246.jpg": ("surgical", "nose", {'bg': [[(110, 110), (226, 110), (226, 180), (110, 185)]]}),
    "0247.jpg": ("surgical", "nose", {}),
    "0266.jpg": ("kn95", "correct", {}),
    "0275.jpg": ("kn95", "correct", {}),
    "0284.jpg": ("surgical", "correct", {}),
    "0291.jpg": ("kn95", "correct", {}),
    "0293.jpg": ("surgical", "nose", {}),
    "0311.jpg": ("cloth_printed", "correct", {}),
    "0362.jpg": ("surgical", "correct", {}),
    "0369.jpg": ("cloth", "correct", {}),
    "0371.jpg": ("cloth_printed", "correct", {}),
    "0372.jpg": ("cloth_printed", "correct", {}),
    "0373.jpg": ("cloth_printed", "correct", {}),
    "0374.jpg": ("cloth_printed", "correct", {}),
    "0376.jpg": ("surgical", "correct", {'sub': [[(60, 160), (100, 160), (100, 183), (60, 183)]]}),
    "0380.jpg": ("cloth", "correct", {}),
    "0385.jpg": ("cloth", "correct", {}),
    "0389.jpg": ("cloth", "correct", {}),
    "0398.jpg": ("cloth_printed", "correct", {}),
    "0400.jpg": ("cloth_printed", "correct", {}),
    "0425.jpg": ("cloth_printed", "correct", {}),
    "0430.jpg": ("cloth_printed", "correct", {}),
    "0439.jpg": ("cloth_printed", "correct", {}),
    "0441.jpg": ("surgical", "correct", {}),
    "0448.jpg": ("cloth", "correct", {}),
    "0457.jpg": ("kn95", "correct", {}),
    "0465.jpg": ("cloth", "correct", {'fg': [[(215, 288), (245, 262), (275, 288)]]}),
    "0485.jpg": ("n95", "correct", {}),
    "0502.jpg": ("surgical", "correct", {'bg': [[(95, 180), (133, 180), (133, 300), (95, 300)],
                                                [(372, 180), (410, 180), (410, 300), (372, 300)]]}),
    "0519.jpg": ("n95", "correct", {}),
    "0523.jpg": ("surgical", "correct", {'bg': [[(150, 425), (360, 425), (360, 512), (150, 512)]]}),
    "0547.jpg": ("other", "correct", {}),
    "0552.jpg": ("cloth_printed", "correct", {'bg': [[(40, 345), (105, 345), (150, 385), (200, 400), (280, 400),
                                                      (330, 370), (420, 350), (420, 512), (40, 512)],
                                                     [(328, 200), (355, 200), (355, 290), (328, 290)]]}),
    "0553.jpg": ("surgical", "correct", {}),
    "0558.jpg": ("other", "correct", {}),
    "0564.jpg": ("cloth_printed", "correct", {}),
    "0575.jpg": ("surgical", "correct", {}),
    "0576.jpg": ("surgical", "correct", {}),
    "0611.jpg": ("other", "correct", {}),
    "0625.jpg": ("other", "correct", {}),
    "0655.jpg": ("other", "correct", {}),
    "0740.jpg": ("cloth", "correct", {}),
    "0770.jpg": ("other", "correct", {}),
    "0851.jpg": ("surgical", "correct", {}),
    "0859.jpg": ("surgical", "correct", {}),
    "0874.jpg": ("surgical", "correct", {}),
    "0878.jpg": ("surgical", "correct", {}),
    "0890.jpg": ("surgical", "correct", {}),
    "0905.jpg": ("n95", "correct", {}),
    "0906.jpg": ("kn95", "correct", {}),
    "0912.jpg": ("cloth_printed", "correct", {}),
    "0917.jpg": ("cloth", "correct", {}),
    "0933.jpg": ("cloth_printed", "correct", {}),
    "0936.jpg": ("cloth", "correct", {}),
}

# Candidates looked at and dropped (GrabCut result not fixable by a simple correction, or not a fit); see README.
DROPPED: dict[str, str] = {
    "0001.jpg": "misses the upper-left part of the mask, spilled onto the hoodie before the chin limit",
    "0003.jpg": "misses the lower part of the mask",
    "0004.jpg": "profile: landmarks off, label covers only the upper half of the mask",
    "0005.jpg": "spills onto cheek and hair",
    "0013.jpg": "spills onto hair at the right edge; a cut-out fix was not convincing",
    "0014.jpg": "spills onto the red scarf at lower left; a cut-out fix was not convincing",
    "0049.jpg": "spills onto hair at the right edge",
    "0073.jpg": "misses the nose-bridge part of the mask, spills onto the cheek",
    "0074.jpg": "landmarks wrong (tight crop): label on hair and eye",
    "0078.jpg": "spills onto clothing below the mask",
    "0082.jpg": "spills onto cheek and ear loop at left",
    "0108.jpg": "no face detected (sunglasses, overlay graphics)",
    "0127.jpg": "no face detected",
    "0130.jpg": "spills below the mask",
    "0159.jpg": "spills onto the background at the right edge",
    "0197.jpg": "spills onto background/hood at the left edge, fix not convincing",
    "0199.jpg": "spills onto hair at left",
    "0216.jpg": "landmarks wrong (tight crop): label on hair",
    "0219.jpg": "misses the black binding along the mask's edge",
    "0228.jpg": "spills onto neck and flowers",
    "0236.jpg": "misses the left half of the mask",
    "0239.jpg": "spills onto the turtleneck",
    "0243.jpg": "spills onto ear and earring",
    "0248.jpg": "spills onto the background at left and the neck",
    "0261.jpg": "spills onto skin (blurred, low contrast)",
    "0272.jpg": "mask partly hidden by a gloved hand, label covers the hand",
    "0281.jpg": "spills onto the face (low contrast)",
    "0283.jpg": "spills onto the white jacket",
    "0294.jpg": "misses most of the mask",
    "0296.jpg": "blurred; spills onto glasses and face",
    "0301.jpg": "spills onto neck and lanyard",
    "0305.jpg": "spills onto neck and ribbons",
    "0309.jpg": "no face detected",
    "0310.jpg": "spills below the mask",
    "0313.jpg": "spills onto neck at lower left",
    "0316.jpg": "small face; spills onto neck and glasses",
    "0319.jpg": "spills onto the chin below the mask",
    "0349.jpg": "misses the black band at the top of the mask",
    "0357.jpg": "misses the side of the cup",
    "0358.jpg": "spills onto hair at the right",
    "0360.jpg": "spills onto hair at lower left",
    "0363.jpg": "face box from the detector far too small (29 px)",
    "0378.jpg": "misses the left part of the mask",
    "0379.jpg": "bandana hanging over the neck: only its upper part labelled",
    "0403.jpg": "ear included; bottom needed a fix too",
    "0405.jpg": "misses the top band of the mask",
    "0406.jpg": "misses the lower part of the mask, even with a lower chin limit",
    "0408.jpg": "misses the pink top band of the mask",
    "0422.jpg": "scarf-style mask over the neck: only its upper part labelled",
    "0443.jpg": "ear included",
    "0446.jpg": "misses the black binding",
    "0447.jpg": "spills onto the background",
    "0452.jpg": "spills onto neck and ears",
    "0458.jpg": "misses the top centre of the mask",
    "0473.jpg": "spills onto ear loop and skin at left",
    "0487.jpg": "misses the black parts of the mask after a neck fix",
    "0495.jpg": "ear included",
    "0505.jpg": "ears included",
    "0509.jpg": "ear included at left, fix not convincing",
    "0517.jpg": "spills onto the background at right",
    "0540.jpg": "spills onto ear/shirt, fix not convincing",
    "0544.jpg": "ears and hanging straps included",
    "0580.jpg": "spills onto the neck",
    "0582.jpg": "ears included",
    "0596.jpg": "bandana over the neck: only its upper part labelled",
    "0612.jpg": "a hand touches the mask; edge uncertain",
    "0613.jpg": "misses the nose-bridge part of the mask",
    "0617.jpg": "mannequin, not a real person",
    "0620.jpg": "mask and shirt the same red; bottom edge uncertain",
    "0629.jpg": "misses the mask's sides",
    "0645.jpg": "spills onto the grey jacket",
    "0732.jpg": "ears included (edited-looking photo)",
    "0764.jpg": "ear included",
    "0840.jpg": "bottom edge over the scarf uncertain",
    "0852.jpg": "spills onto ear and hair at right",
    "0861.jpg": "two people in the photo",
    "0869.jpg": "spills onto the neck",
    "0873.jpg": "profile: label covers only part of the mask",
    "0876.jpg": "spills onto cheek and ear, misses the lower part",
    "0893.jpg": "no face detected",
    "0895.jpg": "spills onto hair",
    "0909.jpg": "bottom edge spills onto the jacket",
    "0927.jpg": "spills onto hair near the ear and the hand",
    "0931.jpg": "no face detected",
    "0932.jpg": "misses the lower, printed part of the bandana mask",
    "0935.jpg": "misses the lower fold of the mask",
    "0940.jpg": "ears and cheeks included",
}


# The hard set's photos (HARD_PHOTOS, HARD_DROPPED, CATEGORIES) are data in hard_photos.py beside this file.

SETS = ("first", "hard")


def _poly(mask: np.ndarray, polys, value: int) -> None:
    for p in polys:
        cv2.fillPoly(mask, [np.round(np.asarray(p, np.float64)).astype(np.int32)], value)


def landmarks(image: np.ndarray, fixes: dict) -> np.ndarray:
    from maskgen import landmarks as lm

    if "box" in fixes:
        return lm._predict(image, tuple(int(v) for v in fixes["box"]))
    return lm.detect(image).points


def _push(points: np.ndarray, centre: np.ndarray, amount: float) -> np.ndarray:
    """Move points away from centre by `amount` px along the ray from the centre."""
    d = points - centre
    n = np.linalg.norm(d, axis=1, keepdims=True) + 1e-6
    return points + d / n * amount


def prior(shape: tuple[int, int], p: np.ndarray, wear: str, grow: float = 1.0, chin_bg: float = 0.8,
          neck: float | None = None) -> np.ndarray:
    """GrabCut's initial mask (GC_BGD/GC_FGD/GC_PR_BGD/GC_PR_FGD) from the 68 landmarks.

    ``neck``: for masks that run down onto the neck (gaiters, bandanas), eye distances below the chin
    point that the probable mask reaches; the probable band below the jaw widens with it and the sure
    background starts 0.6 eye distances lower (``chin_bg`` is then ignored)."""
    h, w = shape
    le, re = p[36:42].mean(0), p[42:48].mean(0)
    eye_d = float(np.linalg.norm(re - le))
    up = np.array([(re - le)[1], -(re - le)[0]]) / eye_d  # unit vector towards the forehead
    jaw = p[0:17]
    centre = (p[30] + p[8]) / 2  # between nose tip and chin
    face_w = max(float(np.linalg.norm(p[16] - p[0])), 1.6 * eye_d)

    m = np.full((h, w), cv2.GC_BGD, np.uint8)
    # probable background: a generous region around the lower face
    outer = _push(jaw, centre, 0.45 * face_w * grow)
    outer = np.vstack([outer, outer[-1] + up * 1.0 * eye_d, outer[0] + up * 1.0 * eye_d])
    _poly(m, [outer], cv2.GC_PR_BGD)
    if neck is not None:  # ... and a band below the jaw, widening down the neck
        across = np.array([-up[1], up[0]])  # unit vector from the face's image-left to its image-right
        foot = p[8] - up * neck * eye_d
        wide = 0.5 * face_w * (1 + 0.45 * grow) + 0.25 * face_w
        _poly(m, [np.vstack([outer[2], outer[14], foot + across * wide - up * 0.6 * eye_d,
                             foot - across * wide - up * 0.6 * eye_d])], cv2.GC_PR_BGD)
    # probable mask: jaw line pushed out, chin pushed down, top just under the lower eyelids
    inner = _push(jaw[1:16], centre, 0.10 * face_w * grow)
    inner[7] = p[8] - up * 0.30 * eye_d  # below the chin
    top = p[[45, 46, 47, 42, 28, 39, 40, 41, 36]] - up * 0.12 * eye_d  # image-right to image-left
    _poly(m, [np.vstack([inner, top])], cv2.GC_PR_FGD)
    if neck is not None:  # the mask hangs below the jaw: probable mask goes down the neck
        _poly(m, [np.vstack([inner[0], inner[-1], foot + across * (wide - 0.2 * face_w),
                             foot - across * (wide - 0.2 * face_w)])], cv2.GC_PR_FGD)
        chin_bg = neck + 0.6
    # sure background: eyes (dilated), brows and everything above the eye line
    for eye in (p[36:42], p[42:48]):
        c = eye.mean(0)
        _poly(m, [c + (eye - c) * 1.5 + up * 0.05 * eye_d], cv2.GC_BGD)
    brow_line = np.vstack([p[17:27] + up * 0.0, p[26] + up * 3 * eye_d, p[17] + up * 3 * eye_d])
    _poly(m, [brow_line], cv2.GC_BGD)
    band_l = np.vstack([p[36] + up * 0.25 * eye_d, p[39] + up * 0.25 * eye_d, p[39] + up * 1.5 * eye_d,
                        p[36] + up * 1.5 * eye_d])
    band_r = np.vstack([p[42] + up * 0.25 * eye_d, p[45] + up * 0.25 * eye_d, p[45] + up * 1.5 * eye_d,
                        p[42] + up * 1.5 * eye_d])
    _poly(m, [band_l, band_r], cv2.GC_BGD)
    # sure background well below the chin (neck, clothes): a half-plane `chin_bg` eye distances below it
    below = p[8] - up * chin_bg * eye_d
    side = np.array([-up[1], up[0]]) * 4 * face_w
    _poly(m, [np.vstack([below - side, below + side, below + side - up * 4 * face_w,
                         below - side - up * 4 * face_w])], cv2.GC_BGD)
    if wear in ("nose", "mouth"):  # the uncovered nose (and mouth) are sure background
        nose = p[[31, 32, 33, 34, 35, 27]]
        c = nose.mean(0)
        _poly(m, [cv2.convexHull((c + (nose - c) * 1.1).astype(np.float32)).reshape(-1, 2)], cv2.GC_BGD)
    if wear == "mouth":
        lips = p[48:60]
        c = lips.mean(0)
        _poly(m, [(c + (lips - c) * 1.1).astype(np.float32)], cv2.GC_BGD)
    # sure mask core for this way of wearing
    if wear == "correct":
        core = np.vstack([p[31:36], p[48:60]])
    elif wear == "nose":
        core = p[48:60]
    elif wear == "chin":
        core = np.vstack([p[31:36], p[48:55]])
    else:  # "mouth": mask on the chin, below the lower lip
        core = np.vstack([p[57] * 0.35 + p[8] * 0.65, p[6] * 0.5 + p[57] * 0.5, p[10] * 0.5 + p[57] * 0.5,
                          p[8] - up * 0.0])
    c = core.mean(0)
    core = c + (core - c) * 0.8
    _poly(m, [cv2.convexHull(core.astype(np.float32)).reshape(-1, 2)], cv2.GC_FGD)
    return m


def label_photo(image: np.ndarray, wear: str, fixes: dict, pts: np.ndarray | None = None) -> np.ndarray:
    h, w = image.shape[:2]
    if pts is None:
        pts = landmarks(image, fixes)
    m = prior((h, w), pts, wear, fixes.get("grow", 1.0), fixes.get("chin_bg", 0.8), fixes.get("neck"))
    _poly(m, fixes.get("pfg", []), cv2.GC_PR_FGD)
    _poly(m, fixes.get("pbg", []), cv2.GC_PR_BGD)
    _poly(m, fixes.get("fg", []), cv2.GC_FGD)
    _poly(m, fixes.get("bg", []), cv2.GC_BGD)
    sure_fg = m == cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    cv2.grabCut(bgr, m, None, bgd, fgd, 6, cv2.GC_INIT_WITH_MASK)
    fg = ((m == cv2.GC_FGD) | (m == cv2.GC_PR_FGD)).astype(np.uint8)
    # largest part touching the sure core
    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=4)
    keep = np.zeros_like(fg)
    touching = set(np.unique(lab[sure_fg & (fg > 0)])) - {0}
    if touching:
        best = max(touching, key=lambda i: stats[i, cv2.CC_STAT_AREA])
        keep[lab == best] = 1
    # fill holes
    inv = (1 - keep).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    border = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])))
    for i in range(1, n):
        if i not in border:
            keep[lab == i] = 1
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    keep = cv2.morphologyEx(cv2.morphologyEx(keep, cv2.MORPH_OPEN, k), cv2.MORPH_CLOSE, k)
    _poly(keep, fixes.get("add", []), 1)
    _poly(keep, fixes.get("sub", []), 0)
    return (keep * 255).astype(np.uint8)


def photo_table(which: str) -> dict[str, tuple[str, str, str, dict]]:
    """The set's photos as {photo: (mask_type, wear, category, fixes)}; the first set has no categories."""
    if which == "first":
        return {name: (mtype, wear, "", fixes) for name, (mtype, wear, fixes) in PHOTOS.items()}
    return HARD_PHOTOS


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--set", choices=SETS, default="first",
                    help="first: labels/real-masked-photos; hard: labels/real-masked-photos-hard (default first)")
    ap.add_argument("--only", nargs="*", help="photo names to (re)make; the CSV is still written for all")
    args = ap.parse_args(argv)
    from maskgen.source import load_image
    from unmask.evaluation.labels import CATEGORY, LABEL_COLUMNS, MASK_TYPES, WEARS

    (args.out / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (mtype, wear, category, fixes) in sorted(photo_table(args.set).items()):
        assert mtype in MASK_TYPES and wear in WEARS, name
        png = f"masks/{Path(name).stem}.png"
        rows.append((name, png, mtype, wear) + ((category,) if args.set == "hard" else ()))
        if args.only and name not in args.only:
            continue
        image = load_image(args.photos / name)
        label = label_photo(image, wear, fixes)
        cv2.imwrite(str(args.out / png), label, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(name, mtype, wear, f"{(label > 0).mean():.3f}", file=sys.stderr)
    with open(args.out / "labels.csv", "w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(LABEL_COLUMNS + ((CATEGORY,) if args.set == "hard" else ()))  # the hard case: a 5th column
        wr.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
