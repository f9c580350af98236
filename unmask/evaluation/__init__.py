"""Evaluation of GANMasker runs: metrics, baselines, comparison tables, figures and reports.

Layout (after LaMa's ``evaluation/`` and stylegan3's ``calc_metrics``):

* ``evaluate``  one pass over a split: the options and the run, writing per-image and aggregate
  scores and figures. Entry point ``evaluate.evaluate(EvalOptions)``.
* ``samples``   the split's shards read in order, decoded batch by batch (``EvalBatch``).
* ``methods``   what makes an output: two-stage, ground-truth map, one-stage, reconstruction-only,
  the baselines, the masked input.
* ``scores``    the metrics of each method and of stage 1, and the flat metrics.json values.
* ``verification`` identity preservation and face verification (``--identity``, on ``unmask.identity``).
* ``photos``    real masked photos (``--photos``), scored against hand-drawn labels (``--photo-labels``).
* ``labels``    the labels of real photos: the contract of ``labels.csv`` and its checks.
* ``baselines`` classical inpainting (OpenCV Telea, Navier-Stokes), registered by name.
* ``compare``   the paper-style table of several evaluations (best per column in bold).
* ``figures``   contact sheets and failure galleries (PNG via cv2), and which samples they show.
* ``charts``    the report's charts (PNG via matplotlib): training curves, means with intervals, breakdowns.
* ``report``    ``report.md`` from evaluation outputs only (no model runs).
* ``cli``       the ``unmask evaluate / compare / report`` commands.

This module is the one place for the names of the results. An evaluation directory ``OUT`` holds

* ``metrics.json``: flat keys ``<group>/<metric>`` with numeric or null values, and under
  ``"protocol"`` how they were made (resolution, counts, methods, which metrics ran, and
  ``null_reasons``: the reason for every null key). What ``unmask compare`` and ``unmask report`` read.
* ``summary.json``: the few numbers a person compares between experiments (``SUMMARY``: short,
  stable names, numbers or null, at most ``SUMMARY_BUDGET`` keys; both in ``scores``): what ``dvc metrics show`` prints.
* ``per_image.parquet``: one row per sample: key, mask_type, coverage, yaw, variant, identity,
  source, then one column per per-image score, named like the metrics.json keys.
* ``photos.parquet`` (with ``--photos``): one row per photo: ``file``, ``face`` (found), ``coverage_pred``
  (share of the photo in the predicted map), ``reason`` (why no face); with ``--photo-labels`` also
  ``mask_type``, ``wear``, ``coverage_label``, ``dice``, ``iou`` (0 when no face was found), ``mask_left``,
  and ``category`` when the labels have that column. With several ``--photo-labels`` sets, each further
  set ``<name>`` has its own ``photos_<name>.parquet`` (``photos_file``).
* with ``--identity``, when the samples carry identities: ``verification_protocol.csv`` (+ its
  ``.json`` sidecar: seed, impostors, counts, a digest of the samples) the pairs of the face
  verification protocol (``unmask.identity.build_protocol``), ``verify.csv`` (one row per probe
  type, ``unmask.identity.verify``'s table) and ``verify_pairs.parquet`` (the distance of every
  pair for every probe type).
* ``figures/*.png``.

Groups (the part before the slash):

* methods, images compared against the ground-truth unmasked face:
  ``two_stage`` (M-Seg's predicted map -> FU-Net: the full chain), ``two_stage_gt_map`` (FU-Net
  given the ground-truth map), ``one_stage`` (FU-Net trained without the map: the ablation),
  ``recon_only`` (FU-Net trained without the GAN, reconstruction loss only, given the two-stage
  model's predicted map: is the GAN sharper than a plain U-Net?),
  ``<baseline>_pred_map`` / ``<baseline>_gt_map`` (e.g. ``telea_pred_map``, ``ns_gt_map``), and
  ``input`` (the masked face itself: what doing nothing scores).
  Metrics: ``psnr``, ``ssim``, ``fid``, ``niqe``, ``brisque``, ``lpips``, ``sharpness`` (fine
  detail inside the ground-truth map relative to the ground truth's: 1 is ideal, < 1 blurry; see
  ``unmask.metrics.sharpness``), ``map_coverage`` (mean
  fraction of pixels in the map the method was given; null for methods given no map), and with
  ``--identity`` ``id_distance`` and ``id_match_rate`` (each output vs its own ground truth, over
  the first ``--identity-max-samples`` samples of the split in key order).
* ``verify`` (with ``--identity``): face verification against *other* photos of the same person
  (genuine pairs) and of other people (impostor pairs), the probes being the same first samples:
  ``verify/<probe_type>/accuracy`` (at the 0.6 threshold), ``verify/<probe_type>/tar_far_1`` and
  ``verify/<probe_type>/tar_far_0.1`` (TAR at FAR 1% / 0.1%, thresholds set on the ground-truth
  probes), ``verify/<probe_type>/genuine_distance`` and ``impostor_distance`` (mean embedding
  distance of its genuine / impostor pairs), ``verify/<probe_type>/n_invalid`` (pairs whose probe
  has no embedding: rejections);
  probe types ``ground_truth`` (the unmasked crop), ``masked`` (the input) and the methods;
  ``verify/n_probes``, ``verify/n_pairs``, ``verify/n_skipped`` (probes with no other photo of their
  identity), ``verify/n_gallery``, ``verify/threshold_far_1``, ``verify/threshold_far_0.1``.
* ``seg``: stage 1 against the ground-truth maps: ``pixel_accuracy``, ``dice``, ``iou`` (means of
  per-image values), ``*_pooled`` (from the summed confusion counts), ``coverage`` (predicted).
* ``data``: ``count`` (samples), ``coverage`` (mean ground-truth map coverage).
* ``photos``: ``count``, ``faces_found``, ``no_face``, ``no_face_rate``, ``coverage`` (of the photos with a
  face: share of the photo in the predicted map); ``dice``, ``iou`` (with ``--photo-labels``: means over
  the labelled photos, a photo with no face found scoring 0; otherwise null with the reason),
  ``dice_face_found``, ``iou_face_found`` (means over the photos with a face), ``mask_left``,
  ``mask_left_face_found`` (the share of a label's pixels stage 2 left unfilled), ``coverage_label``, and per
  mask type and wear (``labels.MASK_TYPES``, ``labels.WEARS``) ``n_mask_<type>``, ``dice_mask_<type>``,
  ``iou_mask_<type>``, ``n_wear_<wear>``, ``dice_wear_<wear>``, ``iou_wear_<wear>`` (null when none); with a
  ``category`` column in the labels, per category present ``n_category_<c>``, ``dice_category_<c>``,
  ``iou_category_<c>``.
* ``photos_<name>``: the same for each further labelled set (``--photo-labels`` given again; ``<name>``:
  ``labels.label_set_names``, e.g. ``photos_hard`` for ``labels/real-masked-photos-hard``).
"""

from __future__ import annotations

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.json"
PER_IMAGE_FILE = "per_image.parquet"
PHOTOS_FILE = "photos.parquet"
FIGURES_DIR = "figures"
PROTOCOL = "protocol"

SEG = "seg"
DATA = "data"
PHOTOS = "photos"

TWO_STAGE = "two_stage"
TWO_STAGE_GT_MAP = "two_stage_gt_map"
ONE_STAGE = "one_stage"
RECON_ONLY = "recon_only"
INPUT = "input"
PRED_MAP, GT_MAP = "pred", "gt"  # which map a method is given
MAP_NAMES = {PRED_MAP: "predicted map", GT_MAP: "ground-truth map"}

# Per-method metrics in the order of the paper's table, then the extras.
IMAGE_METRICS = ("ssim", "psnr", "fid", "niqe", "brisque", "lpips", "sharpness")
SEG_METRICS = ("pixel_accuracy", "dice", "iou")
MAP_COVERAGE = "map_coverage"
ID_DISTANCE, ID_MATCH_RATE = "id_distance", "id_match_rate"

# Face verification (``--identity``): flat keys ``verify/<probe_type>/<metric>``
VERIFY = "verify"
VERIFY_PROTOCOL_FILE = "verification_protocol.csv"
VERIFY_FILE = "verify.csv"
VERIFY_PAIRS_FILE = "verify_pairs.parquet"
MASKED_PROBE = "masked"  # the other reference probe, unmask.identity.GROUND_TRUTH_PROBE, is the protocol's
VERIFY_METRICS = ("accuracy", "tar_far_1", "tar_far_0.1", "genuine_distance", "impostor_distance", "n_invalid")


def photos_group(label_set: str | None = None) -> str:
    """The group of a labelled photo set: ``photos`` for the first (or no labels), ``photos_<name>``
    for each further one (``labels.label_set_names``)."""
    return f"{PHOTOS}_{label_set}" if label_set else PHOTOS


def photos_file(label_set: str | None = None) -> str:
    """The per-photo table of a labelled photo set: ``photos.parquet``, ``photos_<name>.parquet``."""
    return f"{photos_group(label_set)}.parquet"


def probe_type(method: str) -> str:
    """The verification probe type of a method group: the no-op ``input`` is the ``masked`` probe."""
    return MASKED_PROBE if method == INPUT else method


def verify_key(probe: str | None, metric: str) -> str:
    """``verify/two_stage/accuracy``; ``verify/n_pairs`` for ``probe=None``."""
    return f"{VERIFY}/{metric}" if probe is None else f"{VERIFY}/{probe}/{metric}"


def key(group: str, metric: str) -> str:
    """The flat key of a metric: ``two_stage/psnr``."""
    return f"{group}/{metric}"


def split_key(flat: str) -> tuple[str, str]:
    group, _, metric = flat.partition("/")
    return group, metric


def baseline_method(baseline: str, map_source: str) -> str:
    """``telea`` + ``pred`` -> ``telea_pred_map``."""
    return f"{baseline}_{map_source}_map"


def method_label(method: str) -> str:
    """Human name of a method group, for tables and figures."""
    from .baselines import BASELINES

    fixed = {
        TWO_STAGE: "Two-stage (GANMasker)",
        TWO_STAGE_GT_MAP: "Two-stage, ground-truth map",
        ONE_STAGE: "One-stage (no map)",
        RECON_ONLY: "Reconstruction-only U-Net (no GAN)",
        INPUT: "Masked input (no-op)",
    }
    if method in fixed:
        return fixed[method]
    for name, baseline in BASELINES.items():
        for source, words in MAP_NAMES.items():
            if method == baseline_method(name, source):
                return f"{baseline.label}, {words}"
    return method


def method_order() -> list[str]:
    """Methods in the paper's row order: ours, the ablation, the baselines, the no-op."""
    from .baselines import BASELINES

    rows = [TWO_STAGE, TWO_STAGE_GT_MAP, ONE_STAGE, RECON_ONLY]
    rows += [baseline_method(name, source) for name in BASELINES for source in (PRED_MAP, GT_MAP)]
    return rows + [INPUT]
