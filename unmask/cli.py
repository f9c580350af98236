"""``unmask`` command line: ``train``, ``interpolate``, ``predict``, ``serve`` (the page is ``unmask.serve``);
``evaluate``, ``compare`` and ``report`` come from ``unmask.evaluation.cli``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import click

from maskgen.clitools import DeprecatedNames, Group, dataclass_default
from unmask.config import AMP_MODES, GAN_MAPS, PRESETS, Config
from unmask.config_options import (
    CONFIG_OPTIONS,
    assignments_option,
    build_config,
    config_option,
    deprecated_option,
    file_gives,
    load_config,
    one_line,
    optims_option,
    with_dataset_resolution,
)
from unmask.outputs import MAX_FACE_INDEX, MAX_FACES, MIN_FACE
from unmask.training.options import RunOptions


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--offline", is_flag=True,
              help="Never download pretrained weights (as UNMASK_OFFLINE=1); missing ones are then unavailable.")
def main(offline: bool) -> None:
    """GANMasker: remove face masks from face images (two-stage GAN, Sensors 2023, 23, 7094)."""
    if offline:  # read where weights are looked up (unmask.weights), here and in processes started from here
        os.environ["UNMASK_OFFLINE"] = "1"


def train_config(args: list[str]) -> Config:
    """The config ``unmask train ARGS`` starts a run with, ARGS read and checked as train reads them (--data
    and --out are not looked at: pipelines/exp.py asks before the data is built; so without --resolution its
    train.resolution is the config's, where the run takes the dataset's crop size). Raises
    ``click.ClickException`` (a ``click.UsageError`` for a bad option) with train's one-line message."""
    given = train.make_context("unmask train", [*args, "--data", os.curdir]).params
    try:
        return build_config(given["config_file"], given["preset_name"], {k: given[k] for k in CONFIG_OPTIONS},
                            given["lr"], given["lr_milestones"], given["assignments"])
    except (KeyError, ValueError, TypeError) as exc:
        raise click.ClickException(one_line(exc)) from exc


@main.command(cls=DeprecatedNames)
@click.option("--stage", type=click.Choice(["seg", "gan", "all"]),
              help="seg: M-Seg only; gan: FU-Net GAN only; all: both in turn.  "
                   f"[default: {dataclass_default(RunOptions, 'stage')}]")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Dataset directory of maskgen build (train-*.tar, val-*.tar shards).")
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory: checkpoints, logs, samples, metrics.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML config (as written to RUN/config.yaml).")
@click.option("--preset", "preset_name", type=click.Choice(sorted(PRESETS)),
              help="Width preset instead of --config: paper (default), cpu, tiny.")
@click.option("--resolution", type=int, callback=config_option,
              help="Training resolution (multiple of 32) [default: the dataset's crop size, its maskgen build "
                   "--resolution]; another size resizes every image as it loads.")
@click.option("--epochs", type=int, callback=config_option, help="Epochs per stage.")
@click.option("--steps", type=int, callback=config_option, help="Steps per stage (overrides --epochs).")
@click.option("--batch-size", type=int, callback=config_option, help="Batch size per process.")
@click.option("--lr", type=float, callback=optims_option, help="Initial learning rate of both stages.")
@click.option("--lr-milestones", callback=optims_option,
              help="Comma-separated fractions of the run where the lr decays (x lr_decay).")
@click.option("--seed", type=int, callback=config_option)
@click.option("--num-workers", type=int, callback=config_option, help="Data loader worker processes per process.")
@click.option("--amp", type=click.Choice(AMP_MODES),
              help="Mixed precision: auto = bf16 (else fp16) on CUDA, off on CPU; bf16/fp16 apply on CPU too.")
@click.option("--mseg-width", type=int, callback=config_option, help="M-Seg base width (mseg.base_width).")
@deprecated_option("--seg-width", "--mseg-width", type=int)
@click.option("--generator-width", type=int, callback=config_option,
              help="Generator base width (generator.base_width).")
@deprecated_option("--gen-width", "--generator-width", type=int)
@click.option("--discriminator-width", type=int, callback=config_option,
              help="Discriminator base width (discriminator.base_width).")
@deprecated_option("--disc-width", "--discriminator-width", type=int)
@click.option("--adv", type=float, callback=config_option,
              help="Weight of the adversarial loss (loss.adv, the paper's alpha); 0 trains the reconstruction-only "
                   "U-Net (no discriminator).")
@deprecated_option("--alpha", "--adv", type=float)
@click.option("--rec", type=float, callback=config_option,
              help="Weight of the reconstruction loss (loss.rec, the paper's beta).")
@deprecated_option("--beta", "--rec", type=float)
@click.option("--per", type=float, callback=config_option,
              help="Weight of the perceptual loss (loss.per, the paper's gamma).")
@deprecated_option("--gamma", "--per", type=float)
@click.option("--use-map/--no-map", "use_map", default=None,
              help="--no-map: the one-stage ablation, generator without the map input or MURF (generator.use_map).")
@click.option("--gan-maps", type=click.Choice(GAN_MAPS),
              help="Maps for stage 2: ground truth (paper) or binarised M-Seg predictions.")
@click.option("--seg-checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="M-Seg checkpoint for --gan-maps predicted (default RUN/checkpoints/seg.pt).")
@click.option("--init-generator", type=click.Path(exists=True, path_type=Path),
              help="Start stage 2 from the generator of this run or gan checkpoint (e.g. a --adv 0 run): "
                   "reconstruction pre-training, then GAN fine-tuning. Weights only; fresh runs only.")
@click.option("--perceptual-weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="torchvision VGG19 ImageNet weights (vgg19-dcbb9e9d.pth); default: the torch hub cache.")
@click.option("--require-perceptual", is_flag=True, help="Fail instead of training without the perceptual loss.")
@click.option("--checkpoint-every", type=int, callback=config_option,
              help="Steps between checkpoints (one is always written at the end).")
@click.option("--val-max-batches", type=int, callback=config_option,
              help="Validation batches per check (train.val_max_batches; none set: the whole val split).")
@click.option("--channels-last", type=click.BOOL, is_flag=False, flag_value=True, metavar="[true|false]",
              callback=config_option,
              help="Weights and activations in NHWC layout (train.channels_last; alone: true).")
@click.option("--require-pretrained", type=click.BOOL, is_flag=False, flag_value=True, metavar="[true|false]",
              callback=config_option,
              help="Fail at the start without the pretrained files the run needs: VGG19, FID's Inception "
                   "(train.require_pretrained; alone: true).")
@click.option("--keep-checkpoints", is_flag=True,
              help="Keep each periodic checkpoint as RUN/checkpoints/{stage}-{step:06d}.pt "
                   "(e.g. for --init-generator).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", callback=assignments_option,
              help="Any config value, e.g. --set gan_optim.betas=[0.5,0.99]. Repeatable.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]),
              help=f"[default: {dataclass_default(RunOptions, 'device')}]")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where its checkpoint stopped.")
@click.option("--verify-data", is_flag=True,
              help="Check every shard's SHA-256 against the dataset's records before training (sizes always are).")
@click.option("--progress/--no-progress", default=None,
              help="A progress bar.  "
                   f"[default: {'--progress' if dataclass_default(RunOptions, 'progress') else '--no-progress'}]")
def train(
    stage: str | None, data_dir: Path, run_dir: Path, config_file: Path | None, preset_name: str | None,
    lr: float | None, lr_milestones: list[float] | None, seg_checkpoint: Path | None, init_generator: Path | None,
    perceptual_weights: Path | None, require_perceptual: bool, assignments: list[tuple[str, Any]], device: str | None,
    resume: bool, verify_data: bool, keep_checkpoints: bool, progress: bool | None, **options: Any,
) -> None:
    """Train M-Seg and/or the FU-Net GAN on maskgen shards.

    Multi-GPU / multi-node: torchrun --nproc_per_node N -m unmask.cli train ...
    """
    from unmask.training.loop import train as run_training
    from unmask.training.options import NonFiniteLossError, RunError
    from unmask.training.runtime import DeviceError, cuda_num_workers, resolve_device

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="%(levelname)s %(message)s")
    saved = run_dir / "config.yaml"
    configured = (config_file or preset_name or lr is not None or lr_milestones or assignments
                  or any(v is not None for v in options.values()))
    # Each value given was checked as click read it; what is left is a config file's problem or one
    # between values (e.g. --gan-maps predicted with --no-map): not usage errors, exit 1.
    own_config = resume and not configured and saved.is_file()
    try:
        if own_config:
            cfg = load_config(saved)  # plain --resume: continue with the run's own config
            resolution = f"resolution: {cfg.train.resolution} px, the run's own ({saved})"
        else:
            cfg = build_config(config_file, preset_name, options, lr, lr_milestones, assignments)
            given = ("--set train.resolution" if any(key == "train.resolution" for key, _ in assignments)
                     else "--resolution" if options["resolution"] is not None
                     else f"--config {config_file}" if config_file and file_gives(config_file, "train.resolution")
                     else None)
            cfg, resolution = with_dataset_resolution(cfg, data_dir, given)
    except (KeyError, ValueError, TypeError) as exc:
        raise click.ClickException(one_line(exc)) from exc
    if rank == 0:
        logging.info(resolution)
    unset = {"stage": stage, "device": device, "progress": progress}  # None: RunOptions' default
    opts = RunOptions(
        data_dir=data_dir, run_dir=run_dir, resume=resume,
        perceptual_weights=perceptual_weights, require_perceptual=require_perceptual,
        seg_checkpoint=seg_checkpoint, init_generator=init_generator, keep_checkpoints=keep_checkpoints,
        verify_data=verify_data, **{k: v for k, v in unset.items() if v is not None},
    )
    # No loader worker count given anywhere: on CUDA one from the cores there are (CPU runs keep the config's).
    workers_unset = not (own_config or config_file or options.get("num_workers") is not None
                         or any(key == "train.num_workers" for key, _ in assignments))
    try:
        if resolve_device(opts.device).type == "cuda" and workers_unset:  # a missing GPU is told before the data check
            cfg = cfg.replace(**{"train.num_workers": cuda_num_workers()})
            if rank == 0:
                logging.info("loader: %d workers per GPU process (from the cores available; --num-workers to choose)",
                             cfg.train.num_workers)
        results = run_training(cfg, opts)
    except (NonFiniteLossError, RunError, FileNotFoundError, DeviceError) as exc:
        raise click.ClickException(str(exc)) from exc
    if rank == 0:
        for name, metrics in results.items():
            click.echo(f"{name}: {json.dumps(metrics, sort_keys=True)}")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for NAME.png (unmasked) and NAME_map.png (every face's predicted map), and results.jsonl "
                   "(one line per face: box, 5 points, map coverage, seconds); a folder's images keep their "
                   "sub-folders (under each folder's name when several are given). It holds no input: inside an "
                   "input folder it is left out of the inputs.")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, path_type=Path),
              help="Run directory (checkpoints/seg.pt + gan.pt), or the gan.pt of a --no-map run.")
@click.option("--aligned/--photos", "aligned", default=None,
              help="Inputs are aligned maskgen crops / photos to detect and align [default: detect, and "
                   "take square images without a detectable face as crops].")
@click.option("--max-faces", type=click.IntRange(1, MAX_FACE_INDEX), default=MAX_FACES, show_default=True,
              help="Faces unmasked per photo, the largest first.")
@click.option("--min-face", type=click.IntRange(1), default=MIN_FACE, show_default=True,
              help="Smallest face unmasked: the detector box's shorter side in photo pixels (smaller faces "
                   "come out blurred rather than unmasked).")
@click.option("--save-crops", is_flag=True,
              help="Also NAME_faceKK.png (the aligned crop the networks saw) and NAME_faceKK_unmasked.png "
                   "(their output) for each face KK.")
@click.option("--save-maps", is_flag=True, help="Also NAME_faceKK_map.png: each face's map on its crop.")
@click.option("--compare", is_flag=True, help="Also NAME_compare.png: input | map overlay (faces boxed) | output.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def predict(inputs: tuple[Path, ...], out_dir: Path, checkpoint: Path, aligned: bool | None, max_faces: int,
            min_face: int, save_crops: bool, save_maps: bool, compare: bool, device: str) -> None:
    """Unmask every face of photos, or aligned crops (files or folders of images), each at its own size.

    Inputs that cannot be used are skipped with the reason; the exit status is 1 only when none is done.
    """
    from unmask.outputs import RESULTS_FILE, PredictError, plan_outputs, shown
    from unmask.predict import Unmasker
    from unmask.predict_files import predict_files
    from unmask.training.runtime import DeviceError, resolve_device

    def report(name: str, reason: str) -> None:
        click.echo(f"skipped {name}: {reason}", err=True)

    try:
        resolve_device(device)
        plan, skipped = plan_outputs(inputs, out_dir)  # refused before anything is written
    except (DeviceError, PredictError) as exc:
        raise click.ClickException(str(exc)) from None
    for name, reason in skipped:
        report(name, reason)
    if not plan:
        raise click.ClickException(f"no images found in {', '.join(shown(i) for i in inputs)}")
    try:
        unmasker = Unmasker.from_checkpoint(checkpoint, device)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        summary = predict_files(unmasker, plan, aligned, on_skip=report, results=out_dir / RESULTS_FILE,
                                max_faces=max_faces, min_face=min_face, save_crops=save_crops,
                                save_maps=save_maps, compare=compare)
    except PredictError as exc:
        raise click.ClickException(str(exc)) from None
    skipped += summary.skipped
    reasons = sorted({r for _, r in skipped})
    click.echo(f"{summary.done} unmasked ({summary.faces} faces) into {shown(out_dir)}, {len(skipped)} skipped"
               + (f" ({'; '.join(reasons)})" if skipped else ""))
    if not summary.done:
        raise click.ClickException("no input could be unmasked")


@main.command()
@click.argument("reconstruction", type=click.Path(exists=True, path_type=Path))
@click.argument("adversarial", type=click.Path(exists=True, path_type=Path))
@click.option("--weight", type=click.FloatRange(0.0, 1.0), required=True,
              help="Share of the adversarial generator: 0 = RECONSTRUCTION's weights, 1 = ADVERSARIAL's.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New run directory (checkpoints/gan.pt, and seg.pt of ADVERSARIAL's run).")
def interpolate(reconstruction: Path, adversarial: Path, weight: float, out_dir: Path) -> None:
    """Blend two stage-2 generators weight by weight (ESRGAN's network interpolation).

    RECONSTRUCTION: a run trained for PSNR (--adv 0); ADVERSARIAL: the GAN fine-tuned from it
    (--init-generator), each a run directory or a gan checkpoint. Weights between 0 and 1 trade
    PSNR for sharpness without training; evaluate the result like any run.
    """
    import filecmp

    from maskgen.files import write_text_atomic
    from unmask.checkpoint import gan_checkpoint_file, interpolate_generators

    try:
        files = [gan_checkpoint_file(p) for p in (reconstruction, adversarial)]
        if filecmp.cmp(*files, shallow=False):  # one file twice, or a copy: any blend is that generator
            raise ValueError(f"{reconstruction} and {adversarial} hold the same checkpoint ({files[0]}): every "
                             "--weight would give it back; give two runs (e.g. --adv 0 and the GAN fine-tuned from it)")
        record = interpolate_generators(reconstruction, adversarial, weight, out_dir)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from exc
    write_text_atomic(out_dir / "run.json", json.dumps({"interpolation": record}, indent=1, sort_keys=True) + "\n")
    click.echo(f"wrote {out_dir}: generator = {1 - weight:g} x {record['reconstruction']} "
               f"+ {weight:g} x {record['adversarial']}")


@main.group("weights")
def weights_group() -> None:
    """Pretrained files (VGG19, FID's Inception, LPIPS) in the torch hub cache: see unmask/weights.py."""


def _weight_names(_ctx: click.Context, _param: click.Parameter, names: tuple[str, ...]) -> tuple[str, ...]:
    from unmask.weights import FILES

    unknown = [n for n in names if n not in FILES]
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; choose from {', '.join(FILES)}")
    return names or tuple(FILES)


@weights_group.command("fetch")
@click.argument("names", nargs=-1, callback=_weight_names)
def weights_fetch(names: tuple[str, ...]) -> None:
    """Download NAMES (default: all) into the cache ahead of time, each verified; one line per file."""
    from unmask import weights

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    failed = 0
    for name in names:
        try:
            click.echo(f"{name}: {weights.ensure(name)}")
        except weights.WeightsError as exc:
            click.echo(f"{name}: {exc}", err=True)
            failed += 1
    if failed:
        raise click.ClickException(f"{failed} of {len(names)} pretrained file(s) unavailable")


@weights_group.command("check")
def weights_check() -> None:
    """List each pretrained file: where it is, whether it is there and verified (exit 1 if any is not)."""
    from unmask import weights

    missing = 0
    for name in weights.FILES:
        found = weights.status(name)
        state = "verified" if found.verified else "MISMATCH" if found.present else "missing"
        missing += not found.verified
        click.echo(f"{name:<14} {state:<9} {found.path}  {found.entry.used_for}")
        if found.problem:
            click.echo(f"{'':<14} {found.problem}")
    if missing:
        raise click.ClickException(f"{missing} of {len(weights.FILES)} pretrained file(s) not in the cache: "
                                   "`unmask weights fetch` downloads them")


@main.command()
@click.option("--checkpoint", required=True, type=click.Path(exists=True, path_type=Path),
              help="Run directory (checkpoints/seg.pt + gan.pt).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on: 127.0.0.1 is this machine only; "
                   "0.0.0.0 opens the page (no login) to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True, help="0: any free port.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def serve(checkpoint: Path, host: str, port: int, device: str) -> None:
    """A local web page: drop a photo, correct each face's predicted map with a brush, re-run stage 2
    and download the result. Needs the serve extra (pip install -e '.[serve]')."""
    try:
        from unmask.serve.app import ANY_ADDRESS, listen
        from unmask.serve.app import serve as serve_page
    except ModuleNotFoundError as exc:
        if exc.name not in ("starlette", "uvicorn"):
            raise
        raise click.ClickException(f"unmask serve needs the serve extra ({exc.name} is not installed): "
                                   "pip install -e '.[serve]'") from None
    from unmask.predict import Unmasker
    from unmask.training.runtime import DeviceError, resolve_device

    try:
        sock = listen(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                                   "(give another --port or --host)") from None
    if host in ANY_ADDRESS:
        click.echo(f"unmask serve: warning: listening on every network interface ({host or 'all'}): the page has "
                   "no login, and anyone who can reach this machine can use it", err=True)
    try:
        resolve_device(device)
        unmasker = Unmasker.from_checkpoint(checkpoint, device)
    except (DeviceError, ValueError, FileNotFoundError) as exc:
        sock.close()
        raise click.ClickException(str(exc)) from None
    bound_host, bound_port = sock.getsockname()[:2]
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    click.echo(f"unmask serve: open http://{shown_host}:{bound_port}/ (Ctrl+C to stop)")
    serve_page(unmasker, sock, host)


from unmask.evaluation.cli import compare, evaluate, report  # noqa: E402  (commands defined there)

main.add_command(evaluate)
main.add_command(compare)
main.add_command(report)

if __name__ == "__main__":  # torchrun -m unmask.cli train ...
    main()
