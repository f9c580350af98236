"""``unmask evaluate``, ``unmask compare``, ``unmask report``: thin click wrappers.

Registered in the ``unmask`` group by ``unmask/cli.py``::

    from unmask.evaluation.cli import compare, evaluate, report
    main.add_command(evaluate)
    main.add_command(compare)
    main.add_command(report)
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import click

from maskgen.clitools import DataclassDefault, dataclass_default

from . import METRICS_FILE, PER_IMAGE_FILE, PHOTOS, SUMMARY_FILE, method_order, photos_file
from .baselines import BASELINES


def _eval_options() -> type:
    from .options import EvalOptions  # loads cv2 (the baselines): only when the command runs or shows its help

    return EvalOptions


EVAL = functools.partial(DataclassDefault, dataclass=_eval_options)  # click.option(..., cls=EVAL): EvalOptions'
EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
COUNT = click.IntRange(min=1)  # a count or size: click refuses 0 and negatives in one line (exit 2)


def _resolution(_ctx: click.Context, _param: click.Parameter, value: int | None) -> int | None:
    """--resolution: a size the networks take, as training checks it (a bad one is a usage error)."""
    from unmask.config import resolution_problem

    problem = None if value is None else resolution_problem(value)
    if problem:
        raise click.BadParameter(problem)
    return value


def _names(text: str, known: list[str], what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.BadParameter(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return names


@click.command()
@click.option("--data", "data_dir", required=True, type=EXISTING_DIR, help="Dataset directory of maskgen build.")
@click.option("--split", cls=EVAL, help="Split whose shards are evaluated.")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, path_type=Path),
              help="Run directory (RUN/checkpoints/{seg,gan}.pt) or one checkpoint file of the two-stage model.")
@click.option("--one-stage", type=click.Path(exists=True, path_type=Path),
              help="Run of the one-stage ablation (trained with --no-map), evaluated alongside.")
@click.option("--recon-only", type=click.Path(exists=True, path_type=Path),
              help="Run of the reconstruction-only U-Net (trained with --adv 0), given the predicted maps.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory [default: CHECKPOINT_RUN/eval/SPLIT].")
@click.option("--resolution", type=int, callback=_resolution,
              help="Resize samples to this size (multiple of 32) [default: the data's].")
@click.option("--batch-size", cls=EVAL, type=COUNT)
@click.option("--max-samples", type=COUNT, help="Evaluate only the first N samples (quick checks).")
@click.option("--device", cls=EVAL, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--fid-weights", type=EXISTING_FILE,
              help="FID Inception weights (pt_inception-2015-12-05-6726825d.pth) [default: the torch hub cache].")
@click.option("--lpips-weights", type=EXISTING_FILE, nargs=2, metavar="ALEXNET LINEAR",
              help="LPIPS: torchvision AlexNet state dict and lpips v0.1 alex.pth [default: the torch hub cache].")
@click.option("--baselines", cls=EVAL, show=",".join,
              help="Comma-separated inpainting baselines, or 'none'.")
@click.option("--inpaint-radius", cls=EVAL, type=COUNT, help="cv2.inpaint radius of the baselines (px).")
@click.option("--photos", type=EXISTING_DIR, help="Folder of real masked photos: detection, both stages, paste-back.")
@click.option("--photo-labels", type=click.Path(path_type=Path), multiple=True,
              help="Hand-drawn mask labels of the --photos (a folder with labels.csv, or the CSV: photo,label,"
                   "mask_type,wear[,category]; label PNGs 0/255 at the photo's size): Dice, IoU and mask left per "
                   "photo, by mask type, by wear and by category. Only the labelled photos are evaluated. "
                   "Repeatable: each set is scored and reported apart (a further set's metrics group is "
                   "photos_<name>, <name> its folder name less the words it shares with the first's).")
@click.option("--max-photos", type=COUNT,
              help="Use only the first N photos (sorted by name; with --photo-labels the first N labelled ones "
                   "of each set).")
@click.option("--identity", is_flag=True,
              help="Identity preservation: face-recognition distance of each output to its ground truth, and face "
                   "verification (accuracy, TAR at FAR 1%/0.1%) against other photos of the same and other "
                   "identities of the split (samples with a known identity).")
@click.option("--identity-max-samples", cls=EVAL, type=click.IntRange(min=0),
              help="Identity distances and verification probes on the first N samples of the split in key "
                   "order (dlib embeds ~6 images/s per core); 0: every sample.")
@click.option("--identity-seed", cls=EVAL, type=int,
              help="Seed of the verification pairs (written to OUT/verification_protocol.csv).")
@click.option("--impostors", cls=EVAL, type=click.IntRange(min=0),
              help="Impostor pairs per verification probe (one genuine pair each).")
@click.option("--figures/--no-figures", cls=EVAL)
@click.option("--sheet-rows", cls=EVAL, type=COUNT, help="Rows per contact sheet.")
@click.option("--failures", cls=EVAL, type=click.IntRange(min=0), help="Rows of each failure gallery.")
@click.option("--progress/--no-progress", default=True, show_default=True)  # the command's default, not EvalOptions'
def evaluate(data_dir: Path, split: str | None, checkpoint: Path, one_stage: Path | None, recon_only: Path | None,
             out_dir: Path | None,
             resolution: int | None, batch_size: int | None, max_samples: int | None, device: str | None,
             fid_weights: Path | None, lpips_weights: tuple[Path, Path] | None, baselines: str | None,
             inpaint_radius: int | None, photos: Path | None, photo_labels: tuple[Path, ...], max_photos: int | None,
             identity: bool,
             identity_max_samples: int | None, identity_seed: int | None, impostors: int | None,
             figures: bool | None, sheet_rows: int | None, failures: int | None, progress: bool) -> None:
    """Score stage 1, the two-stage chain, the one-stage ablation and the baselines on a split."""
    from .evaluate import evaluate as run_evaluation
    from .options import EvalOptions

    if photo_labels and photos is None:  # each fine alone: exit 1 (maskgen.clitools)
        raise click.ClickException("--photo-labels requires --photos (the folder the labelled photos are in)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    given = {k: v for k, v in {  # None: not given, EvalOptions' default
        "split": split, "batch_size": batch_size, "device": device, "inpaint_radius": inpaint_radius,
        "baselines": None if baselines is None else _names(baselines, list(BASELINES), "baseline"),
        "identity_max_samples": identity_max_samples, "identity_seed": identity_seed, "impostors": impostors,
        "figures": figures, "sheet_rows": sheet_rows, "failures": failures}.items() if v is not None}
    if identity_max_samples == 0:  # every sample: EvalOptions' None
        given["identity_max_samples"] = None
    if out_dir is None:
        run = checkpoint if checkpoint.is_dir() else checkpoint.parent.parent
        out_dir = run / "eval" / given.get("split", dataclass_default(EvalOptions, "split"))
    try:
        opts = EvalOptions(
            data=data_dir, checkpoint=checkpoint, out=out_dir, one_stage=one_stage, recon_only=recon_only,
            resolution=resolution, max_samples=max_samples, fid_weights=fid_weights,
            lpips_weights=lpips_weights or None, photos=photos, photo_labels=photo_labels, max_photos=max_photos,
            identity=identity, progress=progress, **given,
        )
        summary = run_evaluation(opts)
    except (FileNotFoundError, ValueError) as error:  # PhotoLabelError too: checked before anything is written
        raise click.ClickException(str(error)) from error
    from .scores import summary as summarize

    click.echo(json.dumps(summarize(summary), indent=1))
    click.echo(f"wrote {out_dir / SUMMARY_FILE}, {out_dir / METRICS_FILE} and {out_dir / PER_IMAGE_FILE}")
    if photos is not None:
        lines = [_photos_line(group, out_dir / photos_file(name)) for group, name in _photo_sets(summary)]
        lines = [line for line in lines if line is not None]
        for usable, text in lines:
            if usable:
                click.echo(text)
        unusable = [text for usable, text in lines if not usable]
        if unusable:
            raise click.ClickException(f"no usable photo in {photos}: {'; '.join(unusable)}")


def _photo_sets(record: dict) -> list[tuple[str, str | None]]:
    """(scores group, labels set name) of each photo table the evaluation wrote (one without labels)."""
    sets = ((record.get("protocol") or {}).get("photos") or {}).get("label_sets") or {}
    return [(group, entry["name"]) for group, entry in sets.items()] or [(PHOTOS, None)]


def _photos_line(group: str, table_path: Path) -> tuple[bool, str] | None:
    """(whether any photo was used, one line on the real photos of a set); None without a table."""
    import pandas as pd

    if not table_path.is_file():
        return None
    table = pd.read_parquet(table_path)
    used = int(table["face"].sum())
    reasons = table.loc[~table["face"], "reason"].fillna("").str.split(":").str[0].value_counts()
    skipped = ", ".join(f"{count} {reason}" for reason, count in reasons.items())
    return used > 0, f"{group}: {used} of {len(table)} used" + (f" ({skipped}; see {table_path})" if skipped else "")


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="[NAME=]RUN_OR_METRICS_JSON...")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Markdown file for the table.")
@click.option("--methods", default="paper", show_default=True,
              help="Rows: 'paper' (two-stage, one-stage, Telea and Navier-Stokes on the predicted map), "
                   "'all', or comma-separated method names in the order wanted.")
@click.option("--paired", metavar="[NAME:]METHOD",
              help="Also a table of per-image differences from this method (e.g. recon_only, or "
                   "NAME:recon_only for evaluation NAME), with 95% bootstrap intervals.")
def compare(inputs: tuple[str, ...], output: Path, methods: str, paired: str | None) -> None:
    """One table of several evaluations, in the paper's layout (best per column in bold)."""
    from .compare import PAPER_ROWS, write_comparison

    presets = {"paper": PAPER_ROWS, "all": None}
    rows = presets[methods] if methods in presets else _names(methods, method_order(), "method")
    try:
        path = write_comparison(inputs, output, rows, paired)
    except (FileNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"wrote {path}")


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="[NAME=]RUN_OR_EVAL_DIR...")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Report directory, e.g. reports/NAME/ (report.md and its figures).")
@click.option("--title", help="Report title [default: from the directory name].")
@click.option("--run", "runs", multiple=True, type=EXISTING_DIR,
              help="Run directory whose training curves (RUN/logs/*.tsv) the report charts; repeatable.")
def report(inputs: tuple[str, ...], out_dir: Path, title: str | None, runs: tuple[Path, ...]) -> None:
    """report.md with tables, charts and figures, from evaluation outputs only (no model runs)."""
    from .report import write_report

    try:
        path = write_report(inputs, out_dir, title, runs)
    except (FileNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"wrote {path}")
