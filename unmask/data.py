"""Training data: the WebDataset shards of ``maskgen build`` turned into batches.

Tensor convention (the one place it is defined; models, losses and the trainer follow it):

* Loader batches, as the loaders yield them (uint8, so worker -> trainer copies stay small):
  ``masked``, ``unmasked``: uint8 Bx3xHxW RGB; ``map``: uint8 Bx1xHxW in {0, 1}, 1 = mask pixels;
  ``key``: list of the sample keys.
* Model batches, from ``to_model`` on the training device:
  ``masked``, ``unmasked``: float32 Bx3xHxW in [-1, 1]; ``map``: float32 Bx1xHxW in {0, 1}.
  ``unmask.tensors`` converts images between the two (``images_to_model``, ``quantize``).

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

Imperfect data. Every read error names the shard (and the last key read); a shard that yields fewer
samples than its tar headers (and the manifest) list is an error, never trained on silently. A
sample that does not decode (bad image bytes, a missing member, members of different sizes) is
skipped: the batch is filled from the next samples and lists the skipped ones under ``skipped``
(shard file name, key, reason) for the trainer to count. Skipping keeps the order exact on resume:
the bad samples met before a checkpoint are stored in it, and the resumed stream does not count
them among the samples it drops (``known_bad``). With perfect data nothing changes.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import warnings
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from maskgen.files import read_json_object
from maskgen.format import BUILD_INFO, MANIFEST, MAP, MASKED, STATS, UNMASKED, shard_glob
from maskgen.reader import (
    BadSample,
    BadShard,
    RawSample,
    decode_image,
    error_cause,
    list_shards,
    member_names,
    raw_samples,
    sample_count,
    sample_keys,
)
from maskgen.verify import RecordError, check_shards, first_problem, keys_by_shard, keys_problem, read_manifest
from unmask.tensors import images_to_model

Batch = dict[str, Any]
SampleId = tuple[str, str]  # (shard file name, key): how a bad sample is named in logs and checkpoints


class DataError(ValueError):
    """The dataset is not as recorded: a shard missing, short or unreadable; the message names it."""


def __getattr__(name: str) -> Any:
    # images_to_uint8 became unmask.tensors.quantize (the one quantiser); the old name warns for one release
    if name == "images_to_uint8":
        warnings.warn("unmask.data.images_to_uint8 is deprecated, use unmask.tensors.quantize", DeprecationWarning,
                      stacklevel=2)
        from unmask.tensors import quantize

        return quantize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sample_id(raw: RawSample) -> SampleId:
    return Path(str(raw.get("__url__", ""))).name, str(raw.get("__key__"))


def check_dataset(data_dir: str | Path, splits: tuple[str, ...], *, full_hash: bool = False) -> None:
    """Before a run reads ``data_dir``: a dataset made by ``maskgen build`` (build.json) must be as its
    records say (``maskgen.verify.check_shards``: the records agree, the shards on disk are the recorded
    ones with their sizes, SHA-256 with ``full_hash``, and those of ``splits`` hold the manifest's keys).
    Other shards (hand-made, no records) are checked against a manifest when there is one
    (``shard_counts``). Raises ``DataError`` with the first problem."""
    if (Path(data_dir) / BUILD_INFO).is_file():
        problems = check_shards(data_dir, full_hash=full_hash, splits=splits)
        if problems:
            raise DataError(first_problem(problems, data_dir))
        return
    for split in splits:
        shard_counts(data_dir, split)


def dataset_fingerprint(data_dir: str | Path) -> str:
    """What a run was trained on, for ``--resume`` to refuse other data: the manifest's digest of a
    ``maskgen build`` dataset (stats.json; the shards are checked against it at start), else the name,
    size and first 64 KiB (headers and first images) of each train and val shard."""
    data_dir = Path(data_dir)
    stats = data_dir / STATS
    if stats.is_file():
        digest = read_json_object(stats).get("manifest_sha256")
        if isinstance(digest, str):
            return f"manifest:{digest}"
    h = hashlib.sha256()
    for split in ("train", "val"):
        for shard in list_shards(data_dir, split):
            with open(shard, "rb") as f:
                h.update(f"{Path(shard).name}:{Path(shard).stat().st_size}:".encode() + f.read(1 << 16))
    return f"shards:{h.hexdigest()}"


def _manifest_keys(data_dir: Path) -> dict[str, list[str]] | None:
    """The keys the manifest lists for each shard file name; None without a manifest."""
    try:
        return keys_by_shard(read_manifest(data_dir, ["key", "shard"]))
    except FileNotFoundError:
        return None
    except RecordError as exc:
        raise DataError(str(exc)) from exc


def shard_counts(data_dir: str | Path, split: str, shards: list[str] | None = None) -> dict[str, int]:
    """Samples per shard of ``split`` (path -> count) from the tar headers. With a manifest, the shards of
    the split must be the ones it lists, each holding the keys it lists for it: a shard missing, extra,
    unreadable or not holding those samples is a ``DataError``."""
    data_dir = Path(data_dir)
    shards = list_shards(data_dir, split) if shards is None else shards
    listed = _manifest_keys(data_dir)
    on_disk = {Path(shard).name for shard in shards}
    for name, keys in sorted((listed or {}).items()):
        if fnmatch(name, shard_glob(split)) and name not in on_disk:
            raise DataError(f"{data_dir / name}: missing ({MANIFEST} lists {len(keys)} samples in it)")
    counts = {}
    for shard in shards:
        try:
            names = member_names(shard)
        except BadShard as exc:
            raise DataError(f"{exc} (maskgen verify {data_dir} checks every shard)") from exc
        counts[shard] = sample_count(names)
        if listed is None:
            continue
        if Path(shard).name not in listed:
            raise DataError(f"{shard}: a shard that is not in {MANIFEST} (not part of this dataset: remove it)")
        problem = keys_problem(shard, sample_keys(names), listed[Path(shard).name])
        if problem:
            raise DataError(problem)
    return counts


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
    HW {0, 1} map, flipped together when ``flip``. ``BadSample`` when a member is missing or does not
    decode, or the three images are not squares of one size."""
    decoded = {name: decode_image(raw, member)
               for name, member in (("masked", MASKED), ("unmasked", UNMASKED), ("map", MAP))}
    sizes = {f"{image.shape[1]}x{image.shape[0]}" for image in decoded.values()}
    if len(sizes) > 1 or any(image.shape[0] != image.shape[1] for image in decoded.values()):
        shard, key = sample_id(raw)
        listed = ", ".join(f"{member} {image.shape[1]}x{image.shape[0]}"
                           for member, image in zip((MASKED, UNMASKED, MAP), decoded.values(), strict=True))
        raise BadSample(f"bad sample {key!r} in {raw.get('__url__', shard)}: not one square size ({listed})")
    images = {name: _resize(decoded[name], resolution) for name in ("masked", "unmasked")}
    # Resampled maps are thresholded back to a binary map: MURF relies on {0, 1}.
    images["map"] = (_resize(decoded["map"], resolution) >= 128).astype(np.uint8)
    if flip:  # the three images together, so the map still marks the mask
        images = {name: image[:, ::-1] for name, image in images.items()}
    images["key"] = raw["__key__"]
    return images


def collate(samples: list[dict[str, Any]], skipped: list[tuple[str, str, str]] | None = None) -> Batch:
    """Samples -> a loader batch; ``skipped``: the (shard, key, reason) of the bad samples passed over
    while filling it. No samples (every one bad): only ``key`` (empty) and ``skipped``."""
    if not samples:
        return {"key": [], "skipped": list(skipped or [])}

    def stack(name: str) -> torch.Tensor:
        array = np.stack([s[name] for s in samples])  # B x H x W [x 3]
        array = array.transpose(0, 3, 1, 2) if array.ndim == 4 else array[:, None]
        return torch.from_numpy(np.ascontiguousarray(array))

    return {"masked": stack("masked"), "unmasked": stack("unmasked"), "map": stack("map"),
            "key": [s["key"] for s in samples], "skipped": list(skipped or [])}


def _skip_entry(raw: RawSample, exc: BadSample) -> tuple[str, str, str]:
    shard, key = sample_id(raw)
    return shard, key, " ".join(str(exc).split())  # one line, no tabs: a TSV cell


def _shard_samples(shard: str, expected: int | None) -> Iterator[RawSample]:
    """The raw samples of one shard. A read error names the shard and the last key read; a shard
    that ends before ``expected`` samples (truncated at a member boundary) is an error too."""
    count, key = 0, None
    try:
        for raw in raw_samples([shard]):
            count, key = count + 1, raw.get("__key__")
            yield raw
    except Exception as exc:  # maskgen's BadShard, and whatever else webdataset raises on a damaged tar
        where = f"after sample {key!r}" if key is not None else "before its first sample"
        message = str(exc) if isinstance(exc, BadShard) else f"shard {shard} does not read: {error_cause(exc)}"
        raise DataError(f"{message} ({where})") from exc
    if expected is not None and count < expected:
        raise DataError(f"{shard}: ended after {count} of its {expected} samples: the shard is truncated "
                        f"(maskgen build rebuilds it)")


def _slot_shards(shards: list[str], slot: int, n_slots: int) -> tuple[list[str], bool]:
    """(shards this slot reads, whether it keeps only every n-th of their samples)."""
    if len(shards) >= n_slots:
        return shards[slot::n_slots], False
    return shards, True


def _slot_samples(shards: list[str], slot: int, n_slots: int, every_nth: bool,
                  counts: dict[str, int] | None) -> Iterator[dict[str, Any]]:
    counts = counts or {}
    # shard after shard: the same samples in the same order as one stream over all of them
    samples = itertools.chain.from_iterable(_shard_samples(shard, counts.get(shard)) for shard in shards)
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
        counts: dict[str, int] | None = None, known_bad: frozenset[SampleId] = frozenset(),
    ) -> None:
        super().__init__()
        self.shards, self.resolution, self.batch_size = shards, resolution, batch_size
        self.seed, self.epoch, self.skip_batches = seed, epoch, skip_batches
        self.rank, self.world_size = rank, world_size
        self.shuffle_buffer, self.flip = shuffle_buffer, flip
        self.counts, self.known_bad = counts, known_bad

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
            for sample in _shuffled(_slot_samples(mine, slot, n_slots, every_nth, self.counts),
                                    self.shuffle_buffer, rng):
                empty = False
                yield sample
            if empty:
                raise RuntimeError(f"loader slot {slot} of {n_slots} got no samples from {len(order)} shards")

    def __iter__(self) -> Iterator[Batch]:
        # A data error travels as a batch: an exception raised in a loader worker reaches the
        # trainer wrapped in a multi-line traceback; ``_bounded`` raises it there as one line.
        try:
            yield from self._batches()
        except DataError as exc:
            yield {"error": str(exc)}

    def _batches(self) -> Iterator[Batch]:
        _, _, worker, n_workers = _worker_slot(self.rank, self.world_size)
        # The DataLoader takes batch j from worker j % n_workers, starting at worker 0. After
        # skipping k batches, worker w must continue the stream worker (w + k) % n_workers had.
        role = (worker + self.skip_batches) % n_workers
        slot, n_slots = self.rank * n_workers + role, self.world_size * n_workers
        tag = f"{self.seed}/{self.epoch}/{slot}"
        flip_rng = random.Random(f"flip/{tag}")
        raws = self._rounds(slot, n_slots, random.Random(f"shuffle/{tag}"))
        skip = max(0, -(-(self.skip_batches - role) // n_workers)) * self.batch_size  # this role's share
        dropped = 0  # good samples dropped so far; the known bad ones were never in a batch
        batch: list[dict[str, Any]] = []
        skipped: list[tuple[str, str, str]] = []
        bad_seen: set[SampleId] = set()
        bad_run = 0  # bad samples in a row
        for raw in raws:
            flip = self.flip and flip_rng.random() < 0.5  # drawn for skipped samples too
            if dropped < skip:
                dropped += sample_id(raw) not in self.known_bad
                continue
            try:
                batch.append(resized_sample(raw, self.resolution, flip))
            except BadSample as exc:
                skipped.append(_skip_entry(raw, exc))
                bad_seen.add(sample_id(raw))
                bad_run += 1
                # A run longer than two rounds' worth of bad samples holds a whole round without a good one.
                if bad_run > 2 * len(bad_seen):
                    raise DataError(f"loader slot {slot} of {n_slots}: not one sample decodes; "
                                    f"the last: {exc}") from exc
                continue
            bad_run = 0
            if len(batch) == self.batch_size:
                yield collate(batch, skipped)
                batch, skipped = [], []


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
        self.counts = shard_counts(data_dir, split, self.shards)
        self.num_samples = sum(self.counts.values())
        self.steps_per_epoch = self.num_samples // (world_size * batch_size)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{self.num_samples} {split} samples are fewer than batch size {batch_size} x world size {world_size}"
            )
        self.resolution, self.batch_size, self.seed = resolution, batch_size, seed
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.shuffle_buffer, self.pin_memory = shuffle_buffer, pin_memory

    def epoch(self, epoch: int, skip_batches: int = 0, known_bad: frozenset[SampleId] = frozenset()) -> Iterator[Batch]:
        """The batches of ``epoch`` after the first ``skip_batches`` (exactly resumable: ``known_bad``
        are the bad samples met before, which the skipped batches passed over)."""
        stream = TrainStream(
            self.shards, resolution=self.resolution, batch_size=self.batch_size, seed=self.seed,
            epoch=epoch, skip_batches=skip_batches, rank=self.rank, world_size=self.world_size,
            shuffle_buffer=self.shuffle_buffer, counts=self.counts, known_bad=frozenset(known_bad),
        )
        return _bounded(stream, self.steps_per_epoch - skip_batches, self.num_workers, self.pin_memory)


class EvalStream(IterableDataset):
    """One in-order pass over a split, no augmentation; the last batch may be short. Bad samples
    are skipped and listed (a batch of bad samples only is yielded with no images)."""

    def __init__(self, shards: list[str], *, resolution: int, batch_size: int, rank: int, world_size: int,
                 counts: dict[str, int] | None = None) -> None:
        super().__init__()
        self.shards, self.resolution, self.batch_size = shards, resolution, batch_size
        self.rank, self.world_size, self.counts = rank, world_size, counts

    def __iter__(self) -> Iterator[Batch]:
        try:
            yield from self._batches()
        except DataError as exc:  # as in TrainStream
            yield {"error": str(exc)}

    def _batches(self) -> Iterator[Batch]:
        slot, n_slots, _, _ = _worker_slot(self.rank, self.world_size)
        batch: list[dict[str, Any]] = []
        skipped: list[tuple[str, str, str]] = []
        mine, every_nth = _slot_shards(self.shards, slot, n_slots)
        for raw in _slot_samples(mine, slot, n_slots, every_nth, self.counts):
            try:
                batch.append(resized_sample(raw, self.resolution, flip=False))
            except BadSample as exc:
                skipped.append(_skip_entry(raw, exc))
                continue
            if len(batch) == self.batch_size:
                yield collate(batch, skipped)
                batch, skipped = [], []
        if batch or skipped:
            yield collate(batch, skipped)


def eval_batches(
    data_dir: str | Path, split: str, *, resolution: int, batch_size: int, rank: int = 0, world_size: int = 1,
    num_workers: int = 0, max_batches: int | None = None, pin_memory: bool = False,
) -> Iterator[Batch]:
    """This rank's share of ``split`` (ranks together cover it once); empty if there are no shards.
    A batch may hold no images, only ``skipped`` (see ``EvalStream``)."""
    shards = list_shards(data_dir, split)
    if not shards:
        return iter(())
    stream = EvalStream(shards, resolution=resolution, batch_size=batch_size, rank=rank, world_size=world_size,
                        counts=shard_counts(data_dir, split, shards))
    return _bounded(stream, max_batches, num_workers, pin_memory)


def split_samples(data_dir: str | Path, split: str) -> Iterator[RawSample]:
    """The raw samples of ``split`` in shard order, every read error naming its shard (one pass, no
    decoding): what the evaluation reads."""
    shards = list_shards(data_dir, split)
    if not shards:
        raise FileNotFoundError(f"no {shard_glob(split)} shards in {data_dir}")
    counts = shard_counts(data_dir, split, shards)
    for shard in shards:
        yield from _shard_samples(shard, counts[shard])


def _bounded(stream: IterableDataset, n_batches: int | None, num_workers: int, pin_memory: bool) -> Iterator[Batch]:
    """The stream's first ``n_batches``. The DataLoader's iterator is made now, not at the first
    batch: making it draws a seed from torch's global generator, and an exact resume must know when."""
    if num_workers:
        # OpenCV's thread pool does not survive fork: a worker forked after the parent ran a
        # threaded cv2 call (e.g. writing a sample grid) can deadlock. One thread in the parent.
        cv2.setNumThreads(1)
    loader = DataLoader(
        stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
        worker_init_fn=_worker_init if num_workers else None,
    )
    return _batches_of(iter(loader), n_batches)


def _batches_of(iterator: Iterator[Batch], n_batches: int | None) -> Iterator[Batch]:
    try:
        for batch in itertools.islice(iterator, n_batches):
            if "error" in batch:
                raise DataError(batch["error"])
            yield batch
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)  # endless workers: stop them now
        if shutdown is not None:
            shutdown()
