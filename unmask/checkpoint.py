"""Checkpoints: atomic writes, ``weights_only`` loads, RNG state, and models rebuilt from a run.

A run directory ``RUN`` keeps the latest checkpoint of each stage in ``RUN/checkpoints/{stage}.pt``
(stage: ``seg`` or ``gan``), and with ``--keep-checkpoints`` each periodic one in
``RUN/checkpoints/{stage}-{step:06d}.pt`` too. A checkpoint is a dict of tensors and plain containers only (the
config as a dict), so ``torch.load(..., weights_only=True)`` reads it:

``format``, ``stage``, ``config``, ``step``, ``total_steps``, ``complete``, ``models`` (state dicts
by name: ``mseg``; ``generator``, ``discriminator`` and, when stage 2 trained on predicted maps,
``mseg``), ``optimizers``, ``scalers``, ``rng``, ``data`` (what fixes the batch order),
``perceptual`` (enabled, reason), ``val`` and ``losses`` (last validation metrics, last losses), and
``bad_samples`` (the samples skipped because they did not decode) when there were some.

Every reader goes through ``load_checkpoint``: a file that is not such a checkpoint (empty,
truncated, random bytes, another torch file, the other stage's, another format) is a
``CheckpointError`` saying what was expected and what was found, in one line.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import shutil
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskgen.files import atomic_output, write_bytes_atomic
from unmask.config import Config, diff
from unmask.models import Generator, MSeg

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
STAGES = ("seg", "gan")
STAGE_NAMES = {"seg": "stage-1 (seg, M-Seg)", "gan": "stage-2 (gan, generator)"}
REQUIRED_KEYS = ("format", "stage", "config", "models")  # enough to rebuild the models
RESUME_KEYS = ("step", "total_steps", "complete", "optimizers", "scalers", "rng", "data", "perceptual", "val", "losses")
EXPECTED = "a checkpoint written by unmask train (RUN/checkpoints/seg.pt or gan.pt)"


class CheckpointError(ValueError):
    """A file that is not a checkpoint this code can use; the message names the file, what was
    expected and what was found."""


def checkpoint_path(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"{stage}.pt"


def snapshot_path(run_dir: str | Path, stage: str, step: int) -> Path:
    """Where ``--keep-checkpoints`` keeps the checkpoint of ``step`` (the latest stays at ``checkpoint_path``)."""
    return Path(run_dir) / CHECKPOINT_DIR / f"{stage}-{step:06d}.pt"


def keep_snapshot(path: str | Path, snapshot: str | Path) -> None:
    """A copy of checkpoint ``path`` at ``snapshot``, written atomically like the checkpoint itself."""
    with open(path, "rb") as src, atomic_output(snapshot) as dst:
        shutil.copyfileobj(src, dst)


def _interned_keys(obj: Any) -> Any:
    """``obj`` with the string keys of its plain dicts interned. Pickle writes a string once per object:
    an optimizer state loaded on resume holds its own copies of keys ("step", "exp_avg") that a fresh
    run shares, and the bytes would differ from an uninterrupted run's although every value is equal."""
    if type(obj) is dict:
        return {sys.intern(k) if type(k) is str else k: _interned_keys(v) for k, v in obj.items()}
    if type(obj) is list:
        return [_interned_keys(v) for v in obj]
    return obj  # tensors, numbers, module state_dicts (OrderedDicts with their _metadata) as they are


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Written atomically (``maskgen.files``): a crash leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Serialised in memory first: torch's file writer turns a full disk into its own RuntimeError
    # ("unexpected pos ..."); the atomic writer's OSError names the file and the cause.
    buffer = io.BytesIO()
    torch.save(_interned_keys(payload), buffer)
    write_bytes_atomic(path, buffer.getbuffer())


def _unreadable(path: Path, exc: Exception) -> str:
    """What a file that torch cannot load (weights only) is, in a few words."""
    if zipfile.is_zipfile(path):  # torch's format
        if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
            return "a torch file holding Python objects besides tensors and plain containers (not loaded: unsafe)"
        return "a damaged torch file"
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):  # a zip archive's start without its end: cut short
        return "a truncated torch file"
    return "not a torch file"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", stage: str | None = None
                    ) -> dict[str, Any]:
    """The checkpoint at ``path`` (of ``stage`` when given), loaded with ``weights_only``; anything
    else is a ``CheckpointError``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file, expected {EXPECTED}")
    if not path.is_file():  # a folder, a FIFO, /dev/zero: never read (a read would block or not end)
        raise CheckpointError(f"{path}: not a checkpoint (not a regular file), expected {EXPECTED}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: an empty file, expected {EXPECTED}")
    try:
        with warnings.catch_warnings():  # torch's notes on an old pickle: the one line below says what it is
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch reports a bad file with many types (RuntimeError, EOFError, ...)
        raise CheckpointError(f"{path}: {_unreadable(path, exc)}, expected {EXPECTED}") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: a torch file holding a {type(payload).__name__}, expected {EXPECTED}")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: a torch file without {', '.join(missing)}, expected {EXPECTED}")
    if payload["format"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {payload['format']!r}, expected {FORMAT_VERSION}")
    if payload["stage"] not in STAGES or not isinstance(payload["models"], dict):
        raise CheckpointError(f"{path}: a checkpoint of unknown stage {payload['stage']!r}, expected {EXPECTED}")
    if stage is not None and payload["stage"] != stage:
        raise CheckpointError(f"{path}: a {STAGE_NAMES[payload['stage']]} checkpoint, "
                              f"expected a {STAGE_NAMES[stage]} one")
    try:
        Config.from_dict(payload["config"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: its config does not fit this version of unmask ({exc})") from exc
    return payload


def _load_weights(model: torch.nn.Module, state: Any, path: str | Path, name: str) -> None:
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:  # missing / unexpected keys, wrong shapes
        first = str(exc).splitlines()[0].rstrip(":")
        raise CheckpointError(f"{path}: its {name} weights do not fit its config ({first})") from exc


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as tensors and tuples of ints."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _mseg_from(payload: dict[str, Any], device: torch.device | str, path: str | Path) -> MSeg | None:
    state = payload["models"].get("mseg")
    if state is None:
        return None
    # A stage-2 checkpoint stores the M-Seg it used together with that M-Seg's own config.
    cfg = Config.from_dict(payload.get("mseg_config", payload["config"]))
    model = MSeg(cfg.mseg)
    _load_weights(model, state, path, "M-Seg")
    return model.to(device).eval()


def load_mseg(path: str | Path, device: torch.device | str = "cpu") -> tuple[Config, MSeg]:
    """The M-Seg of a stage-1 checkpoint (or of a stage-2 checkpoint that stored one), eval mode."""
    payload = load_checkpoint(path)
    model = _mseg_from(payload, device, path)
    if model is None:
        raise CheckpointError(f"{path}: a {STAGE_NAMES[payload['stage']]} checkpoint without M-Seg weights, "
                              f"expected a {STAGE_NAMES['seg']} one")
    return Config.from_dict(payload.get("mseg_config", payload["config"])), model


def load_models(path: str | Path, device: torch.device | str = "cpu") -> tuple[Config, MSeg | None, Generator | None]:
    """(config, M-Seg, generator) in eval mode from a run directory or one checkpoint file.

    A run directory gives the latest ``seg`` and ``gan`` checkpoints; a model the run or file does
    not hold is None. The config is the stage-2 one when there is a stage-2 checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        files = [(checkpoint_path(path, stage), stage) for stage in STAGES]
        # Whatever is under a checkpoint's name is loaded (or refused): not skipped as if the stage were absent.
        loaded = [(f, load_checkpoint(f, stage=stage)) for f, stage in files if os.path.lexists(f)]
        if not loaded:
            raise FileNotFoundError(f"no checkpoints in {path / CHECKPOINT_DIR}")
    else:
        loaded = [(path, load_checkpoint(path))]
    config = Config.from_dict(loaded[-1][1]["config"])
    mseg = next((m for m in (_mseg_from(p, device, f) for f, p in loaded) if m is not None), None)
    generator = None
    for file, payload in loaded:
        if "generator" in payload["models"]:
            generator = Generator(Config.from_dict(payload["config"]).generator)
            _load_weights(generator, payload["models"]["generator"], file, "generator")
            generator = generator.to(device).eval()
    return config, mseg, generator


def generator_differences(theirs: Config | dict[str, Any], ours: Config | dict[str, Any]) -> list[str]:
    """The ``generator.*`` config keys that differ (``"generator.use_map: False != True"``): the weights of
    one generator load into the other (``--init-generator``, ``interpolate``) only when there are none."""
    configs = [c if isinstance(c, Config) else Config.from_dict(c) for c in (theirs, ours)]
    return [d for d in diff(*configs) if d.startswith("generator.")]


def resume_problem(path: str | Path, state: dict[str, Any], cfg: Config, data_key: dict[str, int] | None = None,
                   perceptual: bool | None = None, dataset: str | None = None) -> str | None:
    """Why the checkpoint ``state`` (read from ``path``) cannot be continued exactly by a run with
    ``cfg``, this batch-order key (``data_key``) and this perceptual setting; None when it can.
    ``data_key`` / ``perceptual`` / ``dataset`` (``unmask.data.dataset_fingerprint``) None: not checked (yet)."""
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        return f"cannot resume {path}: it holds models only (no {', '.join(missing)})"

    def computed(config: dict[str, Any]) -> Config:
        """The config without how many bad samples a run tolerates: that changes nothing the run computes
        (it may be raised to go on)."""
        data = Config.from_dict(config).to_dict()
        del data["train"]["max_bad_samples"]
        return Config.from_dict(data)

    differences = diff(computed(state["config"]), computed(cfg.to_dict()))
    if differences:
        return f"cannot resume {path} with a different config: {differences}"
    # checkpoints written before the fingerprint was recorded hold none: not checked
    if dataset is not None and state.get("dataset", dataset) != dataset:
        return (f"cannot resume {path} on other data: it was trained on {state['dataset']}, --data holds "
                f"{dataset} (unmask.data.dataset_fingerprint)")
    if data_key is not None and state["data"] != data_key:
        return (f"cannot resume {path} exactly: the batch order depends on {sorted(data_key)}; "
                f"checkpoint has {state['data']}, this run {data_key}")
    if perceptual is not None and state["perceptual"]["enabled"] != perceptual:
        return (f"cannot resume {path}: it ran with perceptual={state['perceptual']['enabled']} "
                f"({state['perceptual']['reason']}), this run has perceptual={perceptual}")
    return None


def gan_checkpoint_file(path: str | Path) -> Path:
    """The stage-2 checkpoint of a run directory, or ``path`` itself when it is a file; it must exist."""
    file = checkpoint_path(path, "gan") if Path(path).is_dir() else Path(path)
    if file.exists() and not file.is_file():
        raise CheckpointError(f"{file}: not a checkpoint (not a regular file), expected {EXPECTED}")
    if not file.is_file():
        raise FileNotFoundError(f"no stage-2 checkpoint at {file}")
    return file


def _lerp(start: torch.Tensor, end: torch.Tensor, weight: float) -> torch.Tensor:
    """start + weight * (end - start), computed from the nearer end so weights 0 and 1 are exact."""
    dtype, start, end = end.dtype, start.double(), end.double()
    value = start + weight * (end - start) if weight < 0.5 else end - (1.0 - weight) * (end - start)
    return value.to(dtype)


def interpolate_generators(reconstruction: str | Path, adversarial: str | Path, weight: float,
                           out_dir: str | Path) -> dict[str, Any]:
    """Network interpolation (ESRGAN, Wang et al. 2018): a run whose generator weights are
    ``(1 - weight) * reconstruction + weight * adversarial``, a knob between the PSNR of a
    reconstruction-oriented generator and the sharpness of a GAN fine-tuned from it.

    Both generators must share their architecture and, for the blend to mean anything, their
    ancestry (the GAN fine-tuned from the reconstruction run, or both from one snapshot). The new
    run ``out_dir`` holds ``checkpoints/gan.pt`` (the adversarial run's checkpoint, complete, with
    the blended generator) and the adversarial run's ``seg.pt`` when it has one, so ``evaluate``
    and ``predict`` take it as they take a trained run. Returns what ``run.json`` records.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the interpolation weight must be in [0, 1], got {weight}")
    files = [gan_checkpoint_file(p) for p in (reconstruction, adversarial)]
    out_dir = Path(out_dir)
    target = checkpoint_path(out_dir, "gan")
    if target.exists():  # before reading two checkpoints for nothing
        raise FileExistsError(f"{target} exists: choose another output run")
    payloads = [load_checkpoint(f, stage="gan") for f in files]
    for file, payload in zip(files, payloads, strict=True):
        if "generator" not in payload["models"]:
            raise CheckpointError(f"{file}: a stage-2 checkpoint without generator weights")
    differences = generator_differences(payloads[0]["config"], payloads[1]["config"])
    if differences:
        raise ValueError(f"the two generators differ in architecture: {differences}")
    rec, adv = (p["models"]["generator"] for p in payloads)
    nearer = adv if weight >= 0.5 else rec  # integer buffers (BatchNorm's batch counts) are not blended
    blended = {k: _lerp(rec[k], v, weight) if v.is_floating_point() else nearer[k].clone() for k, v in adv.items()}
    record = {"reconstruction": str(files[0]), "adversarial": str(files[1]), "weight": weight,
              "reconstruction_step": payloads[0].get("step"), "adversarial_step": payloads[1].get("step"),
              "reconstruction_alpha": payloads[0]["config"]["loss"]["adv"],
              "adversarial_alpha": payloads[1]["config"]["loss"]["adv"]}
    payload = {**payloads[1], "models": {**payloads[1]["models"], "generator": blended}, "complete": True,
               "interpolation": record}
    save_checkpoint(target, payload)
    seg = files[1].parent / "seg.pt"
    if seg.is_file():
        keep_snapshot(seg, checkpoint_path(out_dir, "seg"))  # an atomic copy
        record["seg"] = str(seg)
    return record
