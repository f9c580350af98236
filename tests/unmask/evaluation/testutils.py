"""Helpers of the evaluation tests: tiny checkpoints laid out as ``unmask train`` writes them; labelled
real photos made up, and a stand-in Unmasker for them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from maskgen.landmarks import NoFace
from unmask.checkpoint import FORMAT_VERSION, checkpoint_path, save_checkpoint
from unmask.config import preset
from unmask.models import Generator, MSeg
from unmask.predict import UnmaskResult

EVAL_RES = 64  # networks and metrics at 64 px keep a whole evaluation to seconds


def write_tiny_run(run_dir: Path, use_map: bool = True, resolution: int = EVAL_RES, seed: int = 0,
                   adversarial: float = 0.1) -> Path:
    """A run directory with freshly initialised width-8 models, as ``unmask train`` lays them out."""
    cfg = preset("tiny").replace(**{"train.resolution": resolution, "generator.use_map": use_map,
                                    "loss.adv": adversarial})
    torch.manual_seed(seed)
    if use_map:
        save_checkpoint(checkpoint_path(run_dir, "seg"), {
            "format": FORMAT_VERSION, "stage": "seg", "config": cfg.to_dict(),
            "models": {"mseg": MSeg(cfg.mseg).state_dict()},
        })
    save_checkpoint(checkpoint_path(run_dir, "gan"), {
        "format": FORMAT_VERSION, "stage": "gan", "config": cfg.to_dict(),
        "models": {"generator": Generator(cfg.generator).state_dict()},
    })
    return run_dir


# Labelled real photos, made up: 48 x 64 PNG photos (lossless, so a pixel can tell them apart), their
# labels, and the map a stand-in Unmasker "predicts" for each. Dice/IoU by hand in the comments.
PHOTO_SHAPE = (48, 64)


def _box(top: int, bottom: int, left: int, right: int) -> np.ndarray:
    out = np.zeros(PHOTO_SHAPE, bool)
    out[top:bottom, left:right] = True
    return out


LABELLED = {  # photo -> (mask_type, wear, label, predicted map or None: no face found)
    # 800 label pixels, the prediction is their lower half: TP 400, FN 400 -> Dice 2/3, IoU 1/2
    "a.png": ("surgical", "correct", _box(20, 40, 10, 50), _box(30, 40, 10, 50)),
    "b.png": ("surgical", "nose", _box(24, 44, 8, 56), _box(24, 44, 8, 56)),  # exact: 1, 1
    "c.png": ("n95", "correct", _box(20, 40, 10, 50), None),  # no face: scored 0, 0
    "d.png": ("cloth", "chin", _box(36, 46, 20, 40), _box(2, 10, 2, 20)),  # disjoint: 0, 0
}
EXPECTED = {"a.png": (2 / 3, 0.5), "b.png": (1.0, 1.0), "c.png": (0.0, 0.0), "d.png": (0.0, 0.0)}


def write_labelled_photos(root: Path) -> tuple[Path, Path]:
    """(photo folder, labels folder with labels.csv and masks/*.png) of ``LABELLED``; the photo
    folder also holds a photo with no label."""
    photos, labels = root / "photos", root / "labels"
    (labels / "masks").mkdir(parents=True)
    photos.mkdir(parents=True)
    lines = ["photo,label,mask_type,wear"]
    for index, (name, (mask_type, wear, label, _)) in enumerate(LABELLED.items()):
        photo = np.full((*PHOTO_SHAPE, 3), 90, np.uint8)
        photo[0, 0] = (index, 0, 0)  # which photo the stand-in sees
        Image.fromarray(photo).save(photos / name)
        Image.fromarray((label * 255).astype(np.uint8)).save(labels / "masks" / name)
        lines.append(f"{name},masks/{name},{mask_type},{wear}")
    Image.fromarray(np.zeros((*PHOTO_SHAPE, 3), np.uint8)).save(photos / "unlabelled.png")
    (labels / "labels.csv").write_text("\n".join(lines) + "\n")
    return photos, labels


class StandInUnmasker:
    """Unmasker's photo interface with the maps of ``LABELLED``: ``NoFace`` where they say so."""

    resolution = 64
    face_scale = 1.0

    def __call__(self, photo: np.ndarray, aligned: bool | None = None) -> UnmaskResult:
        assert aligned is False
        name = list(LABELLED)[int(photo[0, 0, 0])]
        predicted = LABELLED[name][3]
        if predicted is None:
            raise NoFace("no face found (stand-in)")
        full_map = (predicted * 255).astype(np.uint8)
        return UnmaskResult(photo, full_map, photo, photo, full_map, aligned=False, matrix=None)

    def photo_map(self, photo: np.ndarray, faces, filled: bool = False) -> np.ndarray:
        """The map of ``__call__``; ``filled``: grown by one pixel (a 3 x 3 cross), as stage 2 fills it."""
        full_map = self(photo, aligned=False).map
        return cv2.dilate(full_map, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))) if filled else full_map
