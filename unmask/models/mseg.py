"""Stage 1, M-Seg: a U-Net-like autoencoder that segments the face mask (the binary map).

Encoder: five Se blocks (3x3 conv, BN, ReLU, CBAM, max-pool). Decoder: five Sd blocks (2x
upsample, concatenate the encoder features of that scale, 3x3 conv, BN, ReLU); the last one ends
in a 1x1 conv and BN to one channel, followed by the sigmoid. ``forward`` returns that last
pre-sigmoid value (logits): the BCE is computed from logits, which stays exact under autocast;
``predict_map`` applies the sigmoid and the threshold.

The threshold is a buffer saved with the weights: stage-1 training sets it on the validation split
(``unmask.training.stages.SegStage``), so that every user of the model (stage 2's training, the
evaluation, predict) draws the map the validation scored. Why not 0.5: the output BN pins the logits'
spread, the sigmoid stays soft, and the Dice term moves the 0.5 contour 1-2 px outside the mask.
"""

from __future__ import annotations

import torch
from torch import nn

from unmask.config import MSegConfig
from unmask.models.blocks import CBAM, conv_bn_act, upsample2x, widths

DEFAULT_THRESHOLD = 0.5  # before calibration, and for checkpoints made before it existed


class SeBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, cfg: MSegConfig) -> None:
        super().__init__()
        self.conv = conv_bn_act(in_ch, out_ch, nn.ReLU(inplace=True))
        self.attention = CBAM(out_ch, cfg.cbam_reduction, cfg.cbam_kernel)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (features for the skip connection, pooled features for the next block)."""
        features = self.attention(self.conv(x))
        return features, self.pool(features)


class SdBlock(nn.Module):
    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = conv_bn_act(in_ch + skip_ch, out_ch, nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([upsample2x(x), skip], dim=1))


class SdOutputBlock(nn.Module):
    """The last Sd block: upsample, 1x1 conv, BN (the sigmoid is left to the loss / predict)."""

    def __init__(self, in_ch: int, skip_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch + skip_ch, 1, 1, bias=False)
        self.norm = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(torch.cat([upsample2x(x), skip], dim=1)))


class MSeg(nn.Module):
    def __init__(self, cfg: MSegConfig, in_channels: int = 3) -> None:
        super().__init__()
        w = widths(cfg.base_width, cfg.width_mults)
        self.encoder = nn.ModuleList(SeBlock(c_in, c_out, cfg)
                                     for c_in, c_out in zip([in_channels] + w[:-1], w, strict=True))
        # Sd block i upsamples to the scale of encoder block 5 - i and narrows to its input width.
        self.decoder = nn.ModuleList(SdBlock(w[i], w[i], w[i - 1]) for i in range(len(w) - 1, 0, -1))
        self.output = SdOutputBlock(w[0], w[0])
        self.register_buffer("threshold", torch.tensor(DEFAULT_THRESHOLD))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        # a checkpoint from before calibration was used at the fixed threshold
        state_dict.setdefault(prefix + "threshold", torch.tensor(DEFAULT_THRESHOLD))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, masked: torch.Tensor) -> torch.Tensor:
        """masked: Bx3xHxW in [-1, 1], H and W multiples of 32 -> map logits Bx1xHxW."""
        skips = []
        x = masked
        for block in self.encoder:
            features, x = block(x)
            skips.append(features)
        for block, skip in zip(self.decoder, reversed(skips[1:]), strict=True):
            x = block(x, skip)
        return self.output(x, skips[0])

    @torch.no_grad()
    def predict_map(self, masked: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """Binary map in {0, 1} (float, Bx1xHxW), as stage 2 and MURF expect; ``threshold`` on the
        sigmoid, by default the model's own (``self.threshold``)."""
        cut = self.threshold if threshold is None else threshold
        return (torch.sigmoid(self(masked).float()) > cut).float()
