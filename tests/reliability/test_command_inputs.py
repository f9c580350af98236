"""Inputs that are each fine but make no sense as given: ``train --resume`` of nothing, the same
evaluation or generator twice to ``compare`` / ``interpolate``; and ``preview -o`` into a folder that
does not exist yet. Each is refused in one line (exit 1) before anything is written, or just works."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from maskgen.cli import main as maskgen_main
from tests.reliability.faults import invoke, one_line
from tests.unmask.evaluation.testutils import write_tiny_run
from tests.unmask.testutils import write_split
from unmask.evaluation import METRICS_FILE, PROTOCOL

TINY = ["--preset", "tiny", "--resolution", "32", "--batch-size", "2", "--num-workers", "0", "--per", "0",
        "--device", "cpu", "--no-progress", "--steps", "1"]


def test_resume_of_nothing_is_refused_and_says_how_to_start(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_split(data, "train", [2])
    empty = tmp_path / "empty"
    empty.mkdir()
    for run, cause in [(tmp_path / "typo", "does not exist"), (empty, "holds no run (no config.yaml, no checkpoint)")]:
        result = invoke("train", "--data", data, "--out", run, "--resume", *TINY)
        assert result.exit_code == 1
        expected = f"Error: --resume: {run} {cause}; to start a new run there, leave out --resume"
        assert one_line(result.output) == expected
    assert not (tmp_path / "typo").exists() and list(empty.iterdir()) == []
    assert invoke("train", "--data", data, "--out", empty, "--stage", "seg", *TINY).exit_code == 0  # as told


def _write_eval(directory: Path, psnr: float) -> Path:
    directory.mkdir(parents=True)
    protocol = {"data": "d", "split": "test", "resolution": 64, "count": 10, "checkpoint": "c",
                "methods": {"two_stage": {}}}
    (directory / METRICS_FILE).write_text(json.dumps({"two_stage/psnr": psnr, PROTOCOL: protocol}))
    return directory


@pytest.mark.parametrize("command", ["compare", "report"])
def test_the_same_evaluation_twice_is_refused(tmp_path, command):
    a, b = _write_eval(tmp_path / "a", 20.0), _write_eval(tmp_path / "b", 21.0)
    (tmp_path / "link").symlink_to(a)
    out = tmp_path / "out"
    link = tmp_path / "link"
    shutil.copytree(a, tmp_path / "copy")
    copy = tmp_path / "copy"
    for inputs, first, again in [([a, a], a, a), ([a, b, a / METRICS_FILE], a, a / METRICS_FILE),
                                 ([f"x={a}", f"y={link}"], f"x={a}", f"y={link}"), ([a, copy], a, copy)]:
        result = invoke(command, *inputs, "-o", out)
        assert result.exit_code == 1
        assert one_line(result.output) == (f"Error: {first} and {again} are the same evaluation (identical "
                                           "metrics.json): give each once")
        assert not out.exists()
    assert invoke(command, a, b, "-o", out).exit_code == 0  # two evaluations: fine


def test_interpolating_a_generator_with_itself_is_refused(tmp_path):
    run = write_tiny_run(tmp_path / "run", seed=0)
    shutil.copytree(run, tmp_path / "copy")
    for other in (run, run / "checkpoints" / "gan.pt", tmp_path / "copy"):
        result = invoke("interpolate", run, other, "--weight", "0.5", "-o", tmp_path / "blend")
        assert result.exit_code == 1
        line = one_line(result.output)
        assert line.startswith(f"Error: {run} and {other} hold the same checkpoint ({run / 'checkpoints' / 'gan.pt'})")
        assert "every --weight would give it back" in line and not (tmp_path / "blend").exists()
    other = write_tiny_run(tmp_path / "other", seed=1)
    assert invoke("interpolate", run, other, "--weight", "0.5", "-o", tmp_path / "blend").exit_code == 0


@pytest.fixture(scope="module")
def built(tmp_path_factory, celeba_dir) -> Path:
    """A finished dataset of four triplets from two CelebA faces."""
    from tests.testdata import make_celeba_subset

    faces = make_celeba_subset(tmp_path_factory.mktemp("faces"), celeba_dir, 1, 2)
    out = tmp_path_factory.mktemp("built") / "ds"
    result = CliRunner().invoke(maskgen_main, ["build", "--source", str(faces), "--out", str(out),
                                               "--resolution", "128", "--pairs", "4", "--workers", "1",
                                               "--no-progress"])
    assert result.exit_code == 0, result.output
    return out


def test_preview_makes_the_folders_of_its_output(built, tmp_path):
    sheet = tmp_path / "missing" / "dir" / "sheet.png"
    result = CliRunner().invoke(maskgen_main, ["preview", str(built), "-n", "2", "-o", str(sheet)])
    assert result.exit_code == 0, result.output
    image = cv2.imread(str(sheet))
    assert result.output == f"wrote {sheet} ({image.shape[1]}x{image.shape[0]})\n"
    assert [p.name for p in sheet.parent.iterdir()] == ["sheet.png"]  # no temporary left


def test_preview_into_a_file_says_what_is_wrong(built, tmp_path):
    (tmp_path / "notes").write_text("a file where a folder is needed")
    result = CliRunner().invoke(maskgen_main, ["preview", str(built), "-o", str(tmp_path / "notes" / "sheet.png")])
    assert result.exit_code == 1
    assert one_line(result.output) == f"Error: {tmp_path / 'notes'}: not a folder (a file is where a folder must be)"
