"""One evaluation pass over a split: every method and metric, streamed batch by batch.

    from unmask.evaluation.evaluate import evaluate
    from unmask.evaluation.options import EvalOptions
    summary = evaluate(EvalOptions(data="data/celeba256", checkpoint="runs/default", out="runs/default/eval/test"))

What runs (names of the results: see ``unmask.evaluation``):

* stage 1 (M-Seg of ``checkpoint``) against the ground-truth maps: pixel accuracy, Dice, IoU;
* the methods (``methods``): two-stage, two-stage given the ground-truth map, one-stage,
  reconstruction-only, the baselines given either map, and the masked input;
* each method's output against the ground-truth unmasked face (``scores``), identity and face
  verification with ``--identity`` (``verification``), real photos with ``--photos`` (``photos``),
  scored against hand-drawn labels with ``--photo-labels`` (``labels``), and the figures (``figures``).

Bad inputs fail before anything is written: the labels (``labels.load_photo_labels``) are checked
in full when the pass is made, before any model is loaded.

This module holds the pass (``EvaluationPass``; its options: ``options.EvalOptions``): it streams the
split (``samples``), feeds every accumulator and writes the outputs.

Determinism: samples are read in shard order without shuffling, no augmentation, models in eval
mode with torch's deterministic algorithms on, the baselines are deterministic; the test shards
fix the masks. Streaming: one batch of images in memory at a time; per-image scores (floats) and
FID features (2048 floats per image and method) accumulate; figures keep a bounded selection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from maskgen.files import write_csv_atomic, write_json_atomic, write_parquet_atomic
from maskgen.format import WEARS
from maskgen.reader import count_samples, list_shards
from unmask import identity, metrics
from unmask.data import check_dataset
from unmask.identity import GROUND_TRUTH_PROBE
from unmask.metrics import fid as fid_metric
from unmask.training.runtime import resolve_device  # DeviceError: a ValueError, one line from the CLI

from . import (
    DATA,
    FIGURES_DIR,
    INPUT,
    METRICS_FILE,
    PER_IMAGE_FILE,
    PHOTOS,
    PHOTOS_FILE,
    PROTOCOL,
    SEG,
    SUMMARY_FILE,
    VERIFY_FILE,
    VERIFY_PAIRS_FILE,
    VERIFY_PROTOCOL_FILE,
    method_label,
    photos_file,
    photos_group,
    probe_type,
)
from .figures import FigureSamples
from .labels import PhotoLabel, label_set_names, labels_csv, load_photo_labels
from .methods import Methods
from .options import EvalOptions
from .photos import evaluate_photos, labelled_photos, worst_photos_file
from .samples import META_COLUMNS, EvalBatch, iter_eval_batches, native_resolution
from .scores import (
    MAX_FURTHER_PHOTO_SETS,
    PSNR_SSIM_PROTOCOL,
    MethodScores,
    Results,
    SegScores,
    fid_features,
    image_metric_plan,
    mean_score,
    summary,
)
from .verification import (
    IdentityScores,
    probe_protocol,
    scan_identities,
    select_identity_keys,
    verification_reason,
    verify_scores,
)


class EvaluationPass:
    """Everything one pass accumulates; ``run`` streams the split, ``write`` writes the outputs."""

    def __init__(self, opts: EvalOptions) -> None:
        self.opts = opts
        # the labels first: a bad label fails in seconds, before models load or files are written
        names = label_set_names(opts.photo_labels)
        if len(names) > 1 + MAX_FURTHER_PHOTO_SETS:
            raise ValueError(f"at most {1 + MAX_FURTHER_PHOTO_SETS} labels sets (--photo-labels), got {len(names)}: "
                             "summary.json has room for no more (scores.SUMMARY_BUDGET)")
        # name (None: the first set) -> (its labels.csv, its labels)
        self.photo_sets: dict[str | None, tuple[Path, list[PhotoLabel]]] = {
            name: (labels_csv(labels), load_photo_labels(labels, opts.photos))
            for name, labels in zip(names, opts.photo_labels, strict=True)}
        self.device = resolve_device(opts.device)
        self.shards = list_shards(opts.data, opts.split)
        if not self.shards:
            raise FileNotFoundError(f"no {opts.split}-*.tar shards in {opts.data}")
        check_dataset(opts.data, (opts.split,))  # shards as recorded, before anything is written
        self.native = native_resolution(opts.data, opts.split)
        self.resolution = opts.resolution or self.native
        self.methods = Methods(opts, self.device)
        networks = (self.methods.mseg, self.methods.two_stage, self.methods.one_stage, self.methods.recon_only)
        if self.resolution % 32 and any(n is not None for n in networks):
            raise ValueError(f"the networks need a resolution that is a multiple of 32, got {self.resolution}")
        extractor, fid_reason, self.fid_source = fid_features(opts, self.device)
        self.plan, options = image_metric_plan(self.resolution, opts.lpips_weights, fid_reason)
        self.scores = {m.name: MethodScores(m, self.plan, options, extractor) for m in self.methods.methods}
        self.real_fid = fid_metric.FIDAccumulator(feature_extractor=extractor) if extractor is not None else None
        self.seg = SegScores()
        self.id_scores = self.identity_scores() if opts.identity else None
        self._verification: tuple[pd.DataFrame, pd.DataFrame, list[str]] | None = None
        # the figures show the first model method (two-stage when there is one)
        self.main_method = next((m.name for m in self.methods.methods if m.name != INPUT), None)
        self.chosen = FigureSamples(opts.sheet_rows, opts.failures, self.main_method) if opts.figures else None
        self.info: list[dict[str, Any]] = []

    def identity_scores(self) -> IdentityScores:
        """The identity samples and the verification protocol, from a first pass over the metadata."""
        opts = self.opts
        samples = scan_identities(opts.data, opts.split, opts.max_samples)
        selected = select_identity_keys(samples["key"].tolist(), opts.identity_max_samples)
        reason = verification_reason(samples)
        protocol = None
        if reason is None:
            try:
                protocol = probe_protocol(samples, selected, opts.identity_seed, opts.impostors)
            except ValueError as error:  # e.g. a key twice in the split
                reason = f"no verification protocol: {error}"
            else:
                if not len(protocol):
                    reason = (f"no probe among the {len(selected)} identity samples has another photo of its "
                              "identity in the evaluated split")
        return IdentityScores(selected, protocol, reason)

    def probe_types(self) -> list[str]:
        methods = [m.name for m in self.methods.methods]
        return [GROUND_TRUTH_PROBE] + [probe_type(m) for m in [INPUT] + [m for m in methods if m != INPUT]
                                       if m in methods]

    def verification(self) -> tuple[pd.DataFrame, pd.DataFrame, list[str]] | None:
        """(verify table, pair distances, notes), computed once; None when there is nothing to verify."""
        ids = self.id_scores
        if ids is None or ids.protocol is None or ids.verify_reason is not None or not len(ids.protocol):
            return None
        if self._verification is None:
            self._verification = ids.verification([m.name for m in self.methods.methods])
        return self._verification

    def run(self) -> None:
        from tqdm import tqdm

        total = count_samples(self.shards)
        if self.opts.max_samples is not None:
            total = min(total, self.opts.max_samples)
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            with tqdm(total=total, desc="evaluate", disable=not self.opts.progress, dynamic_ncols=True) as bar:
                for batch in iter_eval_batches(self.opts.data, self.opts.split, self.resolution,
                                               self.opts.batch_size, self.opts.max_samples):
                    self.add(batch)
                    bar.update(len(batch))
        finally:
            torch.use_deterministic_algorithms(previous)

    def add(self, batch: EvalBatch) -> None:
        pred_map, outputs = self.methods.run(batch)
        seg_scores = self.seg.update(pred_map, batch)
        method_scores = {name: self.scores[name].update(images, batch.unmasked, given, batch.gt_map)
                         for name, (images, given) in outputs.items()}
        if self.real_fid is not None:
            self.real_fid.update(pred=batch.unmasked)
        if self.id_scores is not None:
            self.id_scores.update(batch, outputs)
        if self.chosen is not None:
            psnr = method_scores.get(self.main_method, {}).get("psnr")
            self.chosen.add(batch, pred_map, outputs, psnr, seg_scores.get("dice"))
        self.info.extend(batch.info)

    def results(self) -> Results:
        results = Results()
        results.put(DATA, {"count": (float(len(self.info)), None),
                           "coverage": mean_score([i["coverage"] for i in self.info])})
        no_seg = None if self.methods.mseg is not None else f"{self.opts.checkpoint} holds no stage-1 (M-Seg) model"
        results.put(SEG, {**self.seg.results(no_seg),
                          **self.seg.breakdown("wear", [i["wear"] for i in self.info], WEARS),
                          **self.seg.breakdown("mask", [i["mask_type"] for i in self.info], ())})
        real_stats = self.real_fid.stats("generated") if self.real_fid is not None and len(self.info) >= 2 else None
        for method in self.methods.methods:
            scores = self.scores[method.name].results(real_stats)
            if self.id_scores is not None:
                scores.update(self.id_scores.results(method.name))
            results.put(method.name, scores)
        if self.id_scores is not None:
            ids = self.id_scores
            verification = self.verification()
            groups = verify_scores(None if verification is None else verification[0],
                                   ids.protocol, self.probe_types(), ids.verify_reason)
            for group, scores in groups.items():
                results.put(group, scores)
        return results

    def per_image(self) -> pd.DataFrame:
        table = pd.DataFrame(self.info, columns=list(META_COLUMNS))
        columns = self.seg.per_image()
        for method in self.methods.methods:
            columns.update(self.scores[method.name].per_image())
        if self.id_scores is not None:
            columns.update(self.id_scores.per_image(self.info))
        for name, column in columns.items():
            table[name] = column
        return table

    def protocol(self, results: Results, figure_files: list[str]) -> dict[str, Any]:
        opts, methods = self.opts, self.methods
        protocol = {
            "data": str(opts.data), "split": opts.split, "checkpoint": str(opts.checkpoint),
            "one_stage_checkpoint": None if opts.one_stage is None else str(opts.one_stage),
            "recon_only_checkpoint": None if opts.recon_only is None else str(opts.recon_only),
            "resolution": self.resolution, "data_resolution": self.native,
            "model_resolution": methods.model_resolution, "count": len(self.info), "max_samples": opts.max_samples,
            "batch_size": opts.batch_size, "device": str(self.device), "torch": torch.__version__,
            "methods": {m.name: {"label": method_label(m.name), "map": m.map_source, "description": m.description}
                        for m in methods.methods},
            "methods_not_run": methods.skipped,
            "metrics": {name: {"ran": reason is None, "reason": reason, "direction": metrics.get(name).direction,
                               "summary": metrics.get(name).summary} for name, reason in self.plan.items()},
            "psnr_ssim": PSNR_SSIM_PROTOCOL,
            "fid": {"real_set": f"the {len(self.info)} ground-truth unmasked faces of the split",
                    "features": self.fid_source or None,
                    "note": "biased at small N; comparable only at the same N, real set and resolution"},
            "niqe_brisque": "no-reference: each output image alone, at the evaluation resolution",
            "inpaint_radius": opts.inpaint_radius,
            "identity": self.identity_protocol(),
            "photos": self.photos_protocol(),
            "figures": figure_files,
            "null_reasons": results.null_reasons,
        }
        if self.resolution != methods.model_resolution:
            protocol["warning"] = f"models trained at {methods.model_resolution} px ran at {self.resolution} px"
        return protocol

    def photos_protocol(self) -> dict[str, Any] | None:
        """The photo folder and each labels set: ``labels`` the first (None without labels), ``label_sets``
        every set by its scores group (``photos``, ``photos_<name>``)."""
        opts = self.opts
        if opts.photos is None:
            return None
        sets = {}
        for name, (csv_path, labels) in self.photo_sets.items():
            sets[photos_group(name)] = {
                "name": name, "file": str(csv_path), "labelled": len(labels),
                "evaluated": len(labelled_photos(labels, opts.max_photos)),
                "table": photos_file(name),
                "photos": "the labelled photos sorted by file name, the first max_photos of them",
                "scores": "Dice and IoU of the predicted map pasted back onto the photo (Unmasker, map > 0) "
                          "against the label (> 0), over the whole photo (unmask.metrics.segmentation); "
                          "a photo with no face found scores 0",
                "worst_figure": f"the {opts.failures} photos with a face found and the lowest Dice",
                "worst_figure_file": worst_photos_file(name),
            }
        return {"dir": str(opts.photos), "max_photos": opts.max_photos, "labels": sets.get(PHOTOS),
                "label_sets": sets}

    def identity_protocol(self) -> dict[str, Any]:
        opts, ids = self.opts, self.id_scores
        threshold = identity.MATCH_THRESHOLD if ids is not None else None
        out: dict[str, Any] = {"requested": opts.identity, "reason": None if ids else "not requested (--identity)",
                               "threshold": threshold}
        if ids is None:
            return out
        out.update({
            "samples": f"the first {opts.identity_max_samples} samples of the evaluated split in key order"
                       if opts.identity_max_samples is not None else "every sample of the evaluated split",
            "max_samples": opts.identity_max_samples, "count": len(ids.selected or ()),
            "embeddings": "dlib 128-d descriptors (unmask.identity.embed) with each sample's ground-truth "
                          "landmarks; an output is embedded with the landmarks of its ground truth",
            "images_embedded": ids.n_embedded,
        })
        attrs = ids.protocol.attrs if ids.protocol is not None else {}
        verification = self.verification()
        out["verification"] = {
            "reason": ids.verify_reason,
            "protocol_file": VERIFY_PROTOCOL_FILE if ids.protocol is not None else None,
            "table": VERIFY_FILE if verification is not None else None,
            "pairs": VERIFY_PAIRS_FILE if verification is not None else None,
            "probes": "the identity samples with a known identity and another source photo of it in the split",
            "gallery": "the unmasked ground-truth crop of one sample per source photo of the evaluated split",
            "pairs_per_probe": f"1 genuine pair (another photo of the same identity) and {opts.impostors} impostor "
                               "pair(s) (photos of distinct other identities)",
            "accuracy_threshold": threshold,
            "far_thresholds_from": f"the impostor pairs of the {GROUND_TRUTH_PROBE} probes",
            "seed": opts.identity_seed, "impostors": opts.impostors,
            **{k: attrs[k] for k in ("n_samples", "n_no_identity", "max_probes", "n_probes", "n_skipped",
                                     "n_selected_no_identity", "n_pairs", "n_missing_impostors", "n_gallery",
                                     "n_probes_all", "samples_sha1") if k in attrs},
            "probe_types": self.probe_types(),
            "notes": verification[2] if verification is not None else [],
        }
        return out

    def write_verification(self) -> None:
        """The protocol (pairs + json sidecar), the verify table and the pair distances; files of an
        earlier evaluation into the same directory that this one does not rewrite are removed."""
        out, ids = self.opts.out, self.id_scores
        written = set()
        if ids is not None and ids.protocol is not None:
            identity.save_protocol(ids.protocol, out / VERIFY_PROTOCOL_FILE)
            written |= {VERIFY_PROTOCOL_FILE, VERIFY_PROTOCOL_FILE + ".json"}
        verification = self.verification()
        if verification is not None:
            write_csv_atomic(out / VERIFY_FILE, verification[0])
            write_parquet_atomic(out / VERIFY_PAIRS_FILE, verification[1])
            written |= {VERIFY_FILE, VERIFY_PAIRS_FILE}
        for name in {VERIFY_PROTOCOL_FILE, VERIFY_PROTOCOL_FILE + ".json", VERIFY_FILE, VERIFY_PAIRS_FILE} - written:
            (out / name).unlink(missing_ok=True)

    def write_photos(self, results: Results, figure_dir: Path | None) -> list[str]:
        """The real photos: without labels one group, ``photos``; with labels one group per set. Writes each
        set's table; tables of an earlier evaluation into the same directory that this one does not rewrite
        are removed. Returns the figure files written."""
        opts = self.opts
        written, figure_files = set(), []
        sets: dict[str | None, list[PhotoLabel] | None] = {
            name: labels for name, (_, labels) in self.photo_sets.items()} or {None: None}
        if opts.photos is None:
            reason = "no real photos (--photos, --photo-labels)"
            results.put(PHOTOS, {"dice": (None, reason), "iou": (None, reason)})
        elif self.methods.mseg is None or self.methods.two_stage is None:
            reason = "real photos need a two-stage checkpoint (M-Seg and FU-Net)"
            for name in sets:
                results.put(photos_group(name), {metric: (None, reason)
                                                 for metric in ("count", "no_face_rate", "dice", "iou")})
        else:
            for name, labels in sets.items():
                scores, photo_table, files = evaluate_photos(self.methods.two_stage, opts.photos, opts.max_photos,
                                                             2 * opts.sheet_rows, figure_dir, labels, opts.failures,
                                                             name)
                results.put(photos_group(name), scores)
                write_parquet_atomic(opts.out / photos_file(name), photo_table)
                written.add(photos_file(name))
                figure_files += files
        for stale in {PHOTOS_FILE, *(p.name for p in opts.out.glob(photos_file("*")))} - written:
            (opts.out / stale).unlink(missing_ok=True)
        return figure_files

    def write(self) -> dict[str, Any]:
        opts = self.opts
        opts.out.mkdir(parents=True, exist_ok=True)
        results = self.results()
        figure_dir = opts.out / FIGURES_DIR if opts.figures else None
        figure_files = self.chosen.write(figure_dir, self.resolution) if self.chosen is not None else []
        figure_files += self.write_photos(results, figure_dir)
        write_parquet_atomic(opts.out / PER_IMAGE_FILE, self.per_image())
        self.write_verification()
        record = {**results.values, PROTOCOL: self.protocol(results, figure_files)}
        write_json_atomic(opts.out / METRICS_FILE, record, sort_keys=False, allow_nan=False)
        write_json_atomic(opts.out / SUMMARY_FILE, summary(results.values), sort_keys=False, allow_nan=False)
        return record


def evaluate(opts: EvalOptions) -> dict[str, Any]:
    """Evaluate; writes ``OUT/metrics.json``, ``OUT/summary.json`` (the DVC metrics),
    ``OUT/per_image.parquet`` and the figures, returns the metrics.json content."""
    evaluation = EvaluationPass(opts)
    evaluation.run()
    return evaluation.write()
