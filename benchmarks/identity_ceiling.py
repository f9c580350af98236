"""How good must a fill be to give identity back? Verification with oracle fills of the mask region.

Probes are the ground truth with only the mask region (the sample's true map) degraded: blurred
(Gaussian sigma in crop pixels) or detail removed (the region taken from a copy shrunk by a factor
and enlarged again). Same protocol and gallery as ``unmask evaluate --identity``, so the figures sit
next to the models' rows: they show how close to the ground truth a stage-2 output must be.

    python benchmarks/identity_ceiling.py SHARDS EVAL_DIR [--sigmas 1 2 4] [--shrinks 2 4]

SHARDS: the dataset the evaluation read (its test split); EVAL_DIR: an evaluation folder with
``verification_protocol.csv`` (written by ``unmask evaluate --identity``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from maskgen.reader import decode, iter_raw_samples
from unmask import identity as idn
from unmask.metrics.fidelity import psnr


def read_samples(shards: Path, keys: set[str]) -> dict[str, dict]:
    out = {}
    for raw in iter_raw_samples(shards, "test"):
        if raw["__key__"] in keys:
            sample = decode(raw)
            out[sample.key] = {"gt": sample.unmasked, "masked": sample.masked, "map": sample.map > 127,
                               "landmarks": np.asarray(sample.meta["landmarks"], np.float64)}
    return out


def in_region(gt: np.ndarray, fill: np.ndarray, region: np.ndarray) -> np.ndarray:
    return np.where(region[..., None], fill, gt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards", type=Path)
    ap.add_argument("eval_dir", type=Path)
    ap.add_argument("--sigmas", type=float, nargs="*", default=[1.0, 2.0, 4.0])
    ap.add_argument("--shrinks", type=int, nargs="*", default=[2, 4])
    args = ap.parse_args()
    protocol = idn.load_protocol(args.eval_dir / "verification_protocol.csv")
    probes, gallery = idn.probe_keys(protocol), idn.gallery_keys(protocol)
    samples = read_samples(args.shards, set(probes) | set(gallery))
    missing = (set(probes) | set(gallery)) - set(samples)
    if missing:
        raise SystemExit(f"{len(missing)} protocol keys not in {args.shards} test shards (e.g. {sorted(missing)[0]})")

    def embed(keys: list[str], make) -> np.ndarray:
        return idn.embed([make(samples[k]) for k in keys], [samples[k]["landmarks"] for k in keys])

    variants = {"ground_truth": lambda s: s["gt"], "masked": lambda s: s["masked"]}
    for sigma in args.sigmas:
        variants[f"blur_sigma_{sigma:g}"] = (
            lambda s, sigma=sigma: in_region(s["gt"], cv2.GaussianBlur(s["gt"], (0, 0), sigma), s["map"]))
    for f in args.shrinks:
        def shrunk(s, f=f):
            h, w = s["gt"].shape[:2]
            small = cv2.resize(s["gt"], (w // f, h // f), interpolation=cv2.INTER_AREA)
            return in_region(s["gt"], cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), s["map"])
        variants[f"detail_1/{f}"] = shrunk
    table = idn.verify({name: embed(probes, make) for name, make in variants.items()},
                       embed(gallery, variants["ground_truth"]), protocol)
    # Whole-crop PSNR of each probe type (mean over probes), to place a model's PSNR among the oracles.
    table["psnr"] = [np.mean([psnr(samples[k]["gt"], variants[name](samples[k])) for k in probes])
                     for name in table["probe_type"]]
    cols = ["probe_type", "accuracy", "tar_far_1", "genuine_distance", "impostor_distance", "psnr", "n_pairs"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
