import dataclasses
import json
import math

import pytest
import torch

from maskgen.files import sha256_of
from tests.unmask.testutils import interrupt_at, tiny_config, torchvision_like_state, write_split
from unmask import checkpoint as ckpt
from unmask import weights as unmask_weights
from unmask.data import TrainLoader
from unmask.training import stages as stages_module
from unmask.training.loop import train
from unmask.training.options import NonFiniteLossError, RunError, RunOptions
from unmask.training.runtime import Runtime
from unmask.training.stages import GanStage, SegStage, lr_at


def options(dataset_dir, run_dir, **kw):
    return RunOptions(data_dir=dataset_dir, run_dir=run_dir, device="cpu", progress=False, **kw)


@pytest.fixture
def no_vgg(tmp_path, monkeypatch):
    """An empty torch hub cache: no VGG19 weights anywhere."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))


def perceptual_warnings(caplog) -> int:
    """How many times the run said, as one WARNING line, that stage 2 trains without the perceptual term."""
    said = [r for r in caplog.records if "WITHOUT THE PERCEPTUAL LOSS" in r.getMessage()]
    assert all(r.levelname == "WARNING" and "\n" not in r.getMessage() for r in said)
    return len(said)


def fixed_batch(dataset_dir):
    return next(iter(TrainLoader(dataset_dir, resolution=32, batch_size=4, seed=0).epoch(0)))


def test_lr_schedule_decays_at_the_milestones():
    optim = tiny_config().seg_optim  # 1e-3, x0.1 at 50 % and 75 %
    assert [lr_at(optim, s, 8) for s in (0, 3, 4, 5, 6, 7)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])


def test_seg_steps_lower_the_loss_on_a_fixed_batch(dataset_dir):
    torch.manual_seed(0)
    stage = SegStage(tiny_config(), Runtime(torch.device("cpu")))
    batch = fixed_batch(dataset_dir)
    losses = [stage.train_step(batch, step)["loss"] for step in range(6)]
    assert losses[-1] < losses[0] * 0.9


def test_gan_steps_lower_the_losses_on_a_fixed_batch(dataset_dir):
    torch.manual_seed(0)
    stage = GanStage(tiny_config(), Runtime(torch.device("cpu")), None, {}, None, None)
    batch = fixed_batch(dataset_dir)
    first = stage.train_step(batch, 0)
    for step in range(1, 6):
        last = stage.train_step(batch, step)
    assert last["rec"] < first["rec"] * 0.9
    assert last["loss_d"] < first["loss_d"]
    assert set(first) == {"loss_d", "loss_g", "adv", "rec"}


def read(path):
    return path.read_text()


@pytest.mark.slow
def test_resume_continues_exactly(dataset_dir, tmp_path, no_vgg, monkeypatch, caplog):
    # 6 steps per stage over epochs of 4: the interruption at step 3 is mid-epoch.
    cfg = tiny_config(**{"train.steps": 6, "train.checkpoint_every": 3})
    straight = train(cfg, options(dataset_dir, tmp_path / "straight"))

    original = interrupt_at(monkeypatch, SegStage, 3)
    caplog.clear()
    with pytest.raises(KeyboardInterrupt):
        train(cfg, options(dataset_dir, tmp_path / "resumed"))
    assert perceptual_warnings(caplog) == 1  # warned before stage 1 (stopped there)
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "resumed", "seg"))["step"] == 3
    monkeypatch.setattr(SegStage, "train_step", original)
    with pytest.raises(RunError, match="--resume"):
        train(cfg, options(dataset_dir, tmp_path / "resumed"))
    resumed = train(cfg, options(dataset_dir, tmp_path / "resumed", resume=True))

    assert resumed == straight
    for stage in ("seg", "gan"):
        a = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "straight", stage))
        b = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "resumed", stage))
        assert a["step"] == b["step"] == 6 and a["complete"] and b["complete"]
        for name, state in a["models"].items():
            for key, value in state.items():
                assert torch.equal(value, b["models"][name][key]), (stage, name, key)
        for log in (f"{stage}_train.tsv", f"{stage}_val.tsv"):
            assert read(tmp_path / "straight" / "logs" / log) == read(tmp_path / "resumed" / "logs" / log)
    assert len(read(tmp_path / "resumed" / "logs" / "seg_train.tsv").splitlines()) == 7  # header + 6 steps


def test_resume_refuses_a_different_config(dataset_dir, tmp_path):
    cfg = tiny_config(**{"train.steps": 2})
    train(cfg, options(dataset_dir, tmp_path, stage="seg"))
    with pytest.raises(RunError, match="train.seed"):
        train(cfg.replace(**{"train.seed": 5}), options(dataset_dir, tmp_path, stage="seg", resume=True))


def test_a_run_removes_the_temporaries_of_a_killed_one(dataset_dir, tmp_path, caplog):
    # what a SIGKILL during save_checkpoint / a log rewrite leaves behind
    orphans = [tmp_path / "checkpoints" / "seg.pt.tmp-999", tmp_path / "logs" / "seg_train.tsv.tmp-999"]
    for orphan in orphans:
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"half a file")
    with caplog.at_level("INFO", logger="unmask.training.loop"):
        train(tiny_config(**{"train.steps": 2}), options(dataset_dir, tmp_path, stage="seg"))
    assert not any(orphan.exists() for orphan in orphans)
    assert "removed 2 temporary file(s)" in caplog.text
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path, "seg"))["complete"]
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_same_seed_same_run_other_seed_other_run(dataset_dir, tmp_path):
    cfg = tiny_config(**{"train.steps": 3})
    runs = [train(c, options(dataset_dir, tmp_path / str(i), stage="seg"))["seg"]
            for i, c in enumerate([cfg, cfg, cfg.replace(**{"train.seed": 1})])]
    assert runs[0] == runs[1]
    assert runs[0]["train_loss"] != runs[2]["train_loss"]


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(dataset_dir, tmp_path, monkeypatch):
    real = stages_module.segmentation_losses
    calls = []

    def nan_at_fourth_step(logits, target, cfg):
        calls.append(1)
        losses = real(logits, target, cfg)
        if len(calls) == 4:
            losses["loss"] = losses["loss"] * math.nan
        return losses

    monkeypatch.setattr(stages_module, "segmentation_losses", nan_at_fourth_step)
    cfg = tiny_config(**{"train.steps": 8, "train.checkpoint_every": 2})
    with pytest.raises(NonFiniteLossError, match="step 4"):
        train(cfg, options(dataset_dir, tmp_path, stage="seg"))
    saved = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path, "seg"))
    assert saved["step"] == 2 and not saved["complete"]
    assert all(torch.isfinite(v).all() for v in saved["models"]["mseg"].values() if v.is_floating_point())
    assert not list((tmp_path / "checkpoints").glob("*.tmp*"))


def test_missing_vgg_weights_disable_the_perceptual_term_loudly(dataset_dir, tmp_path, no_vgg, caplog):
    cfg = tiny_config(**{"train.steps": 2})
    metrics = train(cfg, options(dataset_dir, tmp_path, stage="gan"))["gan"]
    assert perceptual_warnings(caplog) == 1
    assert metrics["perceptual"] == 0 and "perceptual_reason" not in metrics  # DVC metrics: numbers only
    meta = json.loads(read(tmp_path / "run.json"))["stages"]["gan"]
    assert meta["perceptual"] is False and "vgg19-dcbb9e9d.pth" in meta["perceptual_reason"]
    assert json.loads(read(tmp_path / "gan_metrics.json")) == metrics
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path, "gan"))["perceptual"]["enabled"] is False
    assert "per" not in read(tmp_path / "logs" / "gan_train.tsv").splitlines()[0].split("\t")
    with pytest.raises(RunError, match="required"):
        train(cfg, options(dataset_dir, tmp_path / "strict", stage="gan", require_perceptual=True))


def test_vgg_weights_in_the_hub_cache_enable_the_perceptual_term(dataset_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    weights = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    weights.parent.mkdir(parents=True)
    torch.save(torchvision_like_state(), weights)  # stand-in file: tests the loading path only
    entry = dataclasses.replace(unmask_weights.FILES["vgg19"], sha256=sha256_of(weights))  # accepted as torchvision's
    monkeypatch.setitem(unmask_weights.FILES, "vgg19", entry)
    cfg = tiny_config(**{"train.steps": 1, "loss.vgg_layers": ["relu1_1", "relu2_1"], "loss.vgg_weights": [1.0, 1.0]})
    metrics = train(cfg, options(dataset_dir, tmp_path / "run", stage="gan"))["gan"]
    assert metrics["perceptual"] == 1 and metrics["train_per"] > 0
    assert "per" in read(tmp_path / "run" / "logs" / "gan_train.tsv").splitlines()[0].split("\t")


def test_outputs_and_load_models(dataset_dir, tmp_path, no_vgg):
    cfg = tiny_config(**{"train.epochs": 1, "train.gan_maps": "predicted"})
    results = train(cfg, options(dataset_dir, tmp_path))
    assert results["seg"]["step"] == results["gan"]["step"] == 4
    assert set(results["seg"]) >= {"val_pixel_acc", "val_dice", "train_loss"}
    assert set(results["gan"]) >= {"val_psnr", "val_ssim", "train_loss_g", "train_loss_d"}
    val_lines = read(tmp_path / "logs" / "seg_val.tsv").splitlines()
    assert val_lines[0] == "epoch\tstep\tpixel_acc\tdice\tthreshold" and len(val_lines) == 2
    assert (tmp_path / "samples" / "gan_epoch0000.png").is_file()
    import cv2

    grid = cv2.imread(str(tmp_path / "samples" / "gan_epoch0000.png"))
    assert grid.shape == (2 * 32, 4 * 32, 3)  # sample_images rows x (input, map, output, truth)

    config, mseg, generator = ckpt.load_models(tmp_path)
    assert config == cfg and not mseg.training and not generator.training
    masked = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        out = generator(masked, mseg.predict_map(masked))
    assert out.shape == (1, 3, 64, 64)
    # the stage-2 checkpoint alone carries the M-Seg it trained with
    _, mseg_from_gan, _ = ckpt.load_models(ckpt.checkpoint_path(tmp_path, "gan"))
    assert all(torch.equal(a, b) for a, b in zip(mseg.state_dict().values(), mseg_from_gan.state_dict().values(),
                                                     strict=True))


def test_validation_reports_the_evaluation_metrics(dataset_dir, tmp_path, no_vgg):
    """The val_* numbers of a run are the evaluation's metrics of its final models on the val split."""
    import numpy as np

    from unmask.data import eval_batches
    from unmask.metrics import fidelity, segmentation
    from unmask.predict import Unmasker
    from unmask.tensors import to_nhwc

    results = train(tiny_config(**{"train.epochs": 1}), options(dataset_dir, tmp_path))
    config, mseg, generator = ckpt.load_models(tmp_path)
    unmasker = Unmasker(generator, mseg, config)
    scores: dict[str, list[float]] = {"dice": [], "pixel_accuracy": [], "psnr": [], "ssim": []}
    for batch in eval_batches(dataset_dir, "val", resolution=32, batch_size=4):
        masked = to_nhwc(batch["masked"])
        truth, gt_map = to_nhwc(batch["unmasked"]), batch["map"][:, 0].numpy()
        _, predicted = unmasker.unmask_crops(masked)
        for name, values in segmentation.per_image_scores(predicted > 127, gt_map > 0).items():
            scores.setdefault(name, []).extend(values)
        outputs, _ = unmasker.unmask_crops(masked, gt_map * 255, grow=False)  # stage 2 validates on the true maps
        scores["psnr"].extend(fidelity.psnr_batch(outputs, truth))
        scores["ssim"].extend(fidelity.ssim_batch(outputs, truth))
    assert len(scores["psnr"]) == 4
    assert results["seg"]["val_dice"] == pytest.approx(np.mean(scores["dice"]), abs=1e-12)
    assert results["seg"]["val_pixel_acc"] == pytest.approx(np.mean(scores["pixel_accuracy"]), abs=1e-12)
    assert results["gan"]["val_psnr"] == pytest.approx(np.mean(scores["psnr"]), abs=1e-9)
    assert results["gan"]["val_ssim"] == pytest.approx(np.mean(scores["ssim"]), abs=1e-12)


def test_seg_validation_sets_the_threshold_with_the_best_dice(dataset_dir, tmp_path):
    """The saved M-Seg threshold is the calibration grid's best mean Dice on the val split, recomputed
    here from the final model's probabilities; predict_map uses it."""
    import numpy as np

    from unmask.data import eval_batches, images_to_model
    from unmask.metrics import segmentation

    results = train(tiny_config(**{"train.epochs": 2}), options(dataset_dir, tmp_path, stage="seg"))
    _, mseg, _ = ckpt.load_models(tmp_path)
    probs, truths = [], []
    for batch in eval_batches(dataset_dir, "val", resolution=32, batch_size=4):
        with torch.no_grad():
            probs.append(torch.sigmoid(mseg(images_to_model(batch["masked"])))[:, 0].numpy())
        truths.append(batch["map"][:, 0].numpy() > 0)
    prob, truth = np.concatenate(probs), np.concatenate(truths)
    dice = {t: segmentation.per_image_scores(prob > np.float32(t), truth)["dice"].mean()
            for t in stages_module.CALIBRATION_THRESHOLDS}
    best = max(dice.values())
    expected = max((t for t, d in dice.items() if d == best), key=lambda t: (-round(abs(t - 0.5), 6), t))
    assert mseg.threshold.item() == pytest.approx(expected) == results["seg"]["val_threshold"]
    assert results["seg"]["val_dice"] == pytest.approx(best, abs=1e-12)
    masked = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(mseg.predict_map(masked), (torch.sigmoid(mseg(masked)) > expected).float())


def test_finish_validation_prefers_the_threshold_nearest_half_on_ties():
    stage = SegStage(tiny_config(), Runtime(torch.device("cpu")))
    means = {f"{name}@{t}": 0.5 for t in stages_module.CALIBRATION_THRESHOLDS for name in ("pixel_acc", "dice")}
    means.update({"dice@0.3": 0.9, "dice@0.7": 0.9, "pixel_acc@0.3": 0.8, "pixel_acc@0.7": 0.95})
    assert stage.finish_validation(dict(means)) == {"pixel_acc": 0.95, "dice": 0.9, "threshold": 0.7}
    assert stage.networks["mseg"].threshold.item() == pytest.approx(0.7)
    means["dice@0.45"] = 0.9
    assert stage.finish_validation(means)["threshold"] == 0.45


def test_one_stage_ablation_trains_without_map(dataset_dir, tmp_path, no_vgg):
    cfg = tiny_config(**{"train.steps": 2, "generator.use_map": False})
    metrics = train(cfg, options(dataset_dir, tmp_path, stage="gan"))["gan"]
    assert metrics["step"] == 2
    _, _, generator = ckpt.load_models(tmp_path)
    assert not generator.use_map and generator.encoder[0].body[0][0].in_channels == 3


def test_reconstruction_only_trains_no_discriminator(dataset_dir, tmp_path, no_vgg):
    torch.manual_seed(0)
    stage = GanStage(tiny_config(**{"loss.adv": 0.0}), Runtime(torch.device("cpu")), None, {}, None, None)
    batch = fixed_batch(dataset_dir)
    first = stage.train_step(batch, 0)
    for step in range(1, 6):
        last = stage.train_step(batch, step)
    assert set(first) == {"loss_g", "rec"} and first["loss_g"] == first["rec"]
    assert last["rec"] < first["rec"] * 0.9
    assert list(stage.networks) == ["generator"]

    cfg = tiny_config(**{"train.steps": 2, "loss.adv": 0.0})
    train(cfg, options(dataset_dir, tmp_path, stage="gan"))
    state = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path, "gan"))
    assert list(state["models"]) == ["generator"]
    assert (tmp_path / "logs" / "gan_train.tsv").read_text().split("\n")[0].split("\t")[2:4] == ["loss_g", "rec"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_steps(dataset_dir, dtype):
    # The CUDA code path (autocast + GradScaler for fp16), exercised with CPU autocast.
    rt = Runtime(torch.device("cpu"), amp_dtype=dtype)
    batch = fixed_batch(dataset_dir)
    seg = SegStage(tiny_config(), rt)
    gan = GanStage(tiny_config(), rt, None, {}, None, None)
    for step in range(2):
        values = {**seg.train_step(batch, step), **gan.train_step(batch, step)}
        assert all(math.isfinite(v) for v in values.values())
    sums, panels = gan.validate_batch(batch)
    assert panels[2].dtype == torch.uint8 and math.isfinite(sums["psnr"].item())
    scaler_state = gan.state_dict()["scalers"]["generator"]
    assert bool(scaler_state) == (dtype == torch.float16)  # bf16 needs no loss scaling


@pytest.mark.slow
def test_loader_workers_across_epochs_do_not_deadlock(dataset_dir, tmp_path):
    # Regression: workers forked after the parent ran a threaded OpenCV call (the sample grid
    # of epoch 0) hung in epoch 1. A subprocess, so a hang fails the test instead of the suite.
    import subprocess
    import sys

    command = [sys.executable, "-m", "unmask.cli", "train", "--stage", "seg", "--data", str(dataset_dir),
               "--out", str(tmp_path), "--preset", "tiny", "--resolution", "32", "--batch-size", "4",
               "--epochs", "2", "--num-workers", "2", "--device", "cpu", "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "logs" / "seg_val.tsv").read_text().splitlines()) == 3  # header + 2 epochs


def test_init_generator_starts_stage_2_from_another_run(dataset_dir, tmp_path, no_vgg):
    pretrain = tmp_path / "recon"
    train(tiny_config(**{"train.steps": 2, "loss.adv": 0.0}), options(dataset_dir, pretrain, stage="gan"))
    _, _, pretrained = ckpt.load_models(pretrain)

    cfg = tiny_config(**{"train.steps": 2})
    stage = GanStage(cfg, Runtime(torch.device("cpu")), None, {}, None, None)
    stage.init_generator_from(pretrain)
    weights = stage.networks["generator"].state_dict()
    assert all(torch.equal(weights[k], v) for k, v in pretrained.state_dict().items())
    assert stage.meta()["init_generator_step"] == 2 and stage.meta()["init_generator_alpha"] == 0.0

    fine_tuned = tmp_path / "gan"
    train(cfg.replace(**{"train.checkpoint_every": 1}),
          options(dataset_dir, fine_tuned, stage="gan", init_generator=pretrain, keep_checkpoints=True))
    # --keep-checkpoints: the periodic checkpoint of step 1 stays beside the latest (step 2)
    assert ckpt.load_checkpoint(ckpt.snapshot_path(fine_tuned, "gan", 1))["step"] == 1
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(fine_tuned, "gan"))["step"] == 2
    assert not ckpt.snapshot_path(fine_tuned, "gan", 2).exists()
    run = json.loads((fine_tuned / "run.json").read_text())["stages"]["gan"]
    assert run["init_generator"] == str(ckpt.checkpoint_path(pretrain, "gan"))
    # it trained from there (weights moved) with a discriminator of its own
    state = ckpt.load_checkpoint(ckpt.checkpoint_path(fine_tuned, "gan"))
    assert set(state["models"]) == {"generator", "discriminator"}
    assert any(not torch.equal(state["models"]["generator"][k], v) for k, v in pretrained.state_dict().items())


def test_init_generator_refuses_another_architecture(dataset_dir, tmp_path, no_vgg):
    train(tiny_config(**{"train.steps": 1, "generator.use_map": False}), options(dataset_dir, tmp_path, stage="gan"))
    stage = GanStage(tiny_config(), Runtime(torch.device("cpu")), None, {}, None, None)
    with pytest.raises(RunError, match="generator.use_map"):
        stage.init_generator_from(tmp_path)
    with pytest.raises(RunError, match="no stage-2 checkpoint"):
        stage.init_generator_from(tmp_path / "nothing")


def test_a_resumed_log_drops_the_row_a_killed_run_was_writing(tmp_path):
    from unmask.training.run_files import TsvLog

    path = tmp_path / "seg_train.tsv"
    path.write_text("step\tloss\n1\t0.5\n2\t0.4\n3\t0.3\n1")  # SIGKILL while writing step 14's row
    TsvLog(path, ("step", "loss"), keep_until_step=2)
    assert path.read_text() == "step\tloss\n1\t0.5\n2\t0.4\n"


def test_a_resumed_log_keeps_its_rows_when_this_version_logs_more_columns(tmp_path, caplog):
    """A stage-1 run from before the threshold column resumes with its validation rows; columns that
    cannot be mapped move the old log aside instead of losing it."""
    from unmask.training.run_files import TsvLog

    path = tmp_path / "seg_val.tsv"
    path.write_text("epoch\tstep\tpixel_acc\tdice\n0\t10\t0.9\t0.8\n1\t20\t0.95\t0.85\n")
    TsvLog(path, ("epoch", "step", "pixel_acc", "dice", "threshold"), keep_until_step=10)
    assert path.read_text() == "epoch\tstep\tpixel_acc\tdice\tthreshold\n0\t10\t0.9\t0.8\t\n"
    path.write_text("epoch\tstep\tpsnr\n0\t10\t30.1\n")
    TsvLog(path, ("epoch", "step", "dice"), keep_until_step=10)
    assert path.read_text() == "epoch\tstep\tdice\n"
    assert (tmp_path / "seg_val.old.tsv").read_text() == "epoch\tstep\tpsnr\n0\t10\t30.1\n"
    assert any("seg_val.old.tsv" in r.getMessage() for r in caplog.records)


def test_resume_refuses_other_data(dataset_dir, tmp_path):
    cfg = tiny_config(**{"train.steps": 2})
    run = tmp_path / "run"
    train(cfg, options(dataset_dir, run, stage="seg"))
    other = tmp_path / "other"  # as many samples in as many shards, other images
    other.mkdir()
    write_split(other, "train", [6, 6, 4], start=500)
    write_split(other, "val", [4], start=1500)
    with pytest.raises(RunError, match="cannot resume .* on other data"):
        train(cfg, options(other, run, stage="seg", resume=True))
    train(cfg, options(dataset_dir, run, stage="seg", resume=True))  # its own data: fine
