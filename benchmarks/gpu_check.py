"""Is this GPU machine ready for the paper runs? One command, about 10 minutes on a GPU; one JSON, one table.

    python benchmarks/gpu_check.py --faces PHOTOS_DIR          # builds a small dataset from a few face photos
    python benchmarks/gpu_check.py --data DATASET_DIR          # or uses a maskgen dataset
    python benchmarks/gpu_check.py --faces PHOTOS_DIR --tiny   # the same checks at tiny sizes (automatic on a CPU)

At 256 and 512 px with the paper's widths (tiny: 64 px, the tiny preset), on synthetic batches already on the
device (the GPU's own rate, no loader):
* training images/s per GPU of stage 1 (M-Seg) and stage 2 (generator + discriminator, perceptual term
  included) with AMP off / bf16 / fp16, and inference ms per image (M-Seg map + generator, batch 1);
* peak memory of a stage-2 step at batch 8 / 16 / 32 (an out-of-memory is recorded, not fatal);
* DDP over all visible GPUs (tiny: two gloo processes on the CPU): steps/s and scaling efficiency (the N-process
  images/s over N times one process's);
* loader images/s with 4 / 8 / 16 workers (tiny: 0 / 1 / 2) over the dataset's train shards, against what
  stage 2 consumes at the fastest precision: "feeds" says whether the loader keeps up;
* a training smoke run of both stages through ``unmask train``'s own code for about --smoke-seconds (2 min;
  tiny: 20 s): the loss must fall (M-Seg's loss and the generator's reconstruction loss, mean of the first
  quarter of the steps against the last), or the command exits 1.

Exit status: 0 all ran and the smoke run learned; 1 it did not, or bad input (one line); 2 bad options.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_unmask import bench_loader, bench_speed, median_seconds, perceptual_for_timing, synthetic_batch  # noqa: E402

from unmask.config import preset  # noqa: E402
from unmask.training.runtime import Runtime, autocast_dtype  # noqa: E402

AMP_MODES = ("off", "bf16", "fp16")


class CheckError(RuntimeError):
    """Bad input (no photos, no train shards): one line, exit 1."""


def sizes(tiny: bool) -> dict[str, Any]:
    """What is measured at which size. Tiny: seconds on a CPU core, every path still taken."""
    if tiny:
        return {"preset": "tiny", "resolutions": (64,), "batch": 2, "memory_batches": (1, 2, 4), "repeats": 2,
                "warmup": 1, "loader_workers": (0, 1, 2), "loader_batches": 4, "smoke_seconds": 20.0,
                "smoke_batch": 2, "build_res": 128, "build_pairs": 24, "ddp_steps": 3}
    return {"preset": "paper", "resolutions": (256, 512), "batch": 8, "memory_batches": (8, 16, 32), "repeats": 5,
            "warmup": 2, "loader_workers": (4, 8, 16), "loader_batches": 30, "smoke_seconds": 120.0,
            "smoke_batch": 8, "build_res": 512, "build_pairs": 600, "ddp_steps": 10}


def environment(device: torch.device) -> dict[str, Any]:
    env = {"torch": torch.__version__, "python": platform.python_version(), "host": socket.gethostname(),
           "device": str(device), "cpu_cores": len(os.sched_getaffinity(0)), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpus=torch.cuda.device_count(), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   bf16=torch.cuda.is_bf16_supported(), cuda=torch.version.cuda)
    return env


def precisions(device: torch.device) -> dict[str, torch.dtype | None | str]:
    """AMP mode -> autocast dtype, or the reason it cannot run here."""
    out: dict[str, torch.dtype | None | str] = {}
    for mode in AMP_MODES:
        if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            out[mode] = "this GPU has no bf16"
            continue
        try:
            out[mode] = autocast_dtype(mode, device)
        except ValueError as exc:
            out[mode] = str(exc)
    return out


# --- the dataset -------------------------------------------------------------------------------------------

def datasets(args: argparse.Namespace, work: Path, size: dict[str, Any]) -> dict[int, Path]:
    """The dataset for each resolution: --data for all, or one built with maskgen from the photos in --faces at
    that resolution (at least 128 px, maskgen's smallest; the loader resizes), landmarks found once."""
    from maskgen.reader import list_shards

    if args.data:
        found = {res: Path(args.data) for res in size["resolutions"]}
    else:
        from maskgen.build import MAX_PAIRS_PER_SOURCE, BuildConfig, BuildError, build
        from maskgen.source import discover

        try:
            photos = len(discover(str(args.faces)).images)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise CheckError(f"--faces {args.faces}: {exc}") from None
        if not photos:
            raise CheckError(f"--faces {args.faces}: no images found")
        pairs = min(args.pairs or size["build_pairs"], MAX_PAIRS_PER_SOURCE * photos)
        found, landmarks = {}, None
        for res in sorted(size["resolutions"], reverse=True):
            build_res = max(128, res)
            out = work / f"dataset{build_res}"
            print(f"building {pairs} triplets at {build_res} px from {photos} photos in {args.faces} (maskgen) ...",
                  flush=True)
            config = BuildConfig(source=str(args.faces), out=str(out), res=build_res, pairs=pairs,
                                 shard_size=max(4, pairs // 24), workers=-1, progress=False,
                                 landmarks=str(landmarks) if landmarks else None)
            try:
                result = build(config)
            except (BuildError, ValueError, FileNotFoundError) as exc:
                raise CheckError(f"--faces {args.faces}: {exc}") from None
            if not result.samples:
                raise CheckError(f"--faces {args.faces}: no usable face among the photos (see {out}/failures.csv)")
            found[res], landmarks = out, out / "landmarks.parquet"
    for data in found.values():
        if not list_shards(data, "train"):
            raise CheckError(f"--data {data}: no train shards (train-*.tar)")
    return found


# --- measurements ------------------------------------------------------------------------------------------

def peak_memory_gib(device: torch.device) -> float:
    """The device's peak allocation since the last reset; on the CPU the process's peak RSS (ru_maxrss: a
    high-water mark over the whole process, so a batch's figure includes every earlier one's)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def training_speed(cfg, device, amps, size, perceptual) -> list[dict[str, Any]]:
    rows = []
    for res in size["resolutions"]:
        for mode, dtype in amps.items():
            row: dict[str, Any] = {"resolution": res, "amp": mode, "batch": size["batch"]}
            if isinstance(dtype, str):
                row["skipped"] = dtype
            else:
                free(device)
                try:
                    row.update(bench_speed(cfg, Runtime(device, amp_dtype=dtype), res, size["batch"], size["repeats"],
                                           size["warmup"], perceptual))
                except RuntimeError as exc:
                    if not is_oom(exc):
                        raise
                    row["skipped"] = "out of memory"
            rows.append(row)
            print(f"  {res} px amp {mode:4s}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                            for k, v in row.items() if k not in ("resolution", "amp")),
                  flush=True)
    return rows


def peak_memory(cfg, device, dtype, size, perceptual) -> list[dict[str, Any]]:
    """Peak memory of stage-2 steps (the larger stage) per batch size, at the run's precision."""
    from unmask.training.stages import GanStage

    rows = []
    for res in size["resolutions"]:
        for batch in size["memory_batches"]:
            row: dict[str, Any] = {"resolution": res, "batch": batch}
            free(device)
            stage = None
            try:
                torch.manual_seed(0)
                stage = GanStage(cfg.replace(**{"train.resolution": res, "train.batch_size": batch}),
                                 Runtime(device, amp_dtype=dtype), perceptual, {}, None, None)
                data = synthetic_batch(batch, res)
                for step in range(2):  # the second step holds Adam's state too
                    stage.train_step(data, step)
                row["peak_gib"] = peak_memory_gib(device)
            except RuntimeError as exc:
                if not is_oom(exc):
                    raise
                row["peak_gib"], row["oom"] = None, True
            del stage
            rows.append(row)
            print(f"  {res} px batch {batch:3d}: "
                  + ("out of memory" if row.get("oom") else f"{row['peak_gib']:.2f} GiB"), flush=True)
    return rows


def _ddp_worker(rank: int, world: int, port: int, cfg_dict: dict, res: int, batch: int, steps: int, amp: str,
                with_perceptual: bool, out_dir: str) -> None:
    import torch.distributed as dist

    from unmask.config import Config
    from unmask.training.stages import GanStage

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(1)  # two processes, each one core
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        rt = Runtime(device, rank, world, rank, autocast_dtype(amp, device))
        cfg = Config.from_dict(cfg_dict)
        perceptual = perceptual_for_timing(cfg, None)[0] if with_perceptual else None  # as timed in one process
        stage = GanStage(cfg, rt, perceptual, {}, None, None)
        data = synthetic_batch(batch, res)
        stage.train_step(data, 0)  # warm-up: DDP's buckets, cuDNN's choices
        seconds = median_seconds(lambda: (stage.train_step(data, 1), dist.barrier()), steps, 1, device)
        if rank == 0:
            Path(out_dir, "ddp.json").write_text(json.dumps({"step_s": seconds}))
    finally:
        dist.destroy_process_group()


def ddp_scaling(cfg, device, amp, size, single_img_s: float | None, with_perceptual: bool) -> dict[str, Any]:
    """DDP over every visible GPU (tiny CPU: two gloo processes), stage 2 at the first resolution."""
    import torch.multiprocessing as mp

    world = torch.cuda.device_count() if device.type == "cuda" else 2
    res, batch = size["resolutions"][0], size["batch"]
    result: dict[str, Any] = {"processes": world, "resolution": res, "batch_per_process": batch, "amp": amp,
                              "backend": "nccl" if device.type == "cuda" else "gloo"}
    if world < 2:
        result["skipped"] = "one GPU: nothing to scale over"
        return result
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        cfg_dict = cfg.replace(**{"train.resolution": res, "train.batch_size": batch}).to_dict()
        mp.spawn(_ddp_worker, args=(world, port, cfg_dict, res, batch, size["ddp_steps"], amp, with_perceptual, tmp),
                 nprocs=world)
        step_s = json.loads(Path(tmp, "ddp.json").read_text())["step_s"]
    result.update(steps_s=1 / step_s, img_s=world * batch / step_s)
    if single_img_s:
        result["single_process_img_s"] = single_img_s
        result["scaling_efficiency"] = result["img_s"] / (world * single_img_s)
    return result


def loader_speed(data: dict[int, Path], size: dict[str, Any], consumption: dict[int, float]) -> list[dict[str, Any]]:
    rows = []
    for res in size["resolutions"]:
        for workers in size["loader_workers"]:
            img_s, batches = bench_loader(str(data[res]), res, size["batch"], workers, size["loader_batches"])
            row = {"resolution": res, "workers": workers, "img_s": img_s, "batches": batches,
                   "gpu_consumes_img_s": consumption.get(res)}
            row["feeds"] = None if row["gpu_consumes_img_s"] is None else img_s >= row["gpu_consumes_img_s"]
            rows.append(row)
            print(f"  {res} px {workers:2d} workers: {img_s:8.1f} img/s", flush=True)
    return rows


def _quarter_means(values: list[float]) -> tuple[float, float]:
    quarter = max(1, len(values) // 4)
    return statistics.fmean(values[:quarter]), statistics.fmean(values[-quarter:])


def smoke_run(cfg, data: Path, work: Path, device: torch.device, amp: str, size, speed_rows) -> dict[str, Any]:
    """Both stages through ``unmask train``'s code, as many steps as fit in about --smoke-seconds at the measured
    rates; the loss must fall."""
    from unmask.training.loop import train
    from unmask.training.options import RunOptions

    res, batch = size["resolutions"][0], size["smoke_batch"]
    rates = next((r for r in speed_rows if r["resolution"] == res and r["amp"] == amp and "gan_train_img_s" in r), None)
    # each stage half the time; at least 8 steps, so a quarter of them is 2
    per_stage = size["smoke_seconds"] / 2
    steps = {name: max(8, int(per_stage * rates[f"{name}_train_img_s"] / batch) if rates else 8)
             for name in ("seg", "gan")}
    result: dict[str, Any] = {"resolution": res, "batch": batch, "amp": amp, "steps": steps}
    run = work / "smoke_run"
    start = time.perf_counter()
    for name in ("seg", "gan"):  # one stage each: each its own number of steps
        stage_cfg = cfg.replace(**{"train.resolution": res, "train.batch_size": batch, "train.steps": steps[name],
                                   "train.amp": amp, "train.num_workers": 2, "train.val_max_batches": 2,
                                   "train.checkpoint_every": 10**6})
        train(stage_cfg, RunOptions(data_dir=data, run_dir=run, stage=name, device=str(device.type), progress=False))
    result["seconds"] = time.perf_counter() - start
    for name, column in (("seg", "loss"), ("gan", "rec")):
        rows = (run / "logs" / f"{name}_train.tsv").read_text().splitlines()
        index = rows[0].split("\t").index(column)
        first, last = _quarter_means([float(r.split("\t")[index]) for r in rows[1:]])
        result[f"{name}_{column}_first_quarter"], result[f"{name}_{column}_last_quarter"] = first, last
    result["loss_fell"] = all(result[f"{n}_{c}_last_quarter"] < result[f"{n}_{c}_first_quarter"]
                              for n, c in (("seg", "loss"), ("gan", "rec")))
    return result


# --- the report --------------------------------------------------------------------------------------------

def table(results: dict[str, Any]) -> str:
    def fmt(value: Any, spec: str = ".1f") -> str:
        return "-" if value is None else format(value, spec) if isinstance(value, float) else str(value)

    env = results["environment"]
    lines = [f"gpu_check: {env.get('gpu', 'CPU')} x{env.get('gpus', 1)}, torch {env['torch']}, "
             f"{env['cpu_cores']} cores, sizes {results['mode']} ({results['preset']} widths)", "",
             "| res | amp | seg train img/s | gan train img/s | inference ms/img |", "|---|---|---|---|---|"]
    for r in results["training"]:
        if "skipped" in r:
            lines.append(f"| {r['resolution']} | {r['amp']} | - | - | - ({r['skipped']}) |")
        else:
            lines.append(f"| {r['resolution']} | {r['amp']} | {fmt(r['seg_train_img_s'])} "
                         f"| {fmt(r['gan_train_img_s'])} | {fmt(r['infer_ms_img'], '.2f')} |")
    lines += ["", f"peak memory, stage-2 step, amp {results['memory_amp']}: "
              + "; ".join(f"{r['resolution']} px b{r['batch']} "
                          + ("OOM" if r.get("oom") else f"{r['peak_gib']:.2f} GiB") for r in results["memory"])]
    d = results["ddp"]
    lines.append("DDP: " + (d["skipped"] if "skipped" in d else
                            f"{d['processes']} x {d['backend']}, {d['resolution']} px, "
                            f"batch {d['batch_per_process']}/process: "
                            f"{d['steps_s']:.2f} steps/s, {d['img_s']:.1f} img/s, scaling efficiency "
                            f"{fmt(d.get('scaling_efficiency'), '.2f')}"))
    lines.append("loader: " + "; ".join(f"{r['resolution']} px {r['workers']} workers {r['img_s']:.0f} img/s"
                                        + ("" if r["feeds"] is None else " (feeds)" if r["feeds"]
                                           else " (starves the GPU)")
                                        for r in results["loader"]))
    s = results["smoke"]
    lines.append(f"smoke run ({s['seconds']:.0f} s, {s['steps']['seg']} + {s['steps']['gan']} steps): "
                 f"seg loss {s['seg_loss_first_quarter']:.4f} -> {s['seg_loss_last_quarter']:.4f}, "
                 f"gan rec {s['gan_rec_first_quarter']:.4f} -> {s['gan_rec_last_quarter']:.4f}: "
                 + ("falls, OK" if s["loss_fell"] else "DOES NOT FALL"))
    return "\n".join(lines)


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    tiny = args.tiny or device.type != "cuda"
    size = sizes(tiny)
    if args.smoke_seconds is not None:
        size["smoke_seconds"] = args.smoke_seconds
    if device.type == "cpu":
        torch.set_num_threads(1)  # steady timings; the loader and DDP measure their own processes
    if tiny and not args.tiny:
        print("no CUDA device: tiny sizes (64 px, tiny widths) - every path, no GPU numbers", flush=True)
    cfg = preset(size["preset"])
    amps = precisions(device)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    data = datasets(args, work, size)
    best = next(m for m in ("bf16", "fp16", "off") if not isinstance(amps[m], str))
    if device.type == "cpu":
        best = "off"  # the CPU's default run
    results: dict[str, Any] = {"mode": "tiny" if tiny else "paper", "preset": size["preset"],
                               "environment": environment(device), "datasets": {r: str(p) for r, p in data.items()},
                               "precisions": {m: (v if isinstance(v, str) else str(v)) for m, v in amps.items()}}
    # Tiny: no perceptual term (VGG19 at full width would be most of a tiny step); the smoke run uses the
    # hub cache's weights when they are there, as `unmask train` does.
    perceptual, note = (None, "none (tiny sizes)") if tiny else perceptual_for_timing(cfg, None)
    results["perceptual_timing"] = note
    print("training and inference (synthetic batches on the device):", flush=True)
    results["training"] = training_speed(cfg, device, amps, size, perceptual)
    results["memory_amp"] = best
    print(f"peak memory (amp {best}):", flush=True)
    results["memory"] = peak_memory(cfg, device, amps[best], size, perceptual)
    consumption = {r["resolution"]: r["gan_train_img_s"] for r in results["training"]
                   if r["amp"] == best and "gan_train_img_s" in r}
    print("DDP:", flush=True)
    results["ddp"] = ddp_scaling(cfg, device, best, size, consumption.get(size["resolutions"][0]),
                                 perceptual is not None)
    print(f"loader ({data}):", flush=True)
    results["loader"] = loader_speed(data, size, consumption)
    print(f"smoke run (about {size['smoke_seconds']:.0f} s):", flush=True)
    first = size["resolutions"][0]
    results["smoke"] = smoke_run(cfg, data[first], work, device, best, size, results["training"])
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--faces", type=Path, help="a folder of face photos: a small dataset is built from them")
    source.add_argument("--data", type=Path, help="a maskgen dataset (train shards) to use instead")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON (default: gpu_check.json)")
    parser.add_argument("--work", type=Path,
                        help="where the dataset and the smoke run go (default: a temporary folder)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes even on a GPU (automatic without one)")
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto", help="cpu: ignore the GPU (tiny sizes)")
    parser.add_argument("--pairs", type=int, help="triplets to build from --faces (default 600; tiny 24)")
    parser.add_argument("--smoke-seconds", type=float, help="length of the smoke run (default 120; tiny 20)")
    parser.add_argument("--debug", action="store_true", help="a traceback instead of one line on failure")
    args = parser.parse_args()
    if args.faces is not None and not args.faces.is_dir():
        parser.error(f"--faces {args.faces}: not a folder")
    if args.data is not None and not args.data.is_dir():
        parser.error(f"--data {args.data}: not a folder")
    try:
        results = run_check(args)
    except CheckError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one line for the person running it; --debug for the rest
        if args.debug:
            traceback.print_exc()
        print(f"gpu_check: failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
              "(--debug for the traceback)", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print("\n" + table(results) + f"\n\nwritten: {args.out}")
    return 0 if results["smoke"]["loss_fell"] else 1


if __name__ == "__main__":
    sys.exit(main())
