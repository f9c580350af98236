"""Shared fixtures: the read-only sample data in ../shared/data (tests skip cleanly without it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.testdata import CELEBA, REAL_MASKED, REPO, SHARED, TEMPLATE_PACK, WILD, make_celeba_subset  # noqa: F401

# Tests never download pretrained weights (CI has no network; elsewhere it would be 900 MB): a missing file is
# unavailable, as offline. tests/unmask/test_weights.py serves stand-ins through file:// URLs instead.
os.environ["UNMASK_OFFLINE"] = "1"


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


@pytest.fixture(scope="session")
def small_celeba(tmp_path_factory, celeba_dir) -> Path:
    """12 identities x 4 images: enough for three splits by identity, fast to build."""
    return make_celeba_subset(tmp_path_factory.mktemp("celeba-small"), celeba_dir, 12, 4)
