"""The small source and clean build the build-fault tests start from (one of each per test module)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.faults import build_small


@pytest.fixture(scope="module")
def faces(tmp_path_factory, celeba_dir) -> Path:
    from tests.testdata import make_celeba_subset

    return make_celeba_subset(tmp_path_factory.mktemp("faces"), celeba_dir, 4, 3)


@pytest.fixture(scope="module")
def clean(faces, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "ds"
    build_small(faces, out)
    return out
