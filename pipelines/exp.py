"""Run a paper-scale configuration as a DVC experiment: pipelines/NAME.yaml overrides params.yaml.

    python pipelines/exp.py celeba256 [extra dvc exp run args, e.g. --queue]
"""

import subprocess
import sys
from pathlib import Path

import yaml


def overrides(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out += overrides(value, name + ".") if isinstance(value, dict) else [f"{name}={value}"]
    return out


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    name = sys.argv[1]
    config = Path(__file__).with_name(f"{name}.yaml")
    if not config.is_file():
        sys.exit(f"no such configuration: {config}")
    args = ["dvc", "exp", "run", "-n", name]
    for item in overrides(yaml.safe_load(config.read_text())):
        args += ["-S", item]
    print(" ".join(args), flush=True)
    sys.exit(subprocess.call(args + sys.argv[2:]))


if __name__ == "__main__":
    main()
