"""The hard set of real-photo labels (labels/real-masked-photos-hard): it keeps the evaluator's contract
and its categories.csv gives each labelled photo one known category."""

from __future__ import annotations

import csv

import pytest

from tests.testdata import REAL_MASKED, REPO
from unmask.evaluation.labels import LABELS_FILE, load_photo_labels

HARD_LABELS = REPO / "labels" / "real-masked-photos-hard"
CATEGORIES = ("gaiter", "printed", "closeup", "respirator")  # as make_labels.CATEGORIES


def test_hard_labels_keep_the_contract_and_have_one_category_each():
    if not REAL_MASKED.is_dir():
        pytest.skip(f"the real masked photos are not here: {REAL_MASKED}")
    loaded = load_photo_labels(HARD_LABELS / LABELS_FILE, REAL_MASKED)  # every row, every label PNG checked
    with open(HARD_LABELS / "categories.csv", newline="") as handle:
        categories = {row["photo"]: row["category"] for row in csv.DictReader(handle)}
    assert sorted(categories) == sorted(label.photo.name for label in loaded)
    assert set(categories.values()) == set(CATEGORIES)
    first = {row["photo"] for row in csv.DictReader(open(REPO / "labels" / "real-masked-photos" / LABELS_FILE))}
    assert not first & set(categories)  # no photo of the first set
