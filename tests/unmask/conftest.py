"""Fixtures of the unmask tests (helpers live in tests.unmask.testutils)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.testdata import CELEBA
from tests.unmask.testutils import write_split

FACE_PATH = CELEBA / "img_align_celeba" / "000002.jpg"


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train: 3 shards, 16 samples; val: 1 shard, 4 samples."""
    out = tmp_path_factory.mktemp("shards")
    write_split(out, "train", [6, 6, 4])
    write_split(out, "val", [4], start=1000)
    return out


@pytest.fixture(scope="session")
def face256() -> np.ndarray:
    """CelebA 000002 (178x218), centre-cropped square and resized to the project's 256 px."""
    if not FACE_PATH.is_file():
        pytest.skip(f"shared test data absent: {FACE_PATH}")
    import cv2

    face = cv2.cvtColor(cv2.imread(str(FACE_PATH)), cv2.COLOR_BGR2RGB)
    h, w = face.shape[:2]
    top = (h - w) // 2
    return cv2.resize(face[top:top + w], (256, 256), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)  # the tiny models gain nothing from more; keeps timings steady
