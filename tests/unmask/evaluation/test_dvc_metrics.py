"""What `dvc metrics show / diff` and `dvc exp show` print: every metrics file dvc.yaml declares
holds only numbers (or null, printed "-"), within a small key budget, checked on the files a real
tiny training and evaluation write."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from tests.testdata import REPO
from tests.unmask.testutils import tiny_config
from unmask.evaluation import METRICS_FILE, SUMMARY_FILE
from unmask.evaluation.scores import SUMMARY, SUMMARY_BUDGET
from unmask.training.loop import train
from unmask.training.options import RunOptions

# Keys per declared metrics file, by stage (foreach stages by their template's name)
BUDGETS = {"evaluate": SUMMARY_BUDGET, "train": 12}
SHORT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,23}$")


def _substitute(text: str, item: dict) -> str:
    """``${item.x.y}`` of a foreach template (other ``${...}`` are params: left as they are)."""
    def value(match: re.Match) -> str:
        node = item
        for part in match.group(1).split("."):
            node = node[part]
        return str(node)

    return re.sub(r"\$\{item\.([\w.]+)\}", value, text)


def declared_metrics() -> dict[str, list[tuple[str, str]]]:
    """stage template name -> [(stage name, metrics path)] of dvc.yaml, foreach expanded."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out: dict[str, list[tuple[str, str]]] = {}
    for name, stage in stages.items():
        items = stage["foreach"].items() if "foreach" in stage else [(None, None)]
        body = stage["do"] if "foreach" in stage else stage
        for item_name, item in items:
            for entry in body.get("metrics", []):
                path = next(iter(entry)) if isinstance(entry, dict) else entry
                stage_name = name if item_name is None else f"{name}@{item_name}"
                out.setdefault(name, []).append((stage_name, _substitute(path, item or {})))
    return out


@pytest.fixture(scope="module")
def trained(dataset_dir, tmp_path_factory) -> dict[str, Path]:
    """Tiny runs of both stages as the pipeline trains them: GAN, and the reconstruction-only (--adv 0)."""
    runs = {}
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no VGG19 weights here: the perceptual term is off, loudly
        patch.setattr(torch.hub, "get_dir", lambda: str(tmp_path_factory.mktemp("empty-hub")))
        for name, overrides in {"default": {}, "recon_only": {"loss.adv": 0.0}}.items():
            run = tmp_path_factory.mktemp("runs") / name
            train(tiny_config(**{"train.steps": 2, **overrides}),
                  RunOptions(data_dir=dataset_dir, run_dir=run, device="cpu", progress=False))
            runs[name] = run
    return runs


def _numbers_only(path: Path, budget: int) -> dict:
    data = json.loads(path.read_text())
    assert isinstance(data, dict) and data, path
    assert len(data) <= budget, f"{path.name}: {len(data)} keys, budget {budget}: {sorted(data)}"
    for name, value in data.items():
        assert SHORT_NAME.match(name), f"{path.name}: {name!r} is not a short, stable name"
        assert value is None or (type(value) in (int, float) and math.isfinite(value)), (
            f"{path.name}: {name} = {value!r} is not a number or null")
    return data


def test_every_declared_metrics_file_holds_only_numbers_within_its_budget(trained, evaluated):
    declared = declared_metrics()
    assert set(declared) == set(BUDGETS), f"a stage declares metrics with no budget here: {set(declared)}"
    checked = []
    for _stage_name, path in declared["train"]:
        run, file = re.fullmatch(r"runs/(\w+)/(\w+_metrics\.json)", path).groups()
        produced = trained["recon_only" if run == "recon_only" else "default"] / file
        checked.append(_numbers_only(produced, BUDGETS["train"]))
    assert len(checked) == 4  # train@seg, train@gan, train@one_stage, train@recon_only
    (_, path), = declared["evaluate"]
    assert Path(path).name == SUMMARY_FILE and Path(path).parent == Path("eval/default")
    summary = _numbers_only(evaluated / SUMMARY_FILE, BUDGETS["evaluate"])
    assert list(summary) == list(SUMMARY)  # stable names, every run: experiments compare key by key


def test_summary_is_the_evaluation_s_numbers_under_short_names(evaluated):
    values = json.loads((evaluated / METRICS_FILE).read_text())
    summary = json.loads((evaluated / SUMMARY_FILE).read_text())
    for name, flat in SUMMARY.items():
        assert summary[name] == values.get(flat), name  # absent from this evaluation: null
    assert summary["psnr"] is not None and summary["dice"] is not None
    assert summary["fid"] is None  # no Inception weights in the tests: null, its reason in metrics.json


def test_training_metrics_keep_their_texts_in_run_json(trained):
    gan = json.loads((trained["default"] / "gan_metrics.json").read_text())
    assert gan["perceptual"] == 0 and "perceptual_reason" not in gan
    meta = json.loads((trained["default"] / "run.json").read_text())["stages"]["gan"]
    assert meta["perceptual"] is False and meta["perceptual_reason"]
