"""Stage 1's photometric augmentation (``unmask.training.augment``) on loader batches."""

from __future__ import annotations

import torch

from unmask.data import TrainLoader, to_model
from unmask.training.augment import photometric


def _batch(dataset_dir):
    batch = next(iter(TrainLoader(dataset_dir, resolution=64, batch_size=8, seed=0).epoch(0)))
    return to_model(batch, "cpu")


def test_recolor_changes_the_mask_pixels_only(dataset_dir):
    b = _batch(dataset_dir)
    out = photometric(b["masked"], b["map"], recolor=1.0, jitter=0.0, seed=0, rank=0, step=0)
    inside = b["map"].bool().expand_as(out)
    assert torch.equal(out[~inside], b["masked"][~inside])  # the face is untouched: the map stays exact
    assert out.min() >= -1 and out.max() <= 1
    for i in range(len(out)):  # every mask gets another colour
        m = inside[i]
        change = (out[i][m] - b["masked"][i][m]).abs().mean()
        assert change > 0.05, (i, float(change))


def test_jitter_changes_the_whole_image(dataset_dir):
    b = _batch(dataset_dir)
    out = photometric(b["masked"], b["map"], recolor=0.0, jitter=1.0, seed=0, rank=0, step=0)
    outside = ~b["map"].bool().expand_as(out)
    assert (out[outside] - b["masked"][outside]).abs().mean() > 0.01


def test_shares_choose_that_many_images_and_zero_is_identity(dataset_dir):
    b = _batch(dataset_dir)
    assert photometric(b["masked"], b["map"], recolor=0.0, jitter=0.0, seed=0, rank=0, step=0) is b["masked"]
    changed = 0
    for step in range(10):
        out = photometric(b["masked"], b["map"], recolor=0.5, jitter=0.0, seed=0, rank=0, step=step)
        changed += sum(not torch.equal(o, m) for o, m in zip(out, b["masked"], strict=True))
    assert 25 <= changed <= 55  # about half of 80 images


def test_seeded_by_seed_rank_and_step_only(dataset_dir):
    b = _batch(dataset_dir)
    state = torch.get_rng_state()

    def run(**kw):
        args = {"recolor": 0.5, "jitter": 0.5, "seed": 0, "rank": 0, "step": 3} | kw
        return photometric(b["masked"], b["map"], **args)

    first = run()
    assert torch.equal(run(), first)
    assert torch.equal(torch.get_rng_state(), state)  # the global stream (data order, flips) is not used
    for other in ({"step": 4}, {"seed": 1}, {"rank": 1}):
        assert not torch.equal(run(**other), first), other
