"""`unmask predict` on a 100-Mpx photo: wall time and peak memory (RSS), this checkout against another.

    python benchmarks/bench_big_photo.py --base /tmp/base-checkout [--run RUN] [--rounds 3] [--megapixels 100]

Makes the photo in /tmp (four real masked photos of the shared data, each enlarged to fill a quarter of the
canvas, JPEG), and without ``--run`` trains a tiny 128-px model there (the networks' quality does not matter
for time and memory, but an untrained stage 1 maps much of each crop, so its pastes are the largest there
are). Then runs ``unmask predict`` on it in a fresh process per run, alternating between the checkouts
(``--base``: a checkout of the commit to compare with, e.g. ``git worktree add /tmp/base main``), and prints
the median wall time (the process's, output written included) and peak RSS of each, and whether both found
the same faces (results.jsonl's boxes). Also times writing the 100-Mpx PNG at OpenCV's compression levels.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = Path("/tmp/bench_big_photo")
PHOTOS = ["0000.jpg", "0761.jpg", "0001.jpg", "0885.jpg"]  # one face, three, one, a group


def make_photo(megapixels: float) -> Path:
    """A 3:2 canvas of ``megapixels``, each quarter a real masked photo enlarged (bicubic) to cover it."""
    from tests.testdata import REAL_MASKED

    out = WORK / f"big{megapixels:g}mpx.jpg"
    if out.is_file():
        return out
    height = int(round((megapixels * 1e6 / 1.5) ** 0.5)) // 2 * 2
    width = int(height * 1.5) // 2 * 2
    canvas = np.empty((height, width, 3), np.uint8)
    cell_w, cell_h = width // 2, height // 2
    for i, name in enumerate(PHOTOS):
        image = cv2.imread(str(REAL_MASKED / name))
        h, w = image.shape[:2]
        scale = max(cell_w / w, cell_h / h)
        big = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
        top, left = (big.shape[0] - cell_h) // 2, (big.shape[1] - cell_w) // 2
        canvas[(i // 2) * cell_h:(i // 2 + 1) * cell_h, (i % 2) * cell_w:(i % 2 + 1) * cell_w] = \
            big[top:top + cell_h, left:left + cell_w]
    cv2.imwrite(str(out), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out


def tiny_run() -> Path:
    """A 128-px model trained for 2 steps on synthetic shards (the tests' ``write_split``)."""
    run = WORK / "run"
    if (run / "checkpoints" / "gan.pt").is_file():
        return run
    code = ("import sys; from pathlib import Path; from tests.unmask.testutils import write_split; "
            "from unmask.launch import main; d = Path(sys.argv[1]); d.mkdir(parents=True, exist_ok=True); "
            "write_split(d, 'train', [8]); write_split(d, 'val', [4], start=1000); "
            "sys.argv = ['unmask', 'train', '--data', str(d), '--out', sys.argv[2], '--steps', '2', '--preset', "
            "'cpu', '--resolution', '128', '--batch-size', '2', '--num-workers', '0', '--device', 'cpu', "
            "'--no-progress']; main()")
    subprocess.run([sys.executable, "-c", code, str(WORK / "shards"), str(run)], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    return run


def predict_once(checkout: Path, photo: Path, run: Path, out: Path) -> tuple[float, float, list]:
    """(seconds, peak RSS in MB, face boxes) of one ``unmask predict`` in a fresh process."""
    code = "import sys; from unmask.launch import main; sys.argv = ['unmask'] + sys.argv[1:]; main()"
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code, "predict", str(photo), "--out", str(out),
                              "--checkpoint", str(run)], cwd=checkout,
                             env={**os.environ, "PYTHONPATH": str(checkout)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = child.communicate()
    seconds = time.perf_counter() - start
    if child.returncode:
        raise RuntimeError(f"unmask predict failed in {checkout}: {err.decode()[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
    boxes = [json.loads(line).get("box") for line in (out / "results.jsonl").read_text().splitlines()]
    return seconds, peak, boxes


def png_levels(photo: Path) -> None:
    image = cv2.imread(str(photo))
    for level in (0, 1, 3, 6):
        start = time.perf_counter()
        ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, level])
        print(f"PNG level {level}: {time.perf_counter() - start:.2f} s, {len(data) / 1e6:.0f} MB")
    start = time.perf_counter()
    ok, data = cv2.imencode(".png", image)
    print(f"PNG OpenCV's default (what write_png_atomic uses): {time.perf_counter() - start:.2f} s, "
          f"{len(data) / 1e6:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, help="a checkout to compare with (e.g. of main)")
    parser.add_argument("--run", type=Path, help="a run directory or checkpoint (default: a tiny one, trained)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--megapixels", type=float, default=100.0)
    parser.add_argument("--png-levels", action="store_true", help="also time the PNG compression levels")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    photo = make_photo(args.megapixels)
    run = args.run or tiny_run()
    print(f"photo {photo} ({args.megapixels:g} Mpx), model {run}")
    checkouts = {"this": ROOT, **({"base": args.base.resolve()} if args.base else {})}
    times: dict[str, list[float]] = {name: [] for name in checkouts}
    peaks: dict[str, list[float]] = {name: [] for name in checkouts}
    boxes: dict[str, list] = {}
    for round_ in range(args.rounds):
        order = list(checkouts) if round_ % 2 == 0 else list(checkouts)[::-1]  # alternating
        for name in order:
            # Peak RSS of children is a running maximum: each run goes in a fresh process measuring one child.
            code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bench_big_photo as b; "
                    "from pathlib import Path; print(json.dumps(b.predict_once(*map(Path, sys.argv[2:]))))")
            found = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(checkouts[name]),
                                    str(photo), str(run), str(WORK / f"out-{name}")], cwd=ROOT, check=True,
                                   capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            seconds, peak, faces = json.loads(found.stdout.splitlines()[-1])
            times[name].append(seconds)
            peaks[name].append(peak)
            boxes[name] = faces
            print(f"round {round_ + 1} {name}: {seconds:.2f} s, peak RSS {peak:.0f} MB, {len(faces)} faces", flush=True)
    for name in checkouts:
        print(f"{name}: median {statistics.median(times[name]):.2f} s, peak RSS {statistics.median(peaks[name]):.0f} MB"
              f" ({len(boxes[name])} faces)")
    if "base" in boxes:
        print("same faces (boxes):", boxes["base"] == boxes["this"])
    if args.png_levels:
        png_levels(photo)


if __name__ == "__main__":
    main()
