"""The training loop of one stage (validation, checkpoints, exact resume) and ``train``, which runs
the stage(s) of a run in turn.

Run directory layout (only rank 0 writes): ``config.yaml`` (the resolved config),
``checkpoints/{stage}.pt`` (the latest checkpoint, see ``unmask.checkpoint``) and the files of
``unmask.training.run_files``.
"""

from __future__ import annotations

import logging
import platform
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from maskgen.files import clean_temporaries
from maskgen.reader import list_shards
from unmask import checkpoint as ckpt
from unmask import weights
from unmask.config import Config
from unmask.data import DataError, TrainLoader, check_dataset, dataset_fingerprint, eval_batches
from unmask.training.options import RunError, RunOptions
from unmask.training.run_files import (
    SkippedLog,
    TsvLog,
    final_metrics,
    log_path,
    save_sample_grid,
    update_run_json,
    write_metrics,
)
from unmask.training.runtime import Runtime, compile_problem, runtime_session, seed_everything
from unmask.training.stages import Stage, build_stage, lr_at, resolve_perceptual

log = logging.getLogger(__name__)


def _validate(stage: Stage, cfg: Config, opts: RunOptions, rt: Runtime
              ) -> tuple[dict[str, float], list[torch.Tensor], list[tuple[str, str, str]]]:
    """(mean validation metrics, sample panels, the bad samples passed over on every rank)."""
    stage.train(False)
    sums: dict[str, torch.Tensor] = {}
    count = torch.zeros((), device=rt.device)
    panels: list[torch.Tensor] = []
    skipped: list[tuple[str, str, str]] = []
    batches = eval_batches(
        opts.data_dir, "val", resolution=cfg.train.resolution, batch_size=cfg.train.batch_size,
        rank=rt.rank, world_size=rt.world_size, num_workers=cfg.train.num_workers,
        max_batches=cfg.train.val_max_batches, pin_memory=rt.device.type == "cuda",
    )
    for batch in batches:
        skipped.extend(batch["skipped"])
        if not batch["key"]:  # only bad samples
            continue
        batch_sums, batch_panels = stage.validate_batch(batch)
        for name, value in batch_sums.items():
            sums[name] = sums.get(name, 0.0) + value.double()
        count += len(batch["key"])
        if not panels:
            panels = batch_panels
    stage.train(True)
    names = list(stage.val_sums)
    zero = torch.zeros((), device=rt.device)
    totals = rt.sum(torch.stack([sums.get(n, zero).double() for n in names] + [count.double()]))
    n = totals[-1].item()
    skipped = rt.gather(skipped)
    if n == 0:  # no validation split
        return {}, panels, skipped
    return stage.finish_validation({name: totals[i].item() / n for i, name in enumerate(names)}), panels, skipped


def _resume_state(stage: Stage, cfg: Config, opts: RunOptions, data_key: dict[str, int],
                  dataset: str) -> dict[str, Any] | None:
    path = ckpt.checkpoint_path(opts.run_dir, stage.name)
    if not path.is_file():
        return None
    return _check_resumable(path, cfg, opts, data_key, bool(stage.meta().get("perceptual", False)), dataset)


def _check_resumable(path: Path, cfg: Config, opts: RunOptions, data_key: dict[str, int] | None = None,
                     perceptual: bool | None = None, dataset: str | None = None) -> dict[str, Any]:
    """The checkpoint at ``path``, if this run may continue it (see ``ckpt.resume_problem``)."""
    if not opts.resume:
        raise RunError(f"{path} exists: pass --resume to continue that run, or choose another --out")
    try:  # on CPU: RNG states must stay there; weights are copied over
        state = ckpt.load_checkpoint(path, stage=path.stem)  # RUN/checkpoints/{stage}.pt
    except ckpt.CheckpointError as exc:
        raise RunError(f"cannot resume: {exc}; move it away to start the stage afresh") from exc
    problem = ckpt.resume_problem(path, state, cfg, data_key, perceptual, dataset)
    if problem is not None:
        raise RunError(problem)
    return state


def _train_loader(cfg: Config, opts: RunOptions, rt: Runtime) -> TrainLoader:
    """The training batches of every stage (the same data and batch size); RunError when there are no
    shards or fewer samples than one batch."""
    t = cfg.train
    try:
        return TrainLoader(
            opts.data_dir, resolution=t.resolution, batch_size=t.batch_size, seed=t.seed, rank=rt.rank,
            world_size=rt.world_size, num_workers=t.num_workers, shuffle_buffer=t.shuffle_buffer,
            pin_memory=rt.device.type == "cuda",
        )
    except (FileNotFoundError, ValueError) as exc:
        raise RunError(str(exc)) from exc


def _run_stage(stage: Stage, loader: TrainLoader, cfg: Config, opts: RunOptions, rt: Runtime) -> dict[str, Any]:
    """Train one stage to its end (or resume it); returns its final metrics."""
    t = cfg.train
    if rt.is_main and not list_shards(opts.data_dir, "val"):
        log.warning("no val shards in %s: stage %s runs without validation metrics", opts.data_dir, stage.name)
    spe = loader.steps_per_epoch
    total = t.steps if t.steps is not None else t.epochs * spe
    data_key = {"world_size": rt.world_size, "num_workers": t.num_workers, "batch_size": t.batch_size,
                "num_samples": loader.num_samples}
    dataset = dataset_fingerprint(opts.data_dir)
    state = _resume_state(stage, cfg, opts, data_key, dataset)
    step = 0
    last_val: dict[str, float] = {}
    last_losses: dict[str, float] = {}
    if state is not None:
        stage.load_state_dict(state)
        step, last_val, last_losses = state["step"], dict(state["val"]), dict(state["losses"])
        if rt.is_main:
            log.info("resuming stage %s at step %d of %d", stage.name, step, total)
    if state is not None and state["complete"]:
        return final_metrics(step, spe, last_losses, last_val, stage.meta(), len(state.get("bad_samples", [])))

    run_dir, name = opts.run_dir, stage.name
    skipped = SkippedLog(run_dir, name, state.get("bad_samples", []) if state else [], t.max_bad_samples, rt.is_main)
    meta: dict[str, Any] = {}

    def note_skipped(entries: list[tuple[str, str, str]], split: str, at_step: int) -> None:
        """Count and list the new bad samples (every rank's) met by step ``at_step``; stop past
        train.max_bad_samples."""
        new = skipped.add(entries, at_step, split)
        if new and rt.is_main:
            for row in skipped.rows[-new:]:
                log.warning("skipped a sample that does not decode (%d of at most %d, listed in %s): %s",
                            len(skipped.rows), skipped.limit, skipped.path, row["reason"])
            update_run_json(run_dir, name, {**meta, "bad_samples": len(skipped.rows)})
        problem = skipped.problem()
        if problem is not None:
            raise RunError(problem)

    train_log = val_log = None
    if rt.is_main:
        meta = {
            "stage": name, "total_steps": total, "steps_per_epoch": spe, "train_samples": loader.num_samples,
            "world_size": rt.world_size, "device": str(rt.device),
            "amp": str(rt.amp_dtype).replace("torch.", "") if rt.amp_dtype else "off",
            "gan_maps": cfg.train.gan_maps if name == "gan" else None,
            "torch": torch.__version__, "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "resumed_at_step": step if state else None,
            **stage.meta(), "bad_samples": len(skipped.rows),
        }
        update_run_json(run_dir, name, meta)
        train_log = TsvLog(log_path(run_dir, name, "train"), ("step", "epoch", *stage.loss_columns, "lr"),
                           step if state else None)
        val_log = TsvLog(log_path(run_dir, name, "val"), ("epoch", "step", *stage.val_columns),
                         step if state else None)

    def save(complete: bool) -> None:
        if not rt.is_main:
            return
        payload = {
            "format": ckpt.FORMAT_VERSION, "stage": name, "config": cfg.to_dict(), "step": step,
            "total_steps": total, "complete": complete, "rng": ckpt.capture_rng(), "data": data_key,
            "dataset": dataset,
            "perceptual": {"enabled": stage.meta().get("perceptual", False),
                           "reason": stage.meta().get("perceptual_reason", "")},
            "val": last_val, "losses": last_losses, **stage.state_dict(),
            # only when there are some: a run on sound data keeps the checkpoint it always had
            **({"bad_samples": skipped.rows} if skipped.rows else {}),
        }
        ckpt.save_checkpoint(ckpt.checkpoint_path(run_dir, name), payload)
        if opts.keep_checkpoints and not complete:
            ckpt.keep_snapshot(ckpt.checkpoint_path(run_dir, name), ckpt.snapshot_path(run_dir, name, step))

    resume_rng = state["rng"] if state is not None else None  # restored where the loop stood (below)
    stage.train(True)
    bar = tqdm(total=total, initial=step, desc=name, disable=not (rt.is_main and opts.progress), dynamic_ncols=True)
    try:
        while step < total:
            epoch, skip = divmod(step, spe)
            # Making an epoch's loader draws from torch's generator. A checkpoint inside an epoch
            # was saved after that draw, one at an epoch's end before the next epoch's: resume alike.
            if resume_rng is not None and not skip:
                ckpt.restore_rng(resume_rng)
                resume_rng = None
            batches = loader.epoch(epoch, skip, frozenset(skipped.ids))
            if resume_rng is not None:
                ckpt.restore_rng(resume_rng)
                resume_rng = None
            for batch in batches:
                note_skipped(rt.gather(batch["skipped"]), "train", step + 1)  # before training on it
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
                    last_val, panels, val_skipped = _validate(stage, cfg, opts, rt)
                    note_skipped(val_skipped, "val", step)
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
    metrics = final_metrics(step, spe, last_losses, last_val, stage.meta(), len(skipped.rows))
    if rt.is_main:
        write_metrics(run_dir, name, metrics)
    return metrics


def _nothing_to_resume(run_dir: Path) -> str | None:
    """Why ``--resume`` has nothing to continue in ``run_dir``, or None. A run writes its config.yaml before
    anything else but the folder, so a run killed later has one: continuing "nothing" is a mistyped --out,
    which would silently start afresh (one killed sooner wrote nothing: it starts afresh without --resume)."""
    if not run_dir.exists():
        return f"--resume: {run_dir} does not exist; to start a new run there, leave out --resume"
    if not (run_dir / "config.yaml").is_file() and not any(
            ckpt.checkpoint_path(run_dir, stage).is_file() for stage in ckpt.STAGES):
        return (f"--resume: {run_dir} holds no run (no config.yaml, no checkpoint); to start a new run there, "
                "leave out --resume")
    return None


def train(cfg: Config, opts: RunOptions) -> dict[str, dict[str, Any]]:
    """Train the stage(s) in ``opts.stage``; returns the final metrics by stage."""
    if opts.stage not in (*ckpt.STAGES, "all"):
        raise RunError(f"stage must be seg, gan or all, got {opts.stage!r}")
    problem = _nothing_to_resume(opts.run_dir) if opts.resume else None
    if problem:
        raise RunError(problem)
    try:
        return _train(cfg, opts)
    except (DataError, ckpt.CheckpointError) as exc:  # the message names the shard / the file
        raise RunError(str(exc)) from exc


def _train(cfg: Config, opts: RunOptions) -> dict[str, dict[str, Any]]:
    try:  # train.require_pretrained: before anything else (every rank; the downloads are locked)
        weights.require(weights.required_for(cfg))
    except weights.WeightsError as exc:
        raise RunError(f"train.require_pretrained: {exc}") from None
    # The data as recorded, before anything is written (every rank: each must stop alike).
    check_dataset(opts.data_dir, ("train", "val"), full_hash=opts.verify_data)
    with runtime_session(opts.device, cfg.train.amp, cfg.train.deterministic) as rt:
        if cfg.train.compile and (problem := compile_problem(rt.device)):
            raise RunError(problem)
        loader = _train_loader(cfg, opts, rt)  # no shards, or fewer samples than a batch: nothing written yet
        stages = ckpt.STAGES if opts.stage == "all" else (opts.stage,)
        for name in stages:  # before anything is written to the run directory
            path = ckpt.checkpoint_path(opts.run_dir, name)
            if path.is_file():
                _check_resumable(path, cfg, opts)
        # Decided (and warned about) before any training starts.
        perceptual, perceptual_meta = resolve_perceptual(cfg, opts, rt) if "gan" in stages else (None, {})
        if rt.is_main:
            opts.run_dir.mkdir(parents=True, exist_ok=True)
            # Half-written checkpoints and logs of a killed run (its atomic writers' temporaries).
            removed = clean_temporaries(opts.run_dir / "checkpoints", opts.run_dir / "logs")
            if removed:
                log.info("removed %d temporary file(s) left by an interrupted run in %s", removed, opts.run_dir)
            cfg.save(opts.run_dir / "config.yaml")
        rt.barrier()
        results = {}
        for name in stages:
            seed_everything(cfg.train.seed)  # identical initial weights on every rank
            stage = build_stage(name, cfg, opts, rt, perceptual, perceptual_meta)
            results[name] = _run_stage(stage, loader, cfg, opts, rt)
        return results
