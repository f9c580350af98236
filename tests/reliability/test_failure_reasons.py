"""Failure reasons are the same bytes in every build: no memory address (an object's repr) in failures.csv or
landmarks.parquet, whatever the failure."""

from __future__ import annotations

import shutil

import pandas as pd

from maskgen import format as fmt
from maskgen.source import error_text
from tests.reliability.faults import build_small


def test_a_source_that_is_not_an_image_fails_with_the_same_bytes_in_two_builds(faces, clean, tmp_path):
    source = tmp_path / "faces"
    shutil.copytree(faces, source, symlinks=True)
    (source / "img_align_celeba" / "zz_notes.jpg").write_text("not an image, whatever its name says")
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        build_small(source, out, landmarks=str(clean / fmt.LANDMARKS))
    reasons = pd.read_csv(outs[0] / fmt.FAILURES)["reason"].tolist()
    assert reasons == ["unreadable image: UnidentifiedImageError: cannot identify image file"]
    for name in (fmt.FAILURES, fmt.LANDMARKS):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


def test_object_reprs_are_left_out_of_any_reason():
    err = ValueError(f"cannot read {object()!r} from <Decoder at 0x7F3A12>, got <lambda>")
    assert error_text(err, "a.jpg") == "ValueError: cannot read from , got <lambda>"
