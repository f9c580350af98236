"""Does a change keep behaviour? Runs a small build -> stage 1 -> stage 2 -> evaluation with the code of each
CHECKOUT and compares the digests of what they wrote: every dataset file, the checkpoints' tensors and config,
the evaluation's metrics.json (less paths), per_image.parquet and summary.json.

    python benchmarks/same_outputs.py OLD_CHECKOUT NEW_CHECKOUT [--work DIR]

e.g. ``git worktree add /tmp/old HEAD~5`` then ``python benchmarks/same_outputs.py /tmp/old .``. Each checkout's
code is put first on PYTHONPATH; both use this environment's packages. Prints the digests that differ and exits
1 if any does. The command lines use options both versions know (``--res`` is maskgen's former name for
``--resolution``: it still works, with a warning).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.testdata import CELEBA, make_celeba_subset  # noqa: E402

TRAIN = ["--preset", "tiny", "--steps", "3", "--batch-size", "4", "--seed", "0", "--device", "cpu", "--no-progress",
         "--num-workers", "0", "--set", "train.val_max_batches=2", "--resolution", "128"]


def _run(code: Path, cwd: Path, tool: str, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(code), UNMASK_OFFLINE="1", OMP_NUM_THREADS="1")
    script = f"import sys; from {tool}.launch import main; sys.argv[0] = {tool!r}; main()"
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{code}: {tool} {' '.join(args[:2])} failed:\n{done.stderr[-2000:]}")


def _tensor_digest(checkpoint: dict) -> str:
    import torch

    digest = hashlib.sha256()

    def walk(value, name: str) -> None:
        if isinstance(value, torch.Tensor):
            digest.update(name.encode())
            digest.update(value.detach().contiguous().numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                walk(value[key], f"{name}/{key}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{name}/{i}")

    walk({k: v for k, v in checkpoint.items() if k != "config"}, "")
    return digest.hexdigest()


def _without_paths(value):
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items() if not any(s in k for s in ("path", "dir", "time"))}
    return value


def outputs(code: Path, work: Path, source: Path) -> dict[str, str]:
    """Digest of each output of the small run made with ``code`` in ``work``."""
    import pandas as pd
    import torch

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _run(code, work, "maskgen", "build", "--source", str(source), "--out", "data", "--res", "128", "--pairs", "96",
         "--seed", "0", "--split", "60/20/20", "--workers", "2", "--no-progress")
    for stage in ("seg", "gan"):
        _run(code, work, "unmask", "train", "--stage", stage, "--data", "data", "--out", "run", *TRAIN)
    _run(code, work, "unmask", "evaluate", "--data", "data", "--split", "test", "--checkpoint", "run", "-o", "eval",
         "--max-samples", "12", "--no-progress")
    digests = {str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted((work / "data").rglob("*")) if p.is_file() and ".work" not in p.parts}
    for path in sorted((work / "run" / "checkpoints").glob("*.pt")):
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        name = str(path.relative_to(work))
        digests[name] = _tensor_digest(checkpoint)
        digests[f"{name}:config"] = hashlib.sha256(json.dumps(checkpoint["config"], sort_keys=True,
                                                              default=str).encode()).hexdigest()
    metrics = _without_paths(json.loads((work / "eval" / "metrics.json").read_text()))
    digests["eval/metrics.json"] = hashlib.sha256(json.dumps(metrics, sort_keys=True).encode()).hexdigest()
    per_image = pd.read_parquet(work / "eval" / "per_image.parquet")
    digests["eval/per_image.parquet"] = hashlib.sha256(
        pd.util.hash_pandas_object(per_image, index=True).values.tobytes()).hexdigest()
    digests["eval/summary.json"] = hashlib.sha256((work / "eval" / "summary.json").read_bytes()).hexdigest()
    return digests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--work", type=Path, default=Path("out/same_outputs"))
    args = parser.parse_args()
    source = args.work / "source"  # one source for both: build.json records its path
    if not source.exists():
        make_celeba_subset(source, CELEBA, 8, 6)
    old = outputs(args.old.resolve(), args.work / "old", source.resolve())
    new = outputs(args.new.resolve(), args.work / "new", source.resolve())
    differ = sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
    for name in differ:
        print(f"differs: {name}")
    print(f"{len(old.keys() | new.keys()) - len(differ)} of {len(old.keys() | new.keys())} outputs the same")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
