"""Prediction: unmask aligned crops or whole photos with a trained two-stage model.

For a photo: find every face and its landmarks (``maskgen.landmarks.detect_all``), align each to the
training crop (``maskgen.align``; where the crop reaches past the photo it is filled with the photo's
edge pixels, never a mirrored face), segment the mask (stage 1), inpaint (stage 2), and paste each result
back with the inverse transform, blending over a feathered seam around the predicted map. Only the mask
regions of the photo change, and only from crop pixels that lie on the photo.

Python API::

    from unmask.predict import Unmasker
    unmasker = Unmasker.from_checkpoint("runs/default")
    result = unmasker("photo.jpg")             # or an RGB uint8 array; max_faces=, min_face=
    result.image, result.map                   # the unmasked photo; the union of every face's map (photo size)
    for face in result.faces:                  # largest first: FaceResult
        face.box, face.points, face.coverage   # detector box, 5 points (photo pixels), share of the face crop masked
        face.crop_input, face.crop_map, face.crop_output, face.valid   # S x S crops: the R x R training crop
                                               # and context around it (face.margin px a side); valid: on the photo
    fixed = unmasker.refill(photo, result.faces[0], edited_map)  # stage 2 again on a map drawn by hand:
                                               # H x W (the photo's) or else S x S (the crop's); else ValueError
    fixed = unmasker.refill_crop(result.faces[0], crop_map)      # on a map of the crop, whatever the photo
    image = unmasker.paste(photo, [fixed] + result.faces[1:])    # every face pasted back

``UnmaskResult``'s crop fields (``crop_input``, ``crop_map``, ``crop_output``, ``matrix``) are the
largest face's. Overlapping faces are pasted smallest first, so the largest ends on top.

For files and folders (``unmask predict``): ``plan_outputs`` (``unmask.outputs``) decides every output
name before anything runs (mirroring the input tree, never two inputs on one name),
``unmask.predict_files.predict_files`` unmasks them one by one, skipping the inputs it cannot use and
checking every write, and records every face in ``OUT/results.jsonl``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from maskgen.align import (
    DEFAULT_FACE_SCALE,
    AlignedFace,
    add_map_to_photo,
    align_face,
    canonical_points,
    crop_footprint,
    crop_points_to_source,
    inside_photo,
    map_reaches_edge,
    map_to_crop,
    map_to_photo,
    paste_back,
    paste_back_into,
    resize_matrix,
    similarity_transform,
    window_matrix,
)
from maskgen.face_points import five_points
from maskgen.landmarks import NoFace, detect_all
from maskgen.source import MAX_SIDE, load_image

from . import views
from .checkpoint import load_models
from .config import Config
from .models import Generator, MSeg
from .outputs import (  # noqa: F401  (unmask.predict's API, with Unmasker)
    MAX_FACES,
    MIN_FACE,
    PlannedOutput,
    PredictError,
    PredictSummary,
    plan_outputs,
    shown,
)
from .tensors import images_to_model, quantize, to_nhwc
from .views import MIRROR, VIEWS, WIDE_VIEW, canvas_size

log = logging.getLogger(__name__)

# Stage 2 fills each map grown by this share of the crop (1 px at 128, 2 at 256): a map's edge is where
# stage 1 is least sure, and a mask pixel left out stays in the output while a face pixel repainted only
# blurs a little. Measured on the 75 labelled photos (128 px model): the share of each label's pixels
# left outside the filled region falls from 12.6% to 9.8% with 1 px; 2 px repaints three times more face.
MAP_GROWTH = 1 / 128
MAP_DILATION = 0.02  # of the crop size: the pasted region reaches this far past the filled one
# A photo whose longer side is over this is large: its faces are found on a copy of this size (``detect_all``'s
# max_side; the dataset's detection sees no more, ``maskgen.source.MAX_SIDE``), each face is cut out of a window
# of the photo around it, and pasted back and mapped over that window only: time and memory go with the faces,
# not the photo (a 100-Mpx photo: docs/unmask/predict.md). Smaller photos are handled whole, as before.
LARGE_PHOTO_SIDE = MAX_SIDE


class FacesTooSmall(NoFace):
    """Faces were found, but none of at least ``min_face`` px (the detector box's shorter side)."""

    def __init__(self, min_face: int, found: int):
        super().__init__(f"no face of at least {min_face} px (--min-face; {found} smaller found)")
        self.min_face, self.found = min_face, found


@dataclass
class FaceResult:
    """One face of a photo: where it is, what the networks saw and made of it."""
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in photo pixels (the detector's box, clipped to the photo)
    points: np.ndarray  # 5 x 2 float, photo pixels: eyes, nose tip, mouth corners (maskgen's five_points)
    matrix: np.ndarray  # 2 x 3, photo -> crop similarity
    # The crops are S x S, S = R + 2 * margin: the training crop (its centre R x R) and the context around it
    # (``unmask.views``: stage 1 sees several views of it, stage 2 fills the map from the tightest that holds it).
    crop_input: np.ndarray  # S x S x 3 uint8: the aligned crop fed to the networks (past the photo: its edge repeated)
    valid: np.ndarray  # S x S uint8 0/255: the crop pixels that lie on the photo (the only ones pasted back)
    crop_map: np.ndarray  # S x S uint8 0/255: stage 1's map (or the edited one after refill); stage 2 filled it
    # grown by MAP_GROWTH (``grow_maps``), and the paste reaches MAP_DILATION further
    crop_output: np.ndarray  # S x S x 3 uint8: stage 2's output
    coverage: float  # share of the face crop's (the centre R x R's) pixels on the photo that the map covers
    seconds: float  # alignment and both stages (or stage 2 alone after refill) for this face
    margin: int = 0  # px added on every side of the R x R training crop (for the widest view, ``unmask.views``)

    @property
    def map_at_crop_edge(self) -> bool:
        """The map reaches the crop's edge where the crop lies on the photo: mask may go on past it."""
        return map_reaches_edge(self.crop_map, views.EDGE_BAND)

    @property
    def map_at_photo_edge(self) -> bool:
        """The map reaches the photo's edge: the mask may go on past the photo, where nothing can be filled."""
        return map_reaches_edge(self.crop_map, views.EDGE_BAND, self.valid)

    def record(self) -> dict:
        """The face for results.jsonl (JSON types, photo pixels)."""
        return {"box": [int(v) for v in self.box], "points": np.round(self.points, 2).tolist(),
                "coverage": round(float(self.coverage), 6), "seconds": round(float(self.seconds), 4),
                "crop_size": int(self.crop_map.shape[0]), "map_at_crop_edge": self.map_at_crop_edge,
                "map_at_photo_edge": self.map_at_photo_edge}


@dataclass
class UnmaskResult:
    image: np.ndarray  # RGB uint8, the input's size: the unmasked photo (or crop), every face pasted back
    map: np.ndarray  # uint8 0/255, the input's size: the union of every face's map
    crop_input: np.ndarray  # the largest face's aligned crop fed to the network
    crop_output: np.ndarray  # the largest face's output crop
    crop_map: np.ndarray  # the largest face's map on the crop
    aligned: bool  # True when the input was taken as an aligned crop (no detection)
    matrix: np.ndarray | None = None  # the largest face's source -> crop similarity, None for aligned input
    faces: list[FaceResult] = field(default_factory=list)  # every face, largest first


class Unmasker:
    """Stage 1 + stage 2 on CPU or GPU. Without a stage-1 model, maps must be given. ``threshold``
    overrides M-Seg's own (set on the validation split when it was trained). ``views``, ``wide_view``: the
    framings a photo's face is seen at, ``mirror``: each also mirrored (``unmask.views``; ``views=(1.0,),
    wide_view=None, mirror=False``: the training crop alone). ``large_side``: photos whose longer side is
    over it are handled face by face (``LARGE_PHOTO_SIDE``); None: every photo whole."""

    def __init__(self, generator: Generator, mseg: MSeg | None, config: Config, device: str | torch.device = "cpu",
                 face_scale: float = DEFAULT_FACE_SCALE, threshold: float | None = None,
                 views: Sequence[float] = VIEWS, wide_view: float | None = WIDE_VIEW, mirror: bool = MIRROR,
                 large_side: int | None = LARGE_PHOTO_SIDE):
        self.generator = generator.to(device).eval()
        self.mseg = mseg.to(device).eval() if mseg is not None else None
        self.config = config
        self.device = torch.device(device)
        self.resolution = config.train.resolution
        self.face_scale = face_scale
        self.threshold = threshold
        self.views, self.wide_view, self.mirror = tuple(sorted(views)), wide_view, mirror
        widest = max(self.views + ((wide_view,) if wide_view else ()))
        self.margin = (canvas_size(self.resolution, widest) - self.resolution) // 2
        self.large_side = large_side

    def _large(self, photo: np.ndarray) -> bool:
        return self.large_side is not None and max(photo.shape[:2]) > self.large_side

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", maps_given: bool = False,
                        **kwargs) -> "Unmasker":
        """The models of a run directory or checkpoint file. Both stages are needed (ValueError otherwise)
        unless the generator takes no map, or ``maps_given``: the caller passes maps to ``unmask_crops``."""
        config, mseg, generator = load_models(path, device)
        if generator is None:
            raise ValueError(f"{path} holds no stage-2 (generator) weights: train with --stage gan or all")
        if mseg is None and generator.use_map and not maps_given:
            raise ValueError(f"{path} holds no stage-1 (M-Seg) model to predict the maps its generator needs: "
                             "give a run directory with both checkpoints (seg.pt and gan.pt)")
        return cls(generator, mseg, config, device, **kwargs)

    def _to_model(self, crops: np.ndarray) -> torch.Tensor:
        return images_to_model(torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).to(self.device))

    @torch.no_grad()
    def predict_maps(self, crops: np.ndarray) -> np.ndarray:
        """Stage 1 on aligned crops (N x R x R x 3 uint8: training crops or views of a face, ``unmask.views``;
        any size a multiple of 32 runs) -> maps (N x R x R uint8 0/255); zeros for a generator that takes no
        map."""
        x = self._to_model(crops)
        if self.mseg is None:
            if self.generator.use_map:
                raise ValueError("no stage-1 model to predict maps; pass maps")
            return np.zeros(x.shape[:1] + x.shape[2:], np.uint8)
        return (self.mseg.predict_map(x, self.threshold)[:, 0].cpu().numpy() * 255).astype(np.uint8)

    @torch.no_grad()
    def unmask_crops(self, crops: np.ndarray, maps: np.ndarray | None = None, grow: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Aligned crops (N x R x R x 3 uint8, as ``predict_maps``) -> (outputs, maps 0/255); stage 1
        predicts the maps unless they are given (uint8 > 127 or bool: masked). Stage 2 fills each map
        grown by ``MAP_GROWTH`` (``grow=False``: the map as it is, e.g. an exact ground-truth map); the
        maps returned are not grown."""
        binary = _binary_maps(self.predict_maps(crops) if maps is None else maps)
        x = self._to_model(crops)
        if self.generator.use_map:
            region = _grow(binary, self.resolution) if grow else binary
            out = self.generator(x, torch.from_numpy(region > 0).float()[:, None].to(self.device))
        else:
            out = self.generator(x)
        return to_nhwc(quantize(out)), binary

    def _fit(self, image: np.ndarray) -> np.ndarray:
        r = self.resolution
        if image.shape[:2] == (r, r):
            return image
        return cv2.resize(image, (r, r), interpolation=cv2.INTER_AREA if image.shape[0] > r else cv2.INTER_CUBIC)

    def __call__(self, image: str | Path | np.ndarray, aligned: bool | None = None, max_faces: int = MAX_FACES,
                 min_face: int = MIN_FACE) -> UnmaskResult:
        """Unmask every face of one image: the ``max_faces`` largest whose detector box is at least
        ``min_face`` px on its shorter side. ``aligned``: True = an aligned face crop (maskgen's layout),
        False = a photo to detect and align, None = detect, and take a square image as a crop if no face
        is found. NoFace (with the reason) when there is no face to unmask."""
        photo = _photo(image)
        if aligned is not True:
            found = detect_all(photo, max_side=self.large_side)
            faces = [f for f in found if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= min_face][:max_faces]
            if faces:
                results = [self._unmask_face(photo, f.points, f.box) for f in faces]
                largest = results[0]
                return UnmaskResult(self.paste(photo, results), self.photo_map(photo, results), largest.crop_input,
                                    largest.crop_output, largest.crop_map, aligned=False, matrix=largest.matrix,
                                    faces=results)
            h, w = photo.shape[:2]
            too_small = FacesTooSmall(min_face, len(found)) if found else None
            reason = str(too_small) if found else "no face detected"
            if aligned is False or abs(h - w) > 0.05 * max(h, w):
                raise too_small or NoFace(reason)
            log.info("%s; taking the square image as an aligned crop", reason)
        return self._unmask_aligned(photo)

    def _unmask_face(self, photo: np.ndarray, landmarks: np.ndarray, box: tuple[int, ...]) -> FaceResult:
        start = time.perf_counter()
        face = self._align(photo, landmarks, self.margin)
        valid = inside_photo(face.matrix, face.image.shape[0], photo.shape)
        crop_map = views.predict_map(face.image, valid, self.predict_maps, self.resolution, self.views,
                                     self.wide_view, self.mirror)
        out = self._fill(face.image, crop_map)
        h, w = photo.shape[:2]
        clipped = (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))
        return FaceResult(clipped, five_points(landmarks), face.matrix, face.image, valid, crop_map, out,
                          _coverage(crop_map, valid, self.margin), time.perf_counter() - start, self.margin)

    def _fill(self, canvas: np.ndarray, crop_map: np.ndarray) -> np.ndarray:
        """Stage 2 on a face's crop (``unmask.views.fill``): the map grown by ``MAP_GROWTH`` filled."""
        sides = self.views + ((self.wide_view,) if self.wide_view else ())
        return views.fill(canvas, crop_map, _grow(crop_map, self.resolution),
                          lambda crops, maps: self.unmask_crops(crops, maps)[0], self.resolution, sides)

    def _align(self, photo: np.ndarray, landmarks: np.ndarray, margin: int) -> AlignedFace:
        """The face's crop (``align_face``, edge fill); of a large photo, cut out of a window around the face
        (its matrix still the photo's): align_face's pre-shrink for a face much larger than the crop then
        resizes that window, not the photo."""
        def aligned(image: np.ndarray, points: np.ndarray) -> AlignedFace:
            return align_face(image, points, self.resolution, self.face_scale, fill="edge", margin=margin)

        if not self._large(photo):
            return aligned(photo, landmarks)
        # align_face's own fit (the template at this framing and margin) says which window the crop reads.
        template = canonical_points(self.resolution, self.face_scale) + margin
        matrix = similarity_transform(five_points(landmarks), template)
        if not np.all(np.isfinite(matrix)):
            return aligned(photo, landmarks)  # its error, as for any photo
        x0, y0, x1, y1 = crop_footprint(matrix, self.resolution + 2 * margin, photo.shape)
        if x0 >= x1 or y0 >= y1:
            return aligned(photo, landmarks)  # the crop lies off the photo: edge pixels all over, as before
        face = aligned(photo[y0:y1, x0:x1], landmarks - (x0, y0))
        return dataclasses.replace(face, matrix=window_matrix(face.matrix, -x0, -y0))

    def _unmask_aligned(self, photo: np.ndarray) -> UnmaskResult:
        """An aligned crop of any size: resized to the training resolution, its output resized back."""
        start = time.perf_counter()
        crop = self._fit(photo)
        (out,), (crop_map,) = self.unmask_crops(crop[None])
        h, w = photo.shape[:2]
        full_map = cv2.resize(crop_map, (w, h), interpolation=cv2.INTER_NEAREST)
        if crop.shape[:2] == photo.shape[:2]:
            result = out
        else:
            # Outside the region stage 2 filled the photo keeps its own (full-resolution) pixels.
            up = cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)
            filled = cv2.resize(grow_maps(crop_map), (w, h), interpolation=cv2.INTER_NEAREST)
            result = np.where(filled[..., None] > 0, up, photo)
        matrix = resize_matrix(photo.shape, self.resolution)
        valid = np.full(crop_map.shape, 255, np.uint8)
        points = crop_points_to_source(canonical_points(self.resolution, self.face_scale), matrix)
        face = FaceResult((0, 0, w, h), points, matrix, crop, valid, crop_map, out, _coverage(crop_map, valid),
                          time.perf_counter() - start)
        return UnmaskResult(result, full_map, crop, out, crop_map, aligned=True, faces=[face])

    def refill(self, photo: str | Path | np.ndarray, face: FaceResult, edited_map: np.ndarray) -> FaceResult:
        """``face`` with stage 2 run again on ``edited_map`` (uint8 0/255 or bool; > 127 masked). A map of
        the photo's size (H x W) is drawn on the photo and carried onto the crop, even when the photo is
        the crop's size itself (for an aligned input the two coincide); otherwise a map of the crop's size
        (S x S, ``FaceResult``) is the crop's (``refill_crop``). ValueError naming both sizes for any other
        shape."""
        photo = _photo(photo)
        edited = _binary(edited_map)
        r, (h, w) = face.crop_map.shape[0], photo.shape[:2]
        if edited.shape == (h, w):
            return self.refill_crop(face, map_to_crop(np.ascontiguousarray(edited), face.matrix, r))
        if edited.shape == (r, r):
            return self.refill_crop(face, edited)
        size = "x".join(map(str, (*edited.shape[1::-1], *edited.shape[2:]))) if edited.ndim > 1 else edited.shape
        raise ValueError(f"edited map is {size}: draw it at the photo's size ({w}x{h}) or the crop's ({r}x{r})")

    def refill_crop(self, face: FaceResult, crop_map: np.ndarray) -> FaceResult:
        """``face`` with stage 2 run again on ``crop_map``, drawn on its crop (S x S, ``FaceResult``; uint8
        0/255 or bool; > 127 masked) whatever the photo's size. Only the crop's pixels on the photo count."""
        crop_map = _binary(crop_map)
        r = face.crop_map.shape[0]
        if crop_map.shape != (r, r):
            raise ValueError(f"crop map is {'x'.join(map(str, crop_map.shape[::-1]))}: the crop is {r}x{r}")
        start = time.perf_counter()
        crop_map = np.where((crop_map > 127) & (face.valid > 0), 255, 0).astype(np.uint8)
        out = self._fill(face.crop_input, crop_map)
        return dataclasses.replace(face, crop_map=crop_map, crop_output=out,
                                   coverage=_coverage(crop_map, face.valid, face.margin),
                                   seconds=time.perf_counter() - start)

    def paste(self, photo: str | Path | np.ndarray, faces: Sequence[FaceResult]) -> np.ndarray:
        """The photo with each face's output pasted back over the region stage 2 filled (``grow_maps``),
        dilated by ``MAP_DILATION``, only from crop pixels on the photo; smallest face first, so the largest
        ends on top where faces overlap (equal areas: the later in ``faces`` first, so the earlier ends on
        top, as if ``faces`` were ordered largest first)."""
        result = _photo(photo)
        large = self._large(result)
        if large:
            result = result.copy()  # each face pasted into it over its window (paste_back_into)
        order = sorted(range(len(faces)), key=lambda i: (_area(faces[i].box), -i))
        radius = max(1, int(MAP_DILATION * self.resolution))
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
        for i in order:
            face = faces[i]
            region = cv2.dilate(grow_maps(face.crop_map, self.resolution), disc) / 255.0
            if large:
                paste_back_into(result, face.crop_output, face.matrix, region=region, valid=face.valid)
            else:
                result = paste_back(result, face.crop_output, face.matrix, region=region, valid=face.valid)
        return result

    def photo_map(self, photo: str | Path | np.ndarray, faces: Sequence[FaceResult], filled: bool = False
                  ) -> np.ndarray:
        """The union of the faces' maps at the photo's size (uint8 0/255); ``filled``: the regions stage 2
        filled (the maps grown by ``MAP_GROWTH``) instead."""
        photo = _photo(photo)
        union = np.zeros(photo.shape[:2], np.uint8)
        for face in faces:
            crop_map = grow_maps(face.crop_map, self.resolution) if filled else face.crop_map
            if self._large(photo):
                add_map_to_photo(union, crop_map, face.matrix)
            else:
                union |= map_to_photo(crop_map, face.matrix, photo.shape)
        return union


def _binary_maps(maps: np.ndarray) -> np.ndarray:
    """Maps (uint8 > 127 or bool: masked) as uint8 0/255. ValueError for a map of 0s and 1s (or values
    up to 1), which would otherwise read as empty: nothing filled, silently."""
    maps = np.asarray(maps)
    if maps.dtype != bool and maps.size and 0 < maps.max() <= 1:
        raise ValueError("maps are 0/255 (> 127: masked) or bool, not 0/1: multiply by 255 or pass a bool map")
    return np.where(_binary(maps) > 127, 255, 0).astype(np.uint8)


def grow_maps(maps: np.ndarray, resolution: int | None = None) -> np.ndarray:
    """The region stage 2 fills: maps (S x S or N x S x S, uint8 > 127 or bool: masked) grown by
    ``MAP_GROWTH`` of the training crop's size ``resolution`` (by default S; at least a pixel), as uint8
    0/255 of the same shape."""
    return _grow(_binary_maps(maps), resolution)


def _grow(binary: np.ndarray, resolution: int | None = None) -> np.ndarray:
    """``grow_maps`` of maps already uint8 0/255."""
    if not binary.size:
        return binary
    radius = max(1, round(MAP_GROWTH * (resolution or binary.shape[-1])))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    flat = binary.reshape(-1, *binary.shape[-2:])
    return np.stack([cv2.dilate(m, disc) for m in flat]).reshape(binary.shape)


def _photo(image: str | Path | np.ndarray) -> np.ndarray:
    # Full size: the result replaces the input, so it must not come back smaller.
    photo = load_image(image, max_side=None) if isinstance(image, (str, Path)) else np.asarray(image)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError("expected an RGB uint8 image (H x W x 3)")
    return photo


def _binary(edited_map: np.ndarray) -> np.ndarray:
    """A map given as bool or uint8, as uint8 (> 127: masked)."""
    edited = np.asarray(edited_map)
    return edited.astype(np.uint8) * 255 if edited.dtype == bool else edited.astype(np.uint8, copy=False)


def _coverage(crop_map: np.ndarray, valid: np.ndarray, margin: int = 0) -> float:
    """The share of the face crop's (the centre R x R's) pixels on the photo that the map covers."""
    if margin:
        crop_map, valid = crop_map[margin:-margin, margin:-margin], valid[margin:-margin, margin:-margin]
    inside = valid > 0
    return float((crop_map[inside] > 0).mean()) if inside.any() else 0.0


def _area(box: tuple[int, ...]) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])
