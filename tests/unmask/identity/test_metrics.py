"""Distances, match rate and verification metrics on hand-made numbers."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from unmask import identity as idn


def test_id_distance_rowwise_nan_propagates():
    a = np.zeros((3, 128))
    b = np.zeros((3, 128))
    b[0, 0], b[1, :4] = 0.3, 0.5  # distances 0.3 and 1.0
    b[2, 7] = np.nan
    np.testing.assert_allclose(idn.id_distance(a, b)[:2], [0.3, 1.0])
    assert np.isnan(idn.id_distance(a, b)[2])
    np.testing.assert_allclose(idn.id_distance(b[:2], np.zeros(128)), [0.3, 1.0])  # one row broadcasts


def test_id_match_rate_counts_nan_as_no_match():
    assert idn.MATCH_THRESHOLD == 0.6
    rate, n_valid, n_invalid = idn.id_match_rate(np.array([0.1, 0.6, 0.7, np.nan]))
    assert (rate, n_valid, n_invalid) == (0.5, 3, 1)  # 0.6 itself matches, as in face_recognition
    rate, n_valid, n_invalid = idn.id_match_rate(np.array([]))
    assert np.isnan(rate) and (n_valid, n_invalid) == (0, 0)


def test_accuracy_at_threshold_small():
    d = np.array([0.3, 0.7, 0.5, 0.9, np.nan, np.nan])
    g = np.array([True, True, False, False, True, False])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = idn.verification_metrics(d, g)
    # accepted: 0.3 (genuine, right), 0.5 (impostor, wrong); rejected: 0.7 (wrong), 0.9 (right),
    # NaN genuine (wrong), NaN impostor (right) -> 3 of 6
    assert m["accuracy"] == 0.5 and m["tar"] == pytest.approx(1 / 3) and m["far"] == pytest.approx(1 / 3)
    assert (m["n_pairs"], m["n_genuine"], m["n_impostor"], m["n_invalid"]) == (6, 3, 3, 2)
    # 3 impostor pairs: no false accept allowed at 1% -> threshold just below 0.5: only 0.3 accepted
    assert m["threshold_far_1"] == np.nextafter(0.5, 0) and m["tar_far_1"] == pytest.approx(1 / 3)
    assert m["far_at_1"] == 0.0


def hand_made():
    """201 impostor pairs 0.5025, 0.5075, ... (+1 NaN) and 6 genuine pairs (1 NaN)."""
    imp = np.append(0.5025 + 0.005 * np.arange(200), np.nan)
    gen = np.array([0.1, 0.5, 0.505, 0.51, 0.52, np.nan])
    d = np.concatenate([gen, imp])
    g = np.concatenate([np.ones(6, bool), np.zeros(201, bool)])
    return d, g


@pytest.mark.filterwarnings("ignore::unmask.identity.CoarseFARWarning")
def test_far_thresholds_hand_computed():
    d, g = hand_made()
    t = idn.far_thresholds(d, g)
    # FAR 1%: floor(0.01 * 201) = 2 false accepts allowed -> just below the 3rd impostor (0.5125)
    # FAR 0.1%: none allowed -> just below the smallest impostor (0.5025)
    assert t == {0.01: np.nextafter(0.5025 + 0.01, 0), 0.001: np.nextafter(0.5025, 0)}
    with pytest.warns(idn.CoarseFARWarning, match="only 10 impostor"):
        idn.far_thresholds(np.arange(10.0), np.zeros(10, bool))


@pytest.mark.filterwarnings("ignore::unmask.identity.CoarseFARWarning")
def test_verification_metrics_hand_computed():
    d, g = hand_made()
    m = idn.verification_metrics(d, g, threshold=0.6)
    # at 0.6: genuine 0.1 .. 0.52 accepted (5 of 6); impostors <= 0.6 are 0.5025 .. 0.5975 (20 of 201)
    assert m["tar"] == pytest.approx(5 / 6) and m["far"] == pytest.approx(20 / 201)
    assert m["accuracy"] == pytest.approx((5 + 181) / 207)
    assert m["tar_far_1"] == pytest.approx(4 / 6) and m["far_at_1"] == pytest.approx(2 / 201)
    assert m["tar_far_0.1"] == pytest.approx(2 / 6) and m["far_at_0.1"] == 0.0
    assert (m["n_pairs"], m["n_genuine"], m["n_impostor"], m["n_invalid"]) == (207, 6, 201, 2)
    # mean finite distances: genuine (0.1 + 0.5 + 0.505 + 0.51 + 0.52) / 5; impostors 0.5025 .. 1.4975
    assert m["genuine_distance"] == pytest.approx(2.135 / 5)
    assert m["impostor_distance"] == pytest.approx((0.5025 + 1.4975) / 2)

    # another probe type, judged with the ground truth's thresholds
    gt_t = idn.far_thresholds(d, g)
    other = d.copy()
    other[:6] = [0.3, 0.505, 0.55, 0.7, np.nan, np.nan]  # worse genuine distances
    other[6:10] = [0.4, 0.45, 0.9, 0.9]  # and 2 impostors now look alike
    m2 = idn.verification_metrics(other, g, thresholds_from=gt_t)
    assert m2["threshold_far_1"] == gt_t[0.01]
    assert m2["tar_far_1"] == pytest.approx(2 / 6)  # 0.3, 0.505 (< 0.5125)
    assert m2["tar_far_0.1"] == pytest.approx(1 / 6)  # 0.3
    assert m2["far_at_1"] == pytest.approx(2 / 201)  # 0.4, 0.45
    assert m2["n_invalid"] == 3
    assert m2["genuine_distance"] == pytest.approx((0.3 + 0.505 + 0.55 + 0.7) / 4)
    no_impostor = idn.verification_metrics(d[:6], g[:6])
    assert math.isnan(no_impostor["impostor_distance"]) and no_impostor["genuine_distance"] == m["genuine_distance"]


def test_verify_uses_ground_truth_thresholds_for_all_types():
    # 4 probes of identities A, A, B, B; gallery photos gA, gB; distances along one axis
    protocol = pd.DataFrame({
        "probe_key": ["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p4"],
        "gallery_key": ["gA", "gB", "gA", "gB", "gB", "gA", "gB", "gA"],
        "genuine": [True, False] * 4,
        "probe_identity": ["A", "A", "A", "A", "B", "B", "B", "B"],
        "gallery_identity": ["A", "B", "A", "B", "B", "A", "B", "A"],
    })
    assert idn.probe_keys(protocol) == ["p1", "p2", "p3", "p4"] and idn.gallery_keys(protocol) == ["gA", "gB"]

    def vecs(xs):
        out = np.zeros((len(xs), 128))
        out[:, 0] = xs
        return out

    gallery = vecs([0.0, 10.0])  # gA at 0, gB at 10
    gt = vecs([0.2, 0.5, 9.7, 9.0])  # genuine 0.2, 0.5, 0.3, 1.0; impostor 9.8, 9.5, 9.7, 9.0
    masked = vecs([0.7, 0.55, 9.0, np.nan])  # genuine 0.7, 0.55, 1.0, NaN; impostor 9.3, 9.45, 9.0, NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = idn.verify({"ground_truth": gt, "masked": masked}, gallery, protocol).set_index("probe_type")
    # ground truth: 3 of 4 genuine <= 0.6, all impostors rejected -> 7/8
    assert table.loc["ground_truth", "accuracy"] == 0.875 and table.loc["masked", "accuracy"] == 0.625
    # FAR thresholds: just below the smallest GT impostor distance (9.0) for both FARs
    assert table.loc["masked", "threshold_far_1"] == np.nextafter(9.0, 0)
    assert table.loc["ground_truth", "tar_far_1"] == 1.0
    assert table.loc["masked", "tar_far_1"] == 0.75 and table.loc["masked", "far_at_1"] == 0.0
    assert table.loc["masked", "n_invalid"] == 2 and table.loc["masked", "n_invalid_probes"] == 1
    assert (table["thresholds_from"] == "ground_truth").all() and (table["n_pairs"] == 8).all()
    # mappings key -> vector work as well as aligned arrays
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t2 = idn.verify({"masked": dict(zip(["p1", "p2", "p3", "p4"], masked, strict=True))},
                        {"gA": gallery[0], "gB": gallery[1]}, protocol, thresholds_from={0.01: 9.0, 0.001: 9.0})
    assert t2.iloc[0]["accuracy"] == 0.625 and t2.iloc[0]["thresholds_from"] == "given"
    with pytest.raises(ValueError, match="aligned"):
        idn.verify({"gt": gt[:3]}, gallery, protocol)
