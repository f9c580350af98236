"""Several labelled photo sets (``--photo-labels`` given again): each scored and reported apart under its
name (metrics group, table, worst-Dice figure, report section, summary keys), the optional ``category``
column and its breakdown, and the refusals (two sets of one name, a bad mask type) before anything runs."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from tests.unmask.evaluation.testutils import EVAL_RES, LABELLED, StandInUnmasker, write_labelled_photos
from unmask.evaluation import FIGURES_DIR, PHOTOS_FILE, PROTOCOL, SUMMARY_FILE, photos_file
from unmask.evaluation.cli import evaluate as evaluate_command
from unmask.evaluation.cli import report
from unmask.evaluation.evaluate import evaluate
from unmask.evaluation.labels import LABELS_FILE, PhotoLabelError, label_set_names, load_photo_labels
from unmask.evaluation.options import EvalOptions
from unmask.evaluation.photos import WORST_PHOTOS_FILE, worst_photos_file
from unmask.evaluation.scores import PHOTO_SUMMARY, SUMMARY, SUMMARY_BUDGET

# The hard set: three of the made-up photos (testutils.LABELLED), new mask types, a category and a note column
# that is read and ignored. Dice/IoU as in testutils: b exact (1, 1), c no face (0, 0), d disjoint (0, 0).
HARD_ROWS = [("b.png", "sports", "nose", "closeup"), ("c.png", "bandana", "correct", "gaiter"),
             ("d.png", "gaiter", "chin", "gaiter")]
FIRST_DICE, FIRST_IOU, FIRST_LEFT = (2 / 3 + 1) / 4, 1.5 / 4, 2.45 / 4  # a, b, c, d (see test_photo_labels)
HARD_DICE, HARD_IOU, HARD_LEFT = 1 / 3, 1 / 3, 2 / 3  # b, c, d; mask left: b none, c and d all


def write_hard_set(labels, hard, rows=HARD_ROWS) -> None:
    """A second labels folder ``hard`` of the photos labelled in ``labels``, with a category column."""
    (hard / "masks").mkdir(parents=True)
    lines = ["photo,label,mask_type,wear,category,note"]
    for photo, mask_type, wear, category in rows:
        shutil.copyfile(labels / "masks" / photo, hard / "masks" / photo)
        lines.append(f"{photo},masks/{photo},{mask_type},{wear},{category},drawn by hand")
    (hard / LABELS_FILE).write_text("\n".join(lines) + "\n")


@pytest.fixture
def two_sets(tmp_path):
    """(photos, labels/real-masked-photos, labels/real-masked-photos-hard)."""
    photos, made = write_labelled_photos(tmp_path / "made")
    first = tmp_path / "labels" / "real-masked-photos"
    first.parent.mkdir()
    made.rename(first)
    hard = tmp_path / "labels" / "real-masked-photos-hard"
    write_hard_set(first, hard)
    return photos, first, hard


def test_set_names_drop_the_words_shared_with_the_first():
    assert label_set_names(["labels/real-masked-photos", "labels/real-masked-photos-hard"]) == [None, "hard"]
    assert label_set_names(["labels/real-masked-photos", "more/Sports Masks"]) == [None, "sports_masks"]
    assert label_set_names(["a/labels.csv", "b/hard.csv", "c/real-masked-photos"]) == [None, "hard",
                                                                                         "real_masked_photos"]
    assert label_set_names([]) == [] and label_set_names(["labels/real-masked-photos"]) == [None]
    with pytest.raises(ValueError, match="labels set named 'hard' like b/hard") as caught:
        label_set_names(["a/real-masked-photos", "b/hard", "c/real-masked-photos-hard"])
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="given twice"):
        label_set_names(["a/real-masked-photos", "a/real-masked-photos/"])


def test_options_take_one_path_or_several():
    one = EvalOptions(data="d", checkpoint="c", out="o", photos="p", photo_labels="labels/real-masked-photos")
    assert one.photo_labels == (one.photo_labels[0],) and one.photo_labels[0].name == "real-masked-photos"
    assert EvalOptions(data="d", checkpoint="c", out="o").photo_labels == ()
    assert EvalOptions(data="d", checkpoint="c", out="o", photo_labels=None).photo_labels == ()
    with pytest.raises(ValueError, match="labels set named"):
        EvalOptions(data="d", checkpoint="c", out="o", photos="p", photo_labels=("a/x", "b/x-hard", "c/hard"))


def test_category_and_extra_columns_load(two_sets):
    photos, first, hard = two_sets
    loaded = load_photo_labels(hard, photos)
    assert [(label.photo.name, label.mask_type, label.category) for label in loaded] == [
        (photo, mask_type, category) for photo, mask_type, _, category in HARD_ROWS]
    assert {label.category for label in load_photo_labels(first, photos)} == {None}  # no category column


@pytest.mark.parametrize("row, words", [
    ("b.png,masks/b.png,visor,nose,closeup,x", "line 2: unknown mask_type 'visor'"),
    ("b.png,masks/b.png,gaiter,nose,Close Up,x", "line 2: bad category 'Close Up'"),
    ("b.png,masks/b.png,gaiter,nose,closeup", "line 2: 5 fields, expected 6"),
])
def test_a_bad_row_of_a_set_with_extra_columns_is_one_line(two_sets, row, words):
    photos, _, hard = two_sets
    lines = (hard / LABELS_FILE).read_text().splitlines()
    (hard / LABELS_FILE).write_text("\n".join([lines[0], row, *lines[2:]]) + "\n")
    with pytest.raises(PhotoLabelError) as caught:
        load_photo_labels(hard, photos)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(hard / LABELS_FILE)) and words in message, message


def test_the_required_columns_come_first(two_sets):
    photos, _, hard = two_sets
    text = (hard / LABELS_FILE).read_text()
    (hard / LABELS_FILE).write_text(text.replace("photo,label,mask_type,wear,category", "category,photo,label,"
                                                 "mask_type,wear", 1))
    with pytest.raises(PhotoLabelError, match="expected 'photo,label,mask_type,wear' \\(then any extra columns\\)"):
        load_photo_labels(hard, photos)


def _args(eval_dataset, two_stage_run, out) -> list[str]:
    return ["--data", str(eval_dataset), "--checkpoint", str(two_stage_run), "-o", str(out), "--no-progress",
            "--max-samples", "1", "--baselines", "none", "--device", "cpu", "--resolution", str(EVAL_RES),
            "--sheet-rows", "1", "--failures", "3"]


@pytest.fixture
def stand_in(monkeypatch):
    """The tiny run's Unmasker, on photos, is the stand-in of testutils."""
    from unmask.predict import Unmasker

    unmasker = StandInUnmasker()
    monkeypatch.setattr(Unmasker, "__call__", lambda self, photo, aligned=None: unmasker(photo, aligned))
    monkeypatch.setattr(Unmasker, "photo_map", lambda self, photo, faces, filled=False: unmasker.photo_map(
        photo, faces, filled))


@pytest.fixture
def two_set_evaluation(two_sets, eval_dataset, two_stage_run, tmp_path, stand_in):
    """``unmask evaluate --photos P --photo-labels FIRST --photo-labels HARD``."""
    photos, first, hard = two_sets
    out = tmp_path / "out"
    result = CliRunner().invoke(evaluate_command, _args(eval_dataset, two_stage_run, out) + [
        "--photos", str(photos), "--photo-labels", str(first), "--photo-labels", str(hard)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_each_set_is_scored_apart(two_set_evaluation, two_sets):
    out, output = two_set_evaluation
    _, first, hard = two_sets
    values = json.loads((out / "metrics.json").read_text())
    assert values["photos/count"] == len(LABELLED) and values["photos_hard/count"] == len(HARD_ROWS)
    assert values["photos/dice"] == pytest.approx(FIRST_DICE) and values["photos/iou"] == pytest.approx(FIRST_IOU)
    assert values["photos/mask_left"] == pytest.approx(FIRST_LEFT)
    assert values["photos_hard/dice"] == pytest.approx(HARD_DICE) and values["photos_hard/iou"] == pytest.approx(
        HARD_IOU)
    assert values["photos_hard/mask_left"] == pytest.approx(HARD_LEFT)
    # the new mask types, per set; the category breakdown only where the labels have the column
    assert values["photos_hard/n_mask_gaiter"] == 1 and values["photos_hard/n_mask_bandana"] == 1
    assert values["photos_hard/dice_mask_sports"] == 1 and values["photos/n_mask_gaiter"] == 0
    assert values["photos_hard/n_category_gaiter"] == 2 and values["photos_hard/dice_category_gaiter"] == 0
    assert values["photos_hard/dice_category_closeup"] == 1 and values["photos_hard/iou_category_closeup"] == 1
    assert not any("category" in k for k in values if k.startswith("photos/"))
    # one table per set, the category column where the labels have it
    assert list(pd.read_parquet(out / PHOTOS_FILE)["file"]) == list(LABELLED)
    hard_table = pd.read_parquet(out / photos_file("hard"))
    assert photos_file("hard") == "photos_hard.parquet"
    assert list(hard_table["category"]) == ["closeup", "gaiter", "gaiter"]
    assert "category" not in pd.read_parquet(out / PHOTOS_FILE).columns
    # the summary: the fixed keys, then the hard set's headline numbers
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert list(summary) == list(SUMMARY) + [f"{short}_hard" for short in PHOTO_SUMMARY]
    assert len(summary) <= SUMMARY_BUDGET
    assert summary["photo_dice"] == pytest.approx(FIRST_DICE) and summary["photo_mask_left"] == pytest.approx(
        FIRST_LEFT)
    assert summary["photo_dice_hard"] == pytest.approx(HARD_DICE) and summary["photo_iou_hard"] == pytest.approx(
        HARD_IOU)
    assert summary["photo_mask_left_hard"] == pytest.approx(HARD_LEFT)
    # the protocol records each set; each has its own worst-Dice figure and sheet
    protocol = values[PROTOCOL]["photos"]
    assert protocol["labels"]["file"] == str(first / LABELS_FILE)
    sets = protocol["label_sets"]
    assert list(sets) == ["photos", "photos_hard"]
    assert (sets["photos"]["labelled"], sets["photos"]["evaluated"]) == (4, 4)
    assert (sets["photos_hard"]["file"], sets["photos_hard"]["labelled"], sets["photos_hard"]["evaluated"]) == (
        str(hard / LABELS_FILE), 3, 3)
    assert worst_photos_file("hard") == "photos_hard_worst_dice.png"
    figures = values[PROTOCOL]["figures"]
    for name in (WORST_PHOTOS_FILE, "photos_hard_worst_dice.png", "photos.png", "photos_hard.png"):
        assert name in figures and (out / FIGURES_DIR / name).is_file(), name
    assert "photos: 3 of 4 used" in output and "photos_hard: 2 of 3 used" in output


def _table(text: str, heading: str) -> list[list[str]]:
    block = text.split(heading, 1)[1].split("\n\n")[1]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()[2:]]


def test_each_set_has_its_report_section(two_set_evaluation, tmp_path):
    out, _ = two_set_evaluation
    reports = tmp_path / "report"
    result = CliRunner().invoke(report, [f"tiny={out}", "-o", str(reports)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = (reports / "report.md").read_text()
    assert "#### tiny: real masked photos" in text and "#### tiny, photos_hard: real masked photos" in text
    assert _table(text, "tiny: Dice and IoU by mask type")[-1] == ["all", "4", "1", f"{FIRST_DICE:.4f}",
                                                                    f"{FIRST_IOU:.4f}"]
    assert _table(text, "tiny, photos_hard: Dice and IoU by mask type") == [
        ["gaiter", "1", "0", "0.0000", "0.0000"], ["bandana", "1", "1", "0.0000", "0.0000"],
        ["sports", "1", "0", "1.0000", "1.0000"], ["all", "3", "1", f"{HARD_DICE:.4f}", f"{HARD_IOU:.4f}"]]
    assert _table(text, "tiny, photos_hard: Dice and IoU by category") == [
        ["closeup", "1", "0", "1.0000", "1.0000"], ["gaiter", "2", "1", "0.0000", "0.0000"],
        ["all", "3", "1", f"{HARD_DICE:.4f}", f"{HARD_IOU:.4f}"]]
    assert "tiny: Dice and IoU by category" not in text  # the first set has no category column
    assert f"- mask left: {HARD_LEFT:.1%}" in text.split("tiny, photos_hard: real masked photos")[1]
    for name in (WORST_PHOTOS_FILE, "photos_hard_worst_dice.png"):
        shown = re.findall(r"!\[[^\]]*\]\(([^)]*" + re.escape(name) + r")\)", text)
        assert len(shown) == 1 and (reports / shown[0]).is_file(), name  # once, in its section


def test_max_photos_applies_per_set(two_sets, eval_dataset, two_stage_run, tmp_path, stand_in):
    photos, first, hard = two_sets
    values = evaluate(EvalOptions(data=eval_dataset, checkpoint=two_stage_run, out=tmp_path / "out",
                                  resolution=EVAL_RES, max_samples=1, baselines=(), photos=photos,
                                  photo_labels=(first, hard), max_photos=2, device="cpu", figures=False))
    assert values["photos/count"] == 2 and values["photos_hard/count"] == 2  # a, b; and b, c
    assert values["photos/dice"] == pytest.approx((2 / 3 + 1) / 2) and values["photos_hard/dice"] == 0.5
    sets = values[PROTOCOL]["photos"]["label_sets"]
    assert [(s["labelled"], s["evaluated"]) for s in sets.values()] == [(4, 2), (3, 2)]
    # a later evaluation with one set into the same directory leaves no table of the other
    evaluate(EvalOptions(data=eval_dataset, checkpoint=two_stage_run, out=tmp_path / "out", resolution=EVAL_RES,
                         max_samples=1, baselines=(), photos=photos, photo_labels=first, device="cpu",
                         figures=False))
    assert (tmp_path / "out" / PHOTOS_FILE).is_file() and not (tmp_path / "out" / photos_file("hard")).exists()
    summary = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert list(summary) == list(SUMMARY)


def test_cli_refuses_two_sets_of_one_name_before_writing(two_sets, eval_dataset, two_stage_run, tmp_path):
    photos, first, hard = two_sets
    other = tmp_path / "other" / "hard"
    shutil.copytree(hard, other)
    out = tmp_path / "out"
    result = CliRunner().invoke(evaluate_command, _args(eval_dataset, two_stage_run, out) + [
        "--photos", str(photos), "--photo-labels", str(first), "--photo-labels", str(hard),
        "--photo-labels", str(other)])
    assert result.exit_code == 1, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and "labels set named 'hard'" in error[0], result.output
    assert not out.exists()


def test_cli_refuses_a_bad_mask_type_of_a_further_set_before_writing(two_sets, eval_dataset, two_stage_run,
                                                                      tmp_path):
    photos, first, hard = two_sets
    (hard / LABELS_FILE).write_text((hard / LABELS_FILE).read_text().replace(",bandana,", ",scarf,"))
    out = tmp_path / "out"
    result = CliRunner().invoke(evaluate_command, _args(eval_dataset, two_stage_run, out) + [
        "--photos", str(photos), "--photo-labels", str(first), "--photo-labels", str(hard)])
    assert result.exit_code == 1, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and f"{hard / LABELS_FILE} line 3: unknown mask_type 'scarf'" in error[0], result.output
    assert not out.exists()


def test_more_sets_than_the_summary_holds_are_refused(tmp_path):
    sets = [tmp_path / name for name in ("real", "real-a", "real-b", "real-c")]
    with pytest.raises(ValueError, match="at most 3 labels sets"):
        evaluate(EvalOptions(data=tmp_path, checkpoint=tmp_path, out=tmp_path / "out", photos=tmp_path,
                             photo_labels=sets, device="cpu"))
    assert not (tmp_path / "out").exists()
