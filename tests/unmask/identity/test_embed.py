"""Embeddings on real aligned CelebA-sample crops: same image, same person, other people, masked, invalid rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from unmask import identity as idn
from unmask.identity import embedding


def test_same_image_has_distance_zero(faces, gt_embeddings):
    again = idn.embed(faces.unmasked[:2], faces.landmarks[:2])
    assert again.shape == (2, idn.EMBEDDING_DIM) and again.dtype == np.float64
    np.testing.assert_array_equal(again, gt_embeddings[:2])  # deterministic (num_jitters=1)
    assert np.all(idn.id_distance(again, gt_embeddings[:2]) == 0.0)
    # dlib's descriptors are not unit vectors, but of a steady size
    assert np.all(np.isfinite(gt_embeddings))
    assert np.all(np.abs(np.linalg.norm(gt_embeddings, axis=1) - 1.5) < 0.5)


def test_same_person_closer_than_other_people(faces, gt_embeddings):
    ids = np.array(faces.identities)
    d = np.linalg.norm(gt_embeddings[:, None] - gt_embeddings[None], axis=-1)
    upper = np.triu_indices(len(ids), 1)
    same = (ids[:, None] == ids[None])[upper]
    genuine, impostor = d[upper][same], d[upper][~same]
    assert genuine.size == 18 and impostor.size == 135  # 6 identities x 3 photos
    assert np.median(genuine) < np.median(impostor)
    assert (genuine < idn.MATCH_THRESHOLD).mean() >= 0.6  # CelebA photos span years; most still match
    assert (impostor < idn.MATCH_THRESHOLD).mean() <= 0.05
    # almost every genuine pair is closer than almost every impostor pair (ROC AUC)
    assert (genuine[:, None] < impostor[None]).mean() >= 0.9


def test_masked_face_is_farther_from_its_ground_truth(faces, gt_embeddings):
    n = 3
    masked = idn.embed(faces.masked[:n], faces.landmarks[:n])  # the ground truth's landmarks
    d_masked = idn.id_distance(masked, gt_embeddings[:n])
    d_self = idn.id_distance(gt_embeddings[:n], gt_embeddings[:n])
    assert np.all(np.isfinite(d_masked))
    assert np.all(d_masked > d_self + 0.05)
    assert d_masked.mean() > 0.2


def test_rows_without_embedding_are_nan_and_counted(faces, gt_embeddings):
    good, lm = faces.unmasked[0], faces.landmarks[0]
    mirrored = lm.copy()
    mirrored[:, 0] = good.shape[1] - 1 - mirrored[:, 0]  # eyes swapped sides
    images = [good, good, np.zeros((10, 10, 3), np.uint8), good, good, good, good]
    landmarks = [lm, np.full((68, 2), np.nan), lm, lm[:5], lm + 1000.0, mirrored, lm * 0.01]
    emb, reasons = idn.embed_with_reasons(images, landmarks)
    assert emb.shape == (len(images), idn.EMBEDDING_DIM)  # no row dropped
    np.testing.assert_array_equal(emb[0], gt_embeddings[0])
    assert reasons[0] is None
    assert np.all(np.isnan(emb[1:])) and all(reasons[1:])
    assert "not finite" in reasons[1] and "too small" in reasons[2] and "(68, 2)" in reasons[3]
    assert "outside" in reasons[4] and "implausible" in reasons[5] and "too small" in reasons[6]
    np.testing.assert_array_equal(idn.embed(images, landmarks), emb)

    # NaN rows propagate to distances and are reported, not dropped
    d = idn.id_distance(emb, gt_embeddings[0])
    assert d[0] == 0.0 and np.all(np.isnan(d[1:]))
    rate, n_valid, n_invalid = idn.id_match_rate(d)
    assert (rate, n_valid, n_invalid) == (pytest.approx(1 / 7), 1, 6)
    m = idn.verification_metrics(d, np.ones(len(d), bool), thresholds_from={0.01: 0.5})
    assert m["n_invalid"] == 6 and m["n_pairs"] == 7 and m["tar"] == pytest.approx(1 / 7)


def test_float_images_are_refused(faces):
    with pytest.raises(TypeError, match="uint8"):
        idn.embed([faces.unmasked[0].astype(np.float32) / 255], [faces.landmarks[0]])
    with pytest.raises(ValueError, match="landmark"):
        idn.embed(faces.unmasked[:2], faces.landmarks[:1])


def test_verify_on_real_faces(faces, gt_embeddings):
    samples = pd.DataFrame({"key": faces.keys, "source": faces.sources, "identity": faces.identities})
    protocol = idn.build_protocol(samples, seed=0, impostors=2)
    assert protocol.attrs["n_probes"] == 18 and protocol.attrs["n_skipped"] == 0
    row = {k: i for i, k in enumerate(faces.keys)}
    probes = gt_embeddings[[row[k] for k in idn.probe_keys(protocol)]]
    gallery = {k: gt_embeddings[row[k]] for k in idn.gallery_keys(protocol)}
    broken = probes.copy()
    broken[:4] = np.nan  # four probes without an embedding (e.g. a method that returned garbage)
    with pytest.warns(idn.CoarseFARWarning, match="impostor pairs"):  # 36 impostor pairs: coarse FAR
        table = idn.verify({"ground_truth": probes, "broken": broken}, gallery, protocol)
    assert list(table.columns[:6]) == ["probe_type", "accuracy", "tar_far_1", "tar_far_0.1", "n_pairs", "n_invalid"]
    gt, bad = table.set_index("probe_type").loc["ground_truth"], table.set_index("probe_type").loc["broken"]
    assert gt["n_pairs"] == 54 and gt["n_invalid"] == 0 and gt["accuracy"] >= 0.75
    assert bad["n_invalid"] == 12 and bad["n_invalid_probes"] == 4
    assert bad["tar_far_1"] < gt["tar_far_1"]


def test_worker_processes_give_the_same_rows_in_order(faces, gt_embeddings):
    # 18 rows over 2 processes (>= MIN_ROWS_PER_WORKER each), bad rows included: same values, same reasons
    images = list(faces.unmasked) + [np.zeros((10, 10, 3), np.uint8)]
    landmarks = list(faces.landmarks) + [faces.landmarks[0]]
    assert embedding._jobs(2, len(images)) == 2 and embedding._jobs(-1, 7) == 1 and embedding._jobs(3, 16) == 2
    emb, reasons = idn.embed_with_reasons(images, landmarks, workers=2)
    np.testing.assert_array_equal(emb[:-1], gt_embeddings)
    assert np.all(np.isnan(emb[-1])) and "too small" in reasons[-1] and reasons[:-1] == [None] * len(faces.unmasked)
    with pytest.raises(TypeError, match="uint8"):  # a caller bug still raises from a worker
        idn.embed([im.astype(np.float32) for im in images[:16]], landmarks[:16], workers=2)
    with pytest.raises(ValueError, match="workers"):
        idn.embed(images, landmarks, workers=0)
