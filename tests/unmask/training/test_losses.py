
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unmask.config import LossConfig
from unmask.losses import (
    dice_loss,
    generator_losses,
    lsgan_d_loss,
    lsgan_g_loss,
    reconstruction_loss,
    segmentation_losses,
    ssim,
)


def test_dice_identical_is_zero_and_disjoint_is_about_one():
    a = torch.zeros(2, 1, 16, 16)
    a[:, :, :8] = 1
    assert dice_loss(a, a).item() == pytest.approx(0.0, abs=1e-7)
    disjoint = dice_loss(a, 1 - a).item()
    assert disjoint == pytest.approx(1 - 1 / 257)  # smooth = 1 over 256 map pixels
    half = torch.zeros_like(a)
    half[:, :, :4] = 1  # half of a's area, inside it: 2*64 / (128 + 64)
    assert dice_loss(half, a).item() == pytest.approx(1 - (2 * 64 + 1) / (192 + 1))


def test_segmentation_loss_combines_bce_and_dice():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    target = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    losses = segmentation_losses(logits, target, LossConfig(seg_bce=2.0, seg_dice=3.0))
    assert losses["bce"].item() == pytest.approx(F.binary_cross_entropy(torch.sigmoid(logits), target).item())
    assert losses["loss"].item() == pytest.approx(2 * losses["bce"].item() + 3 * losses["dice"].item())


def test_lsgan_values_by_hand():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert lsgan_d_loss(ones, zeros, a=0.0, b=1.0).item() == 0.0  # perfect D
    assert lsgan_d_loss(zeros, ones, a=0.0, b=1.0).item() == 1.0  # 1/2 (1 + 1)
    assert lsgan_d_loss(ones, ones, a=0.0, b=1.0).item() == 0.5
    assert lsgan_g_loss(ones, c=1.0).item() == 0.0
    assert lsgan_g_loss(zeros, c=1.0).item() == 1.0
    assert lsgan_g_loss(torch.full((1, 1, 2, 2), 0.5), c=1.0).item() == 0.25


def test_smooth_l1_and_ssim_in_the_reconstruction_loss():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2))
    assert reconstruction_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    # SmoothL1 (beta 1): 0.5 d^2 below 1, |d| - 0.5 above; constant images have SSIM = c-terms only
    a, b = torch.zeros(1, 3, 32, 32), torch.full((1, 3, 32, 32), 0.5)
    assert F.smooth_l1_loss(b, a).item() == pytest.approx(0.125)
    s = ssim(a, b).item()
    mu_a, mu_b, c1 = 0.5, 0.75, 0.01**2  # in [0, 1]; zero variances: SSIM = luminance term
    assert s == pytest.approx((2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1), rel=1e-3)  # float32 E[x^2]-E[x]^2
    assert reconstruction_loss(b, a).item() == pytest.approx(0.5 * (0.125 + 1 - s), rel=1e-5)
    assert ssim(x, -x).mean() < 0.1


def test_the_loss_ssim_is_the_metric_on_a_face_and_degraded_copies(face256):
    """The loss's SSIM (float32, [-1, 1]) against the metric (float64, uint8), on a real face.

    On the same uint8 pixels only float32 arithmetic differs (measured <= 3e-6). On float images,
    the metric sees them rounded to uint8: rounding adds noise of variance 1/12 (grey levels^2),
    which lowers the contrast-structure term by at most 1/12 / (sigma_x^2 + sigma_y^2 + C2) <= 1/12 / C2
    = 1.4e-3 (C2 = (0.03 * 255)^2); the luminance term moves far less (measured <= 5.5e-4 in all).
    """
    import cv2

    from unmask.metrics.fidelity import DATA_RANGE, SSIM_K2, ssim_batch

    def tensor(image: np.ndarray) -> torch.Tensor:  # HWC in 0..255 -> 1CHW in [-1, 1]
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), np.float32))[None] / 127.5 - 1

    face = face256.astype(np.float64)
    degraded = {"blur": cv2.GaussianBlur(face, (0, 0), 1.5),
                "noise": np.clip(face + np.random.default_rng(0).normal(0, 10, face.shape), 0, 255)}
    quantisation = (1 / 12) / (SSIM_K2 * DATA_RANGE) ** 2
    for name, image in degraded.items():
        as_uint8 = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        metric = ssim_batch(face256[None], as_uint8[None])[0]
        assert 0.5 < metric < 0.97, name  # a real degradation, not a near-copy
        assert ssim(tensor(face256), tensor(as_uint8)).item() == pytest.approx(metric, abs=1e-5), name
        assert ssim(tensor(face256), tensor(image)).item() == pytest.approx(metric, abs=quantisation), name
    assert ssim(tensor(face256), tensor(face256)).item() == pytest.approx(1.0, abs=1e-6)


def test_generator_loss_weights_and_missing_perceptual_term():
    out, target = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    d_fake = torch.zeros(1, 1, 2, 2)
    cfg = LossConfig(adv=0.5, rec=2.0, per=10.0)
    losses = generator_losses(out, target, d_fake, cfg, perceptual=None)
    assert "per" not in losses
    assert losses["adv"].item() == 1.0
    assert losses["loss"].item() == pytest.approx(0.5 + 2.0 * reconstruction_loss(out, target).item())
