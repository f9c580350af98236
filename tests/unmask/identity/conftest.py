"""Aligned CelebA-sample crops (with their landmarks and one masked version each) for the identity tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

N_IDENTITIES, PER_IDENTITY, RES = 6, 3, 256  # 18 crops: ~2 s to build, ~3 s to embed on one core


@dataclass
class Faces:
    identities: list[str]  # per crop
    sources: list[str]
    keys: list[str]
    unmasked: list[np.ndarray]  # (RES, RES, 3) uint8
    masked: list[np.ndarray]
    landmarks: list[np.ndarray]  # (68, 2) crop pixels


def pick_images(celeba_dir: Path, n_identities: int, per_identity: int) -> list[tuple[str, str]]:
    """(file name, identity) for the first identities (sorted) of the identity file, first images each."""
    by_id: dict[str, list[str]] = {}
    for line in (celeba_dir / "identity_CelebA.txt").read_text().splitlines():
        if line.strip():
            name, ident = line.split()
            by_id.setdefault(ident, []).append(name)
    chosen = [i for i in sorted(by_id) if len(by_id[i]) >= per_identity][:n_identities]
    return [(name, ident) for ident in chosen for name in sorted(by_id[ident])[:per_identity]]


@pytest.fixture(scope="session")
def faces(celeba_dir) -> Faces:
    from maskgen.compose import image_to_triplets

    out = Faces([], [], [], [], [], [])
    for name, ident in pick_images(celeba_dir, N_IDENTITIES, PER_IDENTITY):
        t = image_to_triplets(celeba_dir / "img_align_celeba" / name, n=1, res=RES, seed=0)[0]
        out.identities.append(ident)
        out.sources.append(name)
        out.keys.append(t.meta.key)
        out.unmasked.append(t.unmasked)
        out.masked.append(t.masked)
        out.landmarks.append(np.asarray(t.meta.landmarks, dtype=np.float64))
    return out


@pytest.fixture(scope="session")
def gt_embeddings(faces) -> np.ndarray:
    from unmask.identity import embed

    return embed(faces.unmasked, faces.landmarks)
