"""Training losses of both stages, on the tensor ranges of ``unmask.data`` (images in [-1, 1],
maps in {0, 1}).

Stage 1: BCE (from logits) + Dice. Stage 2: LSGAN (D: 1/2 [(D(real) - b)^2 + (D(fake) - a)^2],
G: (D(fake) - c)^2), reconstruction 1/2 [SmoothL1 + (1 - SSIM)], perceptual SmoothL1 between VGG19
features; generator total adv * L_adv + rec * L_rec + per * L_per, weights from ``LossConfig``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unmask.config import LossConfig
from unmask.metrics.fidelity import SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW
from unmask.models.vgg import VGG19Features


def dice_coefficient(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice per image (shape B). ``smooth`` makes two empty maps a perfect match."""
    dims = tuple(range(1, prob.dim()))
    inter = (prob * target).sum(dims)
    total = prob.sum(dims) + target.sum(dims)
    return (2.0 * inter + smooth) / (total + smooth)


def dice_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1.0 - dice_coefficient(prob, target).mean()


def segmentation_losses(logits: torch.Tensor, target: torch.Tensor, cfg: LossConfig) -> dict[str, torch.Tensor]:
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    dice = dice_loss(torch.sigmoid(logits), target)
    return {"loss": cfg.seg_bce * bce + cfg.seg_dice * dice, "bce": bce, "dice": dice}


def lsgan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor, a: float, b: float) -> torch.Tensor:
    return 0.5 * (((d_real.float() - b) ** 2).mean() + ((d_fake.float() - a) ** 2).mean())


def lsgan_g_loss(d_fake: torch.Tensor, c: float) -> torch.Tensor:
    return ((d_fake.float() - c) ** 2).mean()


def _gaussian_window(device: torch.device) -> torch.Tensor:
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float32, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return g


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (shape B) of two images in [-1, 1], computed on [0, 1] in float32: the
    differentiable SSIM of the reconstruction loss. Validation and evaluation use the metric
    itself (``unmask.metrics.fidelity.ssim_batch`` on uint8 images).

    The constants are those of the metric (``unmask.metrics.fidelity``); like it, a separable
    Gaussian window without padding (the window must fit: sides >= 11 px), channel mean.
    """
    with torch.autocast(x.device.type, enabled=False):  # under AMP the blurs would run in bf16/fp16, where
        return _ssim_float32(x.float(), y.float())     # var = E[x^2] - mu^2 cancels away (6% off at 64 px)


def _ssim_float32(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = (x + 1.0) / 2.0
    y = (y + 1.0) / 2.0
    channels = x.shape[1]
    g = _gaussian_window(x.device)
    gx = g.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    gy = g.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gx, groups=channels), gy, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=(1, 2, 3))


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.smooth_l1_loss(output.float(), target.float()) + (1.0 - ssim(output, target).mean()))


class PerceptualLoss(nn.Module):
    """Weighted SmoothL1 between VGG19 activations of output and target (frozen network)."""

    def __init__(self, vgg: VGG19Features, layers: tuple[str, ...], weights: tuple[float, ...]) -> None:
        super().__init__()
        self.vgg = vgg.eval().requires_grad_(False)
        self.layers = tuple(layers)
        self.weights = tuple(weights)

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # batch-free, but keep the frozen network in eval mode anyway

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self.vgg(target, self.layers)
        output_features = self.vgg(output, self.layers)
        return sum(
            w * F.smooth_l1_loss(o.float(), t.float())
            for w, o, t in zip(self.weights, output_features, target_features, strict=True)
        )


def generator_losses(
    output: torch.Tensor,
    target: torch.Tensor,
    d_fake: torch.Tensor | None,
    cfg: LossConfig,
    perceptual: PerceptualLoss | None,
) -> dict[str, torch.Tensor]:
    """Joint G loss; without VGG weights the perceptual term is absent, not faked. ``d_fake`` None:
    no adversarial term (the reconstruction-only ablation)."""
    terms = {"rec": reconstruction_loss(output, target)}
    total = cfg.rec * terms["rec"]
    if d_fake is not None:
        terms["adv"] = lsgan_g_loss(d_fake, cfg.lsgan_c)
        total = total + cfg.adv * terms["adv"]
    if perceptual is not None:
        terms["per"] = perceptual(output, target)
        total = total + cfg.per * terms["per"]
    return {"loss": total, **terms}
