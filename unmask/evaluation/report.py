"""``report.md`` from evaluation outputs only: metrics.json, per_image.parquet and the figures an
evaluation wrote (and, given runs, their training logs). No model runs, so a report can be rebuilt
anywhere those files are.

The figures are copied next to the report (``figures/<evaluation>/``) and the charts are drawn
there (``figures/charts/``, see ``charts``), so the report directory is self-contained and
displays offline.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from maskgen.files import write_text_atomic
from unmask.identity import GROUND_TRUTH_PROBE

from . import (
    FIGURES_DIR,
    ID_DISTANCE,
    ID_MATCH_RATE,
    INPUT,
    MASKED_PROBE,
    PER_IMAGE_FILE,
    PHOTOS,
    PHOTOS_FILE,
    PRED_MAP,
    TWO_STAGE,
    VERIFY_PROTOCOL_FILE,
    baseline_method,
    key,
    method_label,
    method_order,
    probe_type,
    split_key,
    verify_key,
)
from .compare import (
    HEADERS,
    VERIFY_NOTE,
    Evaluation,
    Footnotes,
    format_value,
    has_verification,
    load_evaluations,
    method_table,
    protocol_lines,
    seg_table,
    table_head,
    verification_lines,
)
from .photos import WORST_PHOTOS_FILE, groupings, label_breakdown
from .samples import is_turned

REPORT_FILE = "report.md"
BREAKDOWN_METRICS = ("psnr", "ssim")
PHOTO_KEYS = ("count", "faces_found", "no_face_rate", "coverage", "dice", "iou", "dice_face_found", "iou_face_found",
              "mask_left")
NO_FACE_LISTED = 20  # photos named in the report's no-face line


def _per_image(evaluation: Evaluation) -> pd.DataFrame | None:
    path = evaluation.directory / PER_IMAGE_FILE
    return pd.read_parquet(path) if path.is_file() else None


def _pose(table: pd.DataFrame) -> pd.Series:
    """frontal/turned, as the evaluation's figures split them."""
    return pd.Series(["turned" if is_turned(row) else "frontal" for row in table.to_dict("records")],
                     index=table.index)


def breakdown(table: pd.DataFrame, by: pd.Series, metric: str, methods: Sequence[str]) -> str | None:
    """Mean of a per-image metric per group (rows) and method (columns), with the group sizes."""
    columns = [m for m in methods if key(m, metric) in table.columns]
    if not columns:
        return None
    means = table[[key(m, metric) for m in columns]].replace([np.inf, -np.inf], np.nan).groupby(by).mean()
    counts = by.value_counts()
    header = ["group", "n"] + [method_label(m) for m in columns]
    lines = table_head(header)
    for group, row in means.iterrows():
        cells = [str(group), str(int(counts[group]))]
        cells += ["n/a" if pd.isna(v) else format_value(metric, float(v)) for v in row.to_numpy()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _breakdowns(evaluation: Evaluation) -> list[str]:
    table = _per_image(evaluation)
    if table is None or table.empty:
        return []
    methods = [m for m in evaluation.methods() if m != INPUT] + [INPUT]
    parts = []
    groupings = [("mask type", table["mask_type"].fillna("unknown").astype(str)), ("head pose", _pose(table))]
    for title, by in groupings:
        for metric in BREAKDOWN_METRICS:
            text = breakdown(table, by, metric, methods)
            if text:
                parts += [f"#### {evaluation.name}: {metric.upper()} by {title}", "", text, ""]
    return parts


def photo_label_table(table: pd.DataFrame, column: str, order: Sequence[str]) -> str:
    """Dice and IoU of the labelled photos per group of ``column`` (``photos.label_breakdown``)."""
    lines = table_head([column.replace("_", " "), "n", "no face", "Dice", "IoU"])
    for group, row in label_breakdown(table, column, order).iterrows():
        lines.append(f"| {group} | {int(row['n'])} | {int(row['no_face'])} | {format_value('dice', row['dice'])} "
                     f"| {format_value('iou', row['iou'])} |")
    lines.append(f"| all | {len(table)} | {int((~table['face'].astype(bool)).sum())} | "
                 f"{format_value('dice', table['dice'].mean())} | {format_value('iou', table['iou'].mean())} |")
    return "\n".join(lines)


def _label_sets(evaluation: Evaluation) -> dict[str, dict | None]:
    """Scores group -> its labels set in the protocol (None: photos without labels); an evaluation made
    before several sets has its one set under ``labels``."""
    photos = evaluation.protocol.get("photos") or {}
    sets = photos.get("label_sets") or {PHOTOS: photos.get("labels")}
    return {group: entry for group, entry in sets.items() if key(group, "count") in evaluation.values}


def _photos(evaluation: Evaluation, figures: Sequence[Path] = ()) -> list[str]:
    """Per labels set (or the photos without labels): the photo counts, and with labels the Dice/IoU tables
    by mask type, wear and category, the photos with no face found and the worst-Dice figure (a relative
    path among ``figures``)."""
    return [line for group, labels in _label_sets(evaluation).items()
            for line in _photo_set(evaluation, group, labels, figures)]


def _photo_set(evaluation: Evaluation, group: str, labels: dict | None, figures: Sequence[Path]) -> list[str]:
    cells = []
    for flat in [key(group, k) for k in PHOTO_KEYS]:
        if flat not in evaluation.values:
            continue
        value = evaluation.values[flat]
        _, metric = split_key(flat)
        shown = ("n/a (" + evaluation.reason(flat) + ")" if value is None
                 else f"{value:.1%}" if metric.endswith("rate") or metric in ("coverage", "mask_left")
                 else format_value(metric.split("_")[0], value) if metric.startswith(("dice", "iou")) else f"{value:g}")
        cells.append(f"- {metric.replace('_', ' ')}: {shown}")
    photos = evaluation.protocol.get("photos") or {}
    title = evaluation.name if group == PHOTOS else f"{evaluation.name}, {group}"
    parts = [f"#### {title}: real masked photos (`{photos.get('dir', '?')}`)", "", *cells, ""]
    path = evaluation.directory / (labels or {}).get("table", PHOTOS_FILE)
    if not labels or not path.is_file():
        return parts
    table = pd.read_parquet(path)
    if "dice" not in table.columns or table.empty:
        return parts
    parts += [f"Labels `{labels.get('file', '?')}`: {labels.get('evaluated', '?')} of {labels.get('labelled', '?')} "
              f"labelled photos evaluated. {str(labels.get('scores', '')).capitalize()}.", ""]
    for column, order in groupings(table).values():
        parts += [f"##### {title}: Dice and IoU by {column.replace('_', ' ')}", "",
                  photo_label_table(table, column, order), ""]
    missed = table.loc[~table["face"].astype(bool), "file"].tolist()
    if missed:
        listed = ", ".join(missed[:NO_FACE_LISTED]) + (", ..." if len(missed) > NO_FACE_LISTED else "")
        parts += [f"No face found (scored 0): {len(missed)} photos: {listed}", ""]
    worst = [f for f in figures if f.name == labels.get("worst_figure_file", WORST_PHOTOS_FILE)]
    if worst:
        caption = f"{title}: {labels.get('worst_figure', 'the photos with the lowest Dice')}"
        parts += [f"![{caption}]({worst[0].as_posix()})", "",
                  "Green: the label's outline; red: the predicted map pasted back onto the photo.", ""]
    return parts


IDENTITY_COLUMNS = ("verify_accuracy", "verify_tar_far_1", "verify_tar_far_0.1", "verify_genuine_distance",
                    "verify_impostor_distance", ID_MATCH_RATE, ID_DISTANCE)
LOWER_IS_BETTER = (ID_DISTANCE, "verify_genuine_distance")
TELEA = baseline_method("telea", PRED_MAP)
TARGET_SHARE = 0.5  # of the accuracy the mask costs, two-stage must win back


def _identity_cell(evaluation: Evaluation, probe: str, method: str | None, column: str,
                   footnotes: Footnotes) -> tuple[str, float | None]:
    """(cell text, value) of one identity-table cell; the ground-truth row has no ID distance/match."""
    if column in (ID_MATCH_RATE, ID_DISTANCE):
        if method is None:
            return "—", None
        flat = key(method, column)
    else:
        flat = verify_key(probe, column.removeprefix("verify_"))
    if flat not in evaluation.values:
        return "—", None
    value = evaluation.values[flat]
    if value is None:
        return footnotes.mark(evaluation.reason(flat)), None
    return format_value(column, value), value


def identity_table(evaluation: Evaluation, footnotes: Footnotes) -> str | None:
    """Ground truth, masked input and every method: verification and ID match, best method in bold."""
    methods = [m for m in method_order() if m != INPUT and m in evaluation.methods()]
    rows = [(GROUND_TRUTH_PROBE, None, "Ground truth (unmasked)"), (MASKED_PROBE, INPUT, "Masked input")]
    rows += [(probe_type(m), m, method_label(m)) for m in methods]
    rows = [r for r in rows if (r[1] is None and has_verification(evaluation))
            or (r[1] is not None and any(k in evaluation.values for k in
                                         (key(r[1], ID_MATCH_RATE), verify_key(r[0], "accuracy"))))]
    if not rows:
        return None
    cells = {(r[0], c): _identity_cell(evaluation, r[0], r[1], c, footnotes) for r in rows for c in IDENTITY_COLUMNS}
    best = {}
    for column in IDENTITY_COLUMNS:  # among the outputs and the input, not the ground-truth reference
        numbers = [cells[(r[0], column)][1] for r in rows if r[0] != GROUND_TRUTH_PROBE]
        numbers = [v for v in numbers if v is not None]
        if numbers:
            best[column] = min(numbers) if column in LOWER_IS_BETTER else max(numbers)
    header = ["Probe"] + [HEADERS.get(c, c) + (" ↓" if c in LOWER_IS_BETTER else " ↑") for c in IDENTITY_COLUMNS]
    header.append("Invalid pairs")
    lines = table_head(header)
    for probe, _, label in rows:
        out = [label]
        for column in IDENTITY_COLUMNS:
            text, value = cells[(probe, column)]
            out.append(f"**{text}**" if value is not None and probe != GROUND_TRUTH_PROBE
                       and best.get(column) == value else text)
        invalid = evaluation.values.get(verify_key(probe, "n_invalid"))
        pairs = evaluation.values.get(verify_key(None, "n_pairs"))
        out.append("—" if invalid is None else f"{invalid:g} / {pairs:g}" if pairs is not None else f"{invalid:g}")
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines)


def identity_target(evaluation: Evaluation) -> list[str]:
    """Whether two-stage wins back at least half the verification accuracy the mask costs, and
    whether it beats Telea."""
    if not has_verification(evaluation):
        return []
    acc = {name: evaluation.values.get(verify_key(name, "accuracy"))
           for name in (GROUND_TRUTH_PROBE, MASKED_PROBE, TWO_STAGE, TELEA)}
    names = {GROUND_TRUTH_PROBE: "ground truth", MASKED_PROBE: "masked", TWO_STAGE: "two-stage",
             TELEA: "Telea"}
    rule = (f"accuracy(two-stage) − accuracy(masked) ≥ {TARGET_SHARE:g} × "
            "(accuracy(ground truth) − accuracy(masked))")
    missing = [names[k] for k in (GROUND_TRUTH_PROBE, MASKED_PROBE, TWO_STAGE) if acc[k] is None]
    lines = []
    if missing:
        lines.append(f"- **{evaluation.name}** identity target ({rule}): n/a (no accuracy for "
                     f"{', '.join(missing)})")
    else:
        gain = acc[TWO_STAGE] - acc[MASKED_PROBE]
        needed = TARGET_SHARE * (acc[GROUND_TRUTH_PROBE] - acc[MASKED_PROBE])
        holds = gain >= needed - 1e-12
        line = (f"- **{evaluation.name}** identity target ({rule}): two-stage − masked = {100 * gain:+.1f} points, "
                f"needed {100 * needed:+.1f} points ({TARGET_SHARE:g} × (ground truth − masked)): "
                f"**{'holds' if holds else 'does not hold'}**")
        if acc[GROUND_TRUTH_PROBE] <= acc[MASKED_PROBE]:
            line += " (the masked input verifies as well as the ground truth here, so the target says little)"
        lines.append(line)
    if acc[TWO_STAGE] is None or acc[TELEA] is None:
        lines.append(f"- **{evaluation.name}** two-stage vs Telea (predicted map): n/a (no accuracy for "
                     f"{'two-stage' if acc[TWO_STAGE] is None else 'Telea'})")
    else:
        verdict = ("beats" if acc[TWO_STAGE] > acc[TELEA] else "ties with" if acc[TWO_STAGE] == acc[TELEA]
                   else "does not beat")
        lines.append(f"- **{evaluation.name}** two-stage vs Telea (predicted map): verification accuracy "
                     f"{acc[TWO_STAGE]:.1%} vs {acc[TELEA]:.1%}: two-stage **{verdict}** Telea")
    return lines


def identity_protocol_lines(evaluation: Evaluation) -> list[str]:
    identity = evaluation.protocol.get("identity") or {}
    if not identity.get("requested"):
        return []
    if identity.get("reason"):
        return [f"- **{evaluation.name}** identity: n/a ({identity['reason']})"]
    v = identity.get("verification") or {}
    lines = [f"- **{evaluation.name}** identity samples: {identity.get('samples', '?')} "
             f"({identity.get('count', '?')} samples; {identity.get('embeddings', '')})"]
    if v.get("reason"):
        return lines + [f"- **{evaluation.name}** verification: n/a ({v['reason']})"]

    def threshold(name: str) -> str:
        value = evaluation.values.get(verify_key(None, name))
        return "n/a" if value is None else f"{value:.3f}"

    lines.append(
        f"- **{evaluation.name}** verification protocol: {v.get('n_probes', '?')} probes, {v.get('n_pairs', '?')} "
        f"pairs, {v.get('n_gallery', '?')} gallery photos, seed {v.get('seed', '?')}. Probes: {v.get('probes', '?')} "
        f"({v.get('n_skipped', '?')} skipped: no other photo of their identity). Pairs per probe: "
        f"{v.get('pairs_per_probe', '?')}. Gallery: {v.get('gallery', '?')}. Accuracy at distance "
        f"{v.get('accuracy_threshold', '?')}; TAR thresholds from {v.get('far_thresholds_from', '?')}: "
        f"{threshold('threshold_far_1')} (FAR 1%), {threshold('threshold_far_0.1')} (FAR 0.1%). Pairs in "
        f"`{v.get('protocol_file') or VERIFY_PROTOCOL_FILE}` (samples sha1 {str(v.get('samples_sha1', '?'))[:12]}).")
    lines += [f"- **{evaluation.name}** note: {note}" for note in v.get("notes") or []]
    return lines


def identity_section(evaluations: Sequence[Evaluation], footnotes: Footnotes) -> list[str]:
    """## Identity: per evaluation the table, the target lines and the protocol."""
    parts: list[str] = []
    for evaluation in evaluations:
        table = identity_table(evaluation, footnotes)
        protocol = identity_protocol_lines(evaluation)
        if table is None and not protocol:
            continue
        parts += [f"#### {evaluation.name}: identity", ""]
        if table:
            parts += [table, ""]
        target = identity_target(evaluation)
        if target:
            parts += [*target, ""]
        if protocol:
            parts += [*protocol, ""]
    if not parts:
        return []
    warning = [line for line in verification_lines(evaluations) if line.startswith("- **Warning**")]
    return ["## Identity", "", VERIFY_NOTE + " Bold: best output per column (the ground truth is the reference).",
            "", *parts, *([*warning, ""] if warning else [])]


def _copy_figures(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """Copy the evaluation's PNG figures under ``out_dir/figures/<name>/``; their relative paths."""
    source = evaluation.directory / FIGURES_DIR
    if not source.is_dir():
        return []
    listed = evaluation.protocol.get("figures") or []
    files = [source / f for f in listed if (source / f).is_file()] or sorted(source.glob("*.png"))
    target = out_dir / FIGURES_DIR / evaluation.name
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in files:
        shutil.copyfile(path, target / path.name)
        copied.append((target / path.name).relative_to(out_dir))
    return copied


def _charts(evaluations: Sequence[Evaluation], runs: Sequence[Path], out_dir: Path) -> list[str]:
    """## Charts: the training curves of ``runs``, then each evaluation's charts (PNG, relative links)."""
    from .charts import CHARTS_DIR, evaluation_charts, training_charts  # matplotlib only when a report is made

    target = out_dir / FIGURES_DIR / CHARTS_DIR
    made = training_charts(runs, target)
    for evaluation in evaluations:
        table = _per_image(evaluation)
        if table is not None and not table.empty:
            made += evaluation_charts(table, evaluation.name, target)
    if not made:
        return []
    parts = ["## Charts", "",
             "Training curves from the runs' logs; means with their 95% bootstrap intervals and breakdowns "
             "from per_image.parquet.", ""]
    for path in made:
        relative = path.relative_to(out_dir).as_posix()
        parts += [f"![{path.stem.replace('_', ' ')}]({relative})", ""]
    return parts


def report_markdown(evaluations: Sequence[Evaluation], out_dir: Path, title: str,
                    runs: Sequence[Path] = ()) -> str:
    footnotes = Footnotes()
    parts = [f"# {title}", "",
             "Generated by `unmask report` from evaluation files only (metrics.json, per_image.parquet, figures, "
             "training logs).", "",
             "## Evaluations", "", *protocol_lines(evaluations), "",
             "## Unmasking", "", method_table(evaluations, footnotes), "",
             "Bold: best per column (↑ higher is better, ↓ lower is better). Map coverage: mean share of the "
             "crop in the map the method was given.", ""]
    seg = seg_table(evaluations, footnotes)
    if seg:
        parts += ["## Mask segmentation (stage 1)", "", seg, ""]
    parts += identity_section(evaluations, footnotes)
    if footnotes.reasons:
        parts += ["Not available:", "", footnotes.markdown(), ""]
    parts += _charts(evaluations, runs, out_dir)
    details = [line for e in evaluations for line in _breakdowns(e)]
    if details:
        parts += ["## By mask type and head pose", "", *details]
    figures = [(e, _copy_figures(e, out_dir)) for e in evaluations]
    photos = [line for e, files in figures for line in _photos(e, files)]
    if photos:
        parts += ["## Real masked photos", "",
                  "The two-stage model end to end on each photo (face detection, alignment, both stages, "
                  "paste-back). Coverage: share of the photo in the predicted map, photos with a face found. "
                  "With hand-drawn labels: Dice and IoU of the predicted map against the label over the photo; "
                  "a photo with no face found scores 0 (\"face found\": the mean over the others).", "", *photos]
    parts += ["## Protocol", ""]
    for e in evaluations:
        p = e.protocol
        parts += [f"- **{e.name}** PSNR/SSIM: {p.get('psnr_ssim', 'n/a')}"]
        fid = p.get("fid") or {}
        if fid:
            parts += [f"- **{e.name}** FID: real set = {fid.get('real_set')}; {fid.get('note')}"]
        not_run = p.get("methods_not_run") or {}
        parts += [f"- **{e.name}** not evaluated: {m} ({why})" for m, why in not_run.items()]
        if p.get("warning"):
            parts += [f"- **{e.name}** warning: {p['warning']}"]
    parts.append("")
    shown = {e.name: {(labels or {}).get("worst_figure_file", WORST_PHOTOS_FILE) for labels in _label_sets(e).values()}
             for e, _ in figures}
    figures = [(e, [f for f in files if f.name not in shown[e.name]]) for e, files in figures]  # shown above
    if any(files for _, files in figures):
        parts += ["## Figures", ""]
        for evaluation, files in figures:
            for path in files:
                caption = f"{evaluation.name}: {path.stem.replace('_', ' ')}"
                parts += [f"### {caption}", "", f"![{caption}]({path.as_posix()})", ""]
    return "\n".join(parts) + "\n"


def write_report(inputs: Sequence[str | Path], out_dir: str | Path, title: str | None = None,
                 runs: Sequence[str | Path] = ()) -> Path:
    """``out_dir/report.md``; ``runs``: run directories whose training curves it shows."""
    evaluations = load_evaluations(inputs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = report_markdown(evaluations, out_dir, title or f"GANMasker evaluation: {out_dir.name}",
                           [Path(r) for r in runs])
    path = out_dir / REPORT_FILE
    write_text_atomic(path, text)
    return path
