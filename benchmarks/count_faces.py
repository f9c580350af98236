"""Faces ``maskgen.landmarks.detect_all`` finds in a folder of photos, cached as JSON; drawings to check them by eye.

    python benchmarks/count_faces.py detect PHOTOS OUT.json [--names benchmarks/group_photos.txt]
    python benchmarks/count_faces.py draw PHOTOS OUT.json DRAWINGS/ [--names ...]
    python benchmarks/count_faces.py sheets PHOTOS SHEETS/        (thumbnail sheets with file names, 35 a sheet)

``detect`` writes, per photo, the seconds ``detect_all`` took and each face's box, method and 68 points; a photo
already in OUT.json is skipped (the run can be stopped and resumed). ``draw`` writes each photo with its faces'
boxes (numbered, method named) and 68 points, and sheets of 6 of them, for the by-eye counts in
``benchmarks/group_photo_counts.csv``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from maskgen.landmarks import detect_all


def _photos(folder: Path, names_file: str | None) -> list[Path]:
    if names_file:
        names = [line.split()[0] for line in Path(names_file).read_text().splitlines() if line.strip()]
        return [folder / n for n in names]
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def detect(folder: Path, out: Path, names_file: str | None) -> None:
    results = json.loads(out.read_text()) if out.is_file() else {}
    for i, path in enumerate(_photos(folder, names_file)):
        if path.name in results:
            continue
        image = _read_rgb(path)
        start = time.perf_counter()
        faces = detect_all(image)
        seconds = time.perf_counter() - start
        results[path.name] = {"seconds": round(seconds, 4), "shape": list(image.shape[:2]), "faces": [
            {"box": [int(v) for v in f.box], "method": f.method, "points": np.round(f.points, 1).tolist()}
            for f in faces]}
        if i % 20 == 0:
            out.write_text(json.dumps(results))
            print(i, path.name, len(faces), f"{seconds:.2f}s", file=sys.stderr, flush=True)
    out.write_text(json.dumps(results))


def draw(folder: Path, found: Path, drawings: Path, names_file: str | None) -> None:
    results = json.loads(found.read_text())
    drawings.mkdir(parents=True, exist_ok=True)
    for path in _photos(folder, names_file):
        if path.name not in results:
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        thick = max(1, round(max(image.shape[:2]) / 600))
        for n, face in enumerate(results[path.name]["faces"]):
            x0, y0, x1, y1 = face["box"]
            cv2.rectangle(image, (x0, y0), (x1, y1), (0, 255, 0), thick)
            for x, y in face["points"]:
                cv2.circle(image, (round(x), round(y)), thick, (0, 0, 255), -1)
            cv2.putText(image, f"{n} {face['method']}", (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * thick, (255, 255, 0), thick)
        cv2.imwrite(str(drawings / (path.stem + ".png")), image)
    _sheets(sorted(drawings.glob("[!s]*.png")), drawings, per_sheet=6, columns=2, cell=616)


def sheets(folder: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _sheets(_photos(folder, None), out, per_sheet=35, columns=7, cell=220)


def _sheets(photos: list[Path], out: Path, per_sheet: int, columns: int, cell: int) -> None:
    """Photos side by side, ``per_sheet`` to a PNG sheet, each scaled to fit ``cell`` px with its name below."""
    for start in range(0, len(photos), per_sheet):
        tiles = []
        for path in photos[start:start + per_sheet]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            h, w = image.shape[:2]
            f = cell / max(h, w)
            small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))),
                               interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
            tile = np.full((small.shape[0] + 18, cell, 3), 255, np.uint8)
            tile[:small.shape[0], :small.shape[1]] = small
            cv2.putText(tile, f"{path.stem} {w}x{h}", (2, small.shape[0] + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                        (0, 0, 0), 1)
            tiles.append(tile)
        rows = []
        for r in range(0, len(tiles), columns):
            row = tiles[r:r + columns]
            height = max(t.shape[0] for t in row)
            row = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0)), constant_values=255) for t in row]
            row += [np.full((height, cell, 3), 255, np.uint8)] * (columns - len(row))
            rows.append(np.concatenate(row, axis=1))
        cv2.imwrite(str(out / f"sheet_{start:04d}.png"), np.concatenate(rows, axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("detect", "draw", "sheets"))
    parser.add_argument("photos", type=Path)
    parser.add_argument("paths", type=Path, nargs="+")
    parser.add_argument("--names", help="a file of photo names (first word of each line) instead of the folder")
    args = parser.parse_args()
    if args.step == "detect":
        detect(args.photos, args.paths[0], args.names)
    elif args.step == "draw":
        draw(args.photos, args.paths[0], args.paths[1], args.names)
    else:
        sheets(args.photos, args.paths[0])


if __name__ == "__main__":
    main()
