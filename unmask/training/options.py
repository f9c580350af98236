"""How and where to run (``RunOptions``; the config says what to train) and the errors of a run.

Free of torch, so the command line reads its defaults without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class RunError(RuntimeError):
    """A run cannot start or continue as asked (bad resume, missing inputs); the message says why."""


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; the run stopped and its last checkpoint is untouched."""


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
    # reconstruction-only run (--adv 0): pre-training for PSNR, then GAN fine-tuning. Fresh runs only.
    init_generator: Path | None = None
    # Check every shard's SHA-256 against the dataset's records before training (sizes are always checked).
    verify_data: bool = False
    keep_checkpoints: bool = False  # also keep every periodic checkpoint as checkpoints/{stage}-{step:06d}.pt
    progress: bool = True

    def __post_init__(self) -> None:
        self.data_dir, self.run_dir = Path(self.data_dir), Path(self.run_dir)
        if self.init_generator is not None:
            self.init_generator = Path(self.init_generator)
