"""Self-check of labels/real-masked-photos/: every CSV row's PNG exists, is single-channel 8-bit, has the
photo's exact size (as ``maskgen.source.load_image`` reads it, EXIF-upright, and as stored), holds only 0
and 255, is not empty; the counts meet the issue's minimums. Prints the counts; exit 1 on any problem.

    PYTHONPATH=. python labels/real-masked-photos/check_labels.py --photos ../shared/data/real-masked-photos
"""

from __future__ import annotations

import argparse
import collections
import csv
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

MINIMUMS = {"total": 60, "cloth_printed": 15, "n95+kn95": 10}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", required=True, type=Path)
    ap.add_argument("--labels", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args(argv)
    from maskgen.source import load_image

    problems = []
    with open(args.labels / "labels.csv", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["photo", "label", "mask_type", "wear"]:
            problems.append(f"header {reader.fieldnames}")
        rows = list(reader)
    seen = set()
    for r in rows:
        name = r["photo"]
        if name in seen:
            problems.append(f"{name}: duplicate row")
        seen.add(name)
        png = args.labels / r["label"]
        if not png.is_file():
            problems.append(f"{name}: {png} missing")
            continue
        with Image.open(png) as im:
            if im.mode != "L":
                problems.append(f"{name}: PNG mode {im.mode}, not L")
        lab = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        photo = load_image(args.photos / name)
        with Image.open(args.photos / name) as im:
            stored = im.size[::-1]
        if lab.ndim != 2 or lab.dtype != np.uint8:
            problems.append(f"{name}: not single-channel uint8")
        if lab.shape != photo.shape[:2] or lab.shape != stored:
            problems.append(f"{name}: label {lab.shape} vs photo {photo.shape[:2]} (stored {stored})")
        values = set(np.unique(lab).tolist())
        if not values <= {0, 255}:
            problems.append(f"{name}: values {sorted(values)[:6]}")
        if (lab == 255).sum() == 0:
            problems.append(f"{name}: empty")
        if r["mask_type"] not in ("surgical", "n95", "kn95", "cloth", "cloth_printed", "other"):
            problems.append(f"{name}: mask_type {r['mask_type']}")
        if r["wear"] not in ("correct", "nose", "mouth", "chin"):
            problems.append(f"{name}: wear {r['wear']}")
    types = collections.Counter(r["mask_type"] for r in rows)
    wears = collections.Counter(r["wear"] for r in rows)
    print(f"rows: {len(rows)}")
    print("mask_type:", dict(sorted(types.items())))
    print("wear:", dict(sorted(wears.items())))
    got = {"total": len(rows), "cloth_printed": types["cloth_printed"], "n95+kn95": types["n95"] + types["kn95"]}
    for k, v in MINIMUMS.items():
        if got[k] < v:
            problems.append(f"{k}: {got[k]} < {v}")
    size = sum(p.stat().st_size for p in (args.labels / "masks").glob("*.png"))
    print(f"PNG bytes: {size} ({size / max(len(rows), 1) / 1024:.1f} KiB per label)")
    for p in problems:
        print("PROBLEM", p)
    print("OK" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
