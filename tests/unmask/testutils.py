"""Helpers for the unmask tests: tiny synthetic shards in the ``maskgen build`` format, tiny configs."""

from __future__ import annotations

import functools
import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
import torch
import webdataset as wds

from maskgen.format import MAP, MASKED, META, UNMASKED, shard_name
from unmask.config import Config, preset

SHARD_RES = 48  # stored size; the loader resizes to the training resolution
MASK_COLOR = (40, 120, 220)  # RGB paint of the synthetic "mask"


def synthetic_sample(index: int, res: int = SHARD_RES) -> dict[str, np.ndarray]:
    """A smooth random 'face', a rectangle map over its lower part, the face with the map painted."""
    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:res, 0:res] / res
    base = rng.uniform(0, 255, size=3)
    slope = rng.uniform(-80, 80, size=(2, 3))
    unmasked = np.clip(base + yy[..., None] * slope[0] + xx[..., None] * slope[1], 0, 255).astype(np.uint8)
    top, left = rng.integers(res // 3, res // 2), rng.integers(2, res // 4)
    bottom, right = rng.integers(res * 3 // 4, res - 2), rng.integers(res * 3 // 4, res - 2)
    mask_map = np.zeros((res, res), np.uint8)
    mask_map[top:bottom, left:right] = 255
    masked = unmasked.copy()
    masked[mask_map > 0] = MASK_COLOR
    return {"masked": masked, "unmasked": unmasked, "map": mask_map}


def _encode(ext: str, image: np.ndarray) -> bytes:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def write_split(out: Path, split: str, counts: list[int], start: int = 0) -> list[str]:
    """One shard per entry of ``counts`` with that many samples; returns the sample keys."""
    keys = []
    index = start
    for shard_index, count in enumerate(counts):
        with wds.TarWriter(str(out / shard_name(split, shard_index))) as sink:
            for _ in range(count):
                sample = synthetic_sample(index)
                key = f"{split}{index:05d}"
                sink.write({
                    "__key__": key,
                    MASKED: _encode(".jpg", sample["masked"]),
                    UNMASKED: _encode(".jpg", sample["unmasked"]),
                    MAP: _encode(".png", sample["map"]),
                    META: json.dumps({"key": key, "mask_type": "synthetic"}).encode(),
                })
                keys.append(key)
                index += 1
    return keys


def rewrite_member(shard: Path, name: str, data: bytes | None) -> None:
    """The shard with member ``name`` replaced by ``data`` (None: removed), the other members as they were."""
    with tarfile.open(shard) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar]
    with tarfile.open(shard, "w") as tar:
        for info, content in members:
            if info.name == name:
                if data is None:
                    continue
                content = data
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def tiny_config(**overrides) -> Config:
    """Width 8, 32 px, batch 4: a training step takes milliseconds on a CPU."""
    base = {
        "train.resolution": 32, "train.batch_size": 4, "train.num_workers": 0, "train.shuffle_buffer": 8,
        "train.checkpoint_every": 2, "train.sample_images": 2,
    }
    base.update(overrides)
    return preset("tiny").replace(**base)


# torchvision.models.vgg19().features: conv layers at these indices, with these output widths
TORCHVISION_CONVS = {0: 64, 2: 64, 5: 128, 7: 128, 10: 256, 12: 256, 14: 256, 16: 256,
                     19: 512, 21: 512, 23: 512, 25: 512, 28: 512, 30: 512, 32: 512, 34: 512}
TORCHVISION_KEYS = [f"features.{i}.{p}" for i in TORCHVISION_CONVS for p in ("weight", "bias")]


@functools.cache
def torchvision_like_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under torchvision's names and shapes, plus (dropped) classifier keys."""
    g = torch.Generator().manual_seed(seed)
    state, in_ch = {}, 3
    for index, out_ch in TORCHVISION_CONVS.items():
        state[f"features.{index}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=g) * 0.05
        state[f"features.{index}.bias"] = torch.zeros(out_ch)
        in_ch = out_ch
    state["classifier.0.weight"] = torch.zeros(2, 2)  # real shape 4096 x 25088; ignored by the loader
    return state


def interrupt_at(monkeypatch, stage_class, step: int):
    """``stage_class.train_step`` raises KeyboardInterrupt (as Ctrl-C would) at ``step``; returns the original,
    to be set back before the run is resumed."""
    original = stage_class.train_step

    def train_step(self, batch, at):
        if at == step:
            raise KeyboardInterrupt
        return original(self, batch, at)

    monkeypatch.setattr(stage_class, "train_step", train_step)
    return original
