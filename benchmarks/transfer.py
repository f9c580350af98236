"""Transfer of stage 1 to masks it was not trained on: Dice of one or more checkpoints' M-Seg on
synthetic datasets (per wear and per generator) and on the labelled real photos.

    python benchmarks/transfer.py --model before=RUN_DIR --model after=RUN_DIR \
        --data test=data/shards:test --data pack=PACK_BUILD:test \
        [--photos data/real-masked --photo-labels labels/real-masked-photos] [--max-samples 1000] [--json OUT]

``--data NAME=DIR[:SPLIT]`` (split ``test`` by default). Prints one table per model: mean Dice / IoU
(per image, as ``unmask.metrics.segmentation`` defines them) overall and per wear, per dataset; the
photo rows come from ``unmask.evaluation.photos.evaluate_photos`` (the evaluator's own loader and scoring).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maskgen.format import MAP, MASKED  # noqa: E402
from maskgen.reader import decode_image, decode_meta, iter_raw_samples  # noqa: E402
from unmask.checkpoint import load_models  # noqa: E402
from unmask.metrics.segmentation import confusion_counts  # noqa: E402
from unmask.tensors import images_to_model  # noqa: E402

BATCH = 64


def _pairs(values: list[str], default_split: str | None = None) -> dict[str, tuple[str, str | None]]:
    out = {}
    for value in values:
        name, _, rest = value.partition("=")
        path, _, split = rest.partition(":")
        out[name] = (path, split or default_split)
    return out


@torch.no_grad()
def synthetic_scores(mseg, resolution: int, data: str, split: str, max_samples: int) -> dict[str, dict[str, float]]:
    """{group: {dice, iou, n}} for 'all', 'wear=...', 'generator=...' and 'mask_type=...'."""
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    batch, infos = [], []

    def flush():
        x = images_to_model(torch.from_numpy(np.stack([b[0] for b in batch])).permute(0, 3, 1, 2))
        pred = mseg.predict_map(x)[:, 0].numpy() > 0.5
        for p, (_, truth), meta in zip(pred, batch, infos, strict=True):
            counts = confusion_counts(p, truth > 127)
            # datasets made before wear variants: all worn correctly, generator unknown
            for group in ("all", f"wear={meta.get('wear', 'correct')}", f"generator={meta.get('generator')}",
                          f"mask_type={meta.get('mask_type')}"):
                groups[group].append((counts.dice, counts.iou))
        batch.clear()
        infos.clear()

    for i, raw in enumerate(iter_raw_samples(data, split)):
        if i >= max_samples:
            break
        masked, truth = decode_image(raw, MASKED), decode_image(raw, MAP)
        if masked.shape[0] != resolution:
            import cv2

            masked = cv2.resize(masked, (resolution, resolution), interpolation=cv2.INTER_AREA)
            truth = cv2.resize(truth, (resolution, resolution), interpolation=cv2.INTER_NEAREST)
        batch.append((masked, truth))
        infos.append(decode_meta(raw))
        if len(batch) == BATCH:
            flush()
    if batch:
        flush()
    return {g: {"dice": float(np.mean([d for d, _ in v])), "iou": float(np.mean([u for _, u in v])), "n": len(v)}
            for g, v in sorted(groups.items())}


def photo_scores(run: str, photos: Path, labels: Path) -> dict[str, dict[str, float]]:
    """Two-stage ``Unmasker`` on the labelled photos, as ``unmask evaluate --photo-labels`` scores them."""
    from unmask.evaluation.labels import load_photo_labels
    from unmask.evaluation.photos import GROUPINGS, evaluate_photos, label_breakdown
    from unmask.predict import Unmasker

    _, table, _ = evaluate_photos(Unmasker.from_checkpoint(run), photos, None, 0, None,
                                  load_photo_labels(labels, photos))
    out = {"all": {"dice": float(table["dice"].mean()), "iou": float(table["iou"].mean()), "n": len(table)}}
    for column, order in GROUPINGS.values():
        for group, row in label_breakdown(table, column, order).iterrows():
            out[f"{column}={group}"] = {"dice": float(row["dice"]), "iou": float(row["iou"]), "n": int(row["n"])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="NAME=RUN_DIR (a run with seg.pt, gan.pt)")
    parser.add_argument("--data", action="append", default=[], help="NAME=DATASET_DIR[:SPLIT]")
    parser.add_argument("--photos", type=Path)
    parser.add_argument("--photo-labels", type=Path)
    parser.add_argument("--max-samples", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, dict] = {}
    for name, (run, _) in _pairs(args.model).items():
        config, mseg, _ = load_models(run)
        if mseg is None:
            raise SystemExit(f"{run}: no stage-1 (M-Seg) weights")
        resolution = config.train.resolution
        results[name] = {}
        for data_name, (path, split) in _pairs(args.data, "test").items():
            results[name][data_name] = synthetic_scores(mseg, resolution, path, split, args.max_samples)
        if args.photos and args.photo_labels:
            results[name]["photos"] = photo_scores(run, args.photos, args.photo_labels)
    for name, per_data in results.items():
        print(f"\n## {name}")
        print(f"{'data':<14} {'group':<28} {'n':>5} {'dice':>7} {'iou':>7}")
        for data_name, groups in per_data.items():
            for group, s in groups.items():
                print(f"{data_name:<14} {group:<28} {s['n']:>5} {s['dice']:>7.3f} {s['iou']:>7.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
