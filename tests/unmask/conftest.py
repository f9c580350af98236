"""Fixtures of the unmask tests (helpers live in tests.unmask.testutils)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.unmask.testutils import write_split


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train: 3 shards, 16 samples; val: 1 shard, 4 samples."""
    out = tmp_path_factory.mktemp("shards")
    write_split(out, "train", [6, 6, 4])
    write_split(out, "val", [4], start=1000)
    return out


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)  # the tiny models gain nothing from more; keeps timings steady
