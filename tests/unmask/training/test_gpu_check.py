"""benchmarks/gpu_check.py on the CPU at tiny sizes: it builds its dataset from a few photos with maskgen, takes
every path a GPU run takes (AMP modes, memory per batch, DDP, loader workers, the smoke run) and writes its JSON.
And the loader workers a CUDA run takes when none are given."""

import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from tests.testdata import REPO
from unmask.cli import main
from unmask.config import Config
from unmask.training import loop, runtime
from unmask.training.runtime import CUDA_MAX_WORKERS, cuda_num_workers

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def run_check(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TORCH_HOME": str(cwd / "no_hub"),
           "UNMASK_OFFLINE": "1"}  # no weights fetched (unmask.weights): the check runs without them
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_tiny_check_on_the_cpu_writes_every_field(celeba_images, tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    for image in celeba_images[:6]:
        (faces / image.name).symlink_to(image)
    result = run_check("--faces", faces, "--work", tmp_path / "work", "--out", tmp_path / "check.json",
                       "--smoke-seconds", 4, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["mode"] == "tiny" and report["environment"]["device"] == "cpu"
    assert (tmp_path / "work" / "dataset128" / "manifest.parquet").is_file()  # built from the photos
    training = {row["amp"]: row for row in report["training"]}
    assert set(training) == {"off", "bf16", "fp16"}
    for row in training.values():  # each precision ran on the CPU
        assert row["gan_train_img_s"] > 0 and row["seg_train_img_s"] > 0 and row["infer_ms_img"] > 0
    assert [row["batch"] for row in report["memory"]] == [1, 2, 4]
    assert all(row["peak_gib"] > 0 for row in report["memory"])
    ddp = report["ddp"]
    assert ddp["processes"] == 2 and ddp["backend"] == "gloo" and ddp["steps_s"] > 0 and ddp["scaling_efficiency"] > 0
    assert [row["workers"] for row in report["loader"]] == [0, 1, 2]
    assert all(row["img_s"] > 0 and isinstance(row["feeds"], bool) for row in report["loader"])
    smoke = report["smoke"]
    assert smoke["loss_fell"] and smoke["seg_loss_last_quarter"] < smoke["seg_loss_first_quarter"]
    assert "| 64 | bf16 |" in result.stdout and "smoke run" in result.stdout


@pytest.mark.slow
def test_no_photos_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_check("--faces", tmp_path / "empty", "--work", tmp_path / "work", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"gpu_check: --faces {tmp_path / 'empty'}: no images found"]


def test_cuda_workers_split_the_cores_among_the_node_processes(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)))
    assert cuda_num_workers(4) == 7  # 8 cores each, one for the training process
    assert cuda_num_workers(8) == 3
    assert cuda_num_workers(1) == CUDA_MAX_WORKERS
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun's, when not given
    assert cuda_num_workers() == 15
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert cuda_num_workers() == 1


def test_train_takes_the_cuda_worker_default_only_when_none_is_given(dataset_dir, tmp_path, monkeypatch):
    configs: list[Config] = []
    monkeypatch.setattr(loop, "train", lambda cfg, opts: configs.append(cfg) or {})
    monkeypatch.setattr(runtime, "cuda_num_workers", lambda: 11)

    def workers(*args):
        result = CliRunner().invoke(main, ["train", "--data", str(dataset_dir), "--out", str(tmp_path / "run"),
                                           "--preset", "tiny", *args])
        assert result.exit_code == 0, result.output
        return configs[-1].train.num_workers

    assert workers("--device", "cpu") == Config().train.num_workers  # CPU: the config's, as before
    monkeypatch.setattr(runtime, "resolve_device", lambda device: torch.device("cuda"))
    assert workers("--device", "cuda") == 11
    assert workers("--device", "cuda", "--num-workers", "2") == 2
    assert workers("--device", "cuda", "--set", "train.num_workers=3") == 3
