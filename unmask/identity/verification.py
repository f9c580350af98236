"""Identity metrics on descriptor distances: match rate, and verification accuracy and TAR at a FAR.

* ``id_match_rate(distances)``: the fraction of rows with distance <= 0.6 (output vs its own ground
  truth), over *all* rows: NaN rows count as non-matches and are reported (``n_invalid``).
* ``verification_metrics``: accuracy at the 0.6 threshold (genuine pairs accepted + impostor pairs
  rejected, over all pairs; NaN = rejected) and TAR at FAR = 1% and 0.1%, whose thresholds are set
  on the ground-truth probes (``far_thresholds``) and applied unchanged to the other probe types.
* ``verify``: all of it over a protocol's pairs (``protocol``), one row per probe type
  (ground_truth, masked, two_stage, ...).

Every function counts NaN distances (rows without an embedding) as "no match" and reports how many
there were.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .embedding import EMBEDDING_DIM, MATCH_THRESHOLD, id_distance
from .protocol import gallery_keys, probe_keys

DEFAULT_FARS = (0.01, 0.001)
GROUND_TRUTH_PROBE = "ground_truth"  # the probe type whose impostor distances set the FAR thresholds


class CoarseFARWarning(UserWarning):
    """Too few impostor pairs to estimate a target FAR: the threshold allows no false accept."""


def id_match_rate(distances: np.ndarray, threshold: float = MATCH_THRESHOLD) -> tuple[float, int, int]:
    """``(rate, n_valid, n_invalid)``: the fraction of distances <= threshold over all rows, NaN
    rows counting as non-matches; the rate is NaN for no rows at all."""
    d = np.asarray(distances, dtype=np.float64).ravel()
    valid = np.isfinite(d)
    n = d.size
    rate = float((d[valid] <= threshold).sum() / n) if n else float("nan")
    return rate, int(valid.sum()), int(n - valid.sum())


def _far_name(far: float) -> str:
    return f"{far * 100:g}"  # 0.01 -> "1", 0.001 -> "0.1"


def far_thresholds(gt_distances: np.ndarray, genuine: np.ndarray,
                   fars: Sequence[float] = DEFAULT_FARS) -> dict[float, float]:
    """Distance thresholds for the target FARs, from the impostor pairs of the reference probes.

    A pair is accepted when its distance <= threshold. For a target FAR ``f`` over ``n`` impostor
    pairs at most ``k = floor(f * n)`` of them may be accepted; the threshold is the largest one
    that accepts no more: just below the ``(k+1)``-th smallest impostor distance (``inf`` when fewer
    than ``k+1`` impostor distances are finite). NaN impostor distances are never accepted but stay
    in ``n``. With ``n < 1 / f`` no false accept is allowed (a coarse FAR estimate: warned).
    """
    d = np.asarray(gt_distances, dtype=np.float64).ravel()
    g = np.asarray(genuine, dtype=bool).ravel()
    if d.shape != g.shape:
        raise ValueError(f"{d.size} distances but {g.size} genuine flags")
    imp = np.sort(d[~g][np.isfinite(d[~g])])
    n = int((~g).sum())
    out = {}
    for far in fars:
        if n == 0:
            out[float(far)] = float("nan")
            continue
        if n * far < 1:
            warnings.warn(f"FAR {far:g} from only {n} impostor pairs: no false accept allowed",
                          CoarseFARWarning, stacklevel=3)
        k = int(math.floor(far * n + 1e-9))
        out[float(far)] = float(np.nextafter(imp[k], -np.inf)) if k < imp.size else float("inf")
    return out


def verification_metrics(distances: np.ndarray, genuine: np.ndarray, threshold: float = MATCH_THRESHOLD,
                         thresholds_from: Mapping[float, float] | None = None, *,
                         fars: Sequence[float] = DEFAULT_FARS) -> dict:
    """Verification of one probe type: accuracy at ``threshold`` and TAR at the target FARs.

    ``thresholds_from``: ``{far: distance threshold}`` from ``far_thresholds()`` on the ground-truth
    probes, applied as they are; None sets them on these distances themselves (right for the
    ground-truth probes). NaN distances are rejections.

    Keys: ``accuracy`` ((accepted genuine + rejected impostor) / pairs), ``tar`` and ``far`` at
    ``threshold``, ``tar_far_1`` / ``tar_far_0.1`` (accepted genuine / genuine pairs at the FAR
    thresholds), ``far_at_1`` / ``far_at_0.1`` (the FAR those thresholds give here),
    ``threshold_far_1`` / ``threshold_far_0.1``, ``genuine_distance`` / ``impostor_distance`` (mean
    finite distance of the genuine / impostor pairs), ``n_pairs``, ``n_genuine``, ``n_impostor``,
    ``n_invalid`` (NaN distances) and ``threshold``.
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    g = np.asarray(genuine, dtype=bool).ravel()
    if d.shape != g.shape:
        raise ValueError(f"{d.size} distances but {g.size} genuine flags")
    n_gen, n_imp = int(g.sum()), int((~g).sum())

    def accepted(t: float) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.isfinite(d) & (d <= t)  # NaN: rejected

    def rate(mask: np.ndarray, n: int) -> float:
        return float(mask.sum() / n) if n else float("nan")

    acc = accepted(threshold)
    out = {
        "accuracy": rate((acc & g) | (~acc & ~g), d.size),
        "tar": rate(acc & g, n_gen),
        "far": rate(acc & ~g, n_imp),
    }
    if thresholds_from is None:
        thresholds = far_thresholds(d, g, fars) if d.size else {float(f): float("nan") for f in fars}
    else:
        thresholds = {float(k): float(v) for k, v in thresholds_from.items()}
    for far, t in sorted(thresholds.items(), reverse=True):
        name = _far_name(far)
        a = accepted(t) if not math.isnan(t) else np.zeros_like(g)
        out[f"tar_far_{name}"] = rate(a & g, n_gen) if not math.isnan(t) else float("nan")
        out[f"far_at_{name}"] = rate(a & ~g, n_imp) if not math.isnan(t) else float("nan")
        out[f"threshold_far_{name}"] = t
    # Where the pairs fall: an output can lose accuracy by moving genuine pairs up (a lower face
    # unlike the person's) or impostor pairs down (a generic face); the means tell which.
    finite = np.isfinite(d)
    out["genuine_distance"] = float(d[g & finite].mean()) if (g & finite).any() else float("nan")
    out["impostor_distance"] = float(d[~g & finite].mean()) if (~g & finite).any() else float("nan")
    out.update({"threshold": float(threshold), "n_pairs": int(d.size), "n_genuine": n_gen,
                "n_impostor": n_imp, "n_invalid": int((~np.isfinite(d)).sum())})
    return out


def _rows_for(embeddings, keys: list[str], wanted: pd.Series, what: str) -> np.ndarray:
    """Embedding rows for the keys in ``wanted``, from an array aligned with ``keys`` or a mapping."""
    if isinstance(embeddings, pd.DataFrame):
        embeddings = {str(k): row for k, row in zip(embeddings.index, embeddings.to_numpy(), strict=True)}
    if isinstance(embeddings, Mapping):
        missing = sorted(set(wanted) - {str(k) for k in embeddings})
        if missing:
            raise KeyError(f"{what} embeddings lack {len(missing)} key(s), e.g. {missing[0]!r}")
        table = {str(k): np.asarray(v, np.float64) for k, v in embeddings.items()}
        return np.stack([table[k] for k in wanted]) if len(wanted) else np.empty((0, EMBEDDING_DIM))
    arr = np.asarray(embeddings, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != len(keys):
        raise ValueError(f"{what} embeddings: expected ({len(keys)}, {EMBEDDING_DIM}) rows aligned with "
                         f"the protocol's {what} keys, got {arr.shape}")
    index = {k: i for i, k in enumerate(keys)}
    return arr[[index[k] for k in wanted]]


def pair_distances(probe_embeddings, gallery_embeddings, protocol: pd.DataFrame) -> np.ndarray:
    """Distance of each protocol pair, ``(n_pairs,)``. Probe embeddings: rows aligned with
    ``probe_keys(protocol)`` or a mapping key -> vector; gallery: aligned with
    ``gallery_keys(protocol)`` or a mapping (or a DataFrame indexed by key)."""
    probes = _rows_for(probe_embeddings, probe_keys(protocol), protocol["probe_key"].astype(str), "probe")
    gallery = _rows_for(gallery_embeddings, gallery_keys(protocol), protocol["gallery_key"].astype(str), "gallery")
    return id_distance(probes, gallery) if len(protocol) else np.empty(0)


def verify(probe_embeddings: Mapping[str, np.ndarray], gallery_embeddings, protocol: pd.DataFrame,
           threshold: float = MATCH_THRESHOLD, fars: Sequence[float] = DEFAULT_FARS,
           reference: str = GROUND_TRUTH_PROBE, thresholds_from: Mapping[float, float] | None = None) -> pd.DataFrame:
    """Verification of several probe types on one protocol: one row per probe type.

    ``probe_embeddings``: probe type (ground_truth, masked, two_stage, ...) -> ``(n_probes, 128)``
    rows aligned with ``probe_keys(protocol)`` (or key -> vector). The FAR thresholds come from
    ``thresholds_from`` when given, else from the ``reference`` probe type (ground_truth), else
    (no reference present) each type sets its own, as the ``thresholds_from`` column says.

    Columns: probe_type, accuracy, tar_far_1, tar_far_0.1, n_pairs, n_invalid, then tar, far,
    far_at_1, far_at_0.1, threshold_far_1, threshold_far_0.1, n_genuine, n_impostor,
    n_invalid_probes (probes without an embedding), thresholds_from.
    """
    genuine = protocol["genuine"].to_numpy(dtype=bool)
    distances = {name: pair_distances(emb, gallery_embeddings, protocol) for name, emb in probe_embeddings.items()}
    source = "given"
    if thresholds_from is None and reference in distances:
        thresholds_from = far_thresholds(distances[reference], genuine, fars)
        source = reference
    keys = probe_keys(protocol)
    rows = []
    for name, d in distances.items():
        m = verification_metrics(d, genuine, threshold, thresholds_from=thresholds_from, fars=fars)
        emb = probe_embeddings[name]
        if isinstance(emb, (Mapping, pd.DataFrame)):
            emb = _rows_for(emb, keys, pd.Series(keys, dtype=str), "probe")
        n_bad = int((~np.all(np.isfinite(np.asarray(emb, np.float64)), axis=1)).sum()) if len(keys) else 0
        rows.append({"probe_type": name, **m, "n_invalid_probes": n_bad,
                     "thresholds_from": source if thresholds_from is not None else name})
    first = ["probe_type", "accuracy"] + [f"tar_far_{_far_name(f)}" for f in sorted(fars, reverse=True)] + \
            ["n_pairs", "n_invalid"]
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=first)
    table = table[first + [c for c in table.columns if c not in first]]
    table.attrs.update({k: protocol.attrs[k] for k in ("seed", "impostors", "n_probes", "n_skipped")
                        if k in protocol.attrs})
    return table
