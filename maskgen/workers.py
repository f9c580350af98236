"""What the build's worker processes run: one task per chunk of images (landmarks) or of samples
(compose), returning plain records to the parent, which alone writes files.

Kept apart from ``maskgen.build`` so a worker imports only the image code (numpy, OpenCV, dlib, Pillow):
no pandas, webdataset or torch, which would add seconds to the start of every worker.
"""

from __future__ import annotations

import numpy as np

from .align import align_face, framing
from .compose import MaskOptions, encode, feature_rng, make_triplet
from .face_points import alignment_problem
from .landmarks import NoFace, locate
from .source import BadImage, error_text, load_image, read_source


def single_threaded() -> None:
    """Worker processes already use every core; OpenCV's own threads would only contend."""
    import cv2

    cv2.setNumThreads(1)


def landmark_chunk(items: list[tuple[str, str, str | None, list | None, list | None]]) -> list[dict]:
    """Landmarks of (path, source, its content digest, 5-point row or None, 5-point prior or None) items.
    Each image is decoded from bytes of that digest (``read_source``): a file replaced since it was hashed
    is a failure, not landmarks recorded under the old content."""
    single_threaded()
    records = []
    for path, rel, digest, pts5, prior in items:
        record = {"source": rel, "ok": False, "reason": "", "method": "", "n_faces": 0, "points": None}
        try:
            image = load_image(path, data=read_source(path, digest))
            found = locate(image, None if pts5 is None else np.asarray(pts5),
                           None if prior is None else np.asarray(prior))
            record.update(ok=True, method=found.method, n_faces=found.n_faces,
                          points=np.round(found.points, 3).ravel().tolist())
        except (BadImage, NoFace) as err:
            record["reason"] = str(err)
        except Exception as err:  # a library error on a strange file must not end the build
            record["reason"] = f"landmarks failed: {error_text(err, path)}"
        records.append(record)
    return records


def _photo_loader(photo: dict):
    """Loads another source image for a photo print, from bytes of its recorded digest; None when it is not
    a readable image (the print is then made up)."""
    def load() -> np.ndarray | None:
        try:
            return load_image(photo["path"], data=read_source(photo["path"], photo["sha256"]))
        except (BadImage, OSError):
            return None
    return load


def compose_task(specs: list[dict], options: MaskOptions, res: int, face_scale: float | tuple[float, float],
                 seed: int, jpeg_quality: int) -> list[tuple]:
    """Compose samples; specs of one source are consecutive so its image is read once (and aligned once at a
    fixed framing), from bytes of the content digest the build recorded for it (``spec["sha256"]``, see
    ``landmark_chunk``). ``face_scale``: one framing, or a range (low, high) drawn from per sample."""
    single_threaded()
    out, cache_rel, image, face, error = [], None, None, None, None
    for spec in specs:
        scale = framing(face_scale, feature_rng(seed, spec["key"], "framing"))
        if spec["source"] != cache_rel:
            cache_rel, image, face, error = spec["source"], None, None, None
            try:
                image = load_image(spec["path"], data=read_source(spec["path"], spec["sha256"]))
                problem = alignment_problem(spec["points"], image.shape)  # NaN, endless or degenerate warps
                if problem:
                    raise BadImage(problem)
            except BadImage as err:
                error, image = str(err), None
            except Exception as err:
                error, image = f"align failed: {error_text(err, spec['path'])}", None
        if image is not None and (face is None or face.face_scale != scale):
            try:
                face = align_face(image, np.asarray(spec["points"], np.float64).reshape(68, 2), res, scale)
            except Exception as err:
                error, face = f"align failed: {error_text(err, spec['path'])}", None
        if face is None:
            out.append((spec["key"], None, error))
            continue
        photo = spec.get("photo")
        try:
            triplet = make_triplet(face, options, seed, spec["key"], source=spec["source"],
                                   identity=spec["identity"], split=spec["split"],
                                   landmark_method=spec["method"],
                                   photo=None if photo is None else (photo["source"], _photo_loader(photo)))
            out.append((spec["key"], encode(triplet, jpeg_quality), triplet.meta.as_dict()))
        except Exception as err:
            out.append((spec["key"], None, f"mask failed: {error_text(err, spec['path'])}"))
    return out
