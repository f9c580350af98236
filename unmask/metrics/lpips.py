"""LPIPS v0.1 with the AlexNet trunk (Zhang et al. 2018); lower is more similar. Optional.

Two weight files (the ``lpips`` package itself needs torchvision, which this project does not install),
each given explicitly or else the verified file of the torch hub cache, fetched there when LPIPS is first
computed unless offline (``unmask.weights``; asking whether LPIPS is available never downloads); without
them LPIPS is unavailable with the reason:

* ``backbone_weights``: torchvision's ImageNet AlexNet state dict (``alexnet-owt-7be5be79.pth``,
  ``lpips-alexnet``); only its ``features.*`` convolutions are used.
* ``linear_weights``: the LPIPS calibration layers, ``lpips/weights/v0.1/alex.pth`` from the
  ``lpips`` package (``lpips-linear``; keys ``lin0.model.1.weight`` ... ``lin4.model.1.weight``).

Protocol (as ``lpips.LPIPS(net="alex", version="0.1")``): uint8 RGB -> [-1, 1] -> the scaling
layer ((x - shift) / scale) -> AlexNet relu1..relu5 -> unit-normalize each feature over channels
-> squared difference -> 1x1 linear layer -> spatial mean -> sum over the 5 layers. Whole image at
its own size, one value per image pair.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unmask import weights

from . import _inputs

CHANNELS = (64, 192, 384, 256, 256)
# torchvision's alexnet.features indices of the five convolutions
CONV_INDICES = (0, 3, 6, 8, 10)
# (in, out, kernel, stride, padding) of each convolution
CONV_SHAPES = ((3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1),
               (256, 256, 3, 1, 1))
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def _given(backbone_weights, linear_weights):
    """(file given or None, its unmask.weights name) for the backbone, then the linear layers."""
    return ((backbone_weights, "lpips-alexnet"), (linear_weights, "lpips-linear"))


def weight_files(backbone_weights=None, linear_weights=None) -> tuple[Path, Path]:
    """(backbone, linear layers): the given files, each missing one from ``unmask.weights`` (downloaded now
    where allowed: call this when LPIPS is computed). Raises ``FileNotFoundError`` for a given file that does
    not exist, ``WeightsError`` for one that cannot be had."""
    files = []
    for given, name in _given(backbone_weights, linear_weights):
        if given is None:
            files.append(weights.ensure(name))
        elif not Path(given).is_file():
            raise FileNotFoundError(f"LPIPS weights not found at {given}")
        else:
            files.append(Path(given))
    return files[0], files[1]


def find_lpips_weights(backbone_weights=None, linear_weights=None) -> tuple[tuple[Path, Path] | None, str | None]:
    """``(weight_files(...), None)`` or ``(None, why LPIPS is unavailable)``: what an evaluation about to
    compute LPIPS asks first (downloads included), as ``fid.find_fid_weights``."""
    try:
        return weight_files(backbone_weights, linear_weights), None
    except (FileNotFoundError, weights.WeightsError) as error:
        return None, f"LPIPS unavailable: {error}"


def unavailable_reason(backbone_weights=None, linear_weights=None, **_) -> str | None:
    """Why LPIPS cannot run with these options, or None: given files exist, each other file is verified in
    the cache or may be downloaded on first use. Only looks (the registry's availability): never downloads."""
    for given, name in _given(backbone_weights, linear_weights):
        if given is None:
            reason = weights.unavailable_reason(name)
        else:
            reason = None if Path(given).is_file() else f"LPIPS weights not found at {given}"
        if reason:
            return f"LPIPS unavailable: {reason}"
    return None


class LPIPSAlex(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, stride=s, padding=p) for i, o, k, s, p in CONV_SHAPES)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        outputs = []
        for index, conv in enumerate(self.convs):
            if index in (1, 2):  # AlexNet's max pools precede conv2 and conv3
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(conv(x))
            outputs.append(x)
        return outputs

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """``(N,)`` distances of two float batches ``(N, 3, H, W)`` in [-1, 1]."""
        total = 0
        for f0, f1, lin in zip(self.features(x0), self.features(x1), self.lins, strict=True):
            f0 = f0 / (f0.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            f1 = f1 / (f1.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((f0 - f1) ** 2).mean(dim=(1, 2, 3))
        return total


@lru_cache(maxsize=2)
def load_lpips(backbone_weights: str | Path, linear_weights: str | Path) -> LPIPSAlex:
    model = LPIPSAlex()
    backbone = torch.load(backbone_weights, map_location="cpu", weights_only=True)
    linear = torch.load(linear_weights, map_location="cpu", weights_only=True)
    state = {}
    for n, index in enumerate(CONV_INDICES):
        state[f"convs.{n}.weight"] = backbone[f"features.{index}.weight"]
        state[f"convs.{n}.bias"] = backbone[f"features.{index}.bias"]
        state[f"lins.{n}.weight"] = linear[f"lin{n}.model.1.weight"]
    state["shift"], state["scale"] = model.shift, model.scale
    model.load_state_dict(state, strict=True)  # shape mismatches raise here
    return model.eval().requires_grad_(False)


@torch.no_grad()
def lpips(pred, target, backbone_weights=None, linear_weights=None) -> float:
    """LPIPS distance of one uint8 RGB image pair (0 when equal)."""
    try:
        backbone_weights, linear_weights = weight_files(backbone_weights, linear_weights)
    except weights.WeightsError as error:
        raise FileNotFoundError(f"LPIPS unavailable: {error}") from None
    pred, target = _inputs.image(pred, "pred"), _inputs.image(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ in shape")
    model = load_lpips(str(backbone_weights), str(linear_weights))

    def to_tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image.transpose(2, 0, 1).copy()).float()[None] / 127.5 - 1

    return float(model(to_tensor(pred), to_tensor(target))[0])
