"""``unmask predict`` never takes its outputs as inputs nor writes over one; ``--device cuda`` on a machine
without CUDA is one line before anything is written, in ``predict``, ``evaluate`` and ``train`` alike."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from tests.reliability.faults import invoke, one_line
from tests.unmask.testutils import write_split
from unmask.predict import PredictError, plan_outputs
from unmask.training.runtime import DeviceError, resolve_device


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(path.name.encode())
    return path


def _tree(root: Path) -> dict[str, str]:
    """Every file below ``root`` with a digest of its bytes (links by where they lead)."""
    return {p.relative_to(root).as_posix(): p.readlink().as_posix() if p.is_symlink()
            else hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if not p.is_dir()}


def test_a_folder_walk_leaves_out_the_output_folder_inside_it(tmp_path):
    photos = tmp_path / "photos"
    _touch(photos / "a.jpg")
    _touch(photos / "sub" / "b.png")
    for rel in ("out/a.png", "out/a_map.png", "out/sub/b.png", "out/out/a.png"):  # an earlier run's outputs
        _touch(photos / rel)
    (photos / "into-out.png").symlink_to(photos / "out" / "a.png")  # a link into the outputs is one of them
    (photos / "out" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")  # a problem there is not reported
    expected = {photos / "a.jpg": photos / "out/a.png", photos / "sub/b.png": photos / "out/sub/b.png"}
    for out in (photos / "out", photos / "sub" / ".." / "out", tmp_path / "out-link"):
        if out.name == "out-link":
            out.symlink_to(photos / "out", target_is_directory=True)
        plan, skipped = plan_outputs([photos], out)
        assert {p.source: p.image for p in plan} == {source: out / image.relative_to(photos / "out")
                                                       for source, image in expected.items()}, out
        assert skipped == []


@pytest.mark.parametrize("case", ["same folder", "folder inside", "file inside", "file through a link"])
def test_an_input_in_the_output_folder_is_refused(tmp_path, case):
    photos = tmp_path / "photos"
    _touch(photos / "x.jpg")
    _touch(photos / "x.png")
    inputs, out = {
        "same folder": ([photos], photos),
        "folder inside": ([photos], tmp_path),
        "file inside": ([photos / "x.jpg"], photos),  # its result, x.png, would replace the photo next to it
        "file through a link": ([tmp_path / "link.jpg"], photos),
    }[case]
    if case == "file through a link":
        (tmp_path / "link.jpg").symlink_to(photos / "x.jpg")
    with pytest.raises(PredictError) as error:
        plan_outputs(inputs, out)
    message = str(error.value)
    assert f"the output folder {out}: give an output folder outside the inputs" in message, message
    assert f"{inputs[0]} is {'the' if case == 'same folder' else 'inside the'} output folder" in message


def test_predict_into_its_own_input_folder_is_one_line_and_writes_nothing(tmp_path):
    photos = tmp_path / "pin4"
    _touch(photos / "x.jpg")
    _touch(photos / "x.png")  # another photo: x.jpg's result would be x.png
    before = _tree(photos)
    for args in ([photos], [photos / "x.jpg"], [photos / "x.jpg", photos / "x.png"]):
        result = invoke("predict", *args, "-o", photos, "--checkpoint", tmp_path)  # refused before it is read
        line = one_line(result.output)
        assert result.exit_code == 1 and "the output folder" in line and str(photos) in line, result.output
        assert _tree(photos) == before


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("command", ["predict", "evaluate", "train"])
def test_device_cuda_without_cuda_is_one_line_before_anything_is_written(tmp_path, no_cuda, command):
    data = tmp_path / "data"
    data.mkdir()
    write_split(data, "train", [4])
    write_split(data, "val", [4], start=100)
    face = _touch(tmp_path / "in" / "face.png")
    out = tmp_path / "out"
    args = {
        "predict": ["predict", face, "-o", out, "--checkpoint", tmp_path],
        "evaluate": ["evaluate", "--data", data, "--split", "val", "--checkpoint", tmp_path, "-o", out,
                     "--no-progress"],
        "train": ["train", "--data", data, "--out", out, "--preset", "tiny", "--steps", "1", "--no-progress"],
    }[command]
    result = invoke(*args, "--device", "cuda")
    line = one_line(result.output)
    assert result.exit_code == 1 and line.startswith("Error: --device cuda: ") and "debug" not in line, line
    assert not out.exists()


@pytest.mark.parametrize("built,count,device,expected", [
    (False, 0, "cuda", "--device cuda: this torch ({version}) is built without CUDA; use --device cpu"),
    (True, 0, "cuda", "--device cuda: torch sees no CUDA devices; use --device cpu"),
    (True, 1, "cuda:1", "--device cuda:1: torch sees 1 CUDA device; use --device cpu"),
    (True, 2, "cuda:1", "cuda:1"), (True, 0, "auto", "cpu"), (False, 0, "cpu", "cpu"),
])
def test_resolve_device_says_why_cuda_is_not_there(monkeypatch, built, count, device, expected):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: built)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if expected.startswith("--device"):
        with pytest.raises(DeviceError) as error:
            resolve_device(device)
        assert str(error.value) == expected.format(version=torch.__version__)
    else:
        assert resolve_device(device) == torch.device(expected)
