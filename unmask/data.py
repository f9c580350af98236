"""Training data: the WebDataset shards of ``maskgen build`` turned into batches.

Tensor convention (the one place it is defined; models, losses and the trainer follow it):

* Loader batches, as the loaders yield them (uint8, so worker -> trainer copies stay small):
  ``masked``, ``unmasked``: uint8 Bx3xHxW RGB; ``map``: uint8 Bx1xHxW in {0, 1}, 1 = mask pixels;
  ``key``: list of the sample keys.
* Model batches, from ``to_model`` on the training device:
  ``masked``, ``unmasked``: float32 Bx3xHxW in [-1, 1]; ``map``: float32 Bx1xHxW in {0, 1}.
  ``images_to_model`` / ``images_to_uint8`` convert images between the two.

Order and distribution. The loader cuts one stream into "slots", one per (rank, worker), slot =
rank * num_workers + worker. With at least as many shards as slots each slot reads its own shards,
otherwise every slot reads all shards and keeps every n-th sample (decoding only its own). In
training, every epoch is a fixed number of steps (``TrainLoader.steps_per_epoch``: the samples
divided by world size x batch size, so all ranks take the same number of steps and DDP never
waits on a rank that ran dry); a slot that runs out of its shards before the epoch ends starts over
on them in a new order. All randomness (shard order, the per-slot shuffle buffer, flips) derives
from (seed, epoch, slot), and the DataLoader takes batches from its workers in a fixed round-robin,
so an epoch's batches are a function of (seed, epoch, world size, workers, batch size). Resuming
mid-epoch skips the batches already used: each slot drops its share of raw samples before decoding.

Every slot contributes the same number of batches to an epoch, but with a shard split the slots
hold different numbers of samples: in one epoch a slot with fewer repeats some of its samples and
one with more leaves some for later epochs (the shard assignment changes every epoch). With many
shards per slot the effect is small; ``maskgen build`` should write at least a few shards per
(GPU x worker).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from maskgen.format import MAP, MASKED, UNMASKED, shard_glob
from maskgen.reader import RawSample, count_samples, decode_image, list_shards, raw_samples

Batch = dict[str, Any]


def images_to_model(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.float() / 127.5 - 1.0


def images_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clamped, rounded)."""
    return ((images.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def to_model(batch: Batch, device: torch.device | str) -> Batch:
    """Loader batch -> model batch on ``device`` (conversion after the copy: 4x less to move)."""
    non_blocking = torch.device(device).type == "cuda"
    return {
        "masked": images_to_model(batch["masked"].to(device, non_blocking=non_blocking)),
        "unmasked": images_to_model(batch["unmasked"].to(device, non_blocking=non_blocking)),
        "map": batch["map"].to(device, non_blocking=non_blocking).float(),
        "key": batch["key"],
    }


def _resize(image: np.ndarray, resolution: int) -> np.ndarray:
    if image.shape[:2] == (resolution, resolution):
        return image
    shrink = image.shape[0] > resolution
    return cv2.resize(image, (resolution, resolution), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resized_sample(raw: RawSample, resolution: int, flip: bool) -> dict[str, Any]:
    """Raw WebDataset sample (member bytes) -> HWC RGB uint8 images resized to ``resolution`` and an
    HW {0, 1} map, flipped together when ``flip``."""
    images = {name: _resize(decode_image(raw, member), resolution)
              for name, member in (("masked", MASKED), ("unmasked", UNMASKED))}
    # Resampled maps are thresholded back to a binary map: MURF relies on {0, 1}.
    images["map"] = (_resize(decode_image(raw, MAP), resolution) >= 128).astype(np.uint8)
    if flip:  # the three images together, so the map still marks the mask
        images = {name: image[:, ::-1] for name, image in images.items()}
    images["key"] = raw["__key__"]
    return images


def collate(samples: list[dict[str, Any]]) -> Batch:
    def stack(name: str) -> torch.Tensor:
        array = np.stack([s[name] for s in samples])  # B x H x W [x 3]
        array = array.transpose(0, 3, 1, 2) if array.ndim == 4 else array[:, None]
        return torch.from_numpy(np.ascontiguousarray(array))

    return {"masked": stack("masked"), "unmasked": stack("unmasked"), "map": stack("map"), "key": [s["key"] for s in samples]}


def _slot_shards(shards: list[str], slot: int, n_slots: int) -> tuple[list[str], bool]:
    """(shards this slot reads, whether it keeps only every n-th of their samples)."""
    if len(shards) >= n_slots:
        return shards[slot::n_slots], False
    return shards, True


def _slot_samples(shards: list[str], slot: int, n_slots: int, every_nth: bool) -> Iterator[dict[str, Any]]:
    samples = raw_samples(shards)
    return itertools.islice(samples, slot, None, n_slots) if every_nth else samples


def _shuffled(samples: Iterator[dict[str, Any]], buffer_size: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    """Shuffle buffer: each new sample takes the place of a random buffered one, which is yielded."""
    buffer: list[dict[str, Any]] = []
    for sample in samples:
        if len(buffer) < buffer_size:
            buffer.append(sample)
            continue
        index = rng.randrange(buffer_size)
        buffer[index], sample = sample, buffer[index]
        yield sample
    rng.shuffle(buffer)
    yield from buffer


def _worker_slot(rank: int, world_size: int) -> tuple[int, int, int, int]:
    info = get_worker_info()
    worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * n_workers + worker, world_size * n_workers, worker, n_workers


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)  # the DataLoader already runs one process per worker


class TrainStream(IterableDataset):
    """One epoch of one slot's training batches, endless: ``TrainLoader`` cuts it to length."""

    def __init__(
        self, shards: list[str], *, resolution: int, batch_size: int, seed: int, epoch: int,
        skip_batches: int, rank: int, world_size: int, shuffle_buffer: int, flip: bool = True,
    ) -> None:
        super().__init__()
        self.shards, self.resolution, self.batch_size = shards, resolution, batch_size
        self.seed, self.epoch, self.skip_batches = seed, epoch, skip_batches
        self.rank, self.world_size = rank, world_size
        self.shuffle_buffer, self.flip = shuffle_buffer, flip

    def _rounds(self, slot: int, n_slots: int, rng: random.Random) -> Iterator[dict[str, Any]]:
        """The slot's samples, shuffled, over and over. The epoch fixes which shards are the slot's
        (so ranks stay disjoint); each round reads them in a new order and flushes the shuffle
        buffer, so no sample repeats before the slot has used all of its own."""
        order = list(self.shards)
        random.Random(f"shards/{self.seed}/{self.epoch}").shuffle(order)
        mine, every_nth = _slot_shards(order, slot, n_slots)
        for round_index in itertools.count():
            if round_index:
                rng.shuffle(mine)
            empty = True
            for sample in _shuffled(_slot_samples(mine, slot, n_slots, every_nth), self.shuffle_buffer, rng):
                empty = False
                yield sample
            if empty:
                raise RuntimeError(f"loader slot {slot} of {n_slots} got no samples from {len(order)} shards")

    def __iter__(self) -> Iterator[Batch]:
        _, _, worker, n_workers = _worker_slot(self.rank, self.world_size)
        # The DataLoader takes batch j from worker j % n_workers, starting at worker 0. After
        # skipping k batches, worker w must continue the stream worker (w + k) % n_workers had.
        role = (worker + self.skip_batches) % n_workers
        slot, n_slots = self.rank * n_workers + role, self.world_size * n_workers
        tag = f"{self.seed}/{self.epoch}/{slot}"
        flip_rng = random.Random(f"flip/{tag}")
        raws = self._rounds(slot, n_slots, random.Random(f"shuffle/{tag}"))
        skip = max(0, -(-(self.skip_batches - role) // n_workers)) * self.batch_size  # this role's share
        batch: list[dict[str, Any]] = []
        for index, raw in enumerate(raws):
            flip = self.flip and flip_rng.random() < 0.5  # drawn for skipped samples too
            if index < skip:
                continue
            batch.append(resized_sample(raw, self.resolution, flip))
            if len(batch) == self.batch_size:
                yield collate(batch)
                batch = []


class TrainLoader:
    """Training batches of ``split`` by epoch: ``for batch in loader.epoch(e): ...``."""

    def __init__(
        self, data_dir: str | Path, *, resolution: int, batch_size: int, seed: int,
        rank: int = 0, world_size: int = 1, num_workers: int = 0, shuffle_buffer: int = 512,
        pin_memory: bool = False, split: str = "train",
    ) -> None:
        self.shards = list_shards(data_dir, split)
        if not self.shards:
            raise FileNotFoundError(f"no {shard_glob(split)} shards in {data_dir}")
        self.num_samples = count_samples(self.shards)
        self.steps_per_epoch = self.num_samples // (world_size * batch_size)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{self.num_samples} {split} samples are fewer than batch size {batch_size} x world size {world_size}"
            )
        self.resolution, self.batch_size, self.seed = resolution, batch_size, seed
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.shuffle_buffer, self.pin_memory = shuffle_buffer, pin_memory

    def epoch(self, epoch: int, skip_batches: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` after the first ``skip_batches`` (exactly resumable)."""
        stream = TrainStream(
            self.shards, resolution=self.resolution, batch_size=self.batch_size, seed=self.seed,
            epoch=epoch, skip_batches=skip_batches, rank=self.rank, world_size=self.world_size,
            shuffle_buffer=self.shuffle_buffer,
        )
        yield from _bounded(stream, self.steps_per_epoch - skip_batches, self.num_workers, self.pin_memory)


class EvalStream(IterableDataset):
    """One in-order pass over a split, no augmentation; the last batch may be short."""

    def __init__(self, shards: list[str], *, resolution: int, batch_size: int, rank: int, world_size: int) -> None:
        super().__init__()
        self.shards, self.resolution, self.batch_size = shards, resolution, batch_size
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[Batch]:
        slot, n_slots, _, _ = _worker_slot(self.rank, self.world_size)
        batch: list[dict[str, Any]] = []
        mine, every_nth = _slot_shards(self.shards, slot, n_slots)
        for raw in _slot_samples(mine, slot, n_slots, every_nth):
            batch.append(resized_sample(raw, self.resolution, flip=False))
            if len(batch) == self.batch_size:
                yield collate(batch)
                batch = []
        if batch:
            yield collate(batch)


def eval_batches(
    data_dir: str | Path, split: str, *, resolution: int, batch_size: int, rank: int = 0, world_size: int = 1,
    num_workers: int = 0, max_batches: int | None = None, pin_memory: bool = False,
) -> Iterator[Batch]:
    """This rank's share of ``split`` (ranks together cover it once); empty if there are no shards."""
    shards = list_shards(data_dir, split)
    if not shards:
        return iter(())
    stream = EvalStream(shards, resolution=resolution, batch_size=batch_size, rank=rank, world_size=world_size)
    return _bounded(stream, max_batches, num_workers, pin_memory)


def _bounded(stream: IterableDataset, n_batches: int | None, num_workers: int, pin_memory: bool) -> Iterator[Batch]:
    if num_workers:
        # OpenCV's thread pool does not survive fork: a worker forked after the parent ran a
        # threaded cv2 call (e.g. writing a sample grid) can deadlock. One thread in the parent.
        cv2.setNumThreads(1)
    loader = DataLoader(
        stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
        worker_init_fn=_worker_init if num_workers else None,
    )
    iterator = iter(loader)
    try:
        yield from itertools.islice(iterator, n_batches)
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)  # endless workers: stop them now
        if shutdown is not None:
            shutdown()
