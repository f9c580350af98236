"""Mixed precision without a GPU: bf16 autocast through the training code on the CPU, the fp16 GradScaler's
step logic (CPU autocast to float16), and how a run picks, refuses and records its precision."""

import json

import pytest
import torch
from click.testing import CliRunner

from tests.unmask.testutils import interrupt_at, tiny_config
from unmask import checkpoint as ckpt
from unmask.cli import main
from unmask.data import TrainLoader
from unmask.training import runtime as runtime_module
from unmask.training.loop import train
from unmask.training.options import RunOptions
from unmask.training.runtime import DeviceError, Runtime, autocast_dtype
from unmask.training.stages import GanStage, SegStage

CPU = torch.device("cpu")


def options(dataset_dir, run_dir, **kw):
    return RunOptions(data_dir=dataset_dir, run_dir=run_dir, device="cpu", progress=False, **kw)


@pytest.fixture
def no_vgg(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))


@pytest.fixture(scope="module")
def batch64(dataset_dir):
    return next(iter(TrainLoader(dataset_dir, resolution=64, batch_size=4, seed=0).epoch(0)))


def first_step_losses(make_stage, amp_dtype, batch):
    torch.manual_seed(0)  # the same initial weights for both precisions
    return make_stage(Runtime(CPU, amp_dtype=amp_dtype)).train_step(batch, 0)


# Stage 2 computes G's losses after D's update, and Adam's first step moves every weight by about lr whatever
# the gradient's size: a sign that bf16 rounding flips would move D as far as any other. A negligible lr keeps
# every loss of the step on the same weights, so the comparison is of the forward computations.
STILL = {"train.resolution": 64, "gan_optim.lr": 1e-12}


@pytest.mark.parametrize("make_stage", [
    lambda rt: SegStage(tiny_config(**STILL), rt),
    lambda rt: GanStage(tiny_config(**STILL), rt, None, {}, None, None),
], ids=["seg", "gan"])
def test_bf16_first_step_losses_are_within_one_percent_of_float32(make_stage, batch64):
    fp32 = first_step_losses(make_stage, None, batch64)
    bf16 = first_step_losses(make_stage, torch.bfloat16, batch64)
    assert fp32.keys() == bf16.keys()
    for name in fp32:
        assert bf16[name] == pytest.approx(fp32[name], rel=0.01), name
    assert bf16 != fp32  # bf16 did run: its rounding shows in the losses


def test_auto_is_float32_on_the_cpu_and_bf16_fp16_apply_there():
    assert autocast_dtype("auto", CPU) is None and autocast_dtype("off", CPU) is None
    assert autocast_dtype("bf16", CPU) == torch.bfloat16
    assert autocast_dtype("fp16", CPU) == torch.float16
    assert Runtime(CPU, amp_dtype=torch.float16).use_scaler and not Runtime(CPU, amp_dtype=torch.bfloat16).use_scaler


def test_amp_bf16_trains_on_the_cpu(dataset_dir, tmp_path, no_vgg):
    cfg = tiny_config(**{"train.steps": 3, "train.amp": "bf16"})
    results = train(cfg, options(dataset_dir, tmp_path))
    stages = json.loads((tmp_path / "run.json").read_text())["stages"]
    assert stages["seg"]["amp"] == stages["gan"]["amp"] == "bfloat16"
    assert results["seg"]["step"] == results["gan"]["step"] == 3
    assert all(isinstance(v, float) for v in results["gan"].values() if not isinstance(v, int))


def test_a_precision_torch_cannot_autocast_to_on_the_cpu_is_refused_in_one_line(dataset_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(runtime_module, "_cpu_autocast_works", lambda dtype: dtype != torch.float16)
    with pytest.raises(DeviceError, match=r"--amp fp16: .* cannot autocast to torch.float16 on the CPU"):
        autocast_dtype("fp16", CPU)
    result = CliRunner().invoke(main, ["train", "--data", str(dataset_dir), "--out", str(tmp_path / "run"),
                                       "--preset", "tiny", "--amp", "fp16", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: --amp fp16: this torch")
    assert not (tmp_path / "run").exists()


# --- the fp16 GradScaler ------------------------------------------------------------------------------------

def fp16_seg_stage():
    torch.manual_seed(0)
    return SegStage(tiny_config(), Runtime(CPU, amp_dtype=torch.float16))


def weights(stage):
    return {k: v.clone() for k, v in stage.networks["mseg"].state_dict().items()}


def set_scaler(stage, **state):
    scaler = stage.scalers["mseg"]
    scaler.load_state_dict({**scaler.state_dict(), **state})


def test_an_overflowing_step_is_skipped_and_the_scale_backs_off(dataset_dir):
    batch = next(iter(TrainLoader(dataset_dir, resolution=32, batch_size=4, seed=0).epoch(0)))
    stage = fp16_seg_stage()
    set_scaler(stage, scale=2.0**127)  # loss x scale overflows float32: every gradient is inf/nan
    before = weights(stage)
    losses = stage.train_step(batch, 0)  # the loss itself is finite: the run goes on
    after = weights(stage)
    trained = [k for k in before if before[k].is_floating_point() and not k.endswith("running_mean")
               and not k.endswith("running_var")]
    assert all(torch.equal(before[k], after[k]) for k in trained)  # the optimizer step was skipped
    assert stage.optimizers["mseg"].state_dict()["state"] == {}  # Adam never stepped
    assert stage.scalers["mseg"].get_scale() == 2.0**126  # backoff_factor 0.5
    assert losses["loss"] > 0

    stage.train_step(batch, 1)  # 2**126 still overflows; 2**125 too ... until it does not
    assert stage.scalers["mseg"].get_scale() == 2.0**125
    set_scaler(stage, scale=2.0**10, growth_interval=2, _growth_tracker=0)
    stage.train_step(batch, 2)
    changed = [k for k in trained if not torch.equal(after[k], weights(stage)[k])]
    assert changed  # a finite step updates the weights
    assert stage.scalers["mseg"].state_dict()["_growth_tracker"] == 1 and stage.scalers["mseg"].get_scale() == 2.0**10
    stage.train_step(batch, 3)  # growth_interval finite steps in a row: the scale doubles
    assert stage.scalers["mseg"].get_scale() == 2.0**11 and stage.scalers["mseg"].state_dict()["_growth_tracker"] == 0


@pytest.mark.slow
def test_fp16_resume_restores_the_scalers_exactly(dataset_dir, tmp_path, no_vgg, monkeypatch):
    cfg = tiny_config(**{"train.steps": 4, "train.checkpoint_every": 2, "train.amp": "fp16"})
    train(cfg, options(dataset_dir, tmp_path / "straight"))

    original = interrupt_at(monkeypatch, GanStage, 2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, options(dataset_dir, tmp_path / "resumed"))
    interrupted = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "resumed", "gan"))
    assert interrupted["step"] == 2 and interrupted["scalers"]["generator"]["_growth_tracker"] == 2
    monkeypatch.setattr(GanStage, "train_step", original)
    train(cfg, options(dataset_dir, tmp_path / "resumed", resume=True))

    for stage in ("seg", "gan"):
        straight = ckpt.checkpoint_path(tmp_path / "straight", stage)
        assert straight.read_bytes() == ckpt.checkpoint_path(tmp_path / "resumed", stage).read_bytes(), stage
    scalers = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "straight", "gan"))["scalers"]
    assert scalers["generator"]["_growth_tracker"] == scalers["discriminator"]["_growth_tracker"] == 4
    assert scalers["generator"]["scale"] == 65536.0


# --- channels_last, torch.compile ----------------------------------------------------------------------------

def test_channels_last_trains_the_same_networks_in_nhwc(dataset_dir):
    batch = next(iter(TrainLoader(dataset_dir, resolution=32, batch_size=4, seed=0).epoch(0)))
    losses = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        stage = GanStage(tiny_config(**{"train.channels_last": channels_last}), Runtime(CPU), None, {}, None, None)
        losses[channels_last] = [stage.train_step(batch, step) for step in range(2)]
        conv = next(p for p in stage.networks["generator"].parameters() if p.dim() == 4)
        assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
    for plain, nhwc in zip(losses[False], losses[True], strict=True):  # other kernels, the same computation
        assert nhwc == pytest.approx(plain, rel=1e-4)


def test_compile_without_a_compiler_fails_in_one_line(dataset_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler")
    result = CliRunner().invoke(main, ["train", "--data", str(dataset_dir), "--out", str(tmp_path / "run"),
                                       "--preset", "tiny", "--set", "train.compile=true", "--device", "cpu",
                                       "--no-progress"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: train.compile needs a C++ compiler on the CPU (no-such-compiler not found; install g++ or set CXX); "
        "set train.compile=false")
    assert not (tmp_path / "run").exists()
