"""The DVC pipeline end to end, tiny: dvc repro in a temporary copy, then dvc metrics show."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.testdata import REPO, make_celeba_subset

LABELS = Path("labels") / "real-masked-photos"  # the evaluate stage's --photo-labels (dvc.yaml)
HARD_LABELS = Path("labels") / "real-masked-photos-hard"  # and its second labels set: metrics group photos_hard

TINY = {
    "data": {"resolution": 128, "pairs": 36, "shard_size": 8},
    "train": {"preset": "tiny", "mseg_width": 8, "generator_width": 8, "discriminator_width": 8, "batch_size": 4,
              "seg_steps": 3, "gan_steps": 3, "num_workers": 0, "val_max_batches": 2},
    "evaluate": {"max_samples": 8, "max_photos": 2, "identity_max_samples": 4},
}


PIPELINE_ONLY = {"train.seg_steps": "--steps", "train.gan_steps": "--steps"}  # the --steps of each stage


def _exp():
    """pipelines/exp.py: dvc.yaml's ${...} interpolated as DVC does it."""
    spec = importlib.util.spec_from_file_location("pipelines_exp", REPO / "pipelines" / "exp.py")
    exp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exp)
    return exp


def _leaves(tree: dict, prefix: str = "") -> set[str]:
    return {key for name, value in tree.items()
            for key in (_leaves(value, f"{prefix}{name}.") if isinstance(value, dict) else {f"{prefix}{name}"})}


def _commands(params: dict) -> list[list[str]]:
    """Every command dvc.yaml runs with these params (each foreach item; `a && b` is two), as words, without
    a redirection."""
    exp = _exp()
    commands = []
    for stage in yaml.safe_load(exp.DVC_YAML.read_text())["stages"].values():
        items = stage.get("foreach", {None: {}})
        cmd = stage["do"]["cmd"] if "do" in stage else stage["cmd"]
        for item in items.values():
            item = {k: exp.interpolated(v, params) if isinstance(v, str) else v for k, v in item.items()}
            text = exp.interpolated(cmd, {**params, "item": item})
            commands += [part.split(">")[0].split() for part in text.split("&&")]
    return commands


def test_dvc_yaml_names_params_keys_only_and_uses_each():
    exp = _exp()
    params = yaml.safe_load(exp.PARAMS.read_text())
    text = exp.DVC_YAML.read_text()
    used = {name for name in exp.REFERENCE.findall(text) if not name.startswith("item.")}
    assert used <= _leaves(params), f"dvc.yaml names no such param: {used - _leaves(params)}"
    assert _leaves(params) - used == set(), "params.yaml keys no stage uses"
    _commands(params)  # every ${...} resolves (exp.interpolated raises for one that names no param)
    for name in ("celeba256", "celeba512"):  # the paper configurations override params.yaml's keys only
        overrides = yaml.safe_load((REPO / "pipelines" / f"{name}.yaml").read_text())
        assert _leaves(overrides) <= _leaves(params), name


def test_each_params_key_is_the_option_it_is_passed_to():
    """data.shard_size -> maskgen build --shard-size, train.mseg_width -> unmask train --mseg-width, ..."""
    text = _exp().DVC_YAML.read_text()
    passed = re.findall(r"(--[a-z-]+) \$\{((?:data|train|evaluate)\.[a-z_]+)\}", text)
    assert passed
    for option, key in passed:
        assert option == PIPELINE_ONLY.get(key, "--" + key.split(".")[1].replace("_", "-")), (option, key)


def test_every_option_dvc_yaml_passes_exists_on_its_command():
    """Each option of each command is one its command has, by its current name; each ``unmask train`` makes a
    config as the command reads it, with params.yaml and with each paper configuration."""
    from maskgen.cli import main as maskgen_main
    from maskgen.clitools import DeprecatedOption
    from unmask.cli import main as unmask_main
    from unmask.cli import train_config

    exp = _exp()
    params = yaml.safe_load(exp.PARAMS.read_text())
    groups = {"maskgen": maskgen_main, "unmask": unmask_main}
    for words in _commands(params):
        command = groups[words[0]].commands[words[1]]
        current = {opt for p in command.params if not isinstance(p, DeprecatedOption)
                   for opt in (*p.opts, *p.secondary_opts)}
        for word in words[2:]:
            assert not word.startswith("--") or word in current, f"{' '.join(words[:2])} has no option {word}"
    for name in ("params", "celeba256", "celeba512"):
        tree = params if name == "params" else exp.merged(
            params, yaml.safe_load((REPO / "pipelines" / f"{name}.yaml").read_text()))
        for args in exp.train_commands(tree).values():
            train_config(args)  # raises for an option the command does not take, or a bad value


def test_former_params_keys_in_a_configuration_are_read_as_the_new_ones(capsys):
    exp = _exp()
    params = yaml.safe_load(exp.PARAMS.read_text())
    old = {"data": {"res": 256}, "train": {"res": 256, "seg_width": 32, "alpha": 0.2, "val_batches": 5}}
    assert exp.current_names(old, "old.yaml", params) == {
        "data": {"resolution": 256}, "train": {"mseg_width": 32, "adv": 0.2, "val_max_batches": 5}}
    assert capsys.readouterr().err.splitlines() == [
        "warning: old.yaml: data.res is deprecated, use data.resolution",
        "warning: old.yaml: train.seg_width is deprecated, use train.mseg_width",
        "warning: old.yaml: train.alpha is deprecated, use train.adv",
        "warning: old.yaml: train.val_batches is deprecated, use train.val_max_batches",
        "warning: old.yaml: train.res is deprecated and unused: training takes data.resolution"]
    with pytest.raises(SystemExit, match="train.res \\(64\\) is gone: training takes the dataset's crop size"):
        exp.current_names({"train": {"res": 64}}, "old.yaml", params)
    with pytest.raises(SystemExit, match="train.alpha is the former name of train.adv: give train.adv only"):
        exp.current_names({"train": {"alpha": 0.2, "adv": 0.3}}, "both.yaml", params)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) else value
    return out


def _write_labels(labels: Path, photos: list[Path], category: str | None = None) -> None:
    """A labels folder as the contract (unmask.evaluation.labels) asks: an ellipse over the lower
    middle of each photo, 0/255 at the photo's size; with ``category``, that column too."""
    import cv2
    import numpy as np
    from PIL import Image

    from maskgen.source import load_image

    (labels / "masks").mkdir(parents=True)
    lines = ["photo,label,mask_type,wear" + (",category" if category else "")]
    for photo in photos:
        h, w = load_image(photo).shape[:2]
        mask = np.zeros((h, w), np.uint8)
        cv2.ellipse(mask, (w // 2, int(0.68 * h)), (w // 5, h // 6), 0, 0, 360, 255, -1)
        Image.fromarray(mask).save(labels / "masks" / f"{photo.stem}.png")
        lines.append(f"{photo.name},masks/{photo.stem}.png,surgical,correct" + (f",{category}" if category else ""))
    (labels / "labels.csv").write_text("\n".join(lines) + "\n")


def _run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_tiny_pipeline_reproduces_and_reports_metrics(tmp_path, celeba_dir, real_masked_dir):
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or shutil.which("dvc")
    if dvc is None:
        pytest.skip("dvc is not installed (it is a dependency: pip install -e .)")
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(REPO / "dvc.yaml", work)
    shutil.copy(REPO / ".dvcignore", work)
    for name in ("maskgen", "unmask"):
        (work / name).symlink_to(REPO / name)
    (work / "data").mkdir()
    make_celeba_subset(work / "data" / "celeba", celeba_dir, 6, 3)
    photos = work / "data" / "real-masked"
    photos.mkdir()
    for p in sorted(real_masked_dir.glob("*.jpg"))[:2]:
        (photos / p.name).symlink_to(p)
    _write_labels(work / LABELS, sorted(photos.iterdir()))
    _write_labels(work / HARD_LABELS, sorted(photos.iterdir())[:1], category="closeup")
    (work / "data_manifests").mkdir()
    params = _merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY)
    (work / "params.yaml").write_text(yaml.safe_dump(params))

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               TORCH_HOME=str(tmp_path / "torch-home"), DVC_NO_ANALYTICS="1")
    _run([dvc, "init", "--no-scm", "-q"], work, env)
    _run([dvc, "repro"], work, env)

    metrics = json.loads((work / "eval" / "default" / "metrics.json").read_text())
    for key in ("two_stage/psnr", "two_stage/ssim", "one_stage/psnr", "recon_only/psnr", "telea_pred_map/psnr",
                "seg/dice", "seg/pixel_accuracy"):
        assert isinstance(metrics[key], (int, float)), key
    assert metrics["two_stage/fid"] is None  # no Inception weights here: null with a reason, not a number
    assert metrics["photos/count"] == 2 and 0 <= metrics["photos/dice"] <= 1  # the labelled photos, scored
    assert metrics["photos_hard/count"] == 1 and 0 <= metrics["photos_hard/dice_category_closeup"] <= 1  # apart
    assert (work / "reports" / "default" / "report.md").is_file()
    stats = json.loads((work / "data_manifests" / "default.json").read_text())
    assert stats["samples"] == 36

    shown = _run([dvc, "metrics", "show", "--json"], work, env).stdout
    shown_metrics = json.loads(shown)[""]["data"]["eval/default/summary.json"]["data"]
    assert shown_metrics["psnr"] == metrics["two_stage/psnr"]
    assert shown_metrics["photo_dice"] == metrics["photos/dice"]
    assert shown_metrics["photo_dice_hard"] == metrics["photos_hard/dice"]
    assert "eval/default/metrics.json" not in json.loads(shown)[""]["data"]  # an output, not a metric
    # What a person reads: a few KB, every value a number or "-" (null)
    table = _run([dvc, "metrics", "show"], work, env).stdout
    assert len(table.encode()) <= 5000, f"{len(table.encode())} bytes:\n{table}"
    lines = [line.split() for line in table.splitlines() if line.strip()]
    assert lines[0][0] == "Path" and len(lines) == 6, table  # 4 training files and the evaluation summary
    for row in lines[1:]:
        for cell in row[1:]:
            assert cell == "-" or re.fullmatch(r"-?\d+(\.\d+)?(e[-+]?\d+)?", cell), f"{cell!r} in:\n{table}"
    report = (work / "reports" / "default" / "report.md").read_text()
    charts = re.findall(r"!\[[^\]]*\]\((figures/charts/[^)]+)\)", report)
    assert "figures/charts/training_gan.png" in charts and "figures/charts/default_psnr_ssim.png" in charts
    assert all((work / "reports" / "default" / c).is_file() for c in charts)
    # Nothing changed: a second repro runs no stage.
    again = _run([dvc, "repro"], work, env).stdout
    assert "Running stage" not in again, again
