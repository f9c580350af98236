"""The runtime context of this process: device, rank and world size of a ``torchrun`` launch, mixed
precision, determinism, seeding.

``resolve_device`` is the one reading of a ``--device`` value (``train``, ``evaluate``, ``predict``): a
device this machine does not have is a ``DeviceError`` with one line, before anything runs.

Distributed: launched by ``torchrun``, every process reads RANK / WORLD_SIZE / LOCAL_RANK and
joins the process group (nccl on CUDA, gloo on CPU); ``Runtime`` averages and sums over ranks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


class DeviceError(ValueError):
    """A ``--device`` this machine cannot give (one-line message)."""


def resolve_device(device: str) -> torch.device:
    """The torch device for a ``--device`` value: "auto" is CUDA where torch sees a GPU, else the CPU.
    CUDA without a GPU is refused here, not by torch's assertion at the first tensor moved there."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise DeviceError(f"--device {device}: this torch ({torch.__version__}) is built without CUDA; "
                              "use --device cpu")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count <= (resolved.index or 0):
            raise DeviceError(f"--device {device}: torch sees {count or 'no'} CUDA device{'' if count == 1 else 's'}; "
                              "use --device cpu")
    return resolved


def _cpu_autocast_works(dtype: torch.dtype) -> bool:
    """Whether this torch autocasts to ``dtype`` on the CPU (older versions disable it with a warning)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast("cpu", dtype=dtype):
                return torch.is_autocast_enabled("cpu")
    except (RuntimeError, TypeError):
        return False


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on ``device`` (None: float32). "auto" is bf16 where the GPU has
    it, else fp16; on the CPU it is off, so a default CPU run stays float32. "bf16" / "fp16" apply on the
    CPU too (the CUDA code path, exercised where no GPU is): a dtype this torch cannot autocast to there
    is a ``DeviceError``."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda":
        if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return torch.float16
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    if not _cpu_autocast_works(dtype):
        raise DeviceError(f"--amp {amp}: this torch ({torch.__version__}) cannot autocast to {dtype} on the CPU; "
                          "use --amp off" + (" or bf16" if amp == "fp16" else ""))
    return dtype


def compile_problem(device: torch.device) -> str | None:
    """Why ``torch.compile`` (train.compile) cannot run on ``device`` here, or None. Its default backend
    (inductor) writes C++ on the CPU and Triton kernels on CUDA; without them it fails at the first step
    with pages of traceback, so this is asked before anything runs."""
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "train.compile needs Triton on CUDA (pip install triton); set train.compile=false"
        return None
    compiler = os.environ.get("CXX") or "g++"
    if shutil.which(compiler) is None:
        return (f"train.compile needs a C++ compiler on the CPU ({compiler} not found; install g++ or set CXX); "
                "set train.compile=false")
    return None


# Loader workers per GPU when --num-workers is not given (benchmarks/bench_unmask.py --data measures the
# decode rate; docs/gpus.md, "Loader workers"): every core but one per training process (which feeds its GPU),
# shared among the processes on this node, at most CUDA_MAX_WORKERS (more only adds start-up time and memory).
CUDA_MAX_WORKERS = 16


def cuda_num_workers(local_world_size: int | None = None) -> int:
    """Loader workers for each training process on a CUDA node: the cores this process may use
    (``os.sched_getaffinity``) split among the node's processes (torchrun's LOCAL_WORLD_SIZE), one left to
    each process itself; at least 1, at most ``CUDA_MAX_WORKERS``."""
    if local_world_size is None:
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(CUDA_MAX_WORKERS, cores // max(1, local_world_size) - 1))


@dataclass
class Runtime:
    """Process placement and numerics of this run: device, rank, mixed precision."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype | None = None  # None: full float32
    owns_process_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def use_scaler(self) -> bool:
        return self.amp_dtype == torch.float16  # bf16 has float32's range: no loss scaling needed

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def gather(self, items: list) -> list:
        """Every rank's ``items``, concatenated in rank order (on every rank); a count is exchanged
        first, so the objects themselves travel only when some rank has any."""
        if self.world_size == 1:
            return list(items)
        if self.sum(torch.tensor(len(items), device=self.device)).item() == 0:
            return []
        gathered: list[list] = [[] for _ in range(self.world_size)]
        dist.all_gather_object(gathered, list(items))
        return [item for rank_items in gathered for item in rank_items]

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def _setup_runtime(device: str, amp: str) -> Runtime:
    """This process's runtime from the torchrun environment; joins the process group if needed."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if resolve_device(device).type == "cuda":
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    amp_dtype = autocast_dtype(amp, torch_device)  # before joining: a refusal leaves no group behind
    owns = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo")
        owns = True
    return Runtime(torch_device, rank, world_size, local_rank, amp_dtype, owns)


@contextlib.contextmanager
def runtime_session(device: str, amp: str, deterministic: bool | None) -> Iterator[Runtime]:
    """The runtime of one ``train`` call: determinism set for its duration (restored afterwards),
    and the process group it joined left again at the end."""
    rt = _setup_runtime(device, amp)
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    try:
        if deterministic is None:
            deterministic = rt.device.type == "cpu"
        if deterministic:
            # On CUDA some kernels (e.g. bilinear upsampling backward) have no deterministic
            # version: there it only warns.
            torch.use_deterministic_algorithms(True, warn_only=rt.device.type == "cuda")
        if rt.device.type == "cuda":
            torch.backends.cudnn.benchmark = not deterministic
        yield rt
    finally:
        torch.use_deterministic_algorithms(previous_determinism)
        if rt.owns_process_group:
            dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch generators: identical initial weights on every rank."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
