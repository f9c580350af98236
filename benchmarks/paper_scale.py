"""The paper-width networks at 256 and 512 px on the CPU: one training step's time and peak memory per batch
size, parameters and FLOPs. A table for docs/gpus.md (what a run at paper scale costs before a GPU is lent).

    python benchmarks/paper_scale.py                          # 256 and 512 px, batches 1, 2, 4, 1 thread
    python benchmarks/paper_scale.py --resolutions 256 --batches 1,2 --steps 3 --threads 2
    python benchmarks/paper_scale.py --json paper_scale.json

Each (stage, resolution, batch) runs in a fresh process, so its memory is its own: the peak is the process's
resident-set high-water mark (VmHWM in /proc/self/status, what the kernel counts; no profiler), and "step
memory" is that peak less the resident set just before the networks were built (the interpreter, torch and the
batch): weights, Adam's state, activations and gradients of ``--warmup`` + ``--steps`` real ``train_step``
calls (the training code itself, synthetic uint8 batches, AMP off as on the CPU; stage 2 with its perceptual
term: VGG19, untrained where its weights are absent, the same cost). A process killed for memory
or raising MemoryError is reported as OOM. Step time is the median of ``--steps`` timed steps after ``--warmup``.

Parameters count the trained networks; FLOPs are ``torch.utils.flop_counter.FlopCounterMode`` counts of one
forward pass per image on the meta device (nothing computed; FLOPs = 2 x multiply-accumulates). Stage 2's
forward is the generator's plus the discriminator's on real and fake (and VGG19's on output and target, not
counted here: it is not trained); a training step costs about three forwards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(stage_name: str, res: int, batch: int, steps: int, warmup: int, threads: int) -> dict[str, Any]:
    """One (stage, resolution, batch) in this process: step seconds (median) and memory."""
    import statistics

    import torch
    from bench_unmask import perceptual_for_timing, synthetic_batch

    from unmask.config import preset
    from unmask.training.runtime import Runtime
    from unmask.training.stages import GanStage, SegStage

    torch.set_num_threads(threads)
    cfg = preset("paper").replace(**{"train.resolution": res, "train.batch_size": batch})
    data = synthetic_batch(batch, res)
    perceptual = perceptual_for_timing(cfg, None)[0] if stage_name == "gan" else None
    baseline_kib = _status_kib("VmRSS")
    torch.manual_seed(0)
    rt = Runtime(torch.device("cpu"))
    stage = SegStage(cfg, rt) if stage_name == "seg" else GanStage(cfg, rt, perceptual, {}, None, None)
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        stage.train_step(data, step)
        times.append(time.perf_counter() - start)
    peak_kib = _status_kib("VmHWM")
    return {"step_s": statistics.median(times[warmup:]), "peak_rss_gib": peak_kib / 2**20,
            "step_mem_gib": (peak_kib - baseline_kib) / 2**20, "img_s": batch / statistics.median(times[warmup:])}


def measure_in_child(stage: str, res: int, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", stage, str(res), str(batch), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--threads", str(args.threads)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        return json.loads(result.stdout.strip().splitlines()[-1])
    tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
    if result.returncode in (-9, 137) or "MemoryError" in tail or "DefaultCPUAllocator" in tail:
        return {"oom": True}
    raise RuntimeError(f"{stage} {res} px batch {batch} failed (exit {result.returncode}): {tail}")


def sizes(resolutions: list[int]) -> dict[str, Any]:
    import torch
    from bench_unmask import gflops, params_m

    from unmask.config import preset
    from unmask.models import Generator, MSeg, PatchDiscriminator

    cfg = preset("paper")
    nets = {"mseg": (lambda: MSeg(cfg.mseg), False), "generator": (lambda: Generator(cfg.generator), True),
            "discriminator": (lambda: PatchDiscriminator(cfg.discriminator), False)}
    with torch.device("meta"):
        out: dict[str, Any] = {name: {"params_m": params_m(build())} for name, (build, _) in nets.items()}
    for name, (build, with_map) in nets.items():
        for res in resolutions:
            out[name][f"gflops_{res}"] = gflops(build, res, with_map)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", default="256,512")
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--stages", default="seg,gan")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per measurement (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per measurement")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--one", nargs=3, metavar=("STAGE", "RES", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        stage, res, batch = args.one
        print(json.dumps(measure(stage, int(res), int(batch), args.steps, args.warmup, args.threads)))
        return

    resolutions = [int(r) for r in args.resolutions.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    results: dict[str, Any] = {"networks": sizes(resolutions), "threads": args.threads, "steps": args.steps,
                               "warmup": args.warmup, "load_average": Path("/proc/loadavg").read_text().split()[:3],
                               "steps_measured": []}
    print(f"paper widths, CPU, {args.threads} thread(s), median of {args.steps} step(s) after {args.warmup}; "
          f"load average at start {' '.join(results['load_average'])}\n")
    print("| network | params (M) | " + " | ".join(f"GFLOPs/img {r} px (forward)" for r in resolutions) + " |")
    print("|---|---|" + "---|" * len(resolutions))
    for name, row in results["networks"].items():
        print(f"| {name} | {row['params_m']:.2f} | "
              + " | ".join(f"{row[f'gflops_{r}']:.1f}" for r in resolutions) + " |")
    print("\n| stage | res | batch | step (s) | img/s | peak RSS (GiB) | step memory (GiB) |"
          "\n|---|---|---|---|---|---|---|")
    for stage in args.stages.split(","):
        for res in resolutions:
            oom = False
            for batch in batches:
                row: dict[str, Any] = {"stage": stage, "resolution": res, "batch": batch}
                row.update({"oom": True, "note": "skipped: a smaller batch ran out of memory"} if oom else
                           measure_in_child(stage, res, batch, args))
                oom = bool(row.get("oom"))
                results["steps_measured"].append(row)
                if oom:
                    print(f"| {stage} | {res} | {batch} | OOM | | | |", flush=True)
                else:
                    print(f"| {stage} | {res} | {batch} | {row['step_s']:.2f} | {row['img_s']:.3g} | "
                          f"{row['peak_rss_gib']:.2f} | {row['step_mem_gib']:.2f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
