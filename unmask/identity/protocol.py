"""The face-verification protocol: which pairs of photos are compared, built once and saved.

Verification against other photos of the same person (``build_protocol``): for every probe sample
(with a known identity) one genuine pair with a ground-truth crop of a *different* source photo of
the same identity, and ``impostors`` pairs with photos of other identities. Choices are seeded per
probe key (the same seed and samples give the same protocol; adding a sample does not reshuffle
the others' pairs). Probes with no other photo of their identity are skipped and counted
(``protocol.attrs``). The protocol is saved next to the results (``save_protocol``: CSV or parquet
+ a ``.json`` sidecar) so that runs are compared on the same pairs.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from maskgen.files import write_csv_atomic, write_parquet_atomic, write_text_atomic

PROTOCOL_COLUMNS = ["probe_key", "gallery_key", "genuine", "probe_identity", "gallery_identity"]
PROTOCOL_FORMAT = "ganmasker-identity-protocol/1"


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
