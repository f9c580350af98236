import numpy as np
import torch

from maskgen.reader import count_samples, list_shards
from unmask.data import TrainLoader, eval_batches, to_model
from unmask.tensors import images_to_model, quantize


def keys(batches):
    return [k for b in batches for k in b["key"]]


def loader(dataset_dir, **kw):
    args = {"resolution": 32, "batch_size": 4, "seed": 0, "shuffle_buffer": 8}
    return TrainLoader(dataset_dir, **{**args, **kw})


def test_counts_and_epoch_length(dataset_dir):
    assert count_samples(list_shards(dataset_dir, "train")) == 16
    assert loader(dataset_dir).steps_per_epoch == 4
    assert loader(dataset_dir, world_size=2).steps_per_epoch == 2  # 16 // (2 x 4)


def test_batch_format_and_ranges(dataset_dir):
    batch = next(iter(loader(dataset_dir).epoch(0)))
    assert batch["masked"].shape == (4, 3, 32, 32) and batch["masked"].dtype == torch.uint8
    assert batch["map"].shape == (4, 1, 32, 32) and set(batch["map"].unique().tolist()) == {0, 1}
    model = to_model(batch, "cpu")
    assert model["masked"].dtype == torch.float32 and model["map"].dtype == torch.float32
    assert -1.0 <= model["unmasked"].min() and model["unmasked"].max() <= 1.0
    assert torch.equal(quantize(images_to_model(batch["masked"])), batch["masked"])


def test_flip_moves_images_and_map_together(dataset_dir):
    # The synthetic "mask" paint differs from the face only inside the map, so a map flipped
    # apart from the images would leave painted pixels outside it.
    seen_flipped = False
    for batch in loader(dataset_dir).epoch(0):
        masked, unmasked, mask_map = (batch[k].numpy().astype(int) for k in ("masked", "unmasked", "map"))
        outside = np.broadcast_to(mask_map == 0, masked.shape)
        interior = np.broadcast_to(mask_map == 1, masked.shape)
        assert np.abs(masked - unmasked)[outside].mean() < 6  # JPEG noise and map-edge resampling
        assert np.abs(masked - unmasked)[interior].mean() > 20
        # the synthetic rectangles start nearer the left edge than they end at the right
        cols = mask_map[:, 0].any(axis=1)
        first, last = cols.argmax(axis=1), 31 - cols[:, ::-1].argmax(axis=1)
        seen_flipped |= bool((first > 31 - last).any())
    assert seen_flipped


def test_epochs_are_reproducible_and_differ(dataset_dir):
    a, b = loader(dataset_dir), loader(dataset_dir)
    first = keys(a.epoch(0))
    assert first == keys(b.epoch(0))
    assert len(first) == len(set(first)) == 16  # one epoch: every sample once
    assert keys(a.epoch(1)) != first
    assert keys(loader(dataset_dir, seed=1).epoch(0)) != first


def test_skipping_batches_resumes_the_same_order(dataset_dir):
    for workers in (0, 2):
        full = list(loader(dataset_dir, num_workers=workers).epoch(3))
        tail = list(loader(dataset_dir, num_workers=workers).epoch(3, skip_batches=3))
        assert len(tail) == len(full) - 3
        for x, y in zip(full[3:], tail, strict=True):
            assert x["key"] == y["key"] and torch.equal(x["masked"], y["masked"])


def test_ranks_split_the_data(dataset_dir):
    per_rank = [keys(loader(dataset_dir, rank=r, world_size=2, batch_size=2).epoch(0)) for r in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1]) == 8  # same number of steps on every rank
    assert not set(per_rank[0]) & set(per_rank[1])
    # four ranks, three shards: each rank reads every fourth sample
    per_rank = [keys(loader(dataset_dir, rank=r, world_size=4, batch_size=2).epoch(0)) for r in range(4)]
    assert sum(len(set(k)) for k in per_rank) == 16 and len(set().union(*per_rank)) == 16


def test_eval_batches_cover_the_split_once(dataset_dir):
    single = keys(eval_batches(dataset_dir, "val", resolution=32, batch_size=3))
    assert len(single) == 4
    split = [keys(eval_batches(dataset_dir, "val", resolution=32, batch_size=3, rank=r, world_size=3))
             for r in range(3)]
    assert sorted(sum(split, [])) == sorted(single)
    assert list(eval_batches(dataset_dir, "test", resolution=32, batch_size=3)) == []


def test_bad_samples_are_skipped_listed_and_passed_over_on_resume(tmp_path):
    from maskgen.format import MASKED
    from tests.unmask.testutils import rewrite_member, write_split

    write_split(tmp_path, "train", [6, 6, 4])
    rewrite_member(tmp_path / "train-000000.tar", f"train00001.{MASKED}", b"not a jpeg")
    for workers in (0, 2):
        full = list(loader(tmp_path, num_workers=workers).epoch(0))
        assert all(len(b["key"]) == 4 for b in full) and "train00001" not in keys(full)
        skipped = [entry for b in full for entry in b["skipped"]]
        assert [(shard, key) for shard, key, _ in skipped] == [("train-000000.tar", "train00001")]
        bad = (skipped[0][0], skipped[0][1])
        assert "masked.jpg does not decode" in skipped[0][2]
        at = next(i for i, b in enumerate(full) if b["skipped"])  # the batch that passed over it
        for skip in range(1, 4):
            tail = list(loader(tmp_path, num_workers=workers).epoch(0, skip, frozenset({bad})))
            assert keys(tail) == keys(full[skip:])
        if at + 1 < len(full):  # without the checkpoint's list, a resume past that batch is off by one sample
            assert keys(loader(tmp_path, num_workers=workers).epoch(0, at + 1)) != keys(full[at + 1:])
