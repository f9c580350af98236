"""maskgen throughput: triplets/s, CPU ms per triplet, peak memory and failure rate.

Builds the shared CelebA sample (or --source) at each resolution with all cores, several times, each run
in a fresh process so CPU time and memory are measured whole, and prints medians. "cold" runs detect
landmarks; "warm" runs take them from the cold run's landmarks.parquet (maskgen build --landmarks), as a
rebuild at another resolution or seed does.

    python benchmarks/bench_maskgen.py [--source DIR] [--resolution 256 512] [--runs 3] [--limit N] [--stages N]
                                       [--rows]

``--rows`` adds "rows" runs: the source gets a ``list_landmarks_align_celeba.txt`` in CelebA's format
(the 5 points of the cold run's landmarks, rounded to whole pixels as CelebA's are), so landmarks
come from rows, as they do for a user of the full CelebA release, not from detection.

``--stages N`` first times each step of the data flow on N images in this process, one core (CPU ms
per image: read, landmarks, align, mask, encode), which shows where a build's time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "celeba-sample"


def subset(source: Path, limit: int | None, where: Path) -> Path:
    if not limit:
        return source
    images = sorted((source / "img_align_celeba").glob("*.jpg"))[:limit]
    (where / "img_align_celeba").mkdir(parents=True)
    for p in images:
        (where / "img_align_celeba" / p.name).symlink_to(p)
    ident = source / "identity_CelebA.txt"
    if ident.exists():
        names = {p.name for p in images}
        rows = [r for r in ident.read_text().splitlines() if r.split()[:1] and r.split()[0] in names]
        (where / "identity_CelebA.txt").write_text("\n".join(rows) + "\n")
    return where


def write_landmark_rows(source: Path, landmarks: Path, where: Path) -> Path:
    """A copy of ``source`` (links) with CelebA's aligned landmark file made from a build's landmarks."""
    import numpy as np
    import pandas as pd

    from maskgen.face_points import five_points

    where.mkdir(parents=True)
    for entry in source.iterdir():
        (where / entry.name).symlink_to(entry.resolve())
    table = pd.read_parquet(landmarks)
    rows = []
    for rel, ok, points in zip(table["source"], table["ok"], table["points"], strict=True):
        if ok:
            pts5 = np.rint(five_points(np.asarray(list(points), dtype=np.float64).reshape(68, 2))).astype(int)
            rows.append(Path(rel).name + " " + " ".join(str(v) for v in pts5.ravel()))
    header = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
    (where / "list_landmarks_align_celeba.txt").write_text(f"{len(rows)}\n{header}\n" + "\n".join(rows) + "\n")
    return where


def run_build(source: Path, out: Path, res: int, workers: int, landmarks: Path | None) -> dict:
    cmd = [sys.executable, "-m", "maskgen.cli", "build", "--source", str(source), "--out", str(out),
           "--resolution", str(res), "--workers", str(workers), "--no-progress"]
    if landmarks:
        cmd += ["--landmarks", str(landmarks)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats = json.loads((out / "stats.json").read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    n = stats["samples"]
    return {"triplets": n, "wall_s": wall, "triplets_per_s": n / wall, "cpu_ms_per_triplet": 1000 * cpu / max(n, 1),
            "peak_rss_mb": after.ru_maxrss / 1024, "failure_rate": stats["failure_rate"]}


def time_stages(source: Path, res: int, limit: int) -> dict[str, float]:
    """CPU ms per image of each step, one process, one core (cold caches excluded: 5 warm-up images).

    "landmarks" is what the build does for the source (a landmark row, the aligned-CelebA prior, or
    detection with its fallbacks).
    """
    import cv2

    from maskgen.align import align_face
    from maskgen.compose import MaskOptions, encode, make_triplet
    from maskgen.landmarks import NoFace, locate
    from maskgen.source import discover, load_image

    cv2.setNumThreads(1)
    images = discover(source).images[:limit + 5]
    totals: dict[str, float] = {}
    done = 0
    for index, im in enumerate(images):
        t = [time.process_time()]
        image = load_image(im.path)
        t.append(time.process_time())
        try:
            found = locate(image, im.landmarks5, im.prior5)
        except NoFace:
            continue
        t.append(time.process_time())
        face = align_face(image, found.points, res)
        t.append(time.process_time())
        triplet = make_triplet(face, MaskOptions(), 0, f"k{index}")
        t.append(time.process_time())
        encode(triplet)
        t.append(time.process_time())
        if index >= 5:
            done += 1
            for name, a, b in zip(("read", "landmarks", "align", "mask", "encode"), t, t[1:], strict=False):
                totals[name] = totals.get(name, 0.0) + 1000 * (b - a)
    return {k: v / max(done, 1) for k, v in totals.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--resolution", "--res", dest="res", type=int, nargs="+", default=[256, 512])  # --res: former name
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images")
    ap.add_argument("--workers", type=int, default=-1)
    ap.add_argument("--stages", type=int, default=0, metavar="N", help="time each step on N images first")
    ap.add_argument("--rows", action="store_true", help="also build from CelebA-format landmark rows")
    args = ap.parse_args()
    if not args.source.exists():
        sys.exit(f"source not found: {args.source}")
    if args.stages:
        for res in args.res:
            stages = time_stages(args.source, res, args.stages)
            cells = "  ".join(f"{k} {v:.2f}" for k, v in stages.items())
            print(f"{res} px, CPU ms per image, one core: {cells}  total {sum(stages.values()):.2f}")
    if args.runs < 1:
        return
    print(f"machine: {os.cpu_count()} cores; source {args.source} (limit {args.limit}); {args.runs} runs each")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = subset(args.source, args.limit, tmp / "src")
        print(f"{'res':>4} {'mode':>5} {'triplets':>8} {'wall s':>7} {'trip/s':>7} {'CPU ms/trip':>11} "
              f"{'peak RSS MB':>11} {'fail %':>6}")
        for res in args.res:
            for mode in ("cold", "warm", "rows") if args.rows else ("cold", "warm"):
                runs = []
                first_cold = tmp / f"out-{res}-cold-0" / "landmarks.parquet"
                if mode == "rows" and not (tmp / f"rows-{res}").exists():
                    write_landmark_rows(source, first_cold, tmp / f"rows-{res}")
                for r in range(args.runs):
                    out = tmp / f"out-{res}-{mode}-{r}"
                    landmarks = first_cold if mode == "warm" else None
                    runs.append(run_build(tmp / f"rows-{res}" if mode == "rows" else source, out, res, args.workers,
                                          landmarks))
                    if not (mode == "cold" and r == 0):
                        shutil.rmtree(out)
                med = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
                print(f"{res:>4} {mode:>5} {med['triplets']:>8.0f} {med['wall_s']:>7.1f} "
                      f"{med['triplets_per_s']:>7.1f} {med['cpu_ms_per_triplet']:>11.1f} {med['peak_rss_mb']:>11.0f} "
                      f"{100 * med['failure_rate']:>6.2f}")


if __name__ == "__main__":
    main()
