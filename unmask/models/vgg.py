"""VGG19 feature extractor for the perceptual loss, defined here so torchvision is not needed.

``VGG19Features.features`` has exactly torchvision's ``vgg19().features`` layout, so its
parameter names (``features.0.weight`` ... ``features.34.bias``) load torchvision's ImageNet
state dict (``vgg19-dcbb9e9d.pth``, ``unmask.weights``' ``vgg19``) as it is. Weights are never invented:
``find_vgg19_weights`` gives the verified file (fetched into the torch hub cache on first use), or says why
there is none, and the trainer then runs without the perceptual term.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from unmask import weights

# torchvision's configuration "E" (VGG19): output channels per conv, "M" = 2x2 max-pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# The ImageNet statistics the VGG weights were trained with (inputs in [0, 1] RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> dict[str, int]:
    """{"conv1_1": 0, "relu1_1": 1, ..., "pool5": 36}: indices into ``features``."""
    names: dict[str, int] = {}
    index, block, conv = 0, 1, 1
    for item in VGG19_LAYOUT:
        if item == "M":
            names[f"pool{block}"] = index
            index, block, conv = index + 1, block + 1, 1
        else:
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            index, conv = index + 2, conv + 1
    return names


LAYER_INDEX = _layer_names()


class VGG19Features(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                # Not in-place (unlike torchvision): the ReLU outputs are kept as features.
                layers += [nn.Conv2d(in_ch, item, 3, padding=1), nn.ReLU()]
                in_ch = item
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor, layers: tuple[str, ...]) -> list[torch.Tensor]:
        """image Bx3xHxW in [-1, 1] (the model range) -> the named layers' activations, in order."""
        wanted = [LAYER_INDEX[name] for name in layers]
        x = ((image + 1.0) / 2.0 - self.mean) / self.std
        found: dict[int, torch.Tensor] = {}
        for index, layer in enumerate(self.features[: max(wanted) + 1]):  # stop at the deepest needed
            x = layer(x)
            if index in wanted:
                found[index] = x
        return [found[i] for i in wanted]


def find_vgg19_weights(explicit: str | Path | None = None) -> tuple[Path | None, str]:
    """(weights file or None, where it came from / why there is none). A named file must exist; without one,
    the verified file of the torch hub cache, fetched there on first use (``unmask.weights``)."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"perceptual weights not found: {path}")
        return path, f"weights from {path}"
    try:
        path = weights.ensure("vgg19")
    except weights.WeightsError as error:
        return None, f"no VGG19 weights: {error}"
    return path, f"weights from the torch hub cache {path}"


def load_vgg19_features(path: str | Path) -> VGG19Features:
    """Frozen, eval-mode VGG19 features from a torchvision-format state dict (classifier dropped)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if k.startswith("features.")}
    model = VGG19Features()
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    return model
