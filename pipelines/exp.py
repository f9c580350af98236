"""Run a paper-scale configuration as a DVC experiment: pipelines/NAME.yaml overrides params.yaml.

    python pipelines/exp.py celeba256 [extra dvc exp run args, e.g. --queue]

A configuration with ``train.require_pretrained`` gets its pretrained weights (unmask.weights: VGG19 for the
perceptual term, FID's Inception) before DVC starts, or stops here in one line: not after the data build
and hours of training. Which files: those each of dvc.yaml's ``unmask train`` commands, with these params,
will require (``unmask.weights.required_for`` of the config ``unmask train`` reads from them).
"""

import logging
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import yaml

from unmask import weights
from unmask.cli import train_config

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"
DVC_YAML = ROOT / "dvc.yaml"
REFERENCE = re.compile(r"\$\{\s*([^}\s]+)\s*\}")  # DVC's ${a.b}
# params.yaml's former keys (each is now its option's name), read as the new ones for one release, with a
# warning. train.res is gone: training takes the dataset's crop size, data.resolution.
RENAMED_PARAMS = {
    "data.res": "data.resolution", "train.seg_width": "train.mseg_width", "train.gen_width": "train.generator_width",
    "train.disc_width": "train.discriminator_width", "train.batch": "train.batch_size", "train.alpha": "train.adv",
    "train.beta": "train.rec", "train.gamma": "train.per", "train.val_batches": "train.val_max_batches",
    "evaluate.identity_samples": "evaluate.identity_max_samples",
}
DROPPED_PARAMS = {"train.res": "data.resolution"}


def overrides(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out += overrides(value, name + ".") if isinstance(value, dict) else [f"{name}={value}"]
    return out


def current_names(tree: dict, where: str, base: dict) -> dict:
    """``tree`` (overrides of the params ``base``) with each former key under its new name, one warning line
    for each; a former key given with its new one, or a dropped key whose value is not its replacement's, is
    a SystemExit naming ``where``."""
    out = {section: dict(values) if isinstance(values, dict) else values for section, values in tree.items()}
    for old, new in {**RENAMED_PARAMS, **DROPPED_PARAMS}.items():
        (section, key), (new_section, new_key) = old.split("."), new.split(".")
        if key not in (out.get(section) or {}):
            continue
        value = out[section].pop(key)
        if old in DROPPED_PARAMS:
            if value != merged(base, out)[new_section][new_key]:
                sys.exit(f"{where}: {old} ({value}) is gone: training takes the dataset's crop size, {new}")
            print(f"warning: {where}: {old} is deprecated and unused: training takes {new}", file=sys.stderr)
        elif new_key in (out.get(new_section) or {}):
            sys.exit(f"{where}: {old} is the former name of {new}: give {new} only")
        else:
            print(f"warning: {where}: {old} is deprecated, use {new}", file=sys.stderr)
            out.setdefault(new_section, {})[new_key] = value
    return out


def merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def interpolated(text: str, values: dict) -> str:
    """``text`` with each ``${a.b}`` replaced by that value as DVC writes it into a command (booleans as
    true / false)."""
    def value(match: re.Match) -> str:
        found = values
        for part in match.group(1).split("."):
            if not isinstance(found, dict) or part not in found:
                raise ValueError(f"{DVC_YAML.name}: {match.group(0)} names no param")
            found = found[part]
        return ("true" if found else "false") if isinstance(found, bool) else str(found)

    return REFERENCE.sub(value, text)


def train_commands(params: dict) -> dict[str, list[str]]:
    """dvc.yaml's training stages with these params: {"train@seg": the arguments of its ``unmask train``, ...}."""
    stage = yaml.safe_load(DVC_YAML.read_text())["stages"]["train"]
    commands = {}
    for name, item in stage["foreach"].items():
        item = {key: interpolated(v, params) if isinstance(v, str) else v for key, v in item.items()}
        words = shlex.split(interpolated(stage["do"]["cmd"], {**params, "item": item}))
        if words[:2] != ["unmask", "train"]:
            raise ValueError(f"{DVC_YAML.name}: train@{name} does not run `unmask train`")
        commands[f"train@{name}"] = words[2:]
    return commands


def weights_problem(params: dict) -> str | None:
    """Why the run cannot start: a pretrained file that one of its ``unmask train`` commands requires
    (train.require_pretrained) is unavailable, or a command's options do not make a config."""
    try:
        commands = train_commands(params)
    except ValueError as error:
        return str(error)
    names: list[str] = []
    for stage, args in commands.items():
        try:
            config = train_config(args)
        except click.ClickException as error:
            return f"{DVC_YAML.name} {stage}: {error.format_message()}"
        names += [name for name in weights.required_for(config) if name not in names]
    try:
        weights.require(tuple(names))
    except weights.WeightsError as error:
        return f"train.require_pretrained: {error}"
    return None


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    name = sys.argv[1]
    config = Path(__file__).with_name(f"{name}.yaml")
    if not config.is_file():
        sys.exit(f"no such configuration: {config}")
    params = yaml.safe_load(PARAMS.read_text())
    tree = current_names(yaml.safe_load(config.read_text()), str(config), params)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # what is downloaded, if anything
    problem = weights_problem(merged(params, tree))
    if problem:
        sys.exit(f"{config}: {problem}")
    args = ["dvc", "exp", "run", "-n", name]
    for item in overrides(tree):
        args += ["-S", item]
    print(" ".join(args), flush=True)
    sys.exit(subprocess.call(args + sys.argv[2:]))


if __name__ == "__main__":
    main()
