"""Shared fixtures: the read-only sample data in ../shared/data (tests skip cleanly without it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GANMASKER_SHARED_DATA", REPO.parent / "shared" / "data"))
CELEBA = SHARED / "celeba-sample"
TEMPLATE_PACK = SHARED / "masktheface-templates"
REAL_MASKED = SHARED / "real-masked-photos"
WILD = SHARED / "wild-faces"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test data not found at {path} (set GANMASKER_SHARED_DATA or provide ../shared/data)")
    return path


@pytest.fixture(scope="session")
def celeba_dir() -> Path:
    return _need(CELEBA)


@pytest.fixture(scope="session")
def template_pack() -> Path:
    return _need(TEMPLATE_PACK)


@pytest.fixture(scope="session")
def real_masked_dir() -> Path:
    return _need(REAL_MASKED)


@pytest.fixture(scope="session")
def celeba_images(celeba_dir) -> list[Path]:
    return sorted((celeba_dir / "img_align_celeba").glob("*.jpg"))


def make_celeba_subset(root: Path, celeba_dir: Path, n_identities: int, per_identity: int) -> Path:
    """A CelebA-layout folder of symlinks: n identities x k images, with its identity file."""
    rows = [line.split() for line in (celeba_dir / "identity_CelebA.txt").read_text().splitlines() if line.strip()]
    by_id: dict[str, list[str]] = {}
    for name, ident in rows:
        by_id.setdefault(ident, []).append(name)
    chosen = sorted(by_id)[:n_identities]
    img_dir = root / "img_align_celeba"
    img_dir.mkdir(parents=True)
    lines = []
    for ident in chosen:
        for name in sorted(by_id[ident])[:per_identity]:
            (img_dir / name).symlink_to(celeba_dir / "img_align_celeba" / name)
            lines.append(f"{name} {ident}")
    (root / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def small_celeba(tmp_path_factory, celeba_dir) -> Path:
    """12 identities x 4 images: enough for three splits by identity, fast to build."""
    return make_celeba_subset(tmp_path_factory.mktemp("celeba-small"), celeba_dir, 12, 4)
