"""Patch discriminator: 4x4 conv + LeakyReLU stack, spectral normalisation on every conv.

Each output value scores one receptive-field patch (70x70 px with the default three stride-2
layers), so the adversarial loss judges local texture, which is what the inpainted region lacks.
No normalisation layers besides spectral norm: real and fake batches can share one forward pass.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from unmask.config import DiscriminatorConfig


def _sn_conv(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(in_ch, out_ch, 4, stride=stride, padding=1))


class PatchDiscriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        for i in range(cfg.n_layers):  # stride-2 layers, width doubling up to 8x
            out = cfg.base_width * min(2**i, 8)
            layers += [_sn_conv(ch, out, 2), nn.LeakyReLU(cfg.leaky_slope, inplace=True)]
            ch = out
        width = cfg.base_width * min(2**cfg.n_layers, 8)
        layers += [_sn_conv(ch, width, 1), nn.LeakyReLU(cfg.leaky_slope, inplace=True)]
        layers += [_sn_conv(width, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image Bx3xHxW in [-1, 1] -> patch scores Bx1xH'xW' (LSGAN: no sigmoid)."""
        return self.net(image)
