"""Prediction: unmask aligned crops or whole photos with a trained two-stage model.

For a photo: find the face and its landmarks (maskgen.landmarks), align it to the training crop
(maskgen.align), segment the mask (stage 1), inpaint (stage 2), and paste the result back with the
inverse transform, blending over a feathered seam around the predicted map. Only the mask region
of the photo changes.

    from unmask.predict import Unmasker
    unmasker = Unmasker.from_checkpoint("runs/default")
    result = unmasker("photo.jpg")          # or an RGB uint8 array
    result.image, result.map
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from maskgen.align import DEFAULT_FACE_SCALE, align_face, map_to_photo, paste_back
from maskgen.landmarks import NoFace, detect
from maskgen.source import load_image

from .checkpoint import load_models
from .config import Config
from .data import images_to_model, images_to_uint8
from .models import Generator, MSeg

log = logging.getLogger(__name__)

MAP_DILATION = 0.02  # of the crop size: the pasted region reaches a little past the map's edge


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
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", **kwargs) -> "Unmasker":
        config, mseg, generator = load_models(path, device)
        if generator is None:
            raise ValueError(f"{path} holds no stage-2 (generator) weights: train with --stage gan or all")
        if mseg is None and generator.use_map:
            log.warning("%s holds no stage-1 model: maps must be passed to unmask_crops", path)
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
        photo = load_image(image) if isinstance(image, (str, Path)) else np.asarray(image)
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
