"""A face seen at several framings: stage 1's maps of every view united on one crop, and stage 2's fill from
the tightest view that holds the map, with a looser one where the map goes past it.

Prediction cuts each face out as a *canvas*: the training crop (R x R, at the training framing) in its centre
and context around it at the same scale (``maskgen.align.align_face(margin=)``). A *view* is a centred square
of the canvas, ``side`` times R on a side, resized to R x R: side 1 is the training crop itself, side 1.44
shows the face at 0.72 / 1.44 = 0.5 of the crop. The networks only ever run on R x R views, the size they
were trained at, at framings from the training crop's (0.72) down to 0.42; the default pipeline trains on
0.6-0.8 (``--face-scale``), so the two loosest views lie below it and still help (measured: docs/unmask/
predict.md). Their attention pools over the whole input, so a larger canvas fed whole changes what they see
(measured on the labelled photos: Dice 0.93 at R x R, 0.81 on a canvas 1.5 R wide).

Why several views: real masks run past the training crop (the sides of a mask on a close-up, a gaiter on the
neck), and a looser view sees them whole; and each view misses other pixels, so their union misses fewer
(measured: docs/unmask/predict.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from maskgen.align import map_reaches_edge

VIEWS = (1.0, 1.2, 1.44)  # every face is seen at these sides (of R) by stage 1: framings 0.72, 0.6, 0.5
WIDE_VIEW = 1.7  # ... and at this one too (framing 0.42) when their map reaches the loosest one's edge
MIRROR = True  # ... each also mirrored (left-right): what one misses the other often finds
EDGE_BAND = 2  # px: a map within this distance of a view's edge reaches it

Stage1 = Callable[[np.ndarray], np.ndarray]  # N x R x R x 3 uint8 views -> N x R x R uint8 0/255 maps
Stage2 = Callable[[np.ndarray, np.ndarray], np.ndarray]  # views, their maps -> N x R x R x 3 outputs


def canvas_size(resolution: int, side: float) -> int:
    """The canvas's side in px for views up to ``side``: a whole number of pixels of R's parity, so that
    every view and the training crop sit exactly in its centre."""
    size = max(resolution, round(resolution * side))
    return size + (size - resolution) % 2


def view_box(size: int, side: float, resolution: int) -> tuple[int, int]:
    """(offset, length) of the view ``side`` in a canvas of ``size`` px: a centred square, at most the canvas."""
    length = min(size, canvas_size(resolution, side))
    length += (size - length) % 2
    return (size - length) // 2, min(size, length)


def cut(image: np.ndarray, side: float, resolution: int) -> np.ndarray:
    """The view ``side`` of a canvas image (or map), R x R (area resampling; the training crop exactly)."""
    offset, length = view_box(image.shape[0], side, resolution)
    region = image[offset:offset + length, offset:offset + length]
    if length == resolution:
        return np.ascontiguousarray(region)
    return cv2.resize(region, (resolution, resolution), interpolation=cv2.INTER_AREA)


def put(view: np.ndarray, side: float, size: int, interpolation: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A view's image or map brought back to the canvas's scale, and its (offset, length) there."""
    offset, length = view_box(size, side, view.shape[0])
    if length == view.shape[0]:
        return view, (offset, length)
    return cv2.resize(view, (length, length), interpolation=interpolation), (offset, length)


def predict_map(canvas: np.ndarray, valid: np.ndarray, stage1: Stage1, resolution: int,
                views: Sequence[float] = VIEWS, wide_view: float | None = WIDE_VIEW, mirror: bool = MIRROR
                ) -> np.ndarray:
    """Stage 1's map of the canvas (S x S uint8 0/255): the union of its maps of ``views`` (and of their
    mirror images with ``mirror``; only pixels on the photo, ``valid``), and of ``wide_view``'s where that
    union reaches the loosest view's edge; of it, only the pieces that touch the training crop's own map
    (``attached``)."""
    size = canvas.shape[0]
    sides = sorted(views)
    union, own = np.zeros((size, size), np.uint8), np.zeros((size, size), np.uint8)
    _add_views(union, canvas, sides, stage1, resolution, mirror, own)
    union = np.minimum(union, valid)  # past the photo nothing is masked
    if wide_view is not None and wide_view > sides[-1]:
        offset, length = view_box(size, sides[-1], resolution)
        region = union[offset:offset + length, offset:offset + length]
        if map_reaches_edge(region, EDGE_BAND) and offset > 0:
            _add_views(union, canvas, [wide_view], stage1, resolution, mirror)
            union = np.minimum(union, valid)
    return attached(union, np.minimum(own, valid))


def attached(union: np.ndarray, own: np.ndarray) -> np.ndarray:
    """The pieces (8-connected) of ``union`` that touch ``own``, the training crop's own map (its view at
    side 1): a mask is one piece of fabric on the face; a piece apart from it, which only a looser view
    sees, is something else (a dark shirt or a scarf below the chin, another person's mask). Without an own
    map, the whole union."""
    if not own.any():
        return union
    count, labels = cv2.connectedComponents((union > 0).astype(np.uint8), connectivity=8)
    if count <= 2:
        return union
    kept = np.unique(labels[own > 0])
    return np.where(np.isin(labels, kept[kept > 0]), 255, 0).astype(np.uint8)


def _add_views(union: np.ndarray, canvas: np.ndarray, sides: Sequence[float], stage1: Stage1, resolution: int,
               mirror: bool, own: np.ndarray | None = None) -> None:
    """``union`` |= stage 1's maps of the views ``sides`` (and of their mirror images), in one batch; ``own``
    |= those of the training crop itself (side 1)."""
    crops = np.stack([cut(canvas, side, resolution) for side in sides])
    if mirror:
        crops = np.concatenate([crops, crops[:, :, ::-1]])
    maps = stage1(np.ascontiguousarray(crops))
    for k, view_map in enumerate(maps):
        side = sides[k % len(sides)]
        view_map = view_map[:, ::-1] if k >= len(sides) else view_map
        _add(union, view_map, side)
        if own is not None and side == 1.0:
            _add(own, view_map, side)


def _add(union: np.ndarray, view_map: np.ndarray, side: float) -> None:
    """``union`` |= the view's map at the canvas's scale (bilinear, then halfway: no stair steps)."""
    back, (offset, length) = put(view_map, side, union.shape[0], cv2.INTER_LINEAR)
    union[offset:offset + length, offset:offset + length] |= np.where(back > 127, 255, 0).astype(np.uint8)


def fill_side(grown: np.ndarray, resolution: int, sides: Sequence[float]) -> float:
    """The tightest view of ``sides`` that holds every pixel of ``grown`` (the region stage 2 fills); the
    whole canvas when none does."""
    ys, xs = np.nonzero(grown)
    size = grown.shape[0]
    if not len(ys):
        return 1.0
    for side in sorted(sides):
        offset, length = view_box(size, side, resolution)
        if offset <= min(ys.min(), xs.min()) and max(ys.max(), xs.max()) < offset + length:
            return side
    return size / resolution


def fill(canvas: np.ndarray, canvas_map: np.ndarray, grown: np.ndarray, stage2: Stage2, resolution: int,
         sides: Sequence[float] = (*VIEWS, WIDE_VIEW), feather: float = 0.03) -> np.ndarray:
    """Stage 2's output on the canvas (S x S x 3 uint8): the training crop's own fill in the centre and, where
    the region it fills (``grown``) goes past the training crop, the fill of the tightest view that holds it,
    blended over a seam of ``feather`` R inside the training crop's edge; outside ``grown`` the canvas as is."""
    size = canvas.shape[0]
    loose = fill_side(grown, resolution, sides)
    centre = (size - resolution) // 2
    sides_run = [1.0] if loose <= 1.0 else [loose, 1.0]
    views = np.stack([cut(canvas, side, resolution) for side in sides_run])
    maps = np.stack([_view_map(canvas_map, side, resolution) for side in sides_run])
    outputs = stage2(views, maps)
    out = canvas.astype(np.float32)
    if loose > 1.0:
        back, (offset, length) = put(outputs[0], loose, size, cv2.INTER_CUBIC)
        out[offset:offset + length, offset:offset + length] = back
    weight = _centre_weight(resolution, feather if loose > 1.0 else 0.0)[..., None]
    inner = out[centre:centre + resolution, centre:centre + resolution]
    out[centre:centre + resolution, centre:centre + resolution] = weight * outputs[-1] + (1 - weight) * inner
    result = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return np.where(grown[..., None] > 0, result, canvas)


def _view_map(canvas_map: np.ndarray, side: float, resolution: int) -> np.ndarray:
    """The canvas's map in a view: every view pixel that holds any map pixel is masked (area, then > 0)."""
    return np.where(cut(canvas_map, side, resolution) > 0, 255, 0).astype(np.uint8)


def _centre_weight(resolution: int, feather: float) -> np.ndarray:
    """R x R weight of the training crop's own fill: 1 inside, falling to 0 over ``feather`` R at its edge."""
    band = max(1, round(feather * resolution)) if feather > 0 else 0
    if not band:
        return np.ones((resolution, resolution), np.float32)
    ramp = np.minimum(np.arange(resolution), np.arange(resolution)[::-1]).astype(np.float32)
    ramp = np.clip((ramp + 0.5) / band, 0.0, 1.0)
    return np.minimum.outer(ramp, ramp)
