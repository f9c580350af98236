"""The hard set of real-photo labels (labels/real-masked-photos-hard) passes its own self-check
(``check_labels.py --set hard``): the evaluator's contract, one known category per photo (its
``category`` column), the categories' minimums; and it shares no photo with the first set."""

from __future__ import annotations

import csv
import importlib.util

import pytest

from tests.testdata import REAL_MASKED, REPO
from unmask.evaluation.labels import LABELS_FILE

LABELS = REPO / "labels"


def _check_labels():
    spec = importlib.util.spec_from_file_location("check_labels", LABELS / "real-masked-photos" / "check_labels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _photos(folder, name=LABELS_FILE) -> set[str]:
    with open(LABELS / folder / name, newline="") as handle:
        return {row["photo"] for row in csv.DictReader(handle)}


def test_hard_labels_pass_their_self_check_and_are_new_photos(capsys):
    if not REAL_MASKED.is_dir():
        pytest.skip(f"the real masked photos are not here: {REAL_MASKED}")
    assert _check_labels().main(["--set", "hard", "--photos", str(REAL_MASKED)]) == 0, capsys.readouterr().out
    hard = _photos("real-masked-photos-hard")
    assert not hard & _photos("real-masked-photos")


def test_the_neck_option_carries_the_probable_mask_down_the_neck():
    if not REAL_MASKED.is_dir():
        pytest.skip(f"the real masked photos are not here: {REAL_MASKED}")
    import cv2
    import numpy as np

    from maskgen.landmarks import detect
    from maskgen.source import load_image

    spec = importlib.util.spec_from_file_location("make_labels", LABELS / "real-masked-photos" / "make_labels.py")
    make_labels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_labels)
    image = load_image(REAL_MASKED / "0587.jpg")  # a neck gaiter
    points = detect(image).points
    eye_distance = float(np.linalg.norm(points[42:48].mean(0) - points[36:42].mean(0)))
    below = int(points[8][1] + 1.5 * eye_distance)  # a row on the neck, under the first set's sure background
    plain = make_labels.prior(image.shape[:2], points, "correct")
    gaiter = make_labels.prior(image.shape[:2], points, "correct", neck=2.5)
    assert (plain[below] == cv2.GC_BGD).all()
    assert (gaiter[below] == cv2.GC_PR_FGD).any()
    eyes = int(points[36:48, 1].min())
    assert (gaiter[:eyes] == plain[:eyes]).all()  # the face above the eyes is as before
