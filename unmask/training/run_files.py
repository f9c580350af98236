"""The files of a run directory besides checkpoints (only rank 0 writes them):

* ``run.json``                        per-stage metadata (device, world size, precision, data,
                                      whether the perceptual term ran and why / why not)
* ``logs/{stage}_train.tsv``          per step: step, epoch, losses, learning rates
* ``logs/{stage}_val.tsv``            per epoch: epoch, step, pixel_acc, dice | psnr, ssim
* ``logs/skipped.tsv``                the samples that did not decode, once each: stage, step, split,
                                      shard, key, reason (only when there are some)
* ``samples/{stage}_epoch{NNNN}.png`` input | map | output | ground truth, a few validation rows
* ``{stage}_metrics.json``            final flat metrics (the DVC metrics): numbers only; the
                                      stage's texts (why the perceptual term did not run, ...)
                                      are in run.json
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from maskgen.files import write_json_atomic, write_png_atomic, write_text_atomic
from unmask.tensors import to_nhwc

log = logging.getLogger(__name__)


def log_path(run_dir: Path, stage: str, kind: str) -> Path:
    """``RUN/logs/{stage}_{kind}.tsv``: ``kind`` is ``train`` (per step) or ``val`` (per epoch)."""
    return Path(run_dir) / "logs" / f"{stage}_{kind}.tsv"


class TsvLog:
    """Append-only TSV with a header; a resumed run first drops the rows after its checkpoint.

    A run resumed by a version that logs more columns keeps its rows, the new cells empty; a log whose
    columns cannot be mapped is moved aside to ``NAME.old.tsv`` (with a warning), never overwritten."""

    def __init__(self, path: Path, columns: tuple[str, ...], keep_until_step: int | None) -> None:
        self.path, self.columns = path, columns
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "\t".join(columns)
        kept: list[str] = []
        if keep_until_step is not None and path.is_file():
            lines = path.read_text().split("\n")
            old_columns = lines[0].split("\t") if lines else []
            if "step" in old_columns and set(old_columns) <= set(columns):
                # lines[-1] is "" or the row a killed run was writing: never kept
                rows = [dict(zip(old_columns, line.split("\t"), strict=True)) for line in lines[1:-1]
                        if len(line.split("\t")) == len(old_columns)]
                kept = ["\t".join(row.get(c, "") for c in columns) for row in rows
                        if int(row["step"]) <= keep_until_step]
            elif any(lines[1:]):  # rows this version cannot map: keep them apart
                aside = path.with_name(path.stem + ".old.tsv")
                os.replace(path, aside)
                log.warning("%s: its columns (%s) are not this version's; moved to %s", path, lines[0], aside.name)
        write_text_atomic(path, "\n".join([header, *kept]) + "\n")

    def write(self, row: dict[str, Any]) -> None:
        cells = [_cell(row[c]) for c in self.columns]
        with open(self.path, "a") as f:
            f.write("\t".join(cells) + "\n")


class SkippedLog:
    """The bad samples a stage met, each once (the first time): counted against
    ``train.max_bad_samples`` and listed in ``logs/skipped.tsv``, which is rewritten whole (atomically)
    at each new one. A resumed stage starts from the rows its checkpoint stored, so a row is never
    duplicated or lost; the other stage's rows are kept as they are."""

    COLUMNS = ("stage", "step", "split", "shard", "key", "reason")

    def __init__(self, run_dir: Path, stage: str, rows: list[dict[str, Any]], limit: int, write: bool) -> None:
        self.path, self.stage, self.limit, self.write = Path(run_dir) / "logs" / "skipped.tsv", stage, limit, write
        self.rows = [dict(row) for row in rows]
        self.ids = {(row["shard"], row["key"]) for row in self.rows}
        self._save()

    def add(self, entries: list[tuple[str, str, str]], step: int, split: str) -> int:
        """Record the new ones of ``entries`` ((shard, key, reason) from the loader); returns how many were new."""
        new = 0
        for shard, key, reason in entries:
            if (shard, key) not in self.ids:
                self.ids.add((shard, key))
                self.rows.append({"stage": self.stage, "step": step, "split": split, "shard": shard, "key": key,
                                  "reason": reason})
                new += 1
        if new:
            self._save()
        return new

    def problem(self) -> str | None:
        """Why the stage must stop (more bad samples than allowed); None while it may go on."""
        if len(self.rows) <= self.limit:
            return None
        last = self.rows[-1]
        return (f"stage {self.stage}: {len(self.rows)} samples do not decode, more than train.max_bad_samples = "
                f"{self.limit} (listed in {self.path}; the last: {last['shard']} {last['key']}). Check the data "
                f"with maskgen verify, or allow more with --set train.max_bad_samples=N")

    def _save(self) -> None:
        if not self.write or (not self.rows and not self.path.is_file()):
            return
        header = "\t".join(self.COLUMNS)
        others = []
        if self.path.is_file():
            lines = self.path.read_text().splitlines()
            others = ([line for line in lines[1:] if not line.startswith(f"{self.stage}\t")]
                      if lines[:1] == [header] else [])
        mine = ["\t".join(str(row[c]) for c in self.COLUMNS) for row in self.rows]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, "\n".join([header, *others, *mine]) + "\n")


def _cell(value: Any) -> str:
    return format(value, ".8g") if isinstance(value, float) else str(value)


def update_run_json(run_dir: Path, stage: str, meta: dict[str, Any]) -> None:
    """Record ``meta`` as ``stages.{stage}`` of ``run_dir/run.json``, keeping the other stages."""
    path = run_dir / "run.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.setdefault("stages", {})[stage] = meta
    write_json_atomic(path, data)


def write_metrics(run_dir: Path, stage: str, metrics: dict[str, Any]) -> None:
    write_json_atomic(run_dir / f"{stage}_metrics.json", metrics)


def save_sample_grid(path: Path, panels: list[torch.Tensor], rows: int) -> None:
    """One row per sample, one column per panel (uint8 Bx3xHxW RGB tensors)."""
    columns = [to_nhwc(p[:rows]) for p in panels]
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in zip(*columns, strict=True)], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png_atomic(path, cv2.cvtColor(np.ascontiguousarray(grid), cv2.COLOR_RGB2BGR))


def final_metrics(step: int, steps_per_epoch: int, losses: dict[str, float], val: dict[str, float],
                  meta: dict[str, Any], bad_samples: int = 0) -> dict[str, Any]:
    """The flat ``{stage}_metrics.json`` record: progress, last losses, last validation and the
    stage metadata that is a number (flags as 0/1); texts are left to run.json, so that the DVC
    metrics are numbers only. ``bad_samples`` (samples skipped because they did not decode) only
    when there were some: a run on sound data keeps the metrics it always had."""
    metrics: dict[str, Any] = {"step": step, "epochs": step / steps_per_epoch}
    if bad_samples:
        metrics["bad_samples"] = bad_samples
    metrics.update({f"train_{k}": v for k, v in losses.items()})
    metrics.update({f"val_{k}": v for k, v in val.items()})
    metrics.update({k: int(v) if isinstance(v, bool) else v for k, v in meta.items()
                    if isinstance(v, (bool, int, float))})
    return metrics
