"""Cost of the GANMasker networks: size, FLOPs, training and inference speed, loader speed.

    python benchmarks/bench_unmask.py                      # CPU, paper widths, a few minutes on 2 cores
    python benchmarks/bench_unmask.py --data DATASET_DIR   # also loader images/s (and per core) at 256 and 512 px
    python benchmarks/bench_unmask.py --quick              # 128 px only, one timed run each
    python benchmarks/bench_unmask.py --train-options      # channels_last / torch.compile at the pipeline's size

Sections:
* parameters and FLOPs (FlopCounterMode on the meta device, so nothing is computed; FLOPs = 2 x
  multiply-accumulates) of M-Seg, the generator and the discriminator at 256 and 512 px;
* CPU: training images/s of one real ``train_step`` per stage (small batch) and inference ms/image
  (M-Seg map + generator, batch 1) at 128 and 256 px, median of ``--repeats`` runs;
* GPU (when CUDA is available): the same with and without mixed precision at 256 and 512 px, and
  peak memory;
* loader images/s and images/s per core at 256 and 512 px (``--data``; ``--loader-workers 0`` is one core):
  the decode rate that sets how many workers a GPU needs (docs/gpus.md).

The perceptual term is timed with the real VGG19 weights when they are found, otherwise with an
untrained VGG19 of the same shape (its compute cost is the same; its values are never used).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unmask.config import PRESETS, Config, preset  # noqa: E402
from unmask.data import TrainLoader  # noqa: E402
from unmask.losses import PerceptualLoss  # noqa: E402
from unmask.models import Generator, MSeg, PatchDiscriminator  # noqa: E402
from unmask.models.vgg import VGG19Features, find_vgg19_weights, load_vgg19_features  # noqa: E402
from unmask.tensors import images_to_model  # noqa: E402
from unmask.training.runtime import Runtime  # noqa: E402
from unmask.training.stages import GanStage, SegStage  # noqa: E402


def params_m(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def gflops(build: Callable[[], torch.nn.Module], res: int, with_map: bool) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build()
        image, mask_map = torch.zeros(1, 3, res, res), torch.zeros(1, 1, res, res)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(image, mask_map) if with_map else model(image)
    return counter.get_total_flops() / 1e9


def synthetic_batch(batch_size: int, res: int) -> dict[str, Any]:
    """A loader-format batch (uint8 images, {0, 1} map), as ``unmask.data`` yields."""
    g = torch.Generator().manual_seed(0)
    mask_map = torch.zeros(batch_size, 1, res, res, dtype=torch.uint8)
    mask_map[:, :, res // 2 : res * 7 // 8, res // 5 : res * 4 // 5] = 1
    return {
        "masked": torch.randint(0, 256, (batch_size, 3, res, res), dtype=torch.uint8, generator=g),
        "unmasked": torch.randint(0, 256, (batch_size, 3, res, res), dtype=torch.uint8, generator=g),
        "map": mask_map,
        "key": [f"b{i}" for i in range(batch_size)],
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def perceptual_for_timing(cfg: Config, weights: str | None) -> tuple[PerceptualLoss, str]:
    path, _ = find_vgg19_weights(weights)
    vgg = load_vgg19_features(path) if path else VGG19Features().eval().requires_grad_(False)
    note = "VGG19 ImageNet weights" if path else "untrained VGG19 (compute cost only)"
    return PerceptualLoss(vgg, cfg.loss.vgg_layers, cfg.loss.vgg_weights), note


def bench_speed(cfg: Config, rt: Runtime, res: int, batch: int, repeats: int, warmup: int,
                perceptual: PerceptualLoss) -> dict[str, float]:
    cfg = cfg.replace(**{"train.resolution": res, "train.batch_size": batch})
    data = synthetic_batch(batch, res)
    out: dict[str, float] = {}
    torch.manual_seed(0)
    seg = SegStage(cfg, rt)
    out["seg_train_img_s"] = batch / median_seconds(lambda: seg.train_step(data, 0), repeats, warmup, rt.device)
    gan = GanStage(cfg, rt, perceptual, {}, None, None)
    out["gan_train_img_s"] = batch / median_seconds(lambda: gan.train_step(data, 0), repeats, warmup, rt.device)

    mseg, generator = seg.networks["mseg"].eval(), gan.networks["generator"].eval()
    one = {k: (v[:1].to(rt.device) if torch.is_tensor(v) else v[:1]) for k, v in data.items()}
    masked = images_to_model(one["masked"])

    @torch.no_grad()
    def infer() -> torch.Tensor:
        with rt.autocast():
            return generator(masked, mseg.predict_map(masked))

    out["infer_ms_img"] = 1000 * median_seconds(infer, repeats, warmup, rt.device)
    if rt.device.type == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated(rt.device) / 2**30
    return out


def bench_loader(data_dir: str, res: int, batch: int, workers: int, batches: int) -> tuple[float, int]:
    """Images/s within one epoch, timed from the first batch (worker start-up and the first fill
    of the shuffle buffers are once-per-epoch costs, not throughput). Returns (img/s, batches)."""
    loader = TrainLoader(data_dir, resolution=res, batch_size=batch, seed=0, num_workers=workers)
    batches_left = loader.epoch(0)
    next(batches_left)
    n = timed = 0
    start = time.perf_counter()
    for b in itertools.islice(batches_left, batches):
        n += len(b["key"])
        timed += 1
    return n / max(time.perf_counter() - start, 1e-9), timed


def pipeline_config() -> tuple[Config, int, int]:
    """The default pipeline's training config (params.yaml: preset, widths), resolution and batch."""
    import yaml

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    train = params["train"]
    cfg = preset(train["preset"]).replace(**{
        "mseg.base_width": train["mseg_width"], "generator.base_width": train["generator_width"],
        "discriminator.base_width": train["discriminator_width"]})
    return cfg, params["data"]["resolution"], train["batch_size"]  # training takes the dataset's crop size


TRAIN_OPTIONS = {"default": {}, "channels_last": {"train.channels_last": True}, "compile": {"train.compile": True}}


def bench_train_options(runs: int, steps: int, warmup: int, names: list[str]) -> dict[str, dict[str, float]]:
    """Training step seconds of each stage with train.channels_last / train.compile, at the default pipeline's
    size, on the CPU: per run the median of ``steps`` steps after ``warmup`` (compile: at least 2, the first
    compiles); the variants interleaved run by run, so a change in the machine's load touches all alike.
    Returns variant -> {stage: median over runs}."""
    from unmask.training.runtime import compile_problem

    cfg, res, batch = pipeline_config()
    device = torch.device("cpu")
    variants = {name: TRAIN_OPTIONS[name] for name in ["default", *names] if name in TRAIN_OPTIONS}
    problem = compile_problem(device)
    if problem and "compile" in variants:
        print(f"torch.compile cannot run here: {problem}")
        del variants["compile"]
    data = synthetic_batch(batch, res)
    rt = Runtime(device)
    seconds: dict[str, dict[str, list[float]]] = {v: {"seg": [], "gan": []} for v in variants}
    for run in range(runs):
        for name, overrides in variants.items():
            run_cfg = cfg.replace(**{"train.resolution": res, "train.batch_size": batch, **overrides})
            for stage_name in ("seg", "gan"):
                torch.manual_seed(0)
                stage = SegStage(run_cfg, rt) if stage_name == "seg" else GanStage(run_cfg, rt, None, {}, None, None)
                step = itertools.count()
                first = time.perf_counter()
                took = median_seconds(lambda stage=stage, step=step: stage.train_step(data, next(step)), steps,
                                      max(warmup, 2 if name == "compile" else warmup), device)
                seconds[name][stage_name].append(took)
                print(f"  run {run + 1}/{runs} {name:13s} {stage_name}: {took * 1000:8.1f} ms/step "
                      f"(measurement {time.perf_counter() - first:.0f} s)", flush=True)
    return {name: {stage: statistics.median(v) for stage, v in by_stage.items()} for name, by_stage in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper", help="network widths (default: paper)")
    parser.add_argument("--cpu-resolutions", default="128,256")
    parser.add_argument("--gpu-resolutions", default="256,512")
    parser.add_argument("--cpu-batch", type=int, default=2)
    parser.add_argument("--gpu-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="128 px on CPU, one timed run, no 512 FLOPs")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU speed section")
    parser.add_argument("--data", help="dataset directory: also measure loader images/s")
    parser.add_argument("--loader-workers", default="0,2")
    parser.add_argument("--loader-resolutions", "--loader-resolution", default="256,512",
                        help="comma-separated; shards built at another size are resized as in training")
    parser.add_argument("--loader-batches", type=int, default=20)
    parser.add_argument("--perceptual-weights", help="VGG19 weights (default: torch hub cache)")
    parser.add_argument("--train-options", action="store_true",
                        help="only: training step time with train.channels_last / train.compile at the default "
                             "pipeline's size (params.yaml), CPU")
    parser.add_argument("--option-runs", type=int, default=3, help="runs per variant (median) for --train-options")
    parser.add_argument("--option-variants", default="channels_last,compile",
                        help=f"measured against the default, of {', '.join(list(TRAIN_OPTIONS)[1:])}")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.cpu_resolutions, args.repeats, args.warmup = "128", 1, 1

    if args.train_options:
        cfg, res, batch = pipeline_config()
        print(f"== train.channels_last / train.compile, CPU ({torch.get_num_threads()} threads), default pipeline: "
              f"{res}px, batch {batch}, widths {cfg.mseg.base_width}/{cfg.generator.base_width}/"
              f"{cfg.discriminator.base_width}, no perceptual term; median of {args.option_runs} runs of "
              f"{args.repeats} steps ==")
        options = bench_train_options(args.option_runs, args.repeats, args.warmup, args.option_variants.split(","))
        print("\n| variant | seg ms/step | gan ms/step | vs default (seg / gan) |\n|---|---|---|---|")
        for name, row in options.items():
            base = options["default"]
            print(f"| {name} | {row['seg'] * 1000:.1f} | {row['gan'] * 1000:.1f} | "
                  f"{row['seg'] / base['seg']:.2f}x / {row['gan'] / base['gan']:.2f}x |")
        if args.json:
            Path(args.json).write_text(json.dumps({"train_options_s": options, "threads": torch.get_num_threads()},
                                                  indent=2) + "\n")
        return

    cfg = preset(args.preset)
    results: dict[str, Any] = {"preset": args.preset, "torch": torch.__version__, "threads": torch.get_num_threads()}

    print(f"== size and FLOPs ({args.preset} widths, per image, forward) ==")
    nets = {
        "mseg": (lambda: MSeg(cfg.mseg), False),
        "generator": (lambda: Generator(cfg.generator), True),
        "discriminator": (lambda: PatchDiscriminator(cfg.discriminator), False),
    }
    for name, (build, with_map) in nets.items():
        results[f"{name}_params_m"] = params_m(build())
        line = f"{name:14s} {results[f'{name}_params_m']:7.2f} M params"
        for res in (256,) if args.quick else (256, 512):
            results[f"{name}_gflops_{res}"] = gflops(build, res, with_map and cfg.generator.use_map)
            line += f"   {res}px {results[f'{name}_gflops_{res}']:8.2f} GFLOPs"
        print(line)

    perceptual, note = perceptual_for_timing(cfg, args.perceptual_weights)
    results["perceptual_timing"] = note
    if not args.no_cpu:
        print(f"\n== CPU ({torch.get_num_threads()} threads), batch {args.cpu_batch}, median of {args.repeats}; "
              f"perceptual: {note} ==")
        rt = Runtime(torch.device("cpu"))
        for res in (int(r) for r in args.cpu_resolutions.split(",")):
            r = bench_speed(cfg, rt, res, args.cpu_batch, args.repeats, args.warmup, perceptual)
            results.update({f"cpu_{k}_{res}": v for k, v in r.items()})
            print(f"{res:4d}px  train seg {r['seg_train_img_s']:7.2f} img/s"
                  f"   train gan {r['gan_train_img_s']:7.2f} img/s   inference {r['infer_ms_img']:8.1f} ms/img")

    if torch.cuda.is_available():
        device = torch.device("cuda")
        print(f"\n== GPU {torch.cuda.get_device_name(device)}, batch {args.gpu_batch}, median of {args.repeats} ==")
        bf16 = torch.cuda.is_bf16_supported()
        for res in (int(r) for r in args.gpu_resolutions.split(",")):
            for label, dtype in (("fp32", None),
                                 ("bf16" if bf16 else "fp16", torch.bfloat16 if bf16 else torch.float16)):
                torch.cuda.reset_peak_memory_stats(device)
                rt = Runtime(device, amp_dtype=dtype)
                r = bench_speed(cfg, rt, res, args.gpu_batch, args.repeats, max(args.warmup, 2), perceptual)
                results.update({f"gpu_{label}_{k}_{res}": v for k, v in r.items()})
                print(f"{res:4d}px {label}  train seg {r['seg_train_img_s']:8.1f} img/s   train gan "
                      f"{r['gan_train_img_s']:8.1f} img/s   inference {r['infer_ms_img']:7.2f} ms/img   "
                      f"peak {r['peak_mem_gib']:.2f} GiB")
    else:
        print("\n(no CUDA device: GPU section skipped)")

    if args.data:
        # Workers 0 decodes in this process: the rate of one core. N workers use N cores (the main process
        # only collates): per core is the rate over N, as long as the machine has N free cores.
        print(f"\n== loader {args.data}, batch 32 (a sample: two JPEG decodes, a PNG, resize, flip) ==")
        for res in (int(r) for r in args.loader_resolutions.split(",")):
            for workers in (int(w) for w in args.loader_workers.split(",")):
                speed, timed = bench_loader(args.data, res, 32, workers, args.loader_batches)
                results[f"loader_img_s_{res}_workers{workers}"] = speed
                results[f"loader_img_s_per_core_{res}_workers{workers}"] = speed / max(1, workers)
                print(f"{res:4d}px workers {workers}: {speed:8.1f} img/s, {speed / max(1, workers):7.1f} img/s per core"
                      f"  ({timed} batches)")

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
