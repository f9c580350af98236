"""DDP at paper widths and 256 px (two gloo processes under torchrun, batch 1 per rank): stage 2 (generator and
discriminator, two optimisers) stopped after its first step and resumed ends with the checkpoint of an
uninterrupted run, byte for byte. (Stage 1 resumes alike: tests/unmask/training/test_train.py, one process.)"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unmask import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[3]

# `unmask train` whose every rank stops at step STOP_AT_STEP of stage STOP_STAGE, after the checkpoint of the
# step before (train.checkpoint_every 1), as a killed run would: nothing after that point runs.
STOPPING_TRAIN = '''
import os, sys
import torch.distributed as dist
from unmask.cli import main
from unmask.training import stages

stage_class = {"seg": stages.SegStage, "gan": stages.GanStage}[os.environ["STOP_STAGE"]]
stop_at, original = int(os.environ["STOP_AT_STEP"]), stage_class.train_step

def train_step(self, batch, step):
    if step == stop_at:
        dist.barrier()  # rank 0 has written the checkpoint of the step before
        os._exit(3)
    return original(self, batch, step)

stage_class.train_step = train_step
main(sys.argv[1:])
'''


def torchrun(script_args, tmp_path, run, resume=False, stop=None):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "no_hub"), "OMP_NUM_THREADS": "1", "UNMASK_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if stop is not None:
        env["STOP_STAGE"], env["STOP_AT_STEP"] = stop[0], str(stop[1])
        entry = [str(tmp_path / "stopping_train.py")]
    else:
        entry = ["-m", "unmask.cli"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *entry,
               "train", "--out", str(run), *script_args, *(["--resume"] if resume else [])]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_ddp_paper_widths_256px_resumed_equals_an_uninterrupted_run(dataset_dir, tmp_path):
    (tmp_path / "stopping_train.py").write_text(STOPPING_TRAIN)
    args = ["--stage", "gan", "--data", str(dataset_dir), "--preset", "paper", "--resolution", "256",
            "--batch-size", "1", "--steps", "2", "--checkpoint-every", "1", "--num-workers", "0",
            "--set", "train.val_max_batches=1", "--set", "train.sample_images=1", "--device", "cpu", "--no-progress"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    result = torchrun(args, tmp_path, straight)
    assert result.returncode == 0, result.stdout + result.stderr

    stopped = torchrun(args, tmp_path, resumed, stop=("gan", 1))
    assert stopped.returncode != 0
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(resumed, "gan"))["step"] == 1
    result = torchrun(args, tmp_path, resumed, resume=True)
    assert result.returncode == 0, result.stdout + result.stderr

    state = ckpt.load_checkpoint(ckpt.checkpoint_path(straight, "gan"))
    assert state["data"]["world_size"] == 2 and state["config"]["generator"]["base_width"] == 64
    assert state["step"] == 2 and state["complete"] and set(state["models"]) == {"generator", "discriminator"}
    assert ckpt.checkpoint_path(straight, "gan").read_bytes() == ckpt.checkpoint_path(resumed, "gan").read_bytes()
    assert (straight / "logs/gan_train.tsv").read_text() == (resumed / "logs/gan_train.tsv").read_text()
