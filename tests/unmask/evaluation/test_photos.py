"""Real masked photos: detection, both stages, paste-back; faces found or not, never a crash."""

from __future__ import annotations

import pytest

from tests.unmask.evaluation.testutils import EVAL_RES
from unmask.evaluation import PHOTOS_FILE
from unmask.evaluation.evaluate import evaluate
from unmask.evaluation.options import EvalOptions
from unmask.evaluation.photos import evaluate_photos
from unmask.predict import Unmasker

# small photos, quick to detect: two with a face the HOG detector finds, one without
PHOTOS = ("0376.jpg", "0404.jpg", "0427.jpg")


@pytest.fixture
def photo_dir(tmp_path, real_masked_dir):
    missing = [name for name in PHOTOS if not (real_masked_dir / name).is_file()]
    if missing:
        pytest.skip(f"photos {missing} not in {real_masked_dir}")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        (folder / name).symlink_to(real_masked_dir / name)
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_photo_counts(photo_dir, two_stage_run, tmp_path):
    unmasker = Unmasker.from_checkpoint(two_stage_run)
    results, table, written = evaluate_photos(unmasker, photo_dir, None, 4, tmp_path / "figures")
    assert results["count"] == (3.0, None)
    found, no_face = results["faces_found"][0], results["no_face"][0]
    assert found + no_face == 3 and found >= 1
    assert results["no_face_rate"][0] == pytest.approx(no_face / 3)
    assert 0 <= results["coverage"][0] <= 1
    assert results["dice"] == (None, "no labelled photos (--photo-labels)")  # no labels: no scores
    assert list(table["file"]) == list(PHOTOS)
    assert list(table.columns) == ["file", "face", "coverage_pred", "reason"]  # no label columns of NaN
    assert table.loc[~table["face"], "reason"].str.startswith("no face").all()
    assert written == ["photos.png"] and (tmp_path / "figures" / "photos.png").is_file()


def test_photos_in_an_evaluation(photo_dir, eval_dataset, two_stage_run, tmp_path):
    summary = evaluate(EvalOptions(data=eval_dataset, checkpoint=two_stage_run, out=tmp_path / "out",
                                   resolution=EVAL_RES, max_samples=1, baselines=(), photos=photo_dir, max_photos=2,
                                   device="cpu"))
    assert summary["photos/count"] == 2
    assert summary["photos/faces_found"] + summary["photos/no_face"] == 2
    assert (tmp_path / "out" / PHOTOS_FILE).is_file()
    assert summary["protocol"]["photos"]["max_photos"] == 2
