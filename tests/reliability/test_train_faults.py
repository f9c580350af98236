"""Training, evaluation and checkpoints on imperfect inputs: a dataset that differs from its records,
short or truncated shards, samples that do not decode, bad checkpoint files, and kill -9 during
training followed by a resume."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import unmask.data
from maskgen.format import MANIFEST, MAP, MASKED
from tests.reliability.faults import fill_the_disk, invoke, one_line
from tests.testdata import REPO
from tests.unmask.testutils import interrupt_at, rewrite_member, tiny_config, write_split
from unmask import checkpoint as ckpt
from unmask.data import DataError, TrainLoader
from unmask.training.loop import train
from unmask.training.options import RunOptions

TINY = ["--preset", "tiny", "--resolution", "32", "--batch-size", "4", "--num-workers", "0", "--per", "0",
        "--set", "train.shuffle_buffer=8", "--device", "cpu", "--no-progress"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the same numerics as the OMP_NUM_THREADS=1 subprocesses


def dataset(root: Path) -> Path:
    """train: 3 shards (6 + 6 + 4 samples), val: 1 shard of 4."""
    root.mkdir(parents=True, exist_ok=True)
    write_split(root, "train", [6, 6, 4])
    write_split(root, "val", [4], start=1000)
    return root


def write_manifest(data: Path) -> None:
    rows = [(member.name.split(".")[0], shard.name)
            for shard in sorted(data.glob("*.tar")) for member in tarfile.open(shard)
            if member.name.endswith(f".{MASKED}")]
    pd.DataFrame(rows, columns=["key", "shard"]).to_parquet(data / MANIFEST, index=False)


def record_shards(data: Path) -> None:
    """build.json and stats.json's record of every shard as it is now, as ``maskgen build`` leaves them."""
    shards = sorted(data.glob("*.tar"))
    (data / "build.json").write_text("{}")
    (data / "stats.json").write_text(json.dumps({
        "shards": {s.name: hashlib.sha256(s.read_bytes()).hexdigest() for s in shards},
        "shard_sizes": {s.name: s.stat().st_size for s in shards}}))


def rename_keys(shard: Path) -> None:
    """Every key of the shard changed ('train00006' -> 'xrain00006'): a valid shard, not the one listed."""
    with tarfile.open(shard) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar]
    with tarfile.open(shard, "w") as tar:
        for info, content in members:
            info.name = "x" + info.name[1:]
            tar.addfile(info, io.BytesIO(content))


def member_offsets(shard: Path) -> list[int]:
    with tarfile.open(shard) as tar:
        return [info.offset for info in tar]


def checkpoint_tensors_equal(a: Path, b: Path) -> None:
    def walk(x, y, where):
        if isinstance(x, dict):
            assert x.keys() == y.keys(), where
            for key in x:
                walk(x[key], y[key], f"{where}.{key}")
        elif isinstance(x, (list, tuple)):
            assert len(x) == len(y), where
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                walk(u, v, f"{where}[{i}]")
        elif isinstance(x, torch.Tensor):
            assert torch.equal(x, y), where
        else:
            assert x == y, where

    walk(torch.load(a, weights_only=True), torch.load(b, weights_only=True), a.name)


# --- the dataset at start ------------------------------------------------------------------------

def test_a_shard_that_differs_from_its_record_stops_training_before_anything_is_written(tmp_path):
    data = dataset(tmp_path / "data")
    write_manifest(data)
    record_shards(data)
    shard = data / "train-000001.tar"
    shard.write_bytes(shard.read_bytes()[:-1024])  # the end-of-archive blocks: every sample still there
    result = invoke("train", "--data", data, "--out", tmp_path / "run", "--steps", "2", *TINY)
    assert result.exit_code == 1
    assert f"{shard}: {shard.stat().st_size} bytes, recorded {shard.stat().st_size + 1024}" in one_line(result.output)
    assert not (tmp_path / "run").exists()


def test_train_and_evaluate_refuse_a_dataset_that_differs_from_its_records(tmp_path, monkeypatch):
    data = dataset(tmp_path / "data")
    (data / "build.json").write_text("{}")  # made by maskgen build: its records are checked
    calls = []

    def check_shards(path, *, full_hash=False, splits=()):
        calls.append((full_hash, tuple(splits)))
        return [f"{path}/train-000001.tar: 100 bytes, recorded 30720", f"{path}/val-000000.tar: missing"]

    monkeypatch.setattr(unmask.data, "check_shards", check_shards)
    result = invoke("train", "--data", data, "--out", tmp_path / "run", "--steps", "2", "--verify-data", *TINY)
    assert result.exit_code == 1
    line = one_line(result.output)
    assert "train-000001.tar: 100 bytes, recorded 30720" in line and f"(and 1 more; see maskgen verify {data})" in line
    assert calls == [(True, ("train", "val"))] and not (tmp_path / "run").exists()  # before anything is written

    result = invoke("evaluate", "--data", data, "--split", "val", "--checkpoint", tmp_path,
                    "-o", tmp_path / "eval", "--device", "cpu")
    assert result.exit_code == 1 and "train-000001.tar" in result.output and not (tmp_path / "eval").exists()
    assert calls[1:] == [(False, ("val",))]  # no hashes without --verify-data


@pytest.mark.parametrize("fault", ["a shard more", "a shard swapped", "stats.json not an object",
                                   "not in the manifest"])
def test_train_and_evaluate_refuse_shards_that_are_not_the_recorded_ones(tmp_path, fault):
    data = dataset(tmp_path / "data")
    write_manifest(data)
    swapped = data / "train-000001.tar"
    if fault == "a shard swapped":  # recorded with its size and hash: only the keys tell
        rename_keys(swapped)
    if fault != "not in the manifest":  # else a hand-made dataset: a manifest, no records
        record_shards(data)
    if fault in ("a shard more", "not in the manifest"):
        shutil.copy(data / "train-000000.tar", data / "train-000003.tar")
    elif fault == "stats.json not an object":
        (data / "stats.json").write_text("[]")
    message = {
        "a shard more": f"{data / 'train-000003.tar'}: a shard that is not in stats.json",
        "a shard swapped": f"{swapped}: keys differ from the manifest's: 6 missing (e.g. train00006), "
                           "6 not in it (e.g. xrain00006)",
        "stats.json not an object": f"{data / 'stats.json'}: is not a JSON object",
        "not in the manifest": f"{data / 'train-000003.tar'}: a shard that is not in {MANIFEST}",
    }[fault]
    result = invoke("train", "--data", data, "--out", tmp_path / "run", "--steps", "2", *TINY)
    assert result.exit_code == 1 and message in one_line(result.output), result.output
    assert not (tmp_path / "run").exists()
    result = invoke("evaluate", "--data", data, "--split", "train", "--checkpoint", tmp_path,
                    "-o", tmp_path / "eval", "--device", "cpu")
    assert result.exit_code == 1 and message in one_line(result.output), result.output
    assert not (tmp_path / "eval").exists()


def test_a_shard_shorter_than_its_manifest_is_never_trained_on(tmp_path):
    data = dataset(tmp_path / "data")
    write_manifest(data)
    shard = data / "train-000001.tar"
    cut = member_offsets(shard)[8]  # a member boundary: the first two samples whole, nothing torn
    shard.write_bytes(shard.read_bytes()[:cut])
    result = invoke("train", "--data", data, "--out", tmp_path / "run", "--steps", "2", *TINY)
    assert result.exit_code == 1
    assert f"{shard}: 2 samples, {MANIFEST} lists 6" in one_line(result.output)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("workers", [0, 1])
def test_a_shard_truncated_during_training_is_named_with_the_last_key(tmp_path, workers):
    data = dataset(tmp_path / "data")
    loader = TrainLoader(data, resolution=32, batch_size=4, seed=0, num_workers=workers, shuffle_buffer=8)
    shard = data / "train-000000.tar"
    shard.write_bytes(shard.read_bytes()[:member_offsets(shard)[8] + 600])  # inside the third sample's first image
    with pytest.raises(DataError) as error:
        for _ in loader.epoch(0):
            pass
    # the last sample delivered: the reader holds the second until the third one's start is read
    assert str(error.value).startswith(f"shard {shard} does not read: ")
    assert str(error.value).endswith(" (after sample 'train00000')")
    assert "\n" not in str(error.value)  # one line, also from a loader worker


def test_a_shard_that_ends_early_during_training_is_an_error(tmp_path):
    data = dataset(tmp_path / "data")
    loader = TrainLoader(data, resolution=32, batch_size=4, seed=0, shuffle_buffer=8)
    shard = data / "train-000002.tar"
    shard.write_bytes(shard.read_bytes()[:member_offsets(shard)[8]])  # two whole samples of four
    with pytest.raises(DataError, match=r"train-000002.tar: ended after 2 of its 4 samples: the shard is truncated"):
        for _ in loader.epoch(0):
            pass


# --- samples that do not decode ------------------------------------------------------------------

def damage(data: Path) -> list[tuple[str, str]]:
    """Three bad samples in the train split: bad JPEG bytes, no map, a map of another size."""
    rewrite_member(data / "train-000000.tar", f"train00002.{MASKED}", b"\xff\xd8 not a jpeg")
    rewrite_member(data / "train-000001.tar", f"train00007.{MAP}", None)
    ok, small_map = cv2.imencode(".png", np.zeros((20, 20), np.uint8))
    rewrite_member(data / "train-000002.tar", f"train00013.{MAP}", small_map.tobytes())
    return [("train-000000.tar", "train00002"), ("train-000001.tar", "train00007"), ("train-000002.tar", "train00013")]


def opts(data: Path, run: Path, **kw) -> RunOptions:
    return RunOptions(data_dir=data, run_dir=run, device="cpu", progress=False, **kw)


def test_bad_samples_are_skipped_counted_logged_and_resumed_exactly(tmp_path, monkeypatch):
    data = dataset(tmp_path / "data")
    bad = damage(data)
    cfg = tiny_config(**{"train.steps": 7, "train.checkpoint_every": 3, "loss.per": 0.0})
    straight = train(cfg, opts(data, tmp_path / "straight", stage="seg"))["seg"]
    run = tmp_path / "straight"
    rows = [line.split("\t") for line in (run / "logs" / "skipped.tsv").read_text().splitlines()]
    assert rows[0] == ["stage", "step", "split", "shard", "key", "reason"]
    assert sorted((r[3], r[4]) for r in rows[1:]) == bad and {r[0] for r in rows[1:]} == {"seg"}
    reasons = {r[4]: r[5] for r in rows[1:]}
    assert "masked.jpg does not decode" in reasons["train00002"] and "map.png" in reasons["train00007"]
    assert "not one square size" in reasons["train00013"]
    assert straight["bad_samples"] == 3
    assert json.loads((run / "seg_metrics.json").read_text())["bad_samples"] == 3
    assert json.loads((run / "run.json").read_text())["stages"]["seg"]["bad_samples"] == 3

    # interrupted at step 4 (after the checkpoint of step 3), then resumed: the same run
    from unmask.training.stages import SegStage

    original = interrupt_at(monkeypatch, SegStage, 4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, opts(data, tmp_path / "resumed", stage="seg"))
    monkeypatch.setattr(SegStage, "train_step", original)
    assert train(cfg, opts(data, tmp_path / "resumed", stage="seg", resume=True))["seg"] == straight
    resumed = tmp_path / "resumed"
    checkpoint_tensors_equal(ckpt.checkpoint_path(run, "seg"), ckpt.checkpoint_path(resumed, "seg"))
    for name in ("seg_metrics.json", "logs/seg_train.tsv", "logs/seg_val.tsv", "logs/skipped.tsv"):
        assert (run / name).read_bytes() == (resumed / name).read_bytes(), name


def test_more_bad_samples_than_allowed_stop_the_run_with_one_line(tmp_path):
    data = dataset(tmp_path / "data")
    damage(data)
    result = invoke("train", "--stage", "seg", "--data", data, "--out", tmp_path / "run", "--steps", "8",
                    "--set", "train.max_bad_samples=1", *TINY)
    assert result.exit_code == 1
    line = one_line(result.output)
    assert "2 samples do not decode, more than train.max_bad_samples = 1" in line
    assert "skipped.tsv" in line and "--set train.max_bad_samples=N" in line
    assert len((tmp_path / "run" / "logs" / "skipped.tsv").read_text().splitlines()) == 3  # header + both
    assert not (tmp_path / "run" / "seg_metrics.json").exists()


def test_an_evaluation_names_a_bad_sample(tmp_path):
    from unmask.evaluation.samples import iter_eval_batches

    data = dataset(tmp_path / "data")
    rewrite_member(data / "val-000000.tar", f"val01002.{MASKED}", b"garbage")
    with pytest.raises(ValueError, match=r"'val01002' in .*val-000000.tar: masked.jpg does not decode"):
        list(iter_eval_batches(data, "val", 32, 2))


# --- bad checkpoints -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    data = dataset(root / "data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(tiny_config(**{"train.steps": 1, "loss.per": 0.0}), opts(data, root / "run"))
    return root


def bad_file(kind: str, root: Path, run: Path) -> Path:
    path = root / f"{kind}.pt"
    good = ckpt.checkpoint_path(run, "gan").read_bytes()
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "dict":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind == "object":  # a pickled object that weights_only refuses: the file torch would advise to trust
        torch.save({"format": 1, "payload": random.Random(0)}, path)
    elif kind == "seg":  # the other stage's checkpoint
        path.write_bytes(ckpt.checkpoint_path(run, "seg").read_bytes())
    return path


KINDS = ["truncated", "empty", "random", "tensor", "dict", "object", "seg"]
FOUND = {"truncated": "a truncated torch file", "empty": "an empty file", "random": "not a torch file",
         "tensor": "a torch file holding a Tensor", "dict": "a torch file without format, stage, config, models",
         "object": "Python objects besides tensors", "seg": "a stage-1 (seg, M-Seg) checkpoint"}


# A stage-1 checkpoint is a valid evaluate --checkpoint (it scores its M-Seg): not a bad one there.
CASES = [(kind, command) for command in ("predict", "resume", "init-generator", "evaluate", "interpolate")
         for kind in KINDS if (kind, command) != ("seg", "evaluate")]


@pytest.mark.parametrize(("kind", "command"), CASES)
def test_a_bad_checkpoint_is_one_line_saying_what_was_expected(trained, tmp_path, kind, command):
    run, data = trained / "run", trained / "data"
    bad = bad_file(kind, tmp_path, run)
    if command == "predict":
        face = tmp_path / "face.png"
        cv2.imwrite(str(face), np.full((32, 32, 3), 128, np.uint8))
        args = ["predict", face, "-o", tmp_path / "out", "--checkpoint", bad]
    elif command == "resume":
        target = ckpt.checkpoint_path(tmp_path / "run", "gan" if kind == "seg" else "seg")
        target.parent.mkdir(parents=True)
        target.write_bytes(bad.read_bytes())
        args = ["train", "--data", data, "--out", tmp_path / "run", "--resume", "--steps", "1", *TINY]
    elif command == "init-generator":
        args = ["train", "--stage", "gan", "--data", data, "--out", tmp_path / "run", "--init-generator", bad,
                "--steps", "1", *TINY]
    elif command == "evaluate":
        args = ["evaluate", "--data", data, "--split", "val", "--checkpoint", bad, "-o", tmp_path / "eval",
                "--device", "cpu", "--no-progress"]
    else:
        args = ["interpolate", bad, run, "--weight", "0.5", "-o", tmp_path / "blend"]
    result = invoke(*args)
    line = one_line(result.output)
    assert result.exit_code == 1, result.output
    assert "weights_only" not in line and "Aborted" not in line
    if command == "predict" and kind == "seg":  # a valid stage-1 checkpoint: what predict misses in it
        assert "holds no stage-2 (generator) weights" in line
    else:
        assert FOUND[kind] in line and "expected" in line, line


# --- kill -9 during training, then resume ------------------------------------------------------

@pytest.mark.slow
def test_kill_9_during_training_then_resume_is_byte_identical(tmp_path):
    data = dataset(tmp_path / "data")
    args = ["--data", str(data), "--steps", "6", "--checkpoint-every", "2", *TINY]  # 6 steps per stage
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def start(run: Path, *extra: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "unmask.cli", "train", "--out", str(run), *extra, *args]
        return subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    clean = start(tmp_path / "clean")  # alongside the first killed run: the imports take most of the time
    run = tmp_path / "killed"
    # two seeded moments: just after the n-th logged step of all 12 (seg's 6, then gan's 6)
    for moment in sorted(random.Random(16).sample(range(1, 12), 2)):
        stage, step = ("seg", moment) if moment <= 6 else ("gan", moment - 6)
        log = run / "logs" / f"{stage}_train.tsv"
        process = start(run, *(["--resume"] if run.exists() else []))  # --resume needs a run to continue
        try:
            while process.poll() is None and not (log.is_file() and len(log.read_text().splitlines()) > step):
                time.sleep(0.005)  # polls the log: the kill lands just after that step, wherever the loop is
            assert process.poll() is None, "the run ended before its kill"
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait()
        assert process.returncode == -signal.SIGKILL
    resumed = invoke("train", "--out", run, "--resume", *args)
    assert resumed.exit_code == 0, resumed.output
    assert clean.wait() == 0, clean.stderr.read().decode()

    for name in ("seg_metrics.json", "gan_metrics.json", "logs/seg_train.tsv", "logs/seg_val.tsv",
                 "logs/gan_train.tsv", "logs/gan_val.tsv", "samples/seg_epoch0001.png", "samples/gan_epoch0001.png"):
        assert (tmp_path / "clean" / name).read_bytes() == (run / name).read_bytes(), name
    for stage in ("seg", "gan"):
        clean_file, resumed_file = ckpt.checkpoint_path(tmp_path / "clean", stage), ckpt.checkpoint_path(run, stage)
        checkpoint_tensors_equal(clean_file, resumed_file)  # names the first differing value, if any
        assert clean_file.read_bytes() == resumed_file.read_bytes(), stage
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]


def test_a_full_disk_while_saving_a_checkpoint_names_the_file(tmp_path, monkeypatch):
    """torch's own writer reports a short write as "unexpected pos ..."; the checkpoint writer's
    OSError names the file and the cause, and leaves nothing behind."""
    fill_the_disk(monkeypatch)
    target = tmp_path / "checkpoints" / "seg.pt"
    with pytest.raises(OSError) as caught:
        ckpt.save_checkpoint(target, {"format": 1, "weights": torch.zeros(1000)})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert list(target.parent.iterdir()) == []
