"""Run a paper-scale configuration as a DVC experiment: pipelines/NAME.yaml overrides params.yaml.

    python pipelines/exp.py celeba256 [extra dvc exp run args, e.g. --queue]

A configuration with ``train.require_pretrained`` gets its pretrained weights (unmask.weights: VGG19 for the
perceptual term, FID's Inception) before DVC starts, or stops here in one line: not after the data build
and hours of training.
"""

import logging
import subprocess
import sys
from pathlib import Path

import yaml

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def overrides(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out += overrides(value, name + ".") if isinstance(value, dict) else [f"{name}={value}"]
    return out


def merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def weights_problem(params: dict) -> str | None:
    """Why the run cannot start: a pretrained file its train.require_pretrained asks for is unavailable."""
    train = params.get("train", {})
    if not train.get("require_pretrained"):
        return None
    from unmask import weights

    try:
        weights.require(weights.required(perceptual=float(train.get("gamma", 0)) > 0))
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
    tree = yaml.safe_load(config.read_text())
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # what is downloaded, if anything
    problem = weights_problem(merged(yaml.safe_load(PARAMS.read_text()), tree))
    if problem:
        sys.exit(f"{config}: {problem}")
    args = ["dvc", "exp", "run", "-n", name]
    for item in overrides(tree):
        args += ["-S", item]
    print(" ".join(args), flush=True)
    sys.exit(subprocess.call(args + sys.argv[2:]))


if __name__ == "__main__":
    main()
