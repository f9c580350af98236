"""Real photos scored against hand-drawn labels (``--photo-labels``): Dice and IoU per photo against
values worked out by hand, photos with no face counted as 0, the breakdowns, the summary, the
report's tables and worst-Dice figure, and the CLI's refusals before anything is written."""

from __future__ import annotations

import json
import re

import cv2
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.unmask.evaluation.testutils import EVAL_RES, EXPECTED, LABELLED, StandInUnmasker, write_labelled_photos
from unmask.evaluation import FIGURES_DIR, PHOTOS_FILE, PROTOCOL, SUMMARY_FILE
from unmask.evaluation.cli import evaluate as evaluate_command
from unmask.evaluation.cli import report
from unmask.evaluation.evaluate import evaluate
from unmask.evaluation.labels import load_photo_labels
from unmask.evaluation.options import EvalOptions
from unmask.evaluation.photos import WORST_PHOTOS_FILE, evaluate_photos
from unmask.evaluation.scores import SUMMARY, SUMMARY_BUDGET

DICE = sum(d for d, _ in EXPECTED.values()) / 4  # (2/3 + 1 + 0 + 0) / 4
IOU = sum(i for _, i in EXPECTED.values()) / 4  # (1/2 + 1 + 0 + 0) / 4


@pytest.fixture
def labelled(tmp_path):
    return write_labelled_photos(tmp_path / "set")


def test_dice_and_iou_per_photo_by_hand(labelled, tmp_path):
    photos, labels = labelled
    scores, table, written = evaluate_photos(StandInUnmasker(), photos, None, 2, tmp_path / "figures",
                                             load_photo_labels(labels, photos), worst=2)
    assert list(table["file"]) == list(LABELLED)  # the labelled photos only, by name
    for row in table.to_dict("records"):
        assert (row["dice"], row["iou"]) == pytest.approx(EXPECTED[row["file"]]), row["file"]
    assert list(table["face"]) == [True, True, False, True]
    assert table.loc[2, "reason"].startswith("no face")
    assert table.loc[0, "coverage_label"] == pytest.approx(800 / (48 * 64))
    assert table.loc[0, "coverage_pred"] == pytest.approx(400 / (48 * 64))
    assert list(table["mask_type"]) == ["surgical", "surgical", "n95", "cloth"]
    assert scores["count"] == (4.0, None) and scores["no_face"] == (1.0, None)
    assert scores["dice"][0] == pytest.approx(DICE) and scores["iou"][0] == pytest.approx(IOU)
    assert scores["dice_face_found"][0] == pytest.approx((2 / 3 + 1) / 3)  # a, b, d
    # mask left outside the filled region (the map grown a pixel): a keeps label rows 20-28 of 20-39
    # (rows 29-39 filled), 360 of 800 pixels; b none; c (no face) and d (disjoint) all of it
    assert list(table["mask_left"]) == pytest.approx([0.45, 0.0, 1.0, 1.0])
    assert scores["mask_left"][0] == pytest.approx(2.45 / 4)
    assert scores["mask_left_face_found"][0] == pytest.approx(1.45 / 3)
    assert scores["dice_mask_surgical"][0] == pytest.approx((2 / 3 + 1) / 2)
    assert scores["iou_mask_surgical"][0] == pytest.approx(0.75)
    assert scores["n_mask_surgical"] == (2.0, None)
    assert scores["dice_mask_n95"] == (0.0, None)  # its one photo had no face: counted, as 0
    assert scores["n_mask_kn95"] == (0.0, None) and scores["dice_mask_kn95"][0] is None
    assert "kn95" in scores["dice_mask_kn95"][1]
    assert scores["dice_wear_correct"][0] == pytest.approx((2 / 3 + 0) / 2)
    assert scores["iou_wear_nose"] == (1.0, None) and scores["n_wear_chin"] == (1.0, None)
    # the worst two with a face found: d (Dice 0), then a (2/3); the sheet of the first two with a face
    assert written == ["photos.png", WORST_PHOTOS_FILE]
    sheet = cv2.imread(str(tmp_path / "figures" / WORST_PHOTOS_FILE))
    assert sheet is not None and sheet.shape[1] == 2 * 256


def test_max_photos_takes_the_first_labelled_photos(labelled):
    photos, labels = labelled
    scores, table, written = evaluate_photos(StandInUnmasker(), photos, 2, 0, None, load_photo_labels(labels, photos))
    assert list(table["file"]) == ["a.png", "b.png"] and written == []
    assert scores["dice"][0] == pytest.approx((2 / 3 + 1) / 2)


@pytest.fixture
def labelled_evaluation(labelled, tmp_path_factory, eval_dataset, two_stage_run, monkeypatch):
    """An evaluation of the tiny run whose Unmasker, on photos, is the stand-in."""
    from unmask.predict import Unmasker

    stand_in = StandInUnmasker()
    monkeypatch.setattr(Unmasker, "__call__", lambda self, photo, aligned=None: stand_in(photo, aligned))
    photos, labels = labelled
    out = tmp_path_factory.mktemp("labelled") / "out"
    values = evaluate(EvalOptions(data=eval_dataset, checkpoint=two_stage_run, out=out, resolution=EVAL_RES,
                                  max_samples=1, baselines=(), photos=photos, photo_labels=labels, device="cpu",
                                  sheet_rows=1, failures=3))
    return out, values


def test_an_evaluation_with_labels(labelled_evaluation):
    out, values = labelled_evaluation
    assert values["photos/count"] == 4  # the unlabelled photo of the folder is not evaluated
    assert values["photos/dice"] == pytest.approx(DICE) and values["photos/iou"] == pytest.approx(IOU)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert list(summary) == list(SUMMARY) and len(summary) <= SUMMARY_BUDGET
    assert "photo_plausible" not in summary and not any("plausib" in k for k in values)
    assert summary["photo_dice"] == pytest.approx(DICE) and summary["photo_iou"] == pytest.approx(IOU)
    table = pd.read_parquet(out / PHOTOS_FILE)
    assert {"file", "face", "dice", "iou", "mask_type", "wear", "coverage_pred", "coverage_label"} <= set(table.columns)
    protocol = values[PROTOCOL]
    assert protocol["photos"]["labels"]["evaluated"] == 4
    assert WORST_PHOTOS_FILE in protocol["figures"] and (out / FIGURES_DIR / WORST_PHOTOS_FILE).is_file()


def test_photo_scores_are_null_with_a_reason_without_labels(labelled, eval_dataset, two_stage_run, tmp_path,
                                                            monkeypatch):
    from unmask.predict import Unmasker

    stand_in = StandInUnmasker()
    monkeypatch.setattr(Unmasker, "__call__", lambda self, photo, aligned=None: stand_in(photo, aligned))
    photos, _ = labelled
    (photos / "unlabelled.png").unlink()  # the stand-in knows the labelled photos only
    values = evaluate(EvalOptions(data=eval_dataset, checkpoint=two_stage_run, out=tmp_path / "out",
                                  resolution=EVAL_RES, max_samples=1, baselines=(), photos=photos, device="cpu"))
    assert values["photos/count"] == 4 and values["photos/no_face"] == 1
    assert values["photos/dice"] is None and values["photos/iou"] is None
    assert "--photo-labels" in values[PROTOCOL]["null_reasons"]["photos/dice"]
    assert "photos.png" in values[PROTOCOL]["figures"] and WORST_PHOTOS_FILE not in values[PROTOCOL]["figures"]
    assert json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())["photo_dice"] is None


def _table(text: str, heading: str) -> list[list[str]]:
    block = text.split(heading, 1)[1].split("\n\n")[1]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()[2:]]


def test_report_tables_and_worst_figure(labelled_evaluation, tmp_path):
    out, _ = labelled_evaluation
    reports = tmp_path / "report"
    result = CliRunner().invoke(report, [f"tiny={out}", "-o", str(reports)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = (reports / "report.md").read_text()
    by_type = _table(text, "Dice and IoU by mask type")
    assert by_type[0] == ["surgical", "2", "0", f"{(2 / 3 + 1) / 2:.4f}", "0.7500"]
    assert by_type[1] == ["n95", "1", "1", "0.0000", "0.0000"]
    assert by_type[-1] == ["all", "4", "1", f"{DICE:.4f}", f"{IOU:.4f}"]
    by_wear = _table(text, "Dice and IoU by wear")
    assert [row[0] for row in by_wear] == ["correct", "nose", "chin", "all"]  # the contract's order, present ones
    assert "No face found (scored 0): 1 photos: c.png" in text
    worst = re.findall(r"!\[[^\]]*\]\(([^)]*" + re.escape(WORST_PHOTOS_FILE) + r")\)", text)
    assert len(worst) == 1 and (reports / worst[0]).is_file()
    assert "plausib" not in text.lower()


def test_cli_refuses_bad_labels_before_writing(labelled, eval_dataset, two_stage_run, tmp_path):
    photos, labels = labelled
    (labels / "masks" / "b.png").unlink()
    out = tmp_path / "out"
    args = ["--data", str(eval_dataset), "--checkpoint", str(two_stage_run), "-o", str(out), "--no-progress",
            "--max-samples", "1", "--baselines", "none", "--device", "cpu"]
    result = CliRunner().invoke(evaluate_command, args + ["--photos", str(photos), "--photo-labels", str(labels)])
    assert result.exit_code == 1, result.output  # a bad input file, not a usage error
    error = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and str(labels / "masks" / "b.png") in error[0] and "label PNG missing" in error[0]
    assert not out.exists()  # nothing written
    alone = CliRunner().invoke(evaluate_command, args + ["--photo-labels", str(labels)])
    assert alone.exit_code == 1 and "--photo-labels requires --photos" in alone.output  # each fine alone
    assert not out.exists()


def test_cli_says_how_many_photos_were_used_and_fails_when_none(eval_dataset, two_stage_run, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_text("not an image")
    (photos / "c.png").write_bytes(bytes(range(256)) * 4)
    out = tmp_path / "out"
    args = ["--data", str(eval_dataset), "--checkpoint", str(two_stage_run), "-o", str(out), "--no-progress",
            "--max-samples", "1", "--baselines", "none", "--device", "cpu", "--photos", str(photos)]
    result = CliRunner().invoke(evaluate_command, args)
    assert result.exit_code == 1, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and f"no usable photo in {photos}: photos: 0 of 2 used (2 unreadable" in error[0], error
