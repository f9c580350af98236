"""Parts of other builds copied into one folder: ``combine`` refuses them naming the argument, and ``verify``
(and the quick check before training) finds a combined dataset whose parts disagree."""

from __future__ import annotations

import shutil
from pathlib import Path

from maskgen import format as fmt
from maskgen.build import BuildConfig, build
from maskgen.build_record import difference_text, part_record_name
from maskgen.verify import check_shards
from tests.reliability.faults import ARGS, cli, error_line


def _build_part(faces: Path, out: Path, k: int, landmarks: Path, **changed) -> None:
    args = {**ARGS, **changed}
    build(BuildConfig(source=str(faces), out=str(out), workers=1, progress=False, part=(k, 2),
                      landmarks=str(landmarks), **args))


def _copy_part(src: Path, dst: Path) -> None:
    """What a user does to put a part built on another machine beside the others: its shards and .work."""
    for path in src.glob("*.tar"):
        shutil.copy(path, dst / path.name)
    for path in (src / fmt.WORK_DIR).iterdir():
        if path.suffix != ".lock":
            shutil.copy(path, dst / fmt.WORK_DIR / path.name)


def test_combine_refuses_a_part_built_with_another_seed(faces, clean, tmp_path):
    landmarks = clean / fmt.LANDMARKS  # detection would take most of the time
    here, there = tmp_path / "here", tmp_path / "there"
    _build_part(faces, here, 0, landmarks)
    _build_part(faces, there, 1, landmarks, seed=3)
    _copy_part(there, here)
    line = error_line(cli("combine", here))
    assert "part 2 was built with --seed 3, part 1 with --seed 2" in line, line
    assert not (here / fmt.MANIFEST).exists()

    # A dataset whose parts disagree though combined (by an older maskgen): verify and the quick check say so.
    _build_part(faces, here, 1, landmarks)  # part 2 as it should be: the dataset is combined
    assert (here / fmt.MANIFEST).exists() and check_shards(here) == []
    record = part_record_name("part-001-of-002")
    shutil.copy(there / fmt.WORK_DIR / record, here / fmt.WORK_DIR / record)
    res = cli("verify", "--quick", here)
    assert res.exit_code == 1 and "part 2 was built with --seed 3, part 1 with --seed 2" in res.output, res.output
    assert any("--seed 3" in problem for problem in check_shards(here))


def test_a_difference_names_the_option_as_given():
    base = {"res": 128, "seed": 2, "parts": 2, "mask": {"templates": [], "light_match": 0.8}}
    assert difference_text(("part 2", {**base, "res": 256}), ("part 1", base)) == \
        "part 2 was built with --resolution 256, part 1 with --resolution 128"
    assert difference_text(("part 1", {**base, "parts": 3}), (fmt.BUILD_INFO, base)) == \
        "part 1 was built with --part K/3, build.json records --part K/2"
    assert difference_text(("part 2", {**base, "source_content": "x"}), ("part 1", {**base, "source_content": "y"})) \
        == "part 2 was built from other source images (other bytes) than part 1"
    assert difference_text(("part 2", base), ("part 1", dict(base))) is None
    shares = {**base, "mask": {**base["mask"], "print_share": 0.3}}
    assert difference_text(("part 2", {**shares, "mask": {**shares["mask"], "print_share": 0.0}}), ("part 1", shares)) \
        == "part 2 was built with --print-share 0.0, part 1 with --print-share 0.3"
    assert difference_text(("part 2", {**base, "face_scale": [0.6, 0.8]}), ("part 1", {**base, "face_scale": 0.72})) \
        == "part 2 was built with --face-scale 0.6-0.8, part 1 with --face-scale 0.72"
