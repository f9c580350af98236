"""Training of both stages: ``train(cfg, options)``.

Stage 1 (``seg``) fits M-Seg with BCE + Dice; stage 2 (``gan``) fits the FU-Net generator against
the patch discriminator on ground-truth maps (paper) or on M-Seg predictions. ``all`` runs both.

Run directory layout (only rank 0 writes):

* ``config.yaml``                     the resolved config
* ``run.json``                        per-stage metadata (device, world size, precision, data,
                                      whether the perceptual term ran and why / why not)
* ``checkpoints/{stage}.pt``          latest checkpoint (see ``unmask.checkpoint``)
* ``logs/{stage}_train.tsv``          per step: step, epoch, losses, learning rates
* ``logs/{stage}_val.tsv``            per epoch: epoch, step, pixel_acc, dice | psnr, ssim
* ``samples/{stage}_epoch{NNNN}.png`` input | map | output | ground truth, a few validation rows
* ``{stage}_metrics.json``            final flat metrics (for DVC)

Distributed: launched by ``torchrun``, every process reads RANK / WORLD_SIZE / LOCAL_RANK, joins
the process group (nccl on CUDA, gloo on CPU), wraps the trained networks in DDP and reads its
own part of the data (``unmask.data``). Losses are averaged over ranks before the backward pass, so
a non-finite loss stops every rank at the same step, before the weights change.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import random
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from unmask import checkpoint as ckpt
from unmask.config import Config, OptimConfig, diff
from unmask.data import Batch, TrainLoader, eval_batches, images_to_uint8, list_shards, to_model
from unmask.losses import (
    PerceptualLoss, dice_coefficient, generator_losses, lsgan_d_loss, psnr, segmentation_losses, ssim,
)
from unmask.models import Generator, MSeg, PatchDiscriminator
from unmask.models.vgg import find_vgg19_weights, load_vgg19_features

log = logging.getLogger(__name__)

STAGES = ckpt.STAGES


class RunError(RuntimeError):
    """A run cannot start or continue as asked (bad resume, missing inputs); the message says why."""


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; the run stopped and its last checkpoint is untouched."""


class PerceptualLossDisabled(UserWarning):
    """Stage 2 runs without the perceptual term (no VGG19 weights)."""


@dataclass
class RunOptions:
    """How and where to run (the config says what to train)."""

    data_dir: Path
    run_dir: Path
    stage: str = "all"  # seg | gan | all
    device: str = "auto"  # cpu | cuda | auto
    resume: bool = False
    perceptual_weights: Path | None = None  # default: the torch hub cache
    require_perceptual: bool = False  # fail instead of training stage 2 without the perceptual term
    seg_checkpoint: Path | None = None  # M-Seg for train.gan_maps=predicted; default RUN/checkpoints/seg.pt
    # Stage 2 starts from this run's (or checkpoint's) generator instead of random weights, e.g. a
    # reconstruction-only run (--alpha 0): pre-training for PSNR, then GAN fine-tuning. Fresh runs only.
    init_generator: Path | None = None
    keep_checkpoints: bool = False  # also keep every periodic checkpoint as checkpoints/{stage}-{step:06d}.pt
    progress: bool = True

    def __post_init__(self) -> None:
        self.data_dir, self.run_dir = Path(self.data_dir), Path(self.run_dir)
        if self.init_generator is not None:
            self.init_generator = Path(self.init_generator)


# --------------------------------------------------------------------------- runtime context


@dataclass
class Runtime:
    """Process placement and numerics of this run: device, rank, mixed precision."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype | None = None  # None: full float32
    owns_process_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def use_scaler(self) -> bool:
        return self.amp_dtype == torch.float16  # bf16 has float32's range: no loss scaling needed

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def setup_runtime(device: str, amp: str) -> Runtime:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda, but torch sees no CUDA device")
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    owns = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo")
        owns = True
    amp_dtype = None
    if torch_device.type == "cuda" and amp != "off":
        if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
            amp_dtype = torch.bfloat16
        else:
            amp_dtype = torch.float16
    return Runtime(torch_device, rank, world_size, local_rank, amp_dtype, owns)


def lr_at(optim: OptimConfig, step: int, total_steps: int) -> float:
    """The paper's step schedule: lr times lr_decay for each milestone passed."""
    passed = sum(step >= round(fraction * total_steps) for fraction in optim.lr_milestones)
    return optim.lr * optim.lr_decay**passed


def _adam(params: Iterator[nn.Parameter], optim: OptimConfig) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)


# --------------------------------------------------------------------------- stages


class Stage:
    """What differs between the stages: networks, one optimisation step, validation, samples."""

    name: str
    optim_cfg: OptimConfig
    loss_columns: tuple[str, ...]
    val_columns: tuple[str, ...]

    def __init__(self, cfg: Config, rt: Runtime) -> None:
        self.cfg, self.rt = cfg, rt
        self.networks: dict[str, nn.Module] = {}  # trained, unwrapped (checkpointed)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    def _add(self, name: str, module: nn.Module) -> nn.Module:
        """Register a trained network; returns what to call in training (DDP-wrapped if distributed)."""
        module = module.to(self.rt.device)
        if self.rt.world_size > 1 and self.rt.device.type == "cuda":
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)  # batch statistics over all GPUs
        self.networks[name] = module
        self.optimizers[name] = _adam(module.parameters(), self.optim_cfg)
        self.scalers[name] = torch.amp.GradScaler(self.rt.device.type, enabled=self.rt.use_scaler)
        if self.rt.world_size > 1:
            device_ids = [self.rt.local_rank] if self.rt.device.type == "cuda" else None
            return DistributedDataParallel(module, device_ids=device_ids)
        return module

    def set_lr(self, lr: float) -> None:
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = lr

    def train(self, mode: bool) -> None:
        for module in self.networks.values():
            module.train(mode)

    def _checked(self, losses: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """Losses averaged over ranks, as floats; raises before any backward pass if one is not finite."""
        names = list(losses)
        values = self.rt.mean(torch.stack([losses[n].detach().float() for n in names])).tolist()
        out = dict(zip(names, values))
        if not all(math.isfinite(v) for v in values):
            raise NonFiniteLossError(
                f"stage {self.name}: non-finite loss at step {step + 1}: {out}. Training stopped; the last "
                f"checkpoint is kept. Lower the learning rate, or try train.amp=off / bf16."
            )
        return out

    def _optimize(self, name: str, loss: torch.Tensor) -> None:
        optimizer, scaler = self.optimizers[name], self.scalers[name]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {
            "models": {n: m.state_dict() for n, m in self.networks.items()},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "scalers": {n: s.state_dict() for n, s in self.scalers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, module in self.networks.items():
            module.load_state_dict(state["models"][name])
            self.optimizers[name].load_state_dict(state["optimizers"][name])
            if self.rt.use_scaler and state["scalers"].get(name):
                self.scalers[name].load_state_dict(state["scalers"][name])

    def meta(self) -> dict[str, Any]:
        return {}

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        raise NotImplementedError

    def validate_batch(self, batch: Batch) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """(per-image metric sums, panels uint8 Bx3xHxW for the sample grid)."""
        raise NotImplementedError


class SegStage(Stage):
    name = "seg"
    loss_columns = ("loss", "bce", "dice")
    val_columns = ("pixel_acc", "dice")

    def __init__(self, cfg: Config, rt: Runtime) -> None:
        super().__init__(cfg, rt)
        self.optim_cfg = cfg.seg_optim
        self.mseg = self._add("mseg", MSeg(cfg.mseg))

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        b = to_model(batch, self.rt.device)
        with self.rt.autocast():
            logits = self.mseg(b["masked"])
        losses = segmentation_losses(logits, b["map"], self.cfg.loss)
        values = self._checked(losses, step)
        self._optimize("mseg", losses["loss"])
        return values

    @torch.no_grad()
    def validate_batch(self, batch: Batch) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        b = to_model(batch, self.rt.device)
        with self.rt.autocast():
            logits = self.networks["mseg"](b["masked"])
        predicted = (torch.sigmoid(logits.float()) > 0.5).float()
        sums = {
            "pixel_acc": (predicted == b["map"]).float().mean(dim=(1, 2, 3)).sum(),
            "dice": dice_coefficient(predicted, b["map"]).sum(),
        }
        return sums, [batch["masked"], _gray(predicted), _gray(b["map"])]


class GanStage(Stage):
    name = "gan"
    val_columns = ("psnr", "ssim")

    def __init__(self, cfg: Config, rt: Runtime, perceptual: PerceptualLoss | None, perceptual_meta: dict[str, Any],
                 mseg: MSeg | None, mseg_config: Config | None) -> None:
        super().__init__(cfg, rt)
        self.optim_cfg = cfg.gan_optim
        self.generator = self._add("generator", Generator(cfg.generator))
        # loss.adv == 0 is the reconstruction-only ablation: a plain U-Net, no discriminator to train.
        self.adversarial = cfg.loss.adv > 0
        if self.adversarial:
            self.discriminator = self._add("discriminator", PatchDiscriminator(cfg.discriminator))
        self.perceptual = perceptual.to(rt.device) if perceptual is not None else None
        self.perceptual_meta = perceptual_meta
        self.mseg = mseg.to(rt.device).eval().requires_grad_(False) if mseg is not None else None
        self.mseg_config = mseg_config
        self.init_meta: dict[str, Any] = {}
        self.loss_columns = (("loss_d", "loss_g", "adv") if self.adversarial else ("loss_g",)) + ("rec",) + (
            ("per",) if perceptual is not None else ())

    def _map(self, b: Batch) -> torch.Tensor:
        if self.mseg is None:
            return b["map"]
        with self.rt.autocast():
            return self.mseg.predict_map(b["masked"])

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        b = to_model(batch, self.rt.device)
        mask_map = self._map(b)
        real = b["unmasked"]
        with self.rt.autocast():
            output = self.generator(b["masked"], mask_map if self.cfg.generator.use_map else None)
        if not self.adversarial:
            with self.rt.autocast():
                g = generator_losses(output, real, None, self.cfg.loss, self.perceptual)
            g_values = self._checked(g, step)
            self._optimize("generator", g["loss"])
            return {"loss_g": g_values.pop("loss"), **g_values}
        with self.rt.autocast():
            # One pass over real and fake: DDP sees one forward per backward (no batch norm in D).
            scores = self.discriminator(torch.cat([real, output.detach()]))
        d_real, d_fake = scores.float().chunk(2)
        loss_d = lsgan_d_loss(d_real, d_fake, self.cfg.loss.lsgan_a, self.cfg.loss.lsgan_b)
        values = self._checked({"loss_d": loss_d}, step)
        self._optimize("discriminator", loss_d)

        # G's adversarial term goes through the unwrapped D: no D gradients, nothing for DDP to sync.
        disc = self.networks["discriminator"].requires_grad_(False)
        try:
            with self.rt.autocast():  # the losses themselves are computed in float32
                g = generator_losses(output, real, disc(output), self.cfg.loss, self.perceptual)
            g_values = self._checked(g, step)
            self._optimize("generator", g["loss"])
        finally:
            disc.requires_grad_(True)
        values.update({"loss_g": g_values.pop("loss"), **g_values})
        return values

    @torch.no_grad()
    def validate_batch(self, batch: Batch) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        b = to_model(batch, self.rt.device)
        mask_map = self._map(b)
        with self.rt.autocast():
            output = self.networks["generator"](b["masked"], mask_map if self.cfg.generator.use_map else None)
        output = output.float().clamp(-1.0, 1.0)
        sums = {"psnr": psnr(output, b["unmasked"]).sum(), "ssim": ssim(output, b["unmasked"]).sum()}
        return sums, [batch["masked"], _gray(mask_map), images_to_uint8(output), batch["unmasked"]]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.mseg is not None:  # stage 2 depends on these maps: keep the M-Seg with it
            state["models"]["mseg"] = self.mseg.state_dict()
            state["mseg_config"] = self.mseg_config.to_dict()
        return state

    def meta(self) -> dict[str, Any]:
        return {**self.perceptual_meta, **self.init_meta}

    def init_generator_from(self, path: Path) -> None:
        """Copy the generator weights of another stage-2 run (directory or checkpoint file).

        Only the weights: optimizer state, step and lr schedule start afresh, and the generator
        configs must be identical (width, map input, depth).
        """
        try:
            file = ckpt.gan_checkpoint_file(path)
        except FileNotFoundError as exc:
            raise RunError(f"--init-generator: {exc}") from exc
        try:
            payload = ckpt.load_checkpoint(file)
        except (ValueError, RuntimeError) as exc:  # another format, or not a torch file
            raise RunError(f"--init-generator: cannot read {file}: {exc}") from exc
        if "generator" not in payload["models"]:
            raise RunError(f"--init-generator: {file} holds no generator")
        differences = [d for d in diff(Config.from_dict(payload["config"]), self.cfg) if d.startswith("generator.")]
        if differences:
            raise RunError(f"--init-generator: {file} has another generator (theirs != ours): {differences}")
        self.networks["generator"].load_state_dict(payload["models"]["generator"])
        self.init_meta = {"init_generator": str(file), "init_generator_step": payload["step"],
                          "init_generator_alpha": payload["config"]["loss"]["adv"]}


def _gray(mask_map: torch.Tensor) -> torch.Tensor:
    return images_to_uint8(mask_map.float() * 2.0 - 1.0).expand(-1, 3, -1, -1)


# --------------------------------------------------------------------------- outputs


class TsvLog:
    """Append-only TSV with a header; a resumed run first drops the rows after its checkpoint."""

    def __init__(self, path: Path, columns: tuple[str, ...], keep_until_step: int | None) -> None:
        self.path, self.columns = path, columns
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "\t".join(columns)
        kept: list[str] = []
        if keep_until_step is not None and path.is_file():
            lines = path.read_text().splitlines()
            if lines and lines[0] == header:
                step_col = columns.index("step")
                kept = [line for line in lines[1:] if int(line.split("\t")[step_col]) <= keep_until_step]
        path.write_text("\n".join([header, *kept]) + "\n")

    def write(self, row: dict[str, Any]) -> None:
        cells = [_cell(row[c]) for c in self.columns]
        with open(self.path, "a") as f:
            f.write("\t".join(cells) + "\n")


def _cell(value: Any) -> str:
    return format(value, ".8g") if isinstance(value, float) else str(value)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _update_run_json(run_dir: Path, stage: str, meta: dict[str, Any]) -> None:
    path = run_dir / "run.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.setdefault("stages", {})[stage] = meta
    _write_json(path, data)


def save_sample_grid(path: Path, panels: list[torch.Tensor], rows: int) -> None:
    """One row per sample, one column per panel (uint8 Bx3xHxW RGB tensors)."""
    columns = [p[:rows].permute(0, 2, 3, 1).cpu().numpy() for p in panels]
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in zip(*columns)], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(grid), cv2.COLOR_RGB2BGR))


# --------------------------------------------------------------------------- the loop


def _validate(stage: Stage, cfg: Config, opts: RunOptions, rt: Runtime) -> tuple[dict[str, float], list[torch.Tensor]]:
    stage.train(False)
    sums: dict[str, torch.Tensor] = {}
    count = torch.zeros((), device=rt.device)
    panels: list[torch.Tensor] = []
    batches = eval_batches(
        opts.data_dir, "val", resolution=cfg.train.resolution, batch_size=cfg.train.batch_size,
        rank=rt.rank, world_size=rt.world_size, num_workers=cfg.train.num_workers,
        max_batches=cfg.train.val_max_batches, pin_memory=rt.device.type == "cuda",
    )
    for batch in batches:
        batch_sums, batch_panels = stage.validate_batch(batch)
        for name, value in batch_sums.items():
            sums[name] = sums.get(name, 0.0) + value.double()
        count += len(batch["key"])
        if not panels:
            panels = batch_panels
    stage.train(True)
    names = list(stage.val_columns)
    totals = rt.sum(torch.stack([sums.get(n, torch.zeros((), device=rt.device)).double() for n in names] + [count.double()]))
    n = totals[-1].item()
    if n == 0:  # no validation split
        return {}, panels
    return {name: totals[i].item() / n for i, name in enumerate(names)}, panels


def _resume_state(stage: Stage, cfg: Config, opts: RunOptions, data_key: dict[str, int]) -> dict[str, Any] | None:
    path = ckpt.checkpoint_path(opts.run_dir, stage.name)
    if not path.is_file():
        return None
    _check_resumable(path, cfg, opts)
    state = ckpt.load_checkpoint(path)  # on CPU: RNG states must stay there; weights are copied over
    if state["data"] != data_key:
        raise RunError(
            f"cannot resume {path} exactly: the batch order depends on {sorted(data_key)}; "
            f"checkpoint has {state['data']}, this run {data_key}"
        )
    if state["perceptual"]["enabled"] != stage.meta().get("perceptual", False):
        raise RunError(
            f"cannot resume {path}: it ran with perceptual={state['perceptual']['enabled']} "
            f"({state['perceptual']['reason']}), this run has perceptual={stage.meta().get('perceptual')}"
        )
    return state


def _check_resumable(path: Path, cfg: Config, opts: RunOptions) -> None:
    if not opts.resume:
        raise RunError(f"{path} exists: pass --resume to continue that run, or choose another --out")
    differences = diff(Config.from_dict(ckpt.load_checkpoint(path)["config"]), cfg)
    if differences:
        raise RunError(f"cannot resume {path} with a different config: {differences}")


def run_stage(stage: Stage, cfg: Config, opts: RunOptions, rt: Runtime) -> dict[str, Any]:
    """Train one stage to its end (or resume it); returns its final metrics."""
    t = cfg.train
    try:
        loader = TrainLoader(
            opts.data_dir, resolution=t.resolution, batch_size=t.batch_size, seed=t.seed, rank=rt.rank,
            world_size=rt.world_size, num_workers=t.num_workers, shuffle_buffer=t.shuffle_buffer,
            pin_memory=rt.device.type == "cuda",
        )
    except (FileNotFoundError, ValueError) as exc:
        raise RunError(str(exc)) from exc
    if rt.is_main and not list_shards(opts.data_dir, "val"):
        log.warning("no val shards in %s: stage %s runs without validation metrics", opts.data_dir, stage.name)
    spe = loader.steps_per_epoch
    total = t.steps if t.steps is not None else t.epochs * spe
    data_key = {"world_size": rt.world_size, "num_workers": t.num_workers, "batch_size": t.batch_size,
                "num_samples": loader.num_samples}
    state = _resume_state(stage, cfg, opts, data_key)
    step = 0
    last_val: dict[str, float] = {}
    last_losses: dict[str, float] = {}
    if state is not None:
        stage.load_state_dict(state)
        ckpt.restore_rng(state["rng"])
        step, last_val, last_losses = state["step"], dict(state["val"]), dict(state["losses"])
        if rt.is_main:
            log.info("resuming stage %s at step %d of %d", stage.name, step, total)
    if state is not None and state["complete"]:
        return _final_metrics(stage, step, spe, last_losses, last_val)

    run_dir, name = opts.run_dir, stage.name
    train_log = val_log = None
    if rt.is_main:
        meta = {
            "stage": name, "total_steps": total, "steps_per_epoch": spe, "train_samples": loader.num_samples,
            "world_size": rt.world_size, "device": str(rt.device),
            "amp": str(rt.amp_dtype).replace("torch.", "") if rt.amp_dtype else "off",
            "gan_maps": cfg.train.gan_maps if name == "gan" else None,
            "torch": torch.__version__, "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "resumed_at_step": step if state else None,
            **stage.meta(),
        }
        _update_run_json(run_dir, name, meta)
        train_log = TsvLog(run_dir / "logs" / f"{name}_train.tsv", ("step", "epoch", *stage.loss_columns, "lr"),
                           step if state else None)
        val_log = TsvLog(run_dir / "logs" / f"{name}_val.tsv", ("epoch", "step", *stage.val_columns),
                         step if state else None)

    def save(complete: bool) -> None:
        if not rt.is_main:
            return
        payload = {
            "format": ckpt.FORMAT_VERSION, "stage": name, "config": cfg.to_dict(), "step": step,
            "total_steps": total, "complete": complete, "rng": ckpt.capture_rng(), "data": data_key,
            "perceptual": {"enabled": stage.meta().get("perceptual", False),
                           "reason": stage.meta().get("perceptual_reason", "")},
            "val": last_val, "losses": last_losses, **stage.state_dict(),
        }
        ckpt.save_checkpoint(ckpt.checkpoint_path(run_dir, name), payload)
        if opts.keep_checkpoints and not complete:
            ckpt.keep_snapshot(ckpt.checkpoint_path(run_dir, name), ckpt.snapshot_path(run_dir, name, step))

    stage.train(True)
    bar = tqdm(total=total, initial=step, desc=name, disable=not (rt.is_main and opts.progress), dynamic_ncols=True)
    try:
        while step < total:
            epoch, skip = divmod(step, spe)
            for batch in loader.epoch(epoch, skip):
                lr = lr_at(stage.optim_cfg, step, total)
                stage.set_lr(lr)
                last_losses = stage.train_step(batch, step)
                step += 1
                if train_log is not None:
                    train_log.write({"step": step, "epoch": epoch, "lr": lr, **last_losses})
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in last_losses.items()}, refresh=False)
                end_of_epoch, done = step % spe == 0, step == total
                if end_of_epoch or done:
                    last_val, panels = _validate(stage, cfg, opts, rt)
                    if not panels and rt.is_main:  # no validation split: show the last training batch
                        stage.train(False)
                        _, panels = stage.validate_batch(batch)
                        stage.train(True)
                    if rt.is_main and last_val:
                        val_log.write({"epoch": epoch, "step": step, **last_val})
                    if rt.is_main and cfg.train.sample_images:
                        save_sample_grid(run_dir / "samples" / f"{name}_epoch{epoch:04d}.png", panels,
                                         cfg.train.sample_images)
                if done or step % t.checkpoint_every == 0:
                    save(complete=done)
                if done:
                    break
    finally:
        bar.close()
    rt.barrier()
    metrics = _final_metrics(stage, step, spe, last_losses, last_val)
    if rt.is_main:
        _write_json(run_dir / f"{name}_metrics.json", metrics)
    return metrics


def _final_metrics(stage: Stage, step: int, spe: int, losses: dict[str, float], val: dict[str, float]) -> dict[str, Any]:
    metrics: dict[str, Any] = {"step": step, "epochs": step / spe}
    metrics.update({f"train_{k}": v for k, v in losses.items()})
    metrics.update({f"val_{k}": v for k, v in val.items()})
    metrics.update(stage.meta())
    return metrics


def resolve_perceptual(cfg: Config, opts: RunOptions, rt: Runtime) -> tuple[PerceptualLoss | None, dict[str, Any]]:
    """The perceptual loss if its VGG19 weights exist; otherwise None and a loud warning, once."""
    if cfg.loss.per == 0:
        return None, {"perceptual": False, "perceptual_reason": "disabled by config (loss.per = 0)"}
    path, reason = find_vgg19_weights(opts.perceptual_weights)
    if path is None:
        if opts.require_perceptual:
            raise RunError(f"perceptual loss required but {reason}")
        if rt.is_main:
            warnings.warn(
                "\n" + "!" * 78 + f"\nSTAGE 2 TRAINS WITHOUT THE PERCEPTUAL LOSS: {reason}.\n"
                "Results are not comparable to runs with it (recorded as perceptual=false in run.json,\n"
                "gan_metrics.json and the checkpoint). Pass --perceptual-weights vgg19-dcbb9e9d.pth to use it.\n"
                + "!" * 78,
                PerceptualLossDisabled,
                stacklevel=2,
            )
        return None, {"perceptual": False, "perceptual_reason": reason}
    vgg = load_vgg19_features(path)
    loss = PerceptualLoss(vgg, cfg.loss.vgg_layers, cfg.loss.vgg_weights)
    return loss, {"perceptual": True, "perceptual_reason": reason}


def _stage2_mseg(cfg: Config, opts: RunOptions, rt: Runtime) -> tuple[MSeg | None, Config | None]:
    if cfg.train.gan_maps != "predicted":
        return None, None
    path = opts.seg_checkpoint or ckpt.checkpoint_path(opts.run_dir, "seg")
    if not Path(path).is_file():
        raise RunError(f"train.gan_maps=predicted needs a stage-1 checkpoint: {path} does not exist")
    seg_cfg, mseg = ckpt.load_mseg(path, rt.device)
    return mseg, seg_cfg


def train(cfg: Config, opts: RunOptions) -> dict[str, dict[str, Any]]:
    """Train the stage(s) in ``opts.stage``; returns the final metrics by stage."""
    if opts.stage not in (*STAGES, "all"):
        raise RunError(f"stage must be seg, gan or all, got {opts.stage!r}")
    rt = setup_runtime(opts.device, cfg.train.amp)
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    try:
        deterministic = cfg.train.deterministic
        if deterministic is None:
            deterministic = rt.device.type == "cpu"
        if deterministic:
            # On CUDA some kernels (e.g. bilinear upsampling backward) have no deterministic
            # version: there it only warns.
            torch.use_deterministic_algorithms(True, warn_only=rt.device.type == "cuda")
        if rt.device.type == "cuda":
            torch.backends.cudnn.benchmark = not deterministic
        stages = STAGES if opts.stage == "all" else (opts.stage,)
        for name in stages:  # before anything is written to the run directory
            path = ckpt.checkpoint_path(opts.run_dir, name)
            if path.is_file():
                _check_resumable(path, cfg, opts)
        # Decided (and warned about) before any training starts.
        perceptual, perceptual_meta = resolve_perceptual(cfg, opts, rt) if "gan" in stages else (None, {})
        if rt.is_main:
            opts.run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(opts.run_dir / "config.yaml")
        rt.barrier()
        results = {}
        for name in stages:
            _seed_everything(cfg.train.seed)  # identical initial weights on every rank
            if name == "seg":
                stage: Stage = SegStage(cfg, rt)
            else:
                mseg, mseg_cfg = _stage2_mseg(cfg, opts, rt)
                stage = GanStage(cfg, rt, perceptual, perceptual_meta, mseg, mseg_cfg)
                if opts.init_generator is not None:
                    if ckpt.checkpoint_path(opts.run_dir, "gan").is_file():
                        log.info("resuming: --init-generator applies to a fresh run only, ignored")
                    else:
                        stage.init_generator_from(opts.init_generator)
            results[name] = run_stage(stage, cfg, opts, rt)
        return results
    finally:
        torch.use_deterministic_algorithms(previous_determinism)
        if rt.owns_process_group:
            dist.destroy_process_group()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
