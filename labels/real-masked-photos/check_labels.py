"""Self-check of labels/real-masked-photos/: every CSV row's PNG exists, is single-channel 8-bit, has the
photo's exact size (as ``maskgen.source.load_image`` reads it, EXIF-upright, and as stored), holds only 0
and 255, is not empty; the counts meet the issue's minimums. Prints the counts; exit 1 on any problem.

    PYTHONPATH=. python labels/real-masked-photos/check_labels.py --photos ../shared/data/real-masked-photos
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

MINIMUMS = {"total": 60, "cloth_printed": 15, "n95+kn95": 10}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", required=True, type=Path)
    ap.add_argument("--labels", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args(argv)
    from unmask.evaluation.labels import PhotoLabelError, load_photo_labels

    problems = []
    try:  # the evaluator's own checks: header, names, files, sizes, 0/255, not empty, duplicates
        labels = load_photo_labels(args.labels, args.photos)
    except PhotoLabelError as error:
        print("PROBLEM", error)
        return 1
    rows = [{"mask_type": item.mask_type, "wear": item.wear} for item in labels]
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
