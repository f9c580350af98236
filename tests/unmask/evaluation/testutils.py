"""Helpers of the evaluation tests: tiny checkpoints laid out as ``unmask train`` writes them."""

from __future__ import annotations

from pathlib import Path

import torch

from unmask.checkpoint import FORMAT_VERSION, checkpoint_path, save_checkpoint
from unmask.config import preset
from unmask.models import Generator, MSeg

EVAL_RES = 64  # networks and metrics at 64 px keep a whole evaluation to seconds


def write_tiny_run(run_dir: Path, use_map: bool = True, resolution: int = EVAL_RES, seed: int = 0,
                   adversarial: float = 0.1) -> Path:
    """A run directory with freshly initialised width-8 models, as ``unmask train`` lays them out."""
    cfg = preset("tiny").replace(**{"train.resolution": resolution, "generator.use_map": use_map,
                                    "loss.adv": adversarial})
    torch.manual_seed(seed)
    if use_map:
        save_checkpoint(checkpoint_path(run_dir, "seg"), {
            "format": FORMAT_VERSION, "stage": "seg", "config": cfg.to_dict(),
            "models": {"mseg": MSeg(cfg.mseg).state_dict()},
        })
    save_checkpoint(checkpoint_path(run_dir, "gan"), {
        "format": FORMAT_VERSION, "stage": "gan", "config": cfg.to_dict(),
        "models": {"generator": Generator(cfg.generator).state_dict()},
    })
    return run_dir
