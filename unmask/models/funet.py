"""Stage 2, FU-Net generator and MURF (mask-aware output fusion).

Encoder: five Ge blocks, residual blocks with CBAM; all but the last end in a max-pool, so the
bottleneck works at 1/16 of the input size. Bottleneck: four dilated blocks (BN, dilated 3x3 conv,
LeakyReLU; dilations from the config, paper 2, 4, 8, 16) that widen the receptive field over the
whole lower face without further downsampling. Decoder: five blocks with skip connections (the
first at the bottleneck scale, the others upsample 2x), then a 1x1 conv and tanh to an RGB image
in [-1, 1].

MURF keeps every pixel outside the map from the input: out = map * G(x) + (1 - map) * x.
"""

from __future__ import annotations

import torch
from torch import nn

from unmask.config import GeneratorConfig
from unmask.models.blocks import CBAM, conv_bn_act, upsample2x, widths


def murf(generated: torch.Tensor, masked: torch.Tensor, mask_map: torch.Tensor) -> torch.Tensor:
    """Fuse in float32: with a {0, 1} map the pixels outside it equal ``masked`` exactly."""
    mask_map = mask_map.float()
    return mask_map * generated.float() + (1.0 - mask_map) * masked.float()


class GeBlock(nn.Module):
    """Residual attention block: (conv, BN, LReLU, conv, BN, CBAM) + shortcut, LReLU, [max-pool]."""

    def __init__(self, in_ch: int, out_ch: int, cfg: GeneratorConfig, pool: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_act(in_ch, out_ch, nn.LeakyReLU(cfg.leaky_slope, inplace=True)),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            CBAM(out_ch, cfg.cbam_reduction, cfg.cbam_kernel),
        )
        if in_ch == out_ch:
            self.shortcut = nn.Identity()
        else:  # 1x1 projection so the residual sum has matching widths
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.act = nn.LeakyReLU(cfg.leaky_slope, inplace=True)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (features for the skip connection, input of the next block)."""
        features = self.act(self.body(x) + self.shortcut(x))
        return features, self.pool(features)


class DilatedBlock(nn.Sequential):
    def __init__(self, channels: int, dilation: int, slope: float) -> None:
        super().__init__(
            nn.BatchNorm2d(channels),
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation),
            nn.LeakyReLU(slope, inplace=True),
        )


class DecoderBlock(nn.Module):
    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, slope: float, upsample: bool) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = conv_bn_act(in_ch + skip_ch, out_ch, nn.LeakyReLU(slope, inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = upsample2x(x)
        return self.conv(torch.cat([x, skip], dim=1))


class Generator(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.use_map = cfg.use_map
        w = widths(cfg.base_width, cfg.width_mults)
        in_ch = 4 if cfg.use_map else 3
        n = len(w)
        self.encoder = nn.ModuleList(
            GeBlock(c_in, c_out, cfg, pool=i < n - 1)
            for i, (c_in, c_out) in enumerate(zip([in_ch] + w[:-1], w, strict=True))
        )
        self.bottleneck = nn.Sequential(*(DilatedBlock(w[-1], d, cfg.leaky_slope) for d in cfg.dilations))
        # Decoder block j takes the skip of encoder block n-1-j and narrows to the width one scale up.
        out_widths = w[-2::-1] + [w[0]]
        in_widths = [w[-1]] + out_widths[:-1]
        self.decoder = nn.ModuleList(
            DecoderBlock(c_in, w[n - 1 - j], c_out, cfg.leaky_slope, upsample=j > 0)
            for j, (c_in, c_out) in enumerate(zip(in_widths, out_widths, strict=True))
        )
        self.to_rgb = nn.Sequential(nn.Conv2d(w[0], 3, 1), nn.Tanh())

    def raw(self, masked: torch.Tensor, mask_map: torch.Tensor | None = None) -> torch.Tensor:
        """G(x) before MURF: Bx3xHxW in [-1, 1]."""
        if self.use_map:
            if mask_map is None:
                raise ValueError("this generator was built with use_map=True and needs a map")
            x = torch.cat([masked, mask_map.to(masked.dtype)], dim=1)
        else:
            x = masked
        skips = []
        for block in self.encoder:
            features, x = block(x)
            skips.append(features)
        x = self.bottleneck(x)
        for block, skip in zip(self.decoder, reversed(skips), strict=True):
            x = block(x, skip)
        return self.to_rgb(x)

    def forward(self, masked: torch.Tensor, mask_map: torch.Tensor | None = None) -> torch.Tensor:
        """masked Bx3xHxW in [-1, 1], map Bx1xHxW in {0, 1} -> unmasked face Bx3xHxW in [-1, 1].

        With ``use_map`` the output is MURF-fused (float32); the one-stage ablation returns G(x).
        """
        generated = self.raw(masked, mask_map)
        return murf(generated, masked, mask_map) if self.use_map else generated
