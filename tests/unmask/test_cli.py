import json
import math

import pytest
import yaml
from click.testing import CliRunner

from unmask import checkpoint as ckpt
from unmask.training import stages as stages_module
from unmask.cli import main

TINY = ["--preset", "tiny", "--resolution", "32", "--batch-size", "4", "--num-workers", "0",
        "--device", "cpu", "--no-progress"]


@pytest.fixture(autouse=True)
def no_vgg(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_train_end_to_end_then_resume(dataset_dir, tmp_path):
    run = tmp_path / "run"
    result = invoke("train", "--data", dataset_dir, "--out", run, "--epochs", "1", "--gen-width", "16",
                    "--alpha", "0.2", "--set", "gan_optim.betas=[0.5, 0.99]", *TINY)
    assert result.exit_code == 0, result.output
    seg = json.loads((run / "seg_metrics.json").read_text())
    gan = json.loads((run / "gan_metrics.json").read_text())
    assert 0 <= seg["val_dice"] <= 1 and math.isfinite(gan["val_psnr"]) and gan["val_psnr"] > 0
    assert f'"val_dice": {seg["val_dice"]}' in result.output  # the summary printed is the file's
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["generator"]["base_width"] == 16 and saved["mseg"]["base_width"] == 8
    assert saved["loss"]["adv"] == 0.2 and saved["gan_optim"]["betas"] == [0.5, 0.99]
    assert saved["train"]["resolution"] == 32
    for name in ("seg_metrics.json", "gan_metrics.json", "logs/seg_train.tsv", "logs/gan_val.tsv",
                 "checkpoints/seg.pt", "checkpoints/gan.pt", "samples/seg_epoch0000.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "gan_metrics.json").read_text())["step"] == 4

    again = invoke("train", "--data", dataset_dir, "--out", run, "--epochs", "1", *TINY)
    assert again.exit_code == 1 and "--resume" in again.output
    resumed = invoke("train", "--data", dataset_dir, "--out", run, "--resume", "--device", "cpu", "--no-progress")
    assert resumed.exit_code == 0, resumed.output  # the run's own config; both stages already complete
    different = invoke("train", "--data", dataset_dir, "--out", run, "--resume", "--epochs", "1", *TINY)
    assert different.exit_code == 1 and "generator.base_width" in different.output


def test_non_finite_loss_exits_non_zero_with_a_clear_message(dataset_dir, tmp_path, monkeypatch):
    real = stages_module.segmentation_losses
    calls = []

    def nan_at_third_step(logits, target, cfg):
        calls.append(1)
        losses = real(logits, target, cfg)
        if len(calls) == 3:
            losses["loss"] = losses["loss"] * math.nan
        return losses

    monkeypatch.setattr(stages_module, "segmentation_losses", nan_at_third_step)
    result = invoke("train", "--stage", "seg", "--data", dataset_dir, "--out", tmp_path, "--steps", "4",
                    "--checkpoint-every", "2", *TINY)
    assert result.exit_code == 1
    assert "non-finite loss at step 3" in result.output
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path, "seg"))["step"] == 2


def test_config_file_options_and_errors(dataset_dir, tmp_path):
    from tests.unmask.testutils import tiny_config

    config_file = tmp_path / "c.yaml"
    tiny_config(**{"train.steps": 1}).save(config_file)
    result = invoke("train", "--stage", "gan", "--no-map", "--config", config_file, "--data", dataset_dir,
                    "--out", tmp_path / "run", "--device", "cpu", "--no-progress")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["generator"]["use_map"] is False
    bad = invoke("train", "--data", dataset_dir, "--out", tmp_path / "bad", "--set", "train.nope=1", *TINY)
    assert bad.exit_code == 2 and "train.nope" in bad.output
    both = invoke("train", "--data", dataset_dir, "--out", tmp_path / "bad", "--config", config_file, *TINY)
    assert both.exit_code == 1 and "--config and --preset are alternatives" in both.output  # each fine alone
    missing_seg = invoke("train", "--stage", "gan", "--gan-maps", "predicted", "--data", dataset_dir,
                         "--out", tmp_path / "noseg", "--steps", "1", *TINY)
    assert missing_seg.exit_code == 1 and "stage-1 checkpoint" in missing_seg.output


@pytest.mark.parametrize("names, value, change", [
    (("--adv", "--alpha"), "0.25", "loss.adv: 0.1 != 0.25"),
    (("--rec", "--beta"), "2", "loss.rec: 1.0 != 2.0"),
    (("--per", "--gamma"), "0.5", "loss.per: 0.1 != 0.5"),
    (("--mseg-width", "--seg-width"), "24", "mseg.base_width: 32 != 24"),
    (("--generator-width", "--gen-width"), "24", "generator.base_width: 64 != 24"),
    (("--discriminator-width", "--disc-width"), "24", "discriminator.base_width: 64 != 24"),
    (("--no-map",), None, "generator.use_map: True != False"),
])
def test_each_option_and_its_alias_set_the_same_config_key(tmp_path, monkeypatch, names, value, change):
    from unmask.config import diff, preset
    from unmask.training import loop

    received = []
    monkeypatch.setattr(loop, "train", lambda cfg, opts: received.append(cfg) or {})
    for name in names:
        result = invoke("train", "--data", tmp_path, "--out", tmp_path / "run", name, *([value] if value else []))
        assert result.exit_code == 0, result.output
        assert diff(preset("paper"), received[-1]) == [change], name  # that key only, on the default preset
    assert len(received) == len(names)
