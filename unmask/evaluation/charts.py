"""The report's charts: PNG files made here with matplotlib (Agg, no display), so ``report.md``
shows them with no network, unlike ``dvc plots show``'s page, whose charts load their JavaScript
from a CDN.

* ``training_<stage>.png``: each stage's training losses (per step: the raw values faint, a moving
  average on top) and validation scores (per epoch), one line per run, from the runs'
  ``logs/{stage}_{train,val}.tsv`` (``unmask.training.run_files``).
* ``<evaluation>_psnr_ssim.png``: mean PSNR and SSIM per method with the 95% bootstrap interval
  of the mean (``compare.mean_interval``: the paired table's, seeded).
* ``<evaluation>_psnr_by_mask_type.png`` and ``<evaluation>_psnr_by_coverage.png``: mean PSNR
  per mask type and per bin of ground-truth map coverage, for the main methods.

Everything comes from files (``per_image.parquet``, the TSV logs): no model runs. The PNGs carry
no timestamp or version, so the same inputs give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from unmask.checkpoint import STAGES
from unmask.training.run_files import log_path

from . import INPUT, ONE_STAGE, PRED_MAP, RECON_ONLY, TWO_STAGE, baseline_method, key, method_label, method_order
from .compare import PAIRED_RESAMPLES, PAIRED_SEED, mean_interval

CHARTS_DIR = "charts"  # under the report's figures/
DPI = 110
PNG_METADATA = {"Software": None}  # no matplotlib version in the file: same inputs, same bytes

# Which log columns each stage's chart shows, with their titles (columns a run lacks are skipped)
TRAIN_PANELS = {
    "seg": {"loss": "training loss (BCE + Dice)"},
    "gan": {"rec": "reconstruction loss (train)", "loss_g": "generator loss (train)",
            "loss_d": "discriminator loss (train)"},
}
VAL_PANELS = {
    "seg": {"dice": "validation Dice (per epoch) ↑", "pixel_acc": "validation pixel accuracy (per epoch) ↑"},
    "gan": {"psnr": "validation PSNR (dB, per epoch) ↑", "ssim": "validation SSIM (per epoch) ↑"},
}
STAGE_TITLES = {"seg": "Stage 1 (M-Seg)", "gan": "Stage 2 (FU-Net + GAN)"}
SMOOTHING = 25  # the moving average spans 1/SMOOTHING of a run's steps

# The methods of the breakdown charts: ours, the ablations, the classical baseline, the no-op
BREAKDOWN_METHODS = (TWO_STAGE, ONE_STAGE, RECON_ONLY, baseline_method("telea", PRED_MAP), INPUT)
COVERAGE_EDGES = (0.0, 0.10, 0.15, 0.20, 0.25, 0.30, 1.0)  # ground-truth map coverage bins (fraction of the crop)
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata=PNG_METADATA)
    return path


def _read_tsv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    table = pd.read_csv(path, sep="\t")
    return table if len(table) else None


def training_chart(runs: Sequence[Path], stage: str, path: Path) -> Path | None:
    """One panel per loss and validation score of ``stage``, one line per run; None if no run has its logs."""
    logs = []
    for run in runs:
        train, val = _read_tsv(log_path(run, stage, "train")), _read_tsv(log_path(run, stage, "val"))
        if train is not None or val is not None:
            logs.append((str(run), train, val))
    if not logs:
        return None
    panels = [("train", column, title) for column, title in TRAIN_PANELS[stage].items()
              if any(t is not None and column in t for _, t, _ in logs)]
    panels += [("val", column, title) for column, title in VAL_PANELS[stage].items()
               if any(v is not None and column in v for _, _, v in logs)]
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.4 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    last_step = max(float(t["step"].max()) for _, *tables in logs for t in tables if t is not None)
    for ax, (kind, column, title) in zip(axes, panels, strict=False):
        shown = 0
        for i, (name, train, val) in enumerate(logs):
            color = COLORS[i % len(COLORS)]
            table = train if kind == "train" else val
            if table is None or column not in table:
                continue
            x, y = table["step"].to_numpy(), table[column].astype(float).to_numpy()
            if kind == "train":
                window = max(1, len(y) // SMOOTHING)
                ax.plot(x, y, color=color, alpha=0.2, linewidth=0.8)
                ax.plot(x, pd.Series(y).rolling(window, min_periods=1).mean(), color=color, linewidth=1.6,
                        label=name)
            else:
                ax.plot(x, y, "o-", color=color, linewidth=1.6, markersize=5, label=name)
                shown += 1  # the last value of each run, listed top left (points of equal runs overlap)
                ax.text(0.03, 1 - 0.09 * shown, f"{name}: {y[-1]:.4g}", transform=ax.transAxes, color=color,
                        fontsize=8, va="top")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_xlim(0, last_step * 1.04)  # validation (per epoch: few points) on the training's axis
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:  # the first panel may lack a run: collect from all
        pairs = {lbl: h for ax in axes[:len(panels)] for h, lbl in zip(*ax.get_legend_handles_labels(), strict=True)}
        labels, handles = list(pairs), list(pairs.values())
    fig.suptitle(f"{STAGE_TITLES.get(stage, stage)}: training curves (faint: per step; line: moving average)",
                 fontsize=11)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=9)
    return _save(fig, path)


def _method_color(method: str) -> str:
    """The same color for a method in every breakdown chart, whichever methods an evaluation has."""
    return COLORS[BREAKDOWN_METHODS.index(method) % len(COLORS)]


def _finite(values: pd.Series) -> np.ndarray:
    array = values.astype(float).to_numpy()
    return array[np.isfinite(array)]


def methods_chart(table: pd.DataFrame, title: str, path: Path) -> Path | None:
    """Mean PSNR and SSIM per method (paper order) with 95% bootstrap intervals; None without scores."""
    metrics = [(m, label) for m, label in (("psnr", "PSNR (dB) ↑"), ("ssim", "SSIM ↑"))
               if any(key(method, m) in table for method in method_order())]
    if not metrics:
        return None
    methods = [m for m in method_order() if any(key(m, metric) in table for metric, _ in metrics)]
    fig = Figure(figsize=(5.2 * len(metrics) + 2.6, 0.5 * len(methods) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False, sharey=True).ravel()
    ys = np.arange(len(methods))[::-1]
    for ax, (metric, label) in zip(axes, metrics, strict=True):
        for y, method in zip(ys, methods, strict=True):
            values = _finite(table[key(method, metric)]) if key(method, metric) in table else np.array([])
            if not values.size:
                ax.text(0.02, y, "n/a", va="center", transform=ax.get_yaxis_transform(), color="#777777")
                continue
            mean, low, high = mean_interval(values)
            color = COLORS[0] if method == TWO_STAGE else "#999999" if method == INPUT else "#8fb3d9"
            ax.barh(y, mean, color=color, height=0.65)
            ax.errorbar(mean, y, xerr=[[mean - low], [high - mean]], color="black", capsize=3, linewidth=1)
            ax.annotate(f"{mean:.4g} [{low:.4g}, {high:.4g}]", (high, y), textcoords="offset points",
                        xytext=(4, 0), va="center", fontsize=8)
        means = [_finite(table[key(m, metric)]).mean() for m in methods
                 if key(m, metric) in table and _finite(table[key(m, metric)]).size]
        if means:  # the axis starts near the smallest mean (the differences are what matter), room for labels
            span = max(max(means) - min(means), 0.05 * abs(max(means)), 1e-6)
            ax.set_xlim(max(0.0, min(means) - 0.3 * span), max(means) + 0.65 * span)
        ax.set_title(label, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, [method_label(m) for m in methods], fontsize=9)
    n = len(table)
    fig.suptitle(f"{title}: mean per method, 95% bootstrap interval ({n} images, {PAIRED_RESAMPLES} resamples, "
                 f"seed {PAIRED_SEED})", fontsize=10)
    return _save(fig, path)


def _grouped_lines(table: pd.DataFrame, groups: pd.Series, order: Sequence, metric: str) -> list[tuple[str, list]]:
    """(method, [mean per group in ``order``]) for the breakdown methods the table has."""
    out = []
    for method in BREAKDOWN_METHODS:
        column = key(method, metric)
        if column not in table:
            continue
        values = table[column].astype(float).replace([np.inf, -np.inf], np.nan)
        means = values.groupby(groups).mean()
        out.append((method, [means.get(g, np.nan) for g in order]))
    return out


def mask_type_chart(table: pd.DataFrame, title: str, path: Path, metric: str = "psnr") -> Path | None:
    """Grouped bars: mean PSNR per mask type (with its sample count) and method."""
    if "mask_type" not in table or not len(table):
        return None
    groups = table["mask_type"].fillna("unknown").astype(str)
    counts = groups.value_counts()
    order = sorted(counts.index, key=lambda g: (-counts[g], g))
    lines = _grouped_lines(table, groups, order, metric)
    if not lines:
        return None
    fig = Figure(figsize=(max(6.0, 1.3 * len(order) + 3.0), 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(lines)
    x = np.arange(len(order))
    for i, (method, means) in enumerate(lines):
        ax.bar(x + (i - (len(lines) - 1) / 2) * width, means, width, label=method_label(method),
               color=_method_color(method))
    ax.set_xticks(x, [f"{g}\n(n={counts[g]})" for g in order])
    finite = [v for _, means in lines for v in means if np.isfinite(v)]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 2.0), max(finite) + 1.0)
    ax.set_ylabel(f"mean {metric.upper()}" + (" (dB)" if metric == "psnr" else ""))
    ax.set_title(f"{title}: {metric.upper()} by mask type", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside right center", fontsize=8)
    return _save(fig, path)


def coverage_chart(table: pd.DataFrame, title: str, path: Path, metric: str = "psnr") -> Path | None:
    """Mean PSNR per bin of ground-truth map coverage (with its sample count), one line per method."""
    if "coverage" not in table or not len(table):
        return None
    edges = COVERAGE_EDGES
    names = ([f"<{edges[1]:.0%}"] + [f"{a:.0%}-{b:.0%}" for a, b in zip(edges[1:-2], edges[2:-1], strict=True)]
             + [f">{edges[-2]:.0%}"])
    bins = pd.cut(table["coverage"].astype(float), list(edges), labels=names, include_lowest=True)
    counts = bins.value_counts()
    order = [n for n in names if counts.get(n, 0)]
    lines = _grouped_lines(table, bins.astype(str), order, metric)
    if not lines or not order:
        return None
    fig = Figure(figsize=(max(6.0, 1.1 * len(order) + 3.0), 4.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(order))
    for method, means in lines:
        ax.plot(x, means, "o-", label=method_label(method), color=_method_color(method), linewidth=1.6)
    ax.set_xticks(x, [f"{g}\n(n={counts[g]})" for g in order])
    ax.set_xlabel("ground-truth mask coverage (share of the crop)")
    ax.set_ylabel(f"mean {metric.upper()}" + (" (dB)" if metric == "psnr" else ""))
    ax.set_title(f"{title}: {metric.upper()} by mask coverage", fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right center", fontsize=8)
    return _save(fig, path)


def evaluation_charts(table: pd.DataFrame, name: str, out_dir: Path) -> list[Path]:
    """The charts of one evaluation's per-image table, written under ``out_dir``."""
    made = [methods_chart(table, name, out_dir / f"{name}_psnr_ssim.png"),
            mask_type_chart(table, name, out_dir / f"{name}_psnr_by_mask_type.png"),
            coverage_chart(table, name, out_dir / f"{name}_psnr_by_coverage.png")]
    return [p for p in made if p is not None]


def training_charts(runs: Sequence[Path], out_dir: Path) -> list[Path]:
    """``training_<stage>.png`` for each stage some run has logs of."""
    made = [training_chart(runs, stage, out_dir / f"training_{stage}.png") for stage in STAGES]
    return [p for p in made if p is not None]
