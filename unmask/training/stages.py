"""What differs between the two stages: networks, optimisers, one training step, validation.

Stage 1 (``SegStage``) fits M-Seg with BCE + Dice; stage 2 (``GanStage``) fits the FU-Net generator
against the patch discriminator on ground-truth maps (paper) or on M-Seg predictions, or, with
``loss.adv = 0``, alone (the reconstruction-only ablation). Trained networks are wrapped in DDP when
the run is distributed; losses are averaged over ranks before the backward pass, so a non-finite
loss stops every rank at the same step, before the weights change.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from unmask import checkpoint as ckpt
from unmask.config import Config, OptimConfig
from unmask.data import Batch, to_model
from unmask.losses import PerceptualLoss, generator_losses, lsgan_d_loss, segmentation_losses
from unmask.metrics import fidelity, segmentation
from unmask.models import Generator, MSeg, PatchDiscriminator
from unmask.models.mseg import DEFAULT_THRESHOLD
from unmask.models.vgg import find_vgg19_weights, load_vgg19_features
from unmask.tensors import quantize, to_nhwc
from unmask.training.augment import photometric
from unmask.training.options import NonFiniteLossError, RunError, RunOptions
from unmask.training.runtime import Runtime

log = logging.getLogger(__name__)

# M-Seg thresholds tried on the validation split (SegStage): the sigmoid's 0.1 .. 0.9
CALIBRATION_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(2, 19))


def lr_at(optim: OptimConfig, step: int, total_steps: int) -> float:
    """The paper's step schedule: lr times lr_decay for each milestone passed."""
    passed = sum(step >= round(fraction * total_steps) for fraction in optim.lr_milestones)
    return optim.lr * optim.lr_decay**passed


def _adam(params: Iterator[nn.Parameter], optim: OptimConfig) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)


def _metric_sums(scores: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Per-image metric values (numpy) -> their sums on ``device``, for the validation reduction."""
    return {name: torch.tensor(float(values.sum()), dtype=torch.float64, device=device)
            for name, values in scores.items()}


def _gray(mask_map: torch.Tensor) -> torch.Tensor:
    return quantize(mask_map.float() * 2.0 - 1.0).expand(-1, 3, -1, -1)


class Stage:
    """What differs between the stages: networks, one optimisation step, validation, samples."""

    name: str
    optim_cfg: OptimConfig
    loss_columns: tuple[str, ...]
    val_columns: tuple[str, ...]

    @property
    def val_sums(self) -> tuple[str, ...]:
        """The per-image sums ``validate_batch`` returns, averaged over the validation split."""
        return self.val_columns

    def finish_validation(self, means: dict[str, float]) -> dict[str, float]:
        """The means of ``val_sums`` -> the ``val_columns`` logged (a stage may act on them first)."""
        return means

    def __init__(self, cfg: Config, rt: Runtime) -> None:
        self.cfg, self.rt = cfg, rt
        self.networks: dict[str, nn.Module] = {}  # trained, unwrapped (checkpointed)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    def _add(self, name: str, module: nn.Module) -> nn.Module:
        """Register a trained network; returns what to call in training (DDP-wrapped if distributed,
        compiled with train.compile)."""
        module = module.to(self.rt.device)
        if self.cfg.train.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.rt.world_size > 1 and self.rt.device.type == "cuda":
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)  # batch statistics over all GPUs
        self.networks[name] = module
        self.optimizers[name] = _adam(module.parameters(), self.optim_cfg)
        self.scalers[name] = torch.amp.GradScaler(self.rt.device.type, enabled=self.rt.use_scaler)
        trained: nn.Module = module
        if self.rt.world_size > 1:
            device_ids = [self.rt.local_rank] if self.rt.device.type == "cuda" else None
            trained = DistributedDataParallel(module, device_ids=device_ids)
        if self.cfg.train.compile:  # around DDP, so its gradient hooks stay outside the compiled graphs
            trained = torch.compile(trained)
        return trained

    def _inputs(self, batch: Batch) -> Batch:
        """The batch on the device in the model's range, images in the networks' memory format."""
        b = to_model(batch, self.rt.device)
        if self.cfg.train.channels_last:
            b = {k: v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.dim() == 4 else v
                 for k, v in b.items()}
        return b

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
        out = dict(zip(names, values, strict=True))
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
    """Stage 1. Each validation also sets M-Seg's threshold (its ``threshold`` buffer, saved with the
    weights): the one of ``CALIBRATION_THRESHOLDS`` with the highest mean Dice on the validation split
    (ties: the one nearest 0.5, then the higher). The validation's scores are those at that threshold, so
    they are chosen on the data they are measured on (slightly optimistic; the evaluation's test split is
    not). The sample grid's maps use the threshold of the validation before."""

    name = "seg"
    loss_columns = ("loss", "bce", "dice")
    val_columns = ("pixel_acc", "dice", "threshold")

    def __init__(self, cfg: Config, rt: Runtime) -> None:
        super().__init__(cfg, rt)
        self.optim_cfg = cfg.seg_optim
        self.mseg = self._add("mseg", MSeg(cfg.mseg))

    @property
    def val_sums(self) -> tuple[str, ...]:
        return tuple(f"{name}@{t}" for t in CALIBRATION_THRESHOLDS for name in ("pixel_acc", "dice"))

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        b = self._inputs(batch)
        train = self.cfg.train
        masked = photometric(b["masked"], b["map"], recolor=train.seg_recolor, jitter=train.seg_jitter,
                             seed=train.seed, rank=self.rt.rank, step=step)
        with self.rt.autocast():
            logits = self.mseg(masked)
        losses = segmentation_losses(logits, b["map"], self.cfg.loss)
        values = self._checked(losses, step)
        self._optimize("mseg", losses["loss"])
        return values

    @torch.no_grad()
    def validate_batch(self, batch: Batch) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        b = self._inputs(batch)
        mseg = self.networks["mseg"]
        with self.rt.autocast():
            logits = mseg(b["masked"])
        prob = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
        truth = batch["map"][:, 0].numpy() > 0
        sums = {}
        for t in CALIBRATION_THRESHOLDS:
            # the evaluation's metrics (unmask.metrics.segmentation), so validation and evaluation agree
            scores = segmentation.per_image_scores(prob > np.float32(t), truth)  # as the float32 buffer compares
            sums.update(_metric_sums({f"pixel_acc@{t}": scores["pixel_accuracy"], f"dice@{t}": scores["dice"]},
                                     self.rt.device))
        predicted = (torch.sigmoid(logits.float()) > mseg.threshold).float()
        return sums, [batch["masked"], _gray(predicted), _gray(b["map"])]

    def finish_validation(self, means: dict[str, float]) -> dict[str, float]:
        # ties: the threshold nearest 0.5, then the higher one (the tighter map)
        best = max(CALIBRATION_THRESHOLDS,
                   key=lambda t: (means[f"dice@{t}"], -round(abs(t - DEFAULT_THRESHOLD), 6), t))
        self.networks["mseg"].threshold.fill_(best)
        return {"pixel_acc": means[f"pixel_acc@{best}"], "dice": means[f"dice@{best}"], "threshold": best}


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
        b = self._inputs(batch)
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
        b = self._inputs(batch)
        mask_map = self._map(b)
        with self.rt.autocast():
            output = self.networks["generator"](b["masked"], mask_map if self.cfg.generator.use_map else None)
        output = quantize(output.float())
        # the evaluation's metrics (unmask.metrics.fidelity) on the uint8 output, as it would be saved
        outputs, targets = to_nhwc(output), to_nhwc(batch["unmasked"])
        sums = _metric_sums({"psnr": fidelity.psnr_batch(outputs, targets),
                             "ssim": fidelity.ssim_batch(outputs, targets)}, self.rt.device)
        return sums, [batch["masked"], _gray(mask_map), output, batch["unmasked"]]

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
            payload = ckpt.load_checkpoint(file, stage="gan")
        except ckpt.CheckpointError as exc:  # the message names the file, what it is and what was expected
            raise RunError(f"--init-generator: {exc}") from exc
        if "generator" not in payload["models"]:
            raise RunError(f"--init-generator: {file} holds no generator")
        differences = ckpt.generator_differences(payload["config"], self.cfg)
        if differences:
            raise RunError(f"--init-generator: {file} has another generator (theirs != ours): {differences}")
        self.networks["generator"].load_state_dict(payload["models"]["generator"])
        self.init_meta = {"init_generator": str(file), "init_generator_step": payload.get("step"),
                          "init_generator_alpha": payload["config"]["loss"]["adv"]}


def resolve_perceptual(cfg: Config, opts: RunOptions, rt: Runtime) -> tuple[PerceptualLoss | None, dict[str, Any]]:
    """The perceptual loss if its VGG19 weights exist; otherwise None and a loud warning, once."""
    if cfg.loss.per == 0:
        return None, {"perceptual": False, "perceptual_reason": "disabled by config (loss.per = 0)"}
    path, reason = find_vgg19_weights(opts.perceptual_weights)
    if path is None:
        if opts.require_perceptual:
            raise RunError(f"perceptual loss required but {reason}")
        if rt.is_main:  # one WARNING line of the run's log (a Python warning would carry a source prefix)
            log.warning("STAGE 2 TRAINS WITHOUT THE PERCEPTUAL LOSS: %s. Results are not comparable to runs with it "
                        "(perceptual=false in run.json and the checkpoint); `unmask weights fetch vgg19` or "
                        "--perceptual-weights vgg19-dcbb9e9d.pth gives it", reason)
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


def build_stage(name: str, cfg: Config, opts: RunOptions, rt: Runtime, perceptual: PerceptualLoss | None,
                perceptual_meta: dict[str, Any]) -> Stage:
    """Stage ``name`` with freshly initialised networks (the caller seeds the generators first).

    Stage 2 loads its M-Seg (train.gan_maps=predicted) before building its own networks, and
    ``--init-generator`` applies to a fresh run only.
    """
    if name == "seg":
        return SegStage(cfg, rt)
    mseg, mseg_cfg = _stage2_mseg(cfg, opts, rt)
    stage = GanStage(cfg, rt, perceptual, perceptual_meta, mseg, mseg_cfg)
    if opts.init_generator is not None:
        if ckpt.checkpoint_path(opts.run_dir, "gan").is_file():
            log.info("resuming: --init-generator applies to a fresh run only, ignored")
        else:
            stage.init_generator_from(opts.init_generator)
    return stage
