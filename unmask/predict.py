"""Prediction: unmask aligned crops or whole photos with a trained two-stage model.

For a photo: find the face and its landmarks (maskgen.landmarks), align it to the training crop
(maskgen.align), segment the mask (stage 1), inpaint (stage 2), and paste the result back with the
inverse transform, blending over a feathered seam around the predicted map. Only the mask region
of the photo changes.

    from unmask.predict import Unmasker
    unmasker = Unmasker.from_checkpoint("runs/default")
    result = unmasker("photo.jpg")          # or an RGB uint8 array
    result.image, result.map

For files and folders (``unmask predict``): ``plan_outputs`` decides every output name before anything
runs (mirroring the input tree, never two inputs on one name), ``predict_files`` unmasks them one by
one, skipping the inputs it cannot use and checking every write.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import torch

from maskgen.align import DEFAULT_FACE_SCALE, align_face, map_to_photo, paste_back
from maskgen.landmarks import NoFace, detect
from maskgen.files import write_png_atomic
from maskgen.source import BadImage, encode_name, error_text, find_images, load_image

from .checkpoint import load_models
from .config import Config
from .data import images_to_model, images_to_uint8
from .models import Generator, MSeg

log = logging.getLogger(__name__)

MAP_DILATION = 0.02  # of the crop size: the pasted region reaches a little past the map's edge
IMAGE_SUFFIX, MAP_SUFFIX = ".png", "_map.png"  # NAME.png: the unmasked image; NAME_map.png: the predicted map
NAME_MAX = 255  # bytes in one file name on the common file systems


@dataclass
class UnmaskResult:
    image: np.ndarray  # RGB uint8, the input's size: the unmasked photo (or crop)
    map: np.ndarray  # uint8 0/255, the input's size: predicted mask pixels
    crop_input: np.ndarray  # the aligned crop fed to the network
    crop_output: np.ndarray  # the network's output crop
    crop_map: np.ndarray  # predicted map on the crop
    aligned: bool  # True when the input was taken as an aligned crop (no detection)
    matrix: np.ndarray | None = None  # source -> crop similarity, None for aligned input


class Unmasker:
    """Stage 1 + stage 2 on CPU or GPU. Without a stage-1 model, maps must be given."""

    def __init__(self, generator: Generator, mseg: MSeg | None, config: Config, device: str | torch.device = "cpu",
                 face_scale: float = DEFAULT_FACE_SCALE, threshold: float = 0.5):
        self.generator = generator.to(device).eval()
        self.mseg = mseg.to(device).eval() if mseg is not None else None
        self.config = config
        self.device = torch.device(device)
        self.resolution = config.train.resolution
        self.face_scale = face_scale
        self.threshold = threshold

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

    @torch.no_grad()
    def unmask_crops(self, crops: np.ndarray, maps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Aligned crops (N x R x R x 3 uint8, R = training resolution) -> (outputs, maps 0/255)."""
        x = images_to_model(torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).to(self.device))
        if maps is None:
            if self.mseg is None:
                if self.generator.use_map:
                    raise ValueError("no stage-1 model to predict maps; pass maps")
                m = torch.zeros_like(x[:, :1])
            else:
                m = self.mseg.predict_map(x, self.threshold)
        else:
            m = torch.from_numpy((np.asarray(maps) > 127).astype(np.float32))[:, None].to(self.device)
        out = self.generator(x, m) if self.generator.use_map else self.generator(x)
        out_u8 = images_to_uint8(out).permute(0, 2, 3, 1).cpu().numpy()
        return out_u8, (m[:, 0].cpu().numpy() * 255).astype(np.uint8)

    def _fit(self, image: np.ndarray) -> np.ndarray:
        r = self.resolution
        if image.shape[:2] == (r, r):
            return image
        return cv2.resize(image, (r, r), interpolation=cv2.INTER_AREA if image.shape[0] > r else cv2.INTER_CUBIC)

    def __call__(self, image: str | Path | np.ndarray, aligned: bool | None = None) -> UnmaskResult:
        """Unmask one image. ``aligned``: True = an aligned face crop (maskgen's layout), False = a
        photo to detect and align, None = detect, and take a square image as a crop if no face is found."""
        # Full size: the result replaces the input, so it must not come back smaller.
        photo = load_image(image, max_side=None) if isinstance(image, (str, Path)) else np.asarray(image)
        if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
            raise ValueError("expected an RGB uint8 image (H x W x 3)")
        face = None
        if aligned is not True:
            try:
                found = detect(photo)
                face = align_face(photo, found.points, self.resolution, self.face_scale)
            except NoFace:
                h, w = photo.shape[:2]
                if aligned is False or abs(h - w) > 0.05 * max(h, w):
                    raise
                log.info("no face found; taking the square image as an aligned crop")
        if face is None:
            crop = self._fit(photo)
            (out,), (crop_map,) = self.unmask_crops(crop[None])
            size = (photo.shape[1], photo.shape[0])
            full_map = cv2.resize(crop_map, size, interpolation=cv2.INTER_NEAREST)
            if crop.shape[:2] == photo.shape[:2]:
                result = out
            else:
                # Outside the map the photo keeps its own (full-resolution) pixels.
                up = cv2.resize(out, size, interpolation=cv2.INTER_CUBIC)
                result = np.where(full_map[..., None] > 0, up, photo)
            return UnmaskResult(result, full_map, crop, out, crop_map, aligned=True)
        (out,), (crop_map,) = self.unmask_crops(face.image[None])
        radius = max(1, int(MAP_DILATION * self.resolution))
        region = cv2.dilate(crop_map, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)) / 255.0
        pasted = paste_back(photo, out, face.matrix, region=region)
        full_map = map_to_photo(crop_map, face.matrix, photo.shape)
        return UnmaskResult(pasted, full_map, face.image, out, crop_map, aligned=False, matrix=face.matrix)


# --- files and folders ---------------------------------------------------------------------------------

class PredictError(Exception):
    """A problem that stops a prediction run (one-line message for the CLI)."""


@dataclass
class PlannedOutput:
    source: Path  # the input image
    image: Path  # where the unmasked image goes
    map: Path  # where the predicted map goes


@dataclass
class PredictSummary:
    done: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)


def shown(path: str | Path) -> str:
    """A path for messages: printable whatever bytes its name has (``maskgen.source.encode_name``)."""
    return encode_name(os.fspath(path))


def plan_outputs(inputs: Sequence[Path], out: Path) -> tuple[list[PlannedOutput], list[tuple[str, str]]]:
    """Every input image with its two output paths under ``out``, and the (input, reason) of what is skipped.

    A folder's images keep their path below it (one folder given: right under ``out``; several: under
    each folder's name, made unique); a file given by itself goes right under ``out``. The outputs are
    NAME.png and NAME_map.png with NAME the input's name without its suffix, or with it where two
    inputs would share a name (a.jpg, a.png), then with -2, -3, ... (compared ignoring case, for file
    systems that do). Names too long for the file system are shortened with a hash of the full name.

    The output folder never holds an input, so outputs never become inputs nor replace one (nor a photo
    next to an input): a folder's walk leaves out the output folder inside it (a rerun into ``photos/out``
    does not unmask the last run's results), and an input in the output folder, or the output folder
    itself given as input, is refused (PredictError) before anything is written.
    """
    in_out = _Within(out)
    sources: list[tuple[Path, PurePosixPath]] = []  # (input file, its path below out, suffix and all)
    skipped: list[tuple[str, str]] = []
    seen: set[Path] = set()
    folders = [item for item in inputs if item.is_dir()]
    for item in inputs:
        if in_out(item):
            what = "input folder" if item in folders else "input"
            where = "is" if item in folders and os.path.samefile(item, out) else "is inside"
            raise PredictError(f"the {what} {shown(item)} {where} the output folder {shown(out)}: "
                               "give an output folder outside the inputs")
    prefixes = _unique_names([item.resolve().name or "root" for item in folders]) if len(folders) > 1 else None
    for item in inputs:
        if item.is_dir():
            files, problems = find_images(item)
            skipped += [(shown(path), reason) for path, reason in problems if not in_out(path)]
            prefix = PurePosixPath(prefixes[folders.index(item)]) if prefixes else PurePosixPath()
            found = [(f, prefix / f.relative_to(item).as_posix()) for f in files if not in_out(f)]
        else:
            found = [(item, PurePosixPath(item.name))]
        for path, rel in found:
            where = Path(os.path.abspath(path))
            if where not in seen:  # given twice (a file and its folder): done once
                seen.add(where)
                sources.append((path, rel))
    claimed_files: set[str] = set()
    claimed_dirs: set[str] = set()
    plan = []
    for path, rel in sources:
        for base in _candidate_names(rel):
            name = _fit_name(base.name)
            outputs = [base.with_name(name + suffix) for suffix in (IMAGE_SUFFIX, MAP_SUFFIX)]
            keys = [str(o).casefold() for o in outputs]
            parents = [str(d).casefold() for d in base.parents if str(d) != "."]
            if not any(k in claimed_files or k in claimed_dirs for k in keys) and not claimed_files & set(parents):
                break
        claimed_files.update(keys)
        claimed_dirs.update(parents)
        plan.append(PlannedOutput(path, out / outputs[0], out / outputs[1]))
    return plan, skipped


class _Within:
    """Whether a path lies in ``folder``, or is a link into it. Folders are compared by identity (device,
    inode), so links, ``..`` and case-insensitive names are seen through; a folder not made yet holds nothing."""

    def __init__(self, folder: Path):
        self.folder = _identity(folder)
        self._known: dict[str, bool] = {}  # resolved path -> in the folder

    def __call__(self, path: Path) -> bool:
        entry = os.path.join(os.path.realpath(path.parent), path.name)  # where the entry lies (a link: not its target)
        return self.folder is not None and (self._resolved(entry) or self._resolved(os.path.realpath(path)))

    def _resolved(self, path: str) -> bool:
        if path not in self._known:
            parent = os.path.dirname(path)
            self._known[path] = _identity(path) == self.folder or (parent != path and self._resolved(parent))
        return self._known[path]


def _identity(path: str | Path) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _unique_names(names: list[str]) -> list[str]:
    """The names with -2, -3, ... added to repeats."""
    counts: dict[str, int] = {}
    unique = []
    for name in names:
        counts[name] = counts.get(name, 0) + 1
        unique.append(name if counts[name] == 1 else f"{name}-{counts[name]}")
    return unique


def _candidate_names(rel: PurePosixPath):
    """Output names (without suffix) for an input, in order of preference."""
    yield rel.with_suffix("") if rel.suffix else rel
    yield rel
    n = 2
    while True:
        yield rel.with_name(f"{rel.name}-{n}")
        n += 1


def _fit_name(name: str) -> str:
    """``name``, shortened (keeping a hash of it) where its outputs' names would pass NAME_MAX bytes."""
    room = NAME_MAX - max(len(IMAGE_SUFFIX), len(MAP_SUFFIX))
    if len(os.fsencode(name)) <= room:
        return name
    tag = "-" + hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
    while len(os.fsencode(name + tag)) > room:
        name = name[:-1]
    return name + tag


def predict_files(unmasker: Unmasker, plan: list[PlannedOutput], aligned: bool | None = None,
                  on_skip: Callable[[str, str], None] | None = None) -> PredictSummary:
    """Unmask each planned input and write its two outputs. An input that cannot be used (unreadable,
    no face, ...) is skipped with its reason and the rest go on; a failed write stops the run (PredictError)."""
    summary = PredictSummary()
    for item in plan:
        try:
            result = unmasker(item.source, aligned=aligned)
        except (BadImage, NoFace) as err:
            reason = str(err)
        except Exception as err:  # a library error on a strange file must not end the run
            reason = error_text(err, item.source)
        else:
            for target, pixels in ((item.image, cv2.cvtColor(result.image, cv2.COLOR_RGB2BGR)), (item.map, result.map)):
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    write_png_atomic(target, pixels)
                except OSError as err:
                    raise PredictError(f"cannot write {shown(target)}: {err.strerror or err} "
                                       f"({summary.done} inputs done before)") from None
            summary.done += 1
            continue
        summary.skipped.append((shown(item.source), reason))
        if on_skip:
            on_skip(shown(item.source), reason)
    return summary
