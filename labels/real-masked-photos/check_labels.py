"""Self-check of labels/real-masked-photos/ (``--set first``) or labels/real-masked-photos-hard/
(``--set hard``): every CSV row's PNG exists, is single-channel 8-bit, has the
photo's exact size (as ``maskgen.source.load_image`` reads it, EXIF-upright, and as stored), holds only 0
and 255, is not empty; the counts meet the set's minimums; for the hard set also every photo has a known
category (the ``category`` column). Prints the counts; exit 1 on any problem.

    PYTHONPATH=. python labels/real-masked-photos/check_labels.py --photos ../shared/data/real-masked-photos
    PYTHONPATH=. python labels/real-masked-photos/check_labels.py --set hard --photos ../shared/data/real-masked-photos
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MINIMUMS = {"total": 60, "cloth_printed": 15, "n95+kn95": 10}
HARD_MINIMUMS = {"total": 60, "gaiter": 15, "printed": 15, "closeup": 10, "respirator": 10}


def read_categories(labels: list) -> tuple[collections.Counter, list[str]]:
    """The hard set's categories (the labels' ``category`` column): counts per category and the problems
    (a photo without one, an unknown one)."""
    sys.path.insert(0, str(HERE))
    from make_labels import CATEGORIES

    problems = [f"{item.photo.name}: unknown or missing category {item.category!r}"
                for item in labels if item.category not in CATEGORIES]
    return collections.Counter(item.category for item in labels), problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", required=True, type=Path)
    ap.add_argument("--set", choices=("first", "hard"), default="first")
    ap.add_argument("--labels", type=Path, help="the labels folder (default: the set's folder)")
    args = ap.parse_args(argv)
    if args.labels is None:
        args.labels = HERE if args.set == "first" else HERE.parent / "real-masked-photos-hard"
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
    if args.set == "first":
        got = {"total": len(rows), "cloth_printed": types["cloth_printed"], "n95+kn95": types["n95"] + types["kn95"]}
        minimums = MINIMUMS
    else:
        categories, category_problems = read_categories(labels)
        problems += category_problems
        print("category:", dict(sorted(categories.items())))
        got = {"total": len(rows), **categories}
        minimums = HARD_MINIMUMS
    for k, v in minimums.items():
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
