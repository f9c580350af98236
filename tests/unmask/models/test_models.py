import pytest
import torch

from unmask.config import preset
from unmask.models import Generator, MSeg, PatchDiscriminator, murf


@pytest.mark.parametrize("res", [64, 128, 256])
def test_output_shapes(res):
    cfg = preset("tiny")
    masked = torch.rand(2, 3, res, res) * 2 - 1
    mask_map = (torch.rand(2, 1, res, res) > 0.5).float()
    assert MSeg(cfg.mseg)(masked).shape == (2, 1, res, res)
    out = Generator(cfg.generator)(masked, mask_map)
    assert out.shape == (2, 3, res, res) and out.dtype == torch.float32
    scores = PatchDiscriminator(cfg.discriminator)(masked)
    # three stride-2 convs and two 4x4 stride-1 convs with padding 1
    assert scores.shape == (2, 1, res // 8 - 2, res // 8 - 2)


def test_one_stage_generator_takes_three_channels_and_skips_murf():
    cfg = preset("tiny").generator
    one_stage = Generator(type(cfg)(**{**cfg.__dict__, "use_map": False}))
    assert one_stage.encoder[0].body[0][0].in_channels == 3
    assert Generator(cfg).encoder[0].body[0][0].in_channels == 4
    masked = torch.rand(1, 3, 64, 64) * 2 - 1
    out = one_stage.eval()(masked)
    assert torch.equal(out, one_stage.raw(masked))
    with pytest.raises(ValueError, match="needs a map"):
        Generator(cfg)(masked)


def test_murf_keeps_the_input_outside_the_map_exactly():
    torch.manual_seed(0)
    gen = Generator(preset("tiny").generator).eval()
    masked = torch.rand(2, 3, 64, 64) * 2 - 1
    mask_map = torch.zeros(2, 1, 64, 64)
    mask_map[:, :, 30:60, 10:50] = 1
    with torch.no_grad():
        out = gen(masked, mask_map)
        raw = gen.raw(masked, mask_map)
    outside = (mask_map == 0).expand_as(masked)
    assert torch.equal(out[outside], masked[outside])
    assert torch.equal(out[~outside], raw[~outside])
    assert not torch.equal(raw[outside], masked[outside])  # the generator alone does not copy
    assert torch.equal(murf(raw, masked, mask_map), out)


def test_predict_map_is_binary():
    seg = MSeg(preset("tiny").mseg).eval()
    pred = seg.predict_map(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert pred.shape == (2, 1, 64, 64) and set(pred.unique().tolist()) <= {0.0, 1.0}


def test_every_discriminator_conv_is_spectrally_normalised():
    disc = PatchDiscriminator(preset("tiny").discriminator)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5
    assert all(hasattr(c, "parametrizations") and "weight" in c.parametrizations for c in convs)


def test_a_state_without_threshold_loads_at_the_fixed_half():
    """Checkpoints from before calibration were used at 0.5; other missing keys are still refused."""
    seg = MSeg(preset("tiny").mseg)
    seg.threshold.fill_(0.7)
    state = seg.state_dict()
    assert state["threshold"].item() == pytest.approx(0.7)
    del state["threshold"]
    fresh = MSeg(preset("tiny").mseg)
    fresh.threshold.fill_(0.3)
    fresh.load_state_dict(state)
    assert fresh.threshold.item() == 0.5
    del state["output.norm.weight"]
    with pytest.raises(RuntimeError, match="output.norm.weight"):
        fresh.load_state_dict(state)
