"""The paper-style comparison table of one or more evaluations (``metrics.json`` files).

Rows are methods (two-stage, its ground-truth-map upper bound, one-stage, the baselines, the
no-op), columns SSIM, PSNR, FID, NIQE, BRISQUE (then LPIPS and identity scores where any
evaluation has them: ID distance and match rate to the own ground truth, face-verification
accuracy and TAR at FAR 1% from the ``verify/<probe_type>/...`` keys) and the coverage of the map
each method was given. The best value of each
column is bold, by the direction the metric registry gives; a null is "n/a" with a numbered
footnote giving its reason. Only numbers from the files are used: nothing is recomputed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from maskgen.files import write_text_atomic
from unmask import metrics
from unmask.identity import GROUND_TRUTH_PROBE

from . import (
    ID_DISTANCE,
    ID_MATCH_RATE,
    IMAGE_METRICS,
    MAP_COVERAGE,
    MASKED_PROBE,
    METRICS_FILE,
    ONE_STAGE,
    PER_IMAGE_FILE,
    PRED_MAP,
    PROTOCOL,
    SEG,
    SEG_METRICS,
    TWO_STAGE,
    VERIFY,
    baseline_method,
    key,
    method_label,
    method_order,
    probe_type,
    split_key,
    verify_key,
)

# Verification columns of the method table -> the metric of ``verify/<probe_type>/<metric>``
VERIFY_COLUMNS = {"verify_accuracy": "accuracy", "verify_tar_far_1": "tar_far_1", "verify_tar_far_0.1": "tar_far_0.1"}
# Columns of the paper's table, in its order; then optional ones, shown when any row has a value.
PAPER_COLUMNS = ("ssim", "psnr", "fid", "niqe", "brisque")
OPTIONAL_COLUMNS = tuple(m for m in IMAGE_METRICS if m not in PAPER_COLUMNS) + (
    ID_DISTANCE, ID_MATCH_RATE, "verify_accuracy", "verify_tar_far_1")
# Directions of the columns that are not registry metrics (None: not ranked)
OTHER_DIRECTIONS = {ID_DISTANCE: "lower", ID_MATCH_RATE: "higher", MAP_COVERAGE: None,
                    "coverage": None, **{c: "higher" for c in VERIFY_COLUMNS}}
HEADERS = {
    "ssim": "SSIM", "psnr": "PSNR (dB)", "fid": "FID", "niqe": "NIQE", "brisque": "BRISQUE", "lpips": "LPIPS",
    "sharpness": "Sharpness", ID_DISTANCE: "ID distance", ID_MATCH_RATE: "ID match", MAP_COVERAGE: "Map coverage",
    "pixel_accuracy": "Pixel accuracy", "dice": "Dice", "iou": "IoU", "coverage": "Map coverage",
    "verify_accuracy": "Verif. accuracy", "verify_tar_far_1": "TAR@FAR 1%",
    "verify_tar_far_0.1": "TAR@FAR 0.1%", "verify_genuine_distance": "Genuine dist.",
    "verify_impostor_distance": "Impostor dist.",
}
PERCENT = {MAP_COVERAGE, ID_MATCH_RATE, "coverage", *VERIFY_COLUMNS}
DECIMALS = {"ssim": 4, "psnr": 2, "fid": 2, "niqe": 3, "brisque": 2, "lpips": 4, "sharpness": 3, ID_DISTANCE: 3,
            "pixel_accuracy": 4, "dice": 4, "iou": 4}
# Rows of the paper's table: ours, the one-stage ablation, the baselines on the predicted map
PAPER_ROWS = (TWO_STAGE, ONE_STAGE, baseline_method("telea", PRED_MAP), baseline_method("ns", PRED_MAP))
ARROWS = {"higher": " ↑", "lower": " ↓", None: ""}  # column header marks by direction
SPLIT_DIRS = ("test", "val", "train")  # RUN/eval/<split>/metrics.json, preferred in this order


@dataclass
class Evaluation:
    name: str
    path: Path  # its metrics.json
    values: dict[str, float | None]  # the flat metric keys
    protocol: dict[str, Any]

    @property
    def directory(self) -> Path:
        return self.path.parent

    def methods(self) -> list[str]:
        groups = {split_key(k)[0] for k in self.values}
        return [m for m in method_order() if m in groups] + sorted(
            g for g in groups if g in self.protocol.get("methods", {}) and g not in method_order())

    def reason(self, flat_key: str) -> str:
        return self.protocol.get("null_reasons", {}).get(flat_key) or "not computed"


def find_metrics(path: str | Path) -> Path:
    """The metrics.json of a file, an evaluation directory, or a run directory (``RUN/eval/test``)."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / METRICS_FILE).is_file():
        return path / METRICS_FILE
    for split in SPLIT_DIRS:
        if (path / "eval" / split / METRICS_FILE).is_file():
            return path / "eval" / split / METRICS_FILE
    found = sorted(path.glob(f"eval/*/{METRICS_FILE}"))
    if found:
        return found[0]
    raise FileNotFoundError(f"no {METRICS_FILE} in {path}, {path / METRICS_FILE} or {path}/eval/*/")


def _default_name(metrics_path: Path) -> str:
    directory = metrics_path.parent
    if directory.parent.name == "eval":  # RUN/eval/<split>/metrics.json: the run's name
        return directory.parent.parent.name or directory.name
    return directory.name or metrics_path.stem


def load_evaluations(inputs: Sequence[str | Path]) -> list[Evaluation]:
    """Evaluations from ``PATH`` or ``NAME=PATH`` arguments; names are made unique. The same metrics.json
    twice (by any path, or a copy of it: the same bytes) is refused: its rows would repeat under two names."""
    out: list[Evaluation] = []
    given: dict[bytes, str] = {}  # each metrics.json's bytes -> the argument that gave it
    for item in inputs:
        text = str(item)
        name, sep, rest = text.partition("=")
        if sep and name and "/" not in name and not Path(text).exists():
            path = find_metrics(rest)
        else:
            name, path = "", find_metrics(text)
        raw = path.read_bytes()
        if raw in given:
            raise ValueError(f"{given[raw]} and {text} are the same evaluation (identical metrics.json): "
                             "give each once")
        given[raw] = text
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a metrics.json (expected a JSON object of metric values)")
        protocol = data.pop(PROTOCOL, {}) or {}
        values = {k: v for k, v in data.items() if "/" in k and (v is None or isinstance(v, (int, float)))}
        out.append(Evaluation(name or _default_name(path), path, values, protocol))
    seen: dict[str, int] = {}
    for evaluation in out:
        count = seen.get(evaluation.name, 0)
        seen[evaluation.name] = count + 1
        if count:
            evaluation.name = f"{evaluation.name}-{count + 1}"
    return out


def value_key(group: str, metric: str) -> str:
    """The metrics.json key of a table cell: ``two_stage/psnr``, or for a verification column
    ``verify/<probe type of the group>/<metric>`` (``input`` is the ``masked`` probe)."""
    if metric in VERIFY_COLUMNS:
        return verify_key(probe_type(group), VERIFY_COLUMNS[metric])
    return key(group, metric)


def direction(metric: str) -> str | None:
    """'higher', 'lower', 'closer to X' or None (not ranked)."""
    if metric in metrics.REGISTRY:
        return metrics.get(metric).direction
    return OTHER_DIRECTIONS.get(metric)


def _best(metric: str, numbers: list[float]) -> float:
    if metric in metrics.REGISTRY:
        return numbers[metrics.get(metric).best(numbers)]
    return max(numbers) if direction(metric) == "higher" else min(numbers)


def format_value(metric: str, value: float) -> str:
    if metric in PERCENT:
        return f"{value:.1%}"
    return f"{value:.{DECIMALS.get(metric, 3)}f}"


@dataclass
class Row:
    label: str
    evaluation: Evaluation
    group: str  # the metrics.json group: a method, or "seg"


class Footnotes:
    """Numbered reasons for n/a cells; the same reason gets the same number."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, reason: str) -> str:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"n/a [{self.reasons.index(reason) + 1}]"

    def markdown(self) -> str:
        return "\n".join(f"[{i}] {reason}  " for i, reason in enumerate(self.reasons, 1))


def best_values(rows: Sequence[Row], columns: Sequence[str]) -> dict[str, float]:
    """Best value per ranked column (every row holding exactly that value is marked)."""
    best = {}
    for metric in columns:
        way = direction(metric)
        numbers = [r.evaluation.values.get(value_key(r.group, metric)) for r in rows]
        numbers = [v for v in numbers if v is not None and not math.isnan(v)]
        if way is not None and numbers:
            best[metric] = _best(metric, numbers)
    return best


def table_head(header: Sequence[str]) -> list[str]:
    """A markdown table's header and alignment rows: the first column left, the numbers right."""
    return ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]


def markdown_table(rows: Sequence[Row], columns: Sequence[str], footnotes: Footnotes, first_header: str) -> str:
    best = best_values(rows, columns)
    header = [first_header] + [HEADERS.get(c, c) + ARROWS.get(direction(c), f" ({direction(c)})") for c in columns]
    lines = table_head(header)
    for row in rows:
        cells = [row.label]
        for metric in columns:
            flat = value_key(row.group, metric)
            value = row.evaluation.values.get(flat)
            if value is None:
                cells.append(footnotes.mark(row.evaluation.reason(flat)))
            else:
                text = format_value(metric, value)
                cells.append(f"**{text}**" if best.get(metric) == value else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def method_rows(evaluations: Sequence[Evaluation], methods: Sequence[str] | None = None) -> list[Row]:
    """One row per (method, evaluation), methods in the paper's order. A row that repeats an
    earlier row of the same method exactly (e.g. a ground-truth-map baseline of two runs on the
    same data) is left out; the evaluation's name is added to a label that occurs more than once."""
    order = list(methods) if methods else method_order()
    rows: list[Row] = []
    for method in order:
        kept: list[Row] = []
        for evaluation in evaluations:
            if method not in evaluation.methods():
                continue
            numbers = _group_values(evaluation, method)
            if any(_group_values(r.evaluation, method) == numbers for r in kept):
                continue
            kept.append(Row(method_label(method), evaluation, method))
        if len(kept) > 1:
            for row in kept:
                row.label += f" [{row.evaluation.name}]"
        rows += kept
    return rows


def _group_values(evaluation: Evaluation, group: str) -> dict[str, float | None]:
    """The values of a method group, with its verification keys (``verify/<probe type>/...``)."""
    prefix = f"{VERIFY}/{probe_type(group)}/"
    return {k: v for k, v in evaluation.values.items() if split_key(k)[0] == group or k.startswith(prefix)}


def method_columns(rows: Sequence[Row]) -> list[str]:
    optional = [c for c in OPTIONAL_COLUMNS
                if any(r.evaluation.values.get(value_key(r.group, c)) is not None for r in rows)]
    return list(PAPER_COLUMNS) + optional + [MAP_COVERAGE]


def method_table(evaluations: Sequence[Evaluation], footnotes: Footnotes, methods: Sequence[str] | None = None) -> str:
    rows = method_rows(evaluations, methods)
    if not rows:
        return "(no methods)"
    return markdown_table(rows, method_columns(rows), footnotes, "Method")


def seg_table(evaluations: Sequence[Evaluation], footnotes: Footnotes) -> str | None:
    """Stage 1 of each evaluation, or None when none has stage-1 results."""
    rows = [Row(e.name, e, SEG) for e in evaluations if any(k.startswith(SEG + "/") for k in e.values)]
    if not rows:
        return None
    columns = list(SEG_METRICS) + ["coverage"]
    return markdown_table(rows, columns, footnotes, "Stage 1 (M-Seg)")


def protocol_lines(evaluations: Sequence[Evaluation]) -> list[str]:
    """One line per evaluation (data, split, resolution, count), and a warning when they differ."""
    lines = []
    for e in evaluations:
        p = e.protocol
        lines.append(f"- **{e.name}**: `{e.path}`: {p.get('count', '?')} samples of split {p.get('split', '?')} "
                     f"of `{p.get('data', '?')}` at {p.get('resolution', '?')} px, "
                     f"checkpoint `{p.get('checkpoint', '?')}`")
    setups = {(e.protocol.get("data"), e.protocol.get("split"), e.protocol.get("resolution"), e.protocol.get("count"))
              for e in evaluations}
    if len(setups) > 1:
        lines.append("- **Warning**: the evaluations differ in data, split, resolution or sample count; "
                     "their numbers are not directly comparable.")
    return lines


def has_verification(evaluation: Evaluation) -> bool:
    return any(k.startswith(VERIFY + "/") for k in evaluation.values)


VERIFY_NOTE = ("ID distance / ID match: face-recognition (dlib) distance of each output to its own ground truth "
               "and the share within 0.6. Verif. accuracy: face verification of the output against another photo "
               "of the same person and photos of other people at distance 0.6; TAR@FAR 1%: genuine pairs accepted "
               "at the threshold that accepts 1% of the ground-truth probes' impostor pairs.")


def verification_summary(evaluation: Evaluation) -> str | None:
    """One line: the verification protocol of an evaluation and its reference accuracies."""
    identity = evaluation.protocol.get("identity") or {}
    verification = identity.get("verification") or {}
    if not has_verification(evaluation) and not verification:
        return None
    values = evaluation.values

    def pct(flat: str) -> str:
        value = values.get(flat)
        return "n/a" if value is None else f"{value:.1%}"

    if verification.get("reason"):
        return f"- **{evaluation.name}** verification: n/a ({verification['reason']})"
    return (f"- **{evaluation.name}** verification: {verification.get('n_probes', '?')} probes "
            f"({identity.get('samples', '?')}), {verification.get('n_pairs', '?')} pairs "
            f"(1 genuine + {verification.get('impostors', '?')} impostor per probe), seed "
            f"{verification.get('seed', '?')}; accuracy of the ground-truth probes "
            f"{pct(verify_key(GROUND_TRUTH_PROBE, 'accuracy'))}, of the masked input "
            f"{pct(verify_key(MASKED_PROBE, 'accuracy'))}")


def verification_lines(evaluations: Sequence[Evaluation]) -> list[str]:
    """A summary line per evaluation with verification, and a warning when their protocols differ."""
    lines = [line for line in (verification_summary(e) for e in evaluations) if line]
    setups = set()
    for e in evaluations:
        v = (e.protocol.get("identity") or {}).get("verification") or {}
        if v and not v.get("reason"):
            setups.add(tuple(v.get(k) for k in ("samples_sha1", "seed", "impostors", "max_probes", "n_pairs")))
    if len(setups) > 1:
        lines.append("- **Warning**: the verification protocols differ (samples, seed, impostors or probes); "
                     "their verification numbers are not directly comparable.")
    return lines


# Per-image metrics whose paired differences ``--paired`` reports, when both sides have them
PAIRED_METRICS = ("psnr", "ssim", "brisque", "sharpness", "lpips", ID_DISTANCE)
PAIRED_RESAMPLES = 2000  # bootstrap resamples of a mean (paired differences, the report's charts)
PAIRED_SEED = 0


def find_row(evaluations: Sequence[Evaluation], reference: str) -> Row:
    """The row ``[NAME:]METHOD`` names: METHOD of evaluation NAME, or of the first evaluation holding it."""
    name, _, method = reference.rpartition(":")
    for evaluation in evaluations:
        if (not name or evaluation.name == name) and method in evaluation.methods():
            return Row(method_label(method), evaluation, method)
    where = f"evaluation {name!r}" if name else "any evaluation"
    raise ValueError(f"--paired {reference}: no method {method!r} in {where}")


def _per_image(evaluation: Evaluation) -> pd.DataFrame:
    path = evaluation.directory / PER_IMAGE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"--paired needs the per-image scores: {path} is missing")
    return pd.read_parquet(path).set_index("key")


def mean_interval(values: np.ndarray, resamples: int = PAIRED_RESAMPLES,
                  seed: int = PAIRED_SEED) -> tuple[float, float, float]:
    """Mean of per-image values (or paired differences) and its 95% percentile-bootstrap interval (seeded)."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def paired_table(evaluations: Sequence[Evaluation], reference: str, methods: Sequence[str] | None = None) -> str:
    """Rows minus the reference row, image by image (samples matched by key): mean [95% interval]."""
    ref = find_row(evaluations, reference)
    frames: dict[Path, pd.DataFrame] = {}  # one read per evaluation, however many rows it gives

    def per_image(evaluation: Evaluation) -> pd.DataFrame:
        if evaluation.path not in frames:
            frames[evaluation.path] = _per_image(evaluation)
        return frames[evaluation.path]

    ref_frame = per_image(ref.evaluation)
    rows = [r for r in method_rows(evaluations, methods)
            if (r.evaluation.path, r.group) != (ref.evaluation.path, ref.group)]
    cells: dict[int, dict[str, str]] = {}
    counts: dict[int, dict[str, int]] = {}
    for i, row in enumerate(rows):
        frame = per_image(row.evaluation)
        shared = frame.index.intersection(ref_frame.index)
        cells[i], counts[i] = {}, {}
        for metric in PAIRED_METRICS:
            ours, theirs = key(row.group, metric), key(ref.group, metric)
            if ours not in frame or theirs not in ref_frame:
                continue
            diff = (frame.loc[shared, ours].astype(float) - ref_frame.loc[shared, theirs].astype(float)).dropna()
            if diff.empty:
                continue
            mean, low, high = mean_interval(diff.to_numpy())
            digits = DECIMALS.get(metric, 3)
            cells[i][metric] = f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"
            counts[i][metric] = diff.size
    columns = [m for m in PAIRED_METRICS if any(m in c for c in cells.values())]
    header = ["Method"] + [f"Δ {HEADERS.get(m, m)}{ARROWS.get(direction(m), '')}" for m in columns] + ["Images"]
    lines = [f"## Paired differences from {ref.label} [{ref.evaluation.name}]", "", *table_head(header)]
    for i, row in enumerate(rows):
        if not cells[i]:
            continue
        most = max(counts[i].values())  # identity columns cover only the identity samples: their n is shown
        shown = [cells[i][m] + ("" if counts[i][m] == most else f" (n={counts[i][m]})") if m in cells[i] else "-"
                 for m in columns]
        lines.append("| " + " | ".join([row.label] + shown + [str(most)]) + " |")
    lines += ["", f"Mean over the images both scored (matched by sample key) of the row's value minus the "
              f"reference's, with its 95% percentile-bootstrap interval ({PAIRED_RESAMPLES} resamples, seed "
              f"{PAIRED_SEED}): an interval that excludes 0 is a difference beyond the sampling noise of these images."]
    return "\n".join(lines)


def comparison_markdown(evaluations: Sequence[Evaluation], methods: Sequence[str] | None = None,
                        title: str = "Comparison", paired: str | None = None) -> str:
    footnotes = Footnotes()
    parts = [f"# {title}", "", method_table(evaluations, footnotes, methods), ""]
    parts += ["Bold: best per column (↑ higher is better, ↓ lower is better). Map coverage: mean share of "
              "the crop in the map the method was given.", ""]
    if paired:
        parts += [paired_table(evaluations, paired, methods), ""]
    if any(has_verification(e) or any(split_key(k)[1] == ID_MATCH_RATE for k in e.values) for e in evaluations):
        parts += [VERIFY_NOTE, ""]
    if footnotes.reasons:
        parts += [footnotes.markdown(), ""]
    parts += protocol_lines(evaluations)
    parts += verification_lines(evaluations)
    return "\n".join(parts) + "\n"


def write_comparison(inputs: Sequence[str | Path], output: str | Path, methods: Sequence[str] | None = None,
                     paired: str | None = None) -> Path:
    output = Path(output)
    text = comparison_markdown(load_evaluations(inputs), methods, paired=paired)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output, text)
    return output
