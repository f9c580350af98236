"""The report's charts (``unmask.evaluation.charts``): PNGs drawn from files, embedded with relative links."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from unmask.evaluation import PER_IMAGE_FILE, TWO_STAGE, key
from unmask.evaluation.charts import (
    coverage_chart,
    evaluation_charts,
    methods_chart,
    training_charts,
)
from unmask.evaluation.cli import report
from unmask.evaluation.compare import mean_interval
from unmask.training.run_files import TsvLog, log_path


def _write_logs(run, stage, train_columns, val_columns, steps=40, per_epoch=10, seed=0):
    """Logs as the training loop writes them (``TsvLog`` at ``log_path``)."""
    rng = np.random.default_rng(seed)
    train = TsvLog(log_path(run, stage, "train"), ("step", "epoch", *train_columns, "lr"), None)
    val = TsvLog(log_path(run, stage, "val"), ("epoch", "step", *val_columns), None)
    for step in range(1, steps + 1):
        train.write({"step": step, "epoch": (step - 1) // per_epoch, "lr": 1e-3,
                     **{c: float(1 / step + rng.uniform(0, 0.05)) for c in train_columns}})
        if step % per_epoch == 0:
            val.write({"epoch": step // per_epoch - 1, "step": step, **{c: float(step) for c in val_columns}})


def _png(path):
    image = cv2.imread(str(path))
    assert image is not None, path
    return image


@pytest.mark.slow
def test_report_draws_training_and_evaluation_charts_and_links_them(evaluated, tmp_path):
    two_stage, ablation = tmp_path / "runs" / "default", tmp_path / "runs" / "one_stage"
    _write_logs(two_stage, "seg", ("loss", "bce", "dice"), ("pixel_acc", "dice"))
    _write_logs(two_stage, "gan", ("loss_d", "loss_g", "adv", "rec"), ("psnr", "ssim"))
    _write_logs(ablation, "gan", ("loss_d", "loss_g", "adv", "rec"), ("psnr", "ssim"), seed=1)
    out = tmp_path / "report"
    result = CliRunner().invoke(report, [str(evaluated), "-o", str(out), "--run", str(two_stage),
                                         "--run", str(ablation)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    charts = [p for p in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text) if p.startswith("figures/charts/")]
    name = evaluated.name
    assert charts == ["figures/charts/training_seg.png", "figures/charts/training_gan.png",
                      f"figures/charts/{name}_psnr_ssim.png", f"figures/charts/{name}_psnr_by_mask_type.png",
                      f"figures/charts/{name}_psnr_by_coverage.png"]
    for chart in charts:  # relative to the report, real PNGs of a legible size
        height, width, _ = _png(out / chart).shape
        assert height >= 300 and width >= 500
    assert "http" not in "".join(line for line in text.splitlines() if line.startswith("!["))


def test_charts_are_the_same_bytes_for_the_same_inputs(evaluated, tmp_path):
    table = pd.read_parquet(evaluated / PER_IMAGE_FILE)
    first = evaluation_charts(table, "e", tmp_path / "a")
    second = evaluation_charts(table, "e", tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second] and first
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second, strict=True))


def test_methods_chart_shows_the_bootstrap_interval_of_the_mean(tmp_path):
    values = np.arange(20, 40, dtype=float)
    table = pd.DataFrame({"key": [f"k{i}" for i in range(20)], key(TWO_STAGE, "psnr"): values})
    path = methods_chart(table, "t", tmp_path / "m.png")
    assert path is not None and _png(path).size
    mean, low, high = mean_interval(values)  # the interval drawn is compare's (one implementation)
    assert low < mean == 29.5 < high


def test_charts_skip_what_the_files_lack(tmp_path):
    assert training_charts([tmp_path / "no-run"], tmp_path / "out") == []
    assert coverage_chart(pd.DataFrame({"key": []}), "t", tmp_path / "c.png") is None
    only_seg = tmp_path / "seg-only"
    _write_logs(only_seg, "seg", ("loss",), ("dice",))
    assert [p.name for p in training_charts([only_seg], tmp_path / "out")] == ["training_seg.png"]
