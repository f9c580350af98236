import json
import logging
import math

import pytest
import yaml
from click.testing import CliRunner

from unmask import checkpoint as ckpt
from unmask.cli import main
from unmask.training import stages as stages_module

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
    result = invoke("train", "--data", dataset_dir, "--out", run, "--epochs", "1", "--generator-width", "16",
                    "--adv", "0.2", "--set", "gan_optim.betas=[0.5, 0.99]", *TINY)
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
    (("--val-max-batches",), "3", "train.val_max_batches: None != 3"),
    (("--channels-last",), None, "train.channels_last: False != True"),
    (("--channels-last",), "true", "train.channels_last: False != True"),
    (("--require-pretrained",), None, "train.require_pretrained: False != True"),
    (("--require-pretrained",), "true", "train.require_pretrained: False != True"),
    (("--no-map",), None, "generator.use_map: True != False"),
])
def test_each_option_and_its_deprecated_name_set_its_config_key(tmp_path, monkeypatch, names, value, change):
    """Each option sets the config key it is named after; its former name (hidden from --help) sets the same
    and warns once, naming the option and key to use instead."""
    from unmask.config import diff, preset
    from unmask.config_options import CONFIG_OPTIONS
    from unmask.training import loop

    received = []
    monkeypatch.setattr(loop, "train", lambda cfg, opts: received.append(cfg) or {})
    new, *old = names
    for name in names:
        result = invoke("train", "--data", tmp_path, "--out", tmp_path / "run", name, *([value] if value else []))
        assert result.exit_code == 0, result.output
        assert diff(preset("paper"), received[-1]) == [change], name  # that key only, on the default preset
        warnings = [line for line in result.output.splitlines() if "deprecated" in line]
        key = CONFIG_OPTIONS.get(new.lstrip("-").replace("-", "_"))
        assert warnings == ([f"DeprecationWarning: The option '{name}' is deprecated. Use {new} ({key})."]
                            if name != new else []), result.output
    assert len(received) == len(names)
    shown = invoke("train", "--help").output
    assert f"{new} " in shown and not any(f"{name} " in shown for name in old)  # the former names are hidden
    if old:
        both = invoke("train", "--data", tmp_path, "--out", tmp_path / "run", new, value, old[0], value)
        assert both.exit_code == 2 and f"{old[0]} is the former name of {new}: give {new} only" in both.output


def test_the_channels_last_option_takes_a_value_or_none(tmp_path, monkeypatch):
    """--channels-last / --require-pretrained: alone true, or the value params.yaml gives (dvc.yaml)."""
    from unmask.training import loop

    received = []
    monkeypatch.setattr(loop, "train", lambda cfg, opts: received.append(cfg) or {})
    for args, expected in ((["--channels-last", "false"], False), (["--channels-last", "--device", "cpu"], True),
                           (["--channels-last", "true", "--require-pretrained", "false"], True)):
        assert invoke("train", "--data", tmp_path, "--out", tmp_path / "run", *args).exit_code == 0
        assert received[-1].train.channels_last is expected and received[-1].train.require_pretrained is False


# --- the resolution: the dataset's unless one is given ---------------------------------------------------------

@pytest.fixture(scope="module")
def built_128(small_celeba, tmp_path_factory):
    """A dataset maskgen built at 128 px (its build.json records the crop size)."""
    from maskgen.build import BuildConfig, build

    out = tmp_path_factory.mktemp("built") / "ds"
    build(BuildConfig(source=str(small_celeba), out=str(out), res=128, pairs=16, workers=1, progress=False,
                      split=(0.75, 0.25, 0.0)))
    return out


def test_training_takes_the_datasets_resolution_and_records_it(built_128, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    run = tmp_path / "run"
    result = invoke("train", "--stage", "seg", "--data", built_128, "--out", run, "--steps", "1", "--preset", "tiny",
                    "--batch-size", "2", "--num-workers", "0", "--device", "cpu", "--no-progress")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["resolution"] == 128
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(run, "seg"))["config"]["train"]["resolution"] == 128
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resolution:")]
    assert lines == [f"resolution: 128 px, the dataset's crop size ({built_128 / 'build.json'}; --resolution to "
                     "choose)"]


@pytest.mark.parametrize("args, resolution, why", [
    (["--resolution", "64"], 64, "given (--resolution); the dataset's crops are 128 px, resized as they load"),
    (["--resolution", "128"], 128, "given (--resolution)"),
    (["--set", "train.resolution=96"], 96, "given (--set train.resolution); the dataset's crops are 128 px, "
                                           "resized as they load"),
    (["--resolution", "64", "--set", "train.resolution=96"], 96, "given (--set train.resolution); the dataset's "
                                                                 "crops are 128 px, resized as they load"),
    (["--config", "{file_with}"], 64, "given (--config {file_with}); the dataset's crops are 128 px, resized as "
                                      "they load"),
    (["--config", "{file_without}"], 128, "the dataset's crop size ({data}/build.json; --resolution to choose)"),
    (["--preset", "cpu"], 128, "the dataset's crop size ({data}/build.json; --resolution to choose)"),
])
def test_a_given_resolution_wins_over_the_datasets(built_128, tmp_path, monkeypatch, caplog, args, resolution, why):
    """As before, a resolution given that is not the dataset's is trained at: the loader resizes to it."""
    from unmask.training import loop

    caplog.set_level(logging.INFO)
    received = []
    monkeypatch.setattr(loop, "train", lambda cfg, opts: received.append(cfg) or {})
    files = {"file_with": tmp_path / "with.yaml", "file_without": tmp_path / "without.yaml"}
    files["file_with"].write_text("train:\n  resolution: 64\n")
    files["file_without"].write_text("train:\n  batch_size: 2\n")
    names = {**files, "data": built_128}
    result = invoke("train", "--data", built_128, "--out", tmp_path / "run", *[a.format(**names) for a in args])
    assert result.exit_code == 0, result.output
    assert received[-1].train.resolution == resolution
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resolution:")]
    assert lines == [f"resolution: {resolution} px, {why.format(**names)}"]


def test_shards_without_records_keep_the_configs_resolution(dataset_dir, tmp_path, monkeypatch, caplog):
    from unmask.training import loop

    caplog.set_level(logging.INFO)
    received = []
    monkeypatch.setattr(loop, "train", lambda cfg, opts: received.append(cfg) or {})
    assert invoke("train", "--data", dataset_dir, "--out", tmp_path / "run", "--preset", "tiny").exit_code == 0
    assert received[-1].train.resolution == 256  # TrainConfig's: presets set none
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("resolution:")] == [
        f"resolution: 256 px, the config's ({dataset_dir} records no crop size; --resolution to choose)"]
