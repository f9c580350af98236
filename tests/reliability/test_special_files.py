"""Inputs that are not regular files (a FIFO, /dev/zero) or that torch warns about (an old pickle): each is named
in its one line for what it is, never read (a read would block or not end), and nothing else is printed."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import pytest

from maskgen.source import BadImage, load_image
from unmask import checkpoint as ckpt


@pytest.fixture(params=["fifo", "/dev/zero"])
def special(request, tmp_path) -> Path:
    if request.param == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
        return path
    return Path(request.param)


def test_an_image_input_that_is_not_a_regular_file_is_named_so(special):
    with pytest.raises(BadImage, match="^not a regular file$"):
        load_image(special)


def test_a_checkpoint_that_is_not_a_regular_file_is_not_a_checkpoint(special, tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="not a checkpoint \\(not a regular file\\)"):
        ckpt.load_checkpoint(special)
    run = tmp_path / "run"
    gan = ckpt.checkpoint_path(run, "gan")
    gan.parent.mkdir(parents=True)
    gan.symlink_to(special)  # under the stage's name: refused, not taken for a run without stage 2
    with pytest.raises(ckpt.CheckpointError, match=f"^{gan}: not a checkpoint"):
        ckpt.load_models(run)
    with pytest.raises(ckpt.CheckpointError, match=f"^{gan}: not a checkpoint"):
        ckpt.gan_checkpoint_file(run)


def test_an_old_pickle_is_refused_in_its_line_without_torchs_warnings(tmp_path):
    path = tmp_path / "legacy.pt"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with pytest.raises(ckpt.CheckpointError, match="not a torch file, expected"):
            ckpt.load_checkpoint(path)
    assert [str(w.message) for w in said] == []
