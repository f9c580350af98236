"""Two CPU processes on the gloo backend, launched by torchrun as on a cluster."""

import json
import os
import subprocess
import sys

import pytest

from unmask import checkpoint as ckpt


@pytest.mark.slow
def test_torchrun_two_processes_gloo(dataset_dir, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch_home"), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "unmask.cli", "train", "--stage", "all", "--data", str(dataset_dir), "--out", str(run),
        "--preset", "tiny", "--resolution", "32", "--batch-size", "2", "--steps", "3", "--num-workers", "0",
        "--checkpoint-every", "2", "--device", "cpu", "--no-progress",
    ]
    result = subprocess.run(command, env=env, cwd=os.getcwd(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    meta = json.loads((run / "run.json").read_text())["stages"]
    assert meta["seg"]["world_size"] == meta["gan"]["world_size"] == 2
    assert meta["seg"]["steps_per_epoch"] == 4  # 16 samples / (2 ranks x batch 2)
    for stage in ("seg", "gan"):
        assert ckpt.load_checkpoint(ckpt.checkpoint_path(run, stage))["step"] == 3
        rows = (run / "logs" / f"{stage}_train.tsv").read_text().splitlines()
        assert [r.split("\t")[0] for r in rows] == ["step", "1", "2", "3"]  # written once, by rank 0
    assert result.stdout.count("seg: ") == 1  # only rank 0 reports
