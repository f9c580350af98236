"""``unmask evaluate`` end to end on a tiny real dataset and untrained tiny models."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tests.unmask.evaluation.testutils import EVAL_RES, write_tiny_run
from unmask.evaluation import (
    FIGURES_DIR,
    IMAGE_METRICS,
    METRICS_FILE,
    PER_IMAGE_FILE,
    PROTOCOL,
    SEG_METRICS,
    key,
    method_order,
)
from unmask.evaluation.evaluate import evaluate
from unmask.evaluation.options import EvalOptions
from unmask.metrics import fid as fid_metric

METHODS = ["two_stage", "two_stage_gt_map", "one_stage", "telea_pred_map", "telea_gt_map", "ns_pred_map",
           "ns_gt_map", "input"]


def _metrics(out) -> dict:
    return json.loads((out / METRICS_FILE).read_text())


def test_metrics_json_has_the_flat_keys(evaluated):
    data = _metrics(evaluated)
    protocol = data.pop(PROTOCOL)
    assert all(v is None or isinstance(v, (int, float)) for v in data.values()), "DVC shows numbers and nulls only"
    assert list(protocol["methods"]) == METHODS == [m for m in method_order() if m in protocol["methods"]]
    for method in METHODS:
        for metric in IMAGE_METRICS:
            assert key(method, metric) in data
        for metric in ("psnr", "ssim", "brisque", "sharpness"):
            assert isinstance(data[key(method, metric)], float), (method, metric)
    for metric in SEG_METRICS:
        assert 0 <= data[key("seg", metric)] <= 1
        assert key("seg", f"{metric}_pooled") in data
    assert data["data/count"] == protocol["count"] > 0
    assert not any("plausib" in k for k in data)  # the plausibility check is gone
    assert data["photos/dice"] is None and "--photos" in protocol["null_reasons"]["photos/dice"]
    assert data["two_stage/map_coverage"] == pytest.approx(data["seg/coverage"])
    assert data["telea_gt_map/map_coverage"] == pytest.approx(data["two_stage_gt_map/map_coverage"])
    assert data["one_stage/map_coverage"] is None and data["input/map_coverage"] is None
    assert protocol["resolution"] == EVAL_RES and protocol["data_resolution"] == 128


def test_unavailable_metrics_are_null_with_their_reason(evaluated):
    data = _metrics(evaluated)
    reasons = data[PROTOCOL]["null_reasons"]
    for method in METHODS:
        assert data[key(method, "fid")] is None
        assert "FID Inception weights" in reasons[key(method, "fid")]
        assert data[key(method, "niqe")] is None
        assert "192 px" in reasons[key(method, "niqe")] and f"{EVAL_RES} px" in reasons[key(method, "niqe")]
        assert data[key(method, "lpips")] is None and "LPIPS" in reasons[key(method, "lpips")]
    assert data[PROTOCOL]["metrics"]["niqe"]["ran"] is False
    assert data[PROTOCOL]["metrics"]["psnr"]["ran"] is True
    assert "C1 = (K1 * 255)^2 = 6.5025" in data[PROTOCOL]["psnr_ssim"]
    assert set(reasons) == {k for k, v in data.items() if v is None}


def test_per_image_parquet_matches_the_aggregates(evaluated):
    data = _metrics(evaluated)
    table = pd.read_parquet(evaluated / PER_IMAGE_FILE)
    assert len(table) == data["data/count"]
    assert list(table.columns[:5]) == ["key", "mask_type", "coverage", "yaw", "variant"]
    assert table["key"].is_unique
    for method in METHODS:
        assert table[key(method, "psnr")].mean() == pytest.approx(data[key(method, "psnr")])
        assert key(method, "niqe") not in table.columns  # not computed: no column of NaN
    assert table["seg/dice"].mean() == pytest.approx(data["seg/dice"])
    assert set(table["variant"]) <= {"front", "left", "right"}


def test_figures_are_written(evaluated):
    protocol = _metrics(evaluated)[PROTOCOL]
    names = protocol["figures"]
    assert {"sheet_frontal.png", "failures_psnr.png", "failures_dice.png"} <= set(names)
    assert any(n.startswith("sheet_mask_") for n in names)
    for name in names:
        assert (evaluated / FIGURES_DIR / name).stat().st_size > 0


def _run(tmp_path, eval_dataset, run, **kwargs):
    options = dict(data=eval_dataset, checkpoint=run, out=tmp_path / "out", resolution=EVAL_RES, batch_size=2,
                   max_samples=3, device="cpu", figures=False, baselines=("telea",),
                   fid_weights=tmp_path / "absent.pth")
    options.update(kwargs)
    return evaluate(EvalOptions(**options))


def test_evaluation_is_deterministic(tmp_path, eval_dataset, two_stage_run):
    first = _run(tmp_path / "a", eval_dataset, two_stage_run)
    second = _run(tmp_path / "b", eval_dataset, two_stage_run, batch_size=3)  # batching changes nothing
    values = {k: v for k, v in first.items() if k != PROTOCOL}
    assert values == {k: v for k, v in second.items() if k != PROTOCOL}
    a = pd.read_parquet(tmp_path / "a" / "out" / PER_IMAGE_FILE)
    b = pd.read_parquet(tmp_path / "b" / "out" / PER_IMAGE_FILE)
    pd.testing.assert_frame_equal(a, b)


def test_native_resolution_and_fid_plumbing(tmp_path, eval_dataset, two_stage_run, monkeypatch):
    def colour_features(images: np.ndarray) -> np.ndarray:  # a stand-in network: mean colour + spread
        flat = images.reshape(len(images), -1, 3).astype(np.float64)
        return np.concatenate([flat.mean(axis=1), flat.std(axis=1)], axis=1)

    # The stand-in takes the Inception's place; the protocol records the weights file it was "loaded" from.
    stand_in = tmp_path / "colour features, not an FID.pth"
    stand_in.write_bytes(b"")
    monkeypatch.setattr(fid_metric, "inception_feature_extractor", lambda path, device: colour_features)
    summary = _run(tmp_path, eval_dataset, two_stage_run, resolution=None, fid_weights=stand_in, baselines=())
    protocol = summary[PROTOCOL]
    assert protocol["resolution"] == 128
    assert summary["two_stage/niqe"] is None and "128 px" in protocol["null_reasons"]["two_stage/niqe"]
    assert math.isfinite(summary["two_stage/fid"]) and summary["two_stage/fid"] >= 0
    assert "not an FID" in protocol["fid"]["features"]
    assert "warning" in protocol  # the 64 px models ran at 128 px


def test_one_stage_checkpoint_as_the_main_model(tmp_path, eval_dataset, one_stage_run):
    summary = _run(tmp_path, eval_dataset, one_stage_run, baselines=())
    assert summary["one_stage/psnr"] is not None
    assert "two_stage/psnr" not in summary
    assert summary["seg/dice"] is None and "M-Seg" in summary[PROTOCOL]["null_reasons"]["seg/dice"]


def test_reconstruction_only_run_is_given_the_predicted_map(tmp_path, eval_dataset, two_stage_run):
    # the same seed: the same generator weights as the two-stage run, only trained "without GAN"
    recon = write_tiny_run(tmp_path / "recon_only", seed=0, adversarial=0.0)
    summary = _run(tmp_path, eval_dataset, two_stage_run, baselines=(), recon_only=recon)
    assert summary["recon_only/psnr"] == summary["two_stage/psnr"]
    assert summary["recon_only/map_coverage"] == pytest.approx(summary["seg/coverage"])
    assert summary[PROTOCOL]["methods"]["recon_only"]["map"] == "pred"
    with pytest.raises(ValueError, match="--adv 0"):
        _run(tmp_path, eval_dataset, two_stage_run, baselines=(), recon_only=two_stage_run)


def test_identity_hook_with_a_stand_in_embedding(tmp_path, eval_dataset, two_stage_run, monkeypatch):
    from unmask import identity
    from unmask.evaluation import VERIFY_METRICS, VERIFY_PROTOCOL_FILE
    from unmask.evaluation.samples import iter_eval_batches

    def mean_colour(images, landmarks=None, workers=1):  # the signature IdentityScores calls
        return np.stack([im.reshape(-1, 3).mean(0) / 255 for im in images])

    monkeypatch.setattr(identity, "embed", mean_colour)
    # the whole test split (not 3 samples): its identities have several photos, so there are pairs to verify
    summary = _run(tmp_path, eval_dataset, two_stage_run, identity=True, max_samples=None)
    for method in ("two_stage", "two_stage_gt_map", "telea_gt_map", "input"):
        assert 0 <= summary[key(method, "id_distance")] < 1
        assert summary[key(method, "id_match_rate")] == 1.0
    table = pd.read_parquet(tmp_path / "out" / PER_IMAGE_FILE)
    assert table["input/id_distance"].notna().all()

    verify = {k: v for k, v in summary.items() if k.startswith("verify/")}
    for probe in ("ground_truth", "masked", "two_stage", "two_stage_gt_map", "telea_pred_map", "telea_gt_map"):
        assert {f"verify/{probe}/{metric}" for metric in VERIFY_METRICS} <= set(verify), probe
    assert all(isinstance(v, float) and math.isfinite(v) for v in verify.values()), verify
    assert summary["verify/n_pairs"] > 0
    # by hand: the ground-truth probes' genuine distance, from the crops the evaluation reads
    protocol = identity.load_protocol(tmp_path / "out" / VERIFY_PROTOCOL_FILE)
    crops = {info["key"]: crop for batch in iter_eval_batches(eval_dataset, "test", EVAL_RES, batch_size=4)
             for info, crop in zip(batch.info, batch.unmasked, strict=True)}
    genuine = protocol[protocol["genuine"]]
    by_hand = [np.linalg.norm(mean_colour([crops[p]])[0] - mean_colour([crops[g]])[0])
               for p, g in zip(genuine["probe_key"], genuine["gallery_key"], strict=True)]
    assert len(genuine) == summary["verify/n_probes"]  # one genuine pair per probe
    assert summary["verify/ground_truth/genuine_distance"] == pytest.approx(np.mean(by_hand), rel=1e-9)


def test_identity_with_the_real_backend(tmp_path, eval_dataset, two_stage_run):
    summary = _run(tmp_path, eval_dataset, two_stage_run, identity=True, max_samples=2, baselines=())
    assert summary["input/id_distance"] is not None  # the samples carry their crop landmarks
    assert 0 <= summary["input/id_match_rate"] <= 1


def test_lpips_runs_when_weights_are_given(tmp_path, eval_dataset, two_stage_run):
    import torch

    from unmask.metrics import lpips as lpips_module

    torch.manual_seed(0)
    model = lpips_module.LPIPSAlex()  # random weights in the published layouts: plumbing only
    backbone = {f"features.{index}.{part}": getattr(model.convs[n], part).detach()
                for n, index in enumerate(lpips_module.CONV_INDICES) for part in ("weight", "bias")}
    torch.save(backbone, tmp_path / "alexnet.pth")
    torch.save({f"lin{n}.model.1.weight": lin.weight.detach().abs() for n, lin in enumerate(model.lins)},
               tmp_path / "alex.pth")
    weights = (tmp_path / "alexnet.pth", tmp_path / "alex.pth")
    summary = _run(tmp_path, eval_dataset, two_stage_run, lpips_weights=weights)
    assert summary["two_stage/lpips"] > 0 and summary["input/lpips"] > 0
    assert summary["protocol"]["metrics"]["lpips"]["ran"] is True
    assert "two_stage/lpips" in pd.read_parquet(tmp_path / "out" / PER_IMAGE_FILE).columns
