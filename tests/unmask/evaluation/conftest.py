"""Fixtures of the evaluation tests: a tiny real dataset, tiny untrained checkpoints, one evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from maskgen.build import BuildConfig, build
from tests.unmask.evaluation.testutils import EVAL_RES, write_tiny_run


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)  # tiny models gain nothing from more; keeps timings steady


@pytest.fixture(scope="session")
def eval_dataset(tmp_path_factory, small_celeba) -> Path:
    """24 masked/unmasked pairs at 128 px, about half of them in the test split (~3 s)."""
    out = tmp_path_factory.mktemp("eval-data") / "ds"
    build(BuildConfig(source=str(small_celeba), out=str(out), res=128, pairs=24, workers=1, progress=False,
                      split=(0.5, 0.0, 0.5)))
    return out


@pytest.fixture(scope="session")
def two_stage_run(tmp_path_factory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("runs") / "two_stage")


@pytest.fixture(scope="session")
def one_stage_run(tmp_path_factory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("runs") / "one_stage", use_map=False, seed=1)


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory, eval_dataset, two_stage_run, one_stage_run) -> Path:
    """``unmask evaluate`` of the tiny runs on the test split at 64 px, with the one-stage ablation."""
    from click.testing import CliRunner

    from unmask.evaluation.cli import evaluate

    out = tmp_path_factory.mktemp("eval") / "out"
    with pytest.MonkeyPatch.context() as patch:
        # an empty torch hub cache: FID must come out null with its reason wherever the tests run
        patch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))
        result = CliRunner().invoke(evaluate, [
            "--data", str(eval_dataset), "--split", "test", "--checkpoint", str(two_stage_run),
            "--one-stage", str(one_stage_run), "-o", str(out), "--resolution", str(EVAL_RES), "--batch-size", "4",
            "--sheet-rows", "2", "--failures", "3", "--device", "cpu", "--no-progress",
        ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out
