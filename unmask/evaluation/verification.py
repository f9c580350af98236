"""Identity preservation and face verification (``--identity``), on ``unmask.identity``: the
identity samples (the first ``--identity-max-samples`` of the split in key order), the
verification protocol of those samples as probes, each output's face-recognition distance to its
own ground truth (``IdentityScores``), and the ``verify`` keys of metrics.json (``verify_scores``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from unmask import identity
from unmask.identity import GROUND_TRUTH_PROBE

from . import ID_DISTANCE, ID_MATCH_RATE, INPUT, VERIFY, VERIFY_METRICS, key, probe_type
from .samples import EvalBatch, iter_metadata
from .scores import Scores

ID_SELECTED = "id_selected"  # per-image column: the sample is one of the identity samples
NO_EMBEDDING = "no face embedding could be computed (e.g. no landmarks in the samples' metadata)"


def scan_identities(data: Path, split: str, max_samples: int | None = None) -> pd.DataFrame:
    """``key, source, identity`` of the samples an evaluation streams (the first ``max_samples`` in
    shard order), read from their json metadata only: a cheap first pass (no image is decoded),
    so that the verification protocol, and with it the gallery samples, is known before the pass."""
    rows = []
    for shard_key, meta in iter_metadata(data, split, max_samples):
        ident = meta.get("identity")
        source = meta.get("source")
        rows.append({"key": str(meta.get("key", shard_key)), "source": None if source is None else str(source),
                     "identity": None if ident is None or str(ident) == "" else str(ident)})
    return pd.DataFrame(rows, columns=["key", "source", "identity"])


def select_identity_keys(keys: list[str], max_samples: int | None) -> list[str]:
    """The identity samples: the first ``max_samples`` keys in key order (all for None)."""
    ordered = sorted(dict.fromkeys(str(k) for k in keys))
    return ordered if max_samples is None else ordered[:max_samples]


def probe_protocol(samples: pd.DataFrame, probes: list[str], seed: int,
                   impostors: int) -> pd.DataFrame:
    """The verification protocol of the evaluated samples, restricted to the probes in ``probes``.

    Built over *all* the samples (any sample of the split can be a gallery photo), then only the
    pairs of the chosen probes are kept: a probe's pairs are seeded by its key, so they do not
    depend on how many probes are chosen. ``attrs`` as ``build_protocol``'s, the counts those of
    the kept probes, plus ``max_probes`` and ``probe_selection``."""
    full = identity.build_protocol(samples, seed=seed, impostors=impostors)
    chosen = set(probes)
    protocol = full[full["probe_key"].astype(str).isin(chosen)].reset_index(drop=True)
    attrs = dict(full.attrs)
    skipped = [k for k in attrs.get("skipped_probes", []) if k in chosen]
    known = samples.loc[samples["key"].astype(str).isin(chosen), "identity"].notna().sum()
    n_probes = len(identity.probe_keys(protocol)) if len(protocol) else 0
    n_impostor = int((~protocol["genuine"].astype(bool)).sum())
    attrs.update({
        "probe_selection": "the first max_probes samples of the evaluated split in key order "
                           "(gallery photos: any sample of the evaluated split)",
        "max_probes": len(probes), "n_probes": n_probes, "n_skipped": len(skipped), "skipped_probes": skipped,
        "n_selected_no_identity": int(len(probes) - known), "n_pairs": int(len(protocol)),
        "n_missing_impostors": int(impostors * n_probes - n_impostor),
        "n_probes_all": attrs.get("n_probes"),
        "n_gallery": len(identity.gallery_keys(protocol)) if len(protocol) else 0,
    })
    protocol.attrs = attrs
    return protocol


class IdentityScores:
    """Face-recognition distance of each method's output (and of the masked input) to its own
    ground truth, both embedded with the ground truth's landmarks, over the identity samples
    (``select_identity_keys``); and face verification of those samples as probes.

    Each image is embedded once: the ground-truth crop of a sample that is both an identity sample
    and a gallery photo serves as both (``reference``). Only embeddings (128 floats) are kept:
    the gallery photos' crops are embedded when the stream reaches them."""

    def __init__(self, selected: list[str] | None = None, protocol: pd.DataFrame | None = None,
                 verify_reason: str | None = "not requested", workers: int = -1) -> None:
        self.workers = workers  # processes for the face descriptors (identity.embed; -1 = all cores)
        self.selected = None if selected is None else set(selected)  # None: every sample
        self.protocol = protocol
        self.verify_reason = verify_reason
        self.gallery = set(identity.gallery_keys(protocol)) if protocol is not None and len(protocol) else set()
        self.reference: dict[str, np.ndarray] = {}  # key -> embedding of its ground-truth (unmasked) crop
        self.embeddings: dict[str, dict[str, np.ndarray]] = {}  # method -> key -> embedding of its output
        self.distances: dict[str, dict[str, float]] = {}  # method -> key -> distance to the ground truth
        self.n_embedded = 0

    @property
    def dim(self) -> int:
        """The embedding size (a NaN row of it stands for an embedding never computed)."""
        if self.reference:
            return len(next(iter(self.reference.values())))
        return identity.EMBEDDING_DIM

    def _embed(self, images: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
        self.n_embedded += len(images)
        return np.asarray(identity.embed(images, landmarks, workers=self.workers), np.float64).reshape(len(images), -1)

    def update(self, batch: EvalBatch, outputs: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> None:
        unknown = np.full((68, 2), np.nan)  # no landmarks: embed returns a NaN row
        landmarks = [unknown if points is None else points for points in batch.landmarks]
        keys = [str(info["key"]) for info in batch.info]
        chosen = [i for i, k in enumerate(keys) if self.selected is None or k in self.selected]
        wanted = {i for i, k in enumerate(keys) if (i in chosen or k in self.gallery) and k not in self.reference}
        wanted = sorted({keys[i]: i for i in sorted(wanted)}.values())  # a key twice in a batch: once
        # One call for the batch's ground truths and every method's outputs: enough rows to share out.
        groups = [(None, batch.unmasked, wanted)] + ([(name, images, chosen) for name, (images, _) in outputs.items()]
                                                     if chosen else [])
        if not any(len(idx) for _, _, idx in groups):
            return
        rows = self._embed([images[i] for _, images, idx in groups for i in idx],
                           [landmarks[i] for _, _, idx in groups for i in idx])
        starts = np.cumsum([0] + [len(idx) for _, _, idx in groups])
        for i, row in zip(wanted, rows[:len(wanted)], strict=True):
            self.reference[keys[i]] = row
        if not chosen:
            return
        reference = np.stack([self.reference[keys[i]] for i in chosen])
        for (name, _, _), start in zip(groups[1:], starts[1:], strict=False):
            method_rows = rows[start:start + len(chosen)]
            distance = np.asarray(identity.id_distance(method_rows, reference), np.float64).reshape(-1)
            for i, row, d in zip(chosen, method_rows, distance, strict=True):
                self.embeddings.setdefault(name, {})[keys[i]] = row
                self.distances.setdefault(name, {})[keys[i]] = float(d)

    def per_image(self, info: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        keys = [str(i["key"]) for i in info]
        columns = {ID_SELECTED: np.asarray([self.selected is None or k in self.selected for k in keys], bool)}
        for name, values in self.distances.items():
            columns[key(name, ID_DISTANCE)] = np.asarray([values.get(k, math.nan) for k in keys], np.float64)
        return columns

    def results(self, method: str) -> dict[str, tuple[float | None, str | None]]:
        distances = np.asarray(list(self.distances.get(method, {}).values()), np.float64)
        valid = distances[np.isfinite(distances)]
        if not len(valid):
            return {ID_DISTANCE: (None, NO_EMBEDDING), ID_MATCH_RATE: (None, NO_EMBEDDING)}
        rate = identity.id_match_rate(distances)[0]  # rows without an embedding count as non-matches
        return {ID_DISTANCE: (float(valid.mean()), None), ID_MATCH_RATE: (float(rate), None)}

    # ----------------------------------------------------------------- verification

    def probe_embeddings(self, methods: list[str]) -> dict[str, dict[str, np.ndarray]]:
        """probe type -> key -> embedding: ground truth, the masked input, then the methods."""
        probes = identity.probe_keys(self.protocol)
        nan = np.full(self.dim, np.nan)
        out = {GROUND_TRUTH_PROBE: {k: self.reference.get(k, nan) for k in probes}}
        for name in [INPUT] + [m for m in methods if m != INPUT]:
            if name in self.embeddings:
                out[probe_type(name)] = {k: self.embeddings[name].get(k, nan) for k in probes}
        return out

    def verification(self, methods: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        """(``verify``'s table, one row per probe type; the distance of every pair per probe type;
        the warnings raised, e.g. a FAR too small for the number of impostor pairs)."""
        import warnings

        probes = self.probe_embeddings(methods)
        nan = np.full(self.dim, np.nan)  # a gallery photo the stream never reached (should not happen)
        gallery = {k: self.reference.get(k, nan) for k in identity.gallery_keys(self.protocol)}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = identity.verify(probes, gallery, self.protocol)
        pairs = self.protocol[["probe_key", "gallery_key", "genuine"]].copy()
        for name, vectors in probes.items():
            pairs[name] = identity.pair_distances(vectors, gallery, self.protocol)
        notes = list(dict.fromkeys(str(w.message) for w in caught))
        return table, pairs, notes


def verification_reason(samples: pd.DataFrame) -> str | None:
    """Why no verification protocol can be built for these samples; None when one can."""
    if not samples["identity"].notna().any():
        return "no sample of the split has a known identity (json metadata 'identity'): no verification protocol"
    return None


def verify_scores(table: pd.DataFrame | None, protocol: pd.DataFrame | None, probe_types: list[str],
                  reason: str | None) -> dict[str, Scores]:
    """The ``verify`` keys for ``Results.put``: {group (``verify`` or ``verify/<probe>``): scores}."""
    counts = ("n_probes", "n_pairs", "n_skipped", "n_gallery")
    thresholds = ("threshold_far_1", "threshold_far_0.1")
    out: dict[str, Scores] = {}
    if table is None or reason is not None:
        out[VERIFY] = {name: (float(protocol.attrs.get(name, 0)), None) if protocol is not None
                       else (None, reason) for name in counts}
        out[VERIFY].update({name: (None, reason) for name in thresholds})
        for probe in probe_types:
            out[f"{VERIFY}/{probe}"] = {m: (None, reason) for m in VERIFY_METRICS}
        return out
    rows = {str(r["probe_type"]): r for r in table.to_dict("records")}
    out[VERIFY] = {name: (float(protocol.attrs.get(name, 0)), None) for name in counts}
    reference = rows.get(GROUND_TRUTH_PROBE, {})
    for name in thresholds:
        value = reference.get(name, math.nan)
        if value is None or not math.isfinite(value):
            why = ("no impostor pair" if value is None or math.isnan(value) else
                   "fewer finite impostor distances than the FAR allows: the threshold accepts every pair")
            out[VERIFY][name] = (None, why)
        else:
            out[VERIFY][name] = (float(value), None)
    for probe in probe_types:
        row = rows.get(probe)
        group = f"{VERIFY}/{probe}"
        if row is None:
            out[group] = {m: (None, "no embeddings for this probe type") for m in VERIFY_METRICS}
            continue
        scores: Scores = {}
        for metric in VERIFY_METRICS:
            value = row.get(metric)
            if value is None or not math.isfinite(float(value)):
                scores[metric] = (None, "no genuine pair" if metric.startswith(("tar", "genuine")) else
                                  "no impostor pair" if metric.startswith("impostor") else "no pair")
            else:
                scores[metric] = (float(value), None)
        out[group] = scores
    return out
