"""Network interpolation between a reconstruction-only generator and a GAN (unmask interpolate)."""

import json

import pytest
import torch
from click.testing import CliRunner

from tests.unmask.testutils import tiny_config
from unmask import checkpoint as ckpt
from unmask.cli import main
from unmask.training.loop import train
from unmask.training.options import RunOptions


@pytest.fixture(scope="module")
def runs(dataset_dir, tmp_path_factory):
    """A reconstruction-only run, a GAN run fine-tuned from it (with an M-Seg), and a one-stage run."""
    root = tmp_path_factory.mktemp("interp")
    hub = root / "empty_hub"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.hub, "get_dir", lambda: str(hub))
        opts = dict(data_dir=dataset_dir, device="cpu", progress=False)
        train(tiny_config(**{"train.steps": 2, "loss.adv": 0.0}),
              RunOptions(run_dir=root / "recon", stage="gan", **opts))
        train(tiny_config(**{"train.steps": 2}), RunOptions(run_dir=root / "gan", stage="all",
                                                            init_generator=root / "recon", **opts))
        train(tiny_config(**{"train.steps": 1, "generator.use_map": False}),
              RunOptions(run_dir=root / "one_stage", stage="gan", **opts))
    return root


def generator_state(run):
    return ckpt.load_checkpoint(ckpt.checkpoint_path(run, "gan"))["models"]["generator"]


def test_weights_are_blended_tensor_by_tensor(runs, tmp_path):
    rec, adv = generator_state(runs / "recon"), generator_state(runs / "gan")
    record = ckpt.interpolate_generators(runs / "recon", runs / "gan", 0.25, tmp_path / "blend")
    blended = generator_state(tmp_path / "blend")
    assert blended.keys() == adv.keys()
    floats = [k for k, v in adv.items() if v.is_floating_point()]
    assert floats and any(not torch.equal(rec[k], adv[k]) for k in floats)  # the two runs differ
    for k in floats:
        torch.testing.assert_close(blended[k], 0.75 * rec[k] + 0.25 * adv[k], rtol=1e-6, atol=1e-7)
    assert record["weight"] == 0.25 and record["reconstruction_alpha"] == 0.0 and record["adversarial_step"] == 2


@pytest.mark.slow
def test_end_weights_give_the_two_generators_exactly(runs, tmp_path):
    for weight, source in ((0.0, "recon"), (1.0, "gan")):
        ckpt.interpolate_generators(runs / "recon", runs / "gan", weight, tmp_path / str(weight))
        expected = generator_state(runs / source)
        assert all(torch.equal(generator_state(tmp_path / str(weight))[k], v) for k, v in expected.items())


def test_the_result_loads_as_a_two_stage_run(runs, tmp_path):
    ckpt.interpolate_generators(runs / "recon", runs / "gan", 0.0, tmp_path / "blend")
    assert (tmp_path / "blend/checkpoints/seg.pt").read_bytes() == (runs / "gan/checkpoints/seg.pt").read_bytes()
    _, mseg, generator = ckpt.load_models(tmp_path / "blend")
    _, _, reconstruction = ckpt.load_models(runs / "recon")
    assert mseg is not None
    image, mask_map = torch.rand(1, 3, 32, 32) * 2 - 1, (torch.rand(1, 1, 32, 32) > 0.7).float()
    with torch.no_grad():
        assert torch.equal(generator(image, mask_map), reconstruction(image, mask_map))
    state = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "blend", "gan"))
    assert state["complete"] and state["interpolation"]["weight"] == 0.0


def test_refuses_other_architectures_weights_and_existing_runs(runs, tmp_path):
    with pytest.raises(ValueError, match="generator.use_map"):
        ckpt.interpolate_generators(runs / "recon", runs / "one_stage", 0.5, tmp_path / "a")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ckpt.interpolate_generators(runs / "recon", runs / "gan", 1.5, tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="no stage-2 checkpoint"):
        ckpt.interpolate_generators(tmp_path / "nothing", runs / "gan", 0.5, tmp_path / "c")
    ckpt.interpolate_generators(runs / "recon", runs / "gan", 0.5, tmp_path / "d")
    with pytest.raises(FileExistsError):
        ckpt.interpolate_generators(runs / "recon", runs / "gan", 0.5, tmp_path / "d")


def test_cli_writes_the_run_and_reports_errors_in_one_line(runs, tmp_path):
    cli = CliRunner()
    out = tmp_path / "blend"
    result = cli.invoke(main, ["interpolate", str(runs / "recon"), str(runs / "gan"), "--weight", "0.3",
                               "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["interpolation"]["weight"] == 0.3
    again = cli.invoke(main, ["interpolate", str(runs / "recon"), str(runs / "one_stage"), "--weight", "0.3",
                              "-o", str(tmp_path / "other")])
    assert again.exit_code == 1 and "differ in architecture" in again.output and "Traceback" not in again.output
