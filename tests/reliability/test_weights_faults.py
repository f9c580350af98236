"""Stored weights that are not files (a folder, a link loop) under the names of the pretrained files: runs go on
without them as the docs promise (no perceptual term, FID null with the reason), and `unmask weights check` lists
every one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability.faults import invoke
from unmask import weights
from unmask.metrics.fid import find_fid_weights
from unmask.models.vgg import find_vgg19_weights


@pytest.fixture
def unusable_cache(tmp_path, monkeypatch) -> Path:
    """A torch hub cache whose VGG19 is a folder and whose FID Inception is a link loop."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(weights.OFFLINE_ENV, raising=False)
    folder = weights.cache_dir()
    (folder / weights.FILES["vgg19"].file_name).mkdir(parents=True)
    loop = folder / weights.FILES["fid-inception"].file_name
    os.symlink(loop.name, loop)
    return folder


def test_unusable_stored_weights_are_refused_with_the_reason_not_raised(unusable_cache, monkeypatch):
    vgg = unusable_cache / weights.FILES["vgg19"].file_name
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    path, reason = find_vgg19_weights()
    assert path is None and f"refused {vgg}: a folder" in reason
    path, reason = find_fid_weights()
    assert path is None and "Too many levels of symbolic links" in reason
    monkeypatch.delenv(weights.OFFLINE_ENV)
    with pytest.raises(weights.WeightsError, match="a folder, not the weights; it cannot be replaced"):
        weights.ensure("vgg19")  # a folder is not emptied to make room for a download
    assert vgg.is_dir()


def test_weights_check_lists_every_unusable_file(unusable_cache):
    res = invoke("weights", "check")
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert res.output.count("MISMATCH") == 2, res.output
    assert "a folder, not the weights" in res.output and "Too many levels of symbolic links" in res.output
    assert res.output.count(" missing ") == len(weights.FILES) - 2
