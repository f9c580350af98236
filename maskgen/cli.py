"""``maskgen``: build, preview and summarise masked/unmasked face datasets."""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from . import format as fmt
from .clitools import DataclassDefault, DeprecatedNames, DeprecatedOption, Group, value_name
from .mask import DEFAULT_WEAR_WEIGHTS


def _build_config() -> type:
    from .build import BuildConfig

    return BuildConfig


def _checked(problem: str | None) -> None:
    """A bad value of one option is a usage error (clitools' rule), found by the library's own check."""
    if problem:
        raise click.BadParameter(problem)


def _build_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A given value of a BuildConfig field, checked as the build checks it."""
    if value is not None:
        from .build import option_problem

        _checked(option_problem(value_name(ctx, param), value))
    return value


class FaceScale(click.ParamType):
    """--face-scale: one framing (0.72) or a range drawn from per sample (0.6-0.8)."""
    name = "SCALE|LOW-HIGH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return float(value)  # one framing (1e-1 too)
        except ValueError:
            pass
        ends = re.fullmatch(r"\s*(-?[^-\s]+)\s*-\s*(-?[^-\s]+)\s*", value)
        try:
            return tuple(float(v) for v in ends.groups()) if ends else float(value)
        except ValueError:
            self.fail(f"use a number such as 0.72 or a range such as 0.6-0.8 (got {value!r})", param, ctx)


# click.option(..., cls=BUILD): BuildConfig's default, and its check
BUILD = functools.partial(DataclassDefault, dataclass=_build_config, callback=_build_option)


def _parse_part(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, int]:
    """--part K/N (1-based) -> BuildConfig.part (k, n), k 0-based."""
    if not value:
        return (0, 1)
    from .build import option_problem

    try:
        k, n = (int(v) for v in value.split("/"))
    except ValueError:
        raise click.BadParameter("use K/N, e.g. 3/8") from None
    _checked(option_problem("part", (k - 1, n)))
    return (k - 1, n)


def _parse_split(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[float, float, float] | None:
    from .splits import parse_fractions

    try:
        return None if value is None else parse_fractions(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def _parse_weights(_ctx: click.Context, param: click.Parameter, value: str | None):
    """Names, optionally weighted: 'surgical,n95' or 'surgical=0.5,kn95=0.3,gas=0.2' (--mask-types, --wear:
    MaskOptions.create's arguments of the same names, checked by it)."""
    if not value:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    names = [v.split("=", 1)[0].strip() for v in items]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise click.BadParameter(f"{', '.join(repeated)} given more than once")
    if all("=" in v for v in items):
        try:
            weights = {k.strip(): float(w) for k, w in (v.split("=", 1) for v in items)}
        except ValueError:
            raise click.BadParameter("weights must be numbers, e.g. a=0.5,b=0.5") from None
    elif any("=" in v for v in items):
        raise click.BadParameter("give weights for all names or for none")
    else:
        weights = items
    from .compose import MaskOptions

    try:
        MaskOptions.create(**{param.name: weights})
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    return weights


def _share(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    """--template-share, --occluder-share, --print-share, --fold-share: a share of samples, 0..1."""
    if value is not None:
        from .compose import share_problem

        _checked(share_problem(value))
    return value


def _preview_option(_ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    from .preview import option_problem

    _checked(option_problem(param.name, value))
    return value


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log skipped sources (-v) and debug detail (-vv).")
def main(verbose: int) -> None:
    """Paired masked/unmasked face datasets for mask removal (GANMasker)."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command(cls=DeprecatedNames)
@click.option("--source", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="CelebA root (img_align_celeba/ or img_celeba/ layout) or any folder of face photos.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Dataset folder.")
@click.option("--resolution", "res", cls=BUILD, type=int, help="Crop size in pixels (128, 256, 512, 1024).")
@click.option("--res", cls=DeprecatedOption, replacement="--resolution", type=int, callback=_build_option)
@click.option("--pairs", type=int, default=None, callback=_build_option,
              help="Number of triplets [default: one per usable face].")
@click.option("--seed", cls=BUILD, type=int)
@click.option("--workers", cls=BUILD, type=int, help="Worker processes; -1 = all cores.")
@click.option("--shard-size", cls=BUILD, type=int, help="Samples per tar shard.")
@click.option("--mask-types", default=None, callback=_parse_weights,
              help="Types to use, optionally weighted: 'surgical,kn95' or "
              "'surgical=0.5,n95=0.2,kn95=0.2,cloth=0.1'. Types: surgical, n95, kn95, cloth, gas, gaiter, "
              "bandana, sports [default: maskgen.templates.DEFAULT_TYPE_WEIGHTS; the first five alone mix as "
              "before the others came].")
@click.option("--occluders", default=None, callback=_parse_weights,
              help="What may hide part of the mask, optionally weighted: hand, hair, phone "
              "[default: hand=0.45,hair=0.35,phone=0.2].")
@click.option("--occluder-share", type=float, default=None, callback=_share,
              help="Share of samples with an occluder in front of the mask, 0..1 [default: 0.1].")
@click.option("--print-share", type=float, default=None, callback=_share,
              help="Share of cloth masks, gaiters and bandanas printed with figures, a logo or a photo "
              "[default: 0.3].")
@click.option("--fold-share", type=float, default=None, callback=_share,
              help="Share of cloth masks, gaiters and bandanas with creases [default: 0.5].")
@click.option("--wear", default=None, callback=_parse_weights,
              help="How masks are worn, optionally weighted: correct, nose (nose "
              "uncovered), mouth (nose and mouth uncovered: on the chin), chin (chin uncovered) "
              f"[default: {','.join(f'{k}={v:g}' for k, v in DEFAULT_WEAR_WEIGHTS.items())}].")
@click.option("--templates", type=click.Path(exists=True, path_type=Path), multiple=True,
              help="A MaskTheFace-format template pack (folder with masks.cfg); repeat to mix several.")
@click.option("--template-share", type=float, default=None, callback=_share,
              help="Share of samples that take a pack template, the rest the built-in masks "
              "[default with --templates: 1, packs only].")
@click.option("--split", cls=BUILD, callback=_parse_split,
              show=lambda fractions: "/".join(f"{100 * f:g}" for f in fractions),
              help="train/val/test fractions (ignored when CelebA's list_eval_partition.txt is present).")
@click.option("--jpeg-quality", cls=BUILD, type=int)
@click.option("--face-scale", cls=BUILD, type=FaceScale(),
              help="Face size in the crop (the framing), or a range LOW-HIGH drawn from per sample.")
@click.option("--landmarks", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="landmarks.parquet of an earlier build of the same source: its faces are not detected again.")
@click.option("--part", default=None, callback=_parse_part,
              help="Build part K of N (1-based, e.g. 3/8) for multi-machine builds.")
@click.option("--backend", cls=BUILD, type=click.Choice(["loky", "dask"]),
              help="joblib backend; dask runs on the cluster at --scheduler.")
@click.option("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://10.0.0.1:8786.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def build(source, out, res, pairs, seed, workers, shard_size, mask_types, occluders, occluder_share, print_share,
          fold_share, wear, templates, template_share, split, jpeg_quality, face_scale, landmarks, part, backend,
          scheduler, no_progress) -> None:
    """Build WebDataset shards of (masked, unmasked, map) triplets from face photos."""
    from .build import BuildConfig, BuildError
    from .build import build as run_build
    from .compose import MaskOptions

    try:
        given = {"res": res, "seed": seed, "workers": workers, "shard_size": shard_size, "jpeg_quality": jpeg_quality,
                 "split": split, "face_scale": face_scale, "backend": backend}  # None: not given, the default
        config = BuildConfig(
            source=str(source), out=str(out), pairs=pairs,
            mask=MaskOptions.create(mask_types, list(templates), wear=wear, template_share=template_share,
                                    occluders=occluders, occluder_share=occluder_share, print_share=print_share,
                                    fold_share=fold_share),
            part=part, landmarks=str(landmarks) if landmarks else None, scheduler=scheduler,
            progress=not no_progress, **{k: v for k, v in given.items() if v is not None})
        start = time.perf_counter()
        result = run_build(config)  # validates the whole config before anything is written
    except (BuildError, ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    took = time.perf_counter() - start
    rebuilt = f" ({result.shards_rebuilt} rebuilt: did not match their record)" if result.shards_rebuilt else ""
    click.echo(f"{result.samples} triplets in {took:.1f} s ({result.samples / max(took, 1e-9):.1f}/s), "
               f"{result.failures} sources skipped (see {fmt.FAILURES}), "
               f"{result.shards_written} shards written{rebuilt}, {result.shards_reused} reused")
    if result.complete:
        click.echo(_stats_text(json.loads((Path(out) / fmt.STATS).read_text())))
    else:
        click.echo(f"part {config.part[0] + 1}/{config.part[1]} done; the manifest is written when all parts are "
                   f"in {out} (or run: maskgen combine {out})")


@main.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
def combine(dataset) -> None:
    """Merge the parts of a dataset built with --part into one manifest."""
    from .build import BuildError
    from .build import combine as run_combine

    try:
        stats = run_combine(dataset)
    except BuildError as err:
        raise click.ClickException(str(err)) from None
    if stats is None:
        raise click.ClickException(f"{dataset}: some parts are not finished (see the warning above)")
    click.echo(_stats_text(stats))


def _finished(dataset: Path) -> None:
    """One line for a dataset that is not finished or not as recorded (``check_shards``: cheap, no sample is read)."""
    from .verify import check_shards, first_problem

    problems = check_shards(dataset)
    if problems:
        raise click.ClickException(first_problem(problems, dataset))


@main.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-n", default=16, show_default=True, callback=_preview_option, help="Samples to show.")
@click.option("-o", "--output", default="grid.png", show_default=True, type=click.Path(dir_okay=False, path_type=Path),
              callback=_preview_option,
              help="The sheet's file (missing folders are made); its suffix gives the format (.png, .jpg, ...).")
@click.option("--split", type=click.Choice(list(fmt.SPLITS)), default=None)
@click.option("--columns", default=2, show_default=True, callback=_preview_option)
def preview(dataset, n, output, split, columns) -> None:
    """Contact sheet: masked | map | unmasked for the first N samples."""
    import cv2

    from .files import write_bytes_atomic
    from .preview import contact_sheet
    from .reader import BadSample, BadShard

    _finished(dataset)
    try:
        sheet = contact_sheet(dataset, n=n, split=split, columns=columns)
    except (FileNotFoundError, BadSample, BadShard) as err:
        raise click.ClickException(str(err)) from None
    encoded, data = cv2.imencode(output.suffix, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not encoded:
        raise click.ClickException(f"cannot encode the sheet as {output.suffix} for {output}")
    output.parent.mkdir(parents=True, exist_ok=True)  # as every -o / --out: its folders are made
    write_bytes_atomic(output, data.tobytes())  # an OSError names the file and the cause (see clitools)
    click.echo(f"wrote {output} ({sheet.shape[1]}x{sheet.shape[0]})")


@main.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print stats.json as it is.")
def stats(dataset, as_json) -> None:
    """Summary of a built dataset: counts by split and mask type, coverage, failures."""
    _finished(dataset)
    data = json.loads((Path(dataset) / fmt.STATS).read_text())
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else _stats_text(data))


@main.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--quick", is_flag=True, help="No sample read: the records, the set of shards, their sizes and SHA-256.")
def verify(dataset, quick) -> None:
    """Check every shard against the records and every sample against the format and the manifest.

    One line per problem; exit 1 if there is any.
    """
    from .verify import verify as run_verify

    report = run_verify(dataset, quick=quick)
    for line in report.problems:
        click.echo(line)
    checked = f"{report.shards} shards" + ("" if quick else f", {report.samples} samples")
    if report.problems:
        count = f"{len(report.problems)} problem" + ("s" if len(report.problems) > 1 else "")
        raise click.ClickException(f"{dataset}: {count} ({checked} checked)")
    click.echo(f"{dataset}: ok ({checked} checked)")


def _stats_text(s: dict) -> str:
    lines = [f"samples: {s['samples']}  (sources used: {s['sources_used']}, resolution {s['build']['res']})",
             "by split: " + ", ".join(f"{k} {v}" for k, v in s["by_split"].items()),
             "by mask type: " + ", ".join(f"{k} {v}" for k, v in s["by_mask_type"].items()),
             "by variant: " + ", ".join(f"{k} {v}" for k, v in s["by_variant"].items()),
             *[f"by {name}: " + ", ".join(f"{k} {v}" for k, v in s[f"by_{name}"].items())
               for name in ("wear", "generator", "print", "occluder") if f"by_{name}" in s],  # older datasets: none
             *([f"creased: {s['folds']}"] if "folds" in s else []),
             "coverage: " + ", ".join(f"{k} {v:.3f}"
                                      for k, v in sorted(s["coverage"].items(), key=lambda kv: int(kv[0][1:]))),
             f"upsampled crops: {s['upsampled']}",
             f"failures: {s['failures']} ({100 * s['failure_rate']:.2f}%)"
             + ("; " + ", ".join(f"{k}: {v}" for k, v in s["failure_reasons"].items()) if s["failures"] else "")]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
