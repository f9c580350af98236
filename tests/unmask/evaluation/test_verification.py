"""``unmask evaluate --identity``: face verification over the evaluated split, its protocol file,
and the identity columns and section of ``unmask compare`` / ``unmask report``.

Most tests use a stand-in embedding (a few colour statistics, instant) in place of dlib's network,
with the real protocol and metrics of ``unmask.identity``; one test runs the real embeddings."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from tests.unmask.evaluation.testutils import EVAL_RES
from unmask import identity as idn
from unmask.evaluation import (
    METRICS_FILE,
    PER_IMAGE_FILE,
    PROTOCOL,
    VERIFY_FILE,
    VERIFY_PAIRS_FILE,
    VERIFY_PROTOCOL_FILE,
    method_label,
)
from unmask.evaluation.cli import compare, evaluate, report
from unmask.evaluation.evaluate import evaluate as run_evaluation
from unmask.evaluation.methods import Methods
from unmask.evaluation.options import EvalOptions

MARK = (1, 2, 3)
N = 4  # identity samples: the first N of the split in key order
PROBE_TYPES = ["ground_truth", "masked", "two_stage", "two_stage_gt_map", "one_stage", "telea_pred_map",
               "telea_gt_map", "ns_pred_map", "ns_gt_map"]
METHODS = ["two_stage", "two_stage_gt_map", "one_stage", "telea_pred_map", "telea_gt_map", "ns_pred_map",
           "ns_gt_map", "input"]


class FakeEmbed:
    """128 numbers from an 8 x 8 colour thumbnail; NaN for an image marked ``MARK`` in its corner (as
    if no face could be embedded). Counts the images."""

    def __init__(self) -> None:
        self.images = 0

    def __call__(self, images, landmarks, **_):
        assert len(images) == len(landmarks)
        self.images += len(images)
        rows = []
        for image in images:
            image = np.asarray(image)
            assert image.dtype == np.uint8
            if tuple(image[0, 0]) == MARK:
                rows.append(np.full(idn.EMBEDDING_DIM, np.nan))
                continue
            thumb = cv2.resize(image, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float64)
            rows.append(thumb.reshape(-1)[:idn.EMBEDDING_DIM] / 255 * 0.3)
        return np.stack(rows) if rows else np.empty((0, idn.EMBEDDING_DIM))


def _metrics(out) -> dict:
    return json.loads((out / METRICS_FILE).read_text())


def _split_keys(eval_dataset) -> list[str]:
    from unmask.evaluation.verification import scan_identities

    return sorted(scan_identities(eval_dataset, "test")["key"])


@pytest.fixture(scope="module")
def identity_runs(tmp_path_factory, eval_dataset, two_stage_run, one_stage_run):
    """Two identical ``unmask evaluate --identity`` runs (same seed) with the stand-in embedding:
    (first OUT, second OUT, images embedded by the first)."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("identity-eval")
    outs, counts = [], []
    for name in ("a", "b"):
        fake = FakeEmbed()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(idn, "embed", fake)
            patch.setenv("TORCH_HOME", str(base / "torch-home"))
            out = base / name
            result = CliRunner().invoke(evaluate, [
                "--data", str(eval_dataset), "--split", "test", "--checkpoint", str(two_stage_run),
                "--one-stage", str(one_stage_run), "-o", str(out), "--resolution", str(EVAL_RES),
                "--batch-size", "4", "--no-figures", "--device", "cpu", "--no-progress",
                "--identity", "--identity-max-samples", str(N), "--identity-seed", "3", "--impostors", "2",
            ], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        outs.append(out)
        counts.append(fake.images)
    return outs[0], outs[1], counts[0]


def test_metrics_json_has_the_verify_keys(identity_runs):
    out = identity_runs[0]
    data = _metrics(out)
    protocol = data.pop(PROTOCOL)
    assert all(v is None or isinstance(v, (int, float)) for v in data.values()), "DVC shows numbers and nulls only"
    for probe in PROBE_TYPES:
        for metric in ("accuracy", "tar_far_1", "tar_far_0.1"):
            value = data[f"verify/{probe}/{metric}"]
            assert isinstance(value, float) and 0 <= value <= 1, (probe, metric)
        assert data[f"verify/{probe}/n_invalid"] == 0
    assert data["verify/ground_truth/tar_far_1"] is not None
    pairs = idn.load_protocol(out / VERIFY_PROTOCOL_FILE)
    assert data["verify/n_pairs"] == len(pairs) > 0
    assert data["verify/n_probes"] == len(idn.probe_keys(pairs)) <= N
    assert data["verify/n_gallery"] == len(idn.gallery_keys(pairs))
    assert len(pairs) == data["verify/n_probes"] * 3  # 1 genuine + 2 impostors each (enough identities)
    for method in METHODS:
        assert 0 <= data[f"{method}/id_match_rate"] <= 1

    ident = protocol["identity"]
    assert ident["max_samples"] == N and ident["count"] == N and "key order" in ident["samples"]
    verification = ident["verification"]
    assert verification["reason"] is None
    assert verification["seed"] == 3 and verification["impostors"] == 2
    assert verification["probe_types"] == PROBE_TYPES
    assert verification["protocol_file"] == VERIFY_PROTOCOL_FILE
    assert set(protocol["null_reasons"]) == {k for k, v in data.items() if v is None}

    table = pd.read_csv(out / VERIFY_FILE)
    assert list(table["probe_type"]) == PROBE_TYPES
    accuracy = table.set_index("probe_type").loc["two_stage", "accuracy"]
    assert accuracy == pytest.approx(data["verify/two_stage/accuracy"])
    distances = pd.read_parquet(out / VERIFY_PAIRS_FILE)
    assert len(distances) == len(pairs) and set(PROBE_TYPES) <= set(distances.columns)

    per_image = pd.read_parquet(out / PER_IMAGE_FILE)
    selected = per_image.loc[per_image["id_selected"], "key"]
    assert sorted(selected) == sorted(per_image["key"])[:N]  # the first N in key order, whatever the shard order
    assert per_image.loc[per_image["id_selected"], "two_stage/id_distance"].notna().all()
    assert per_image.loc[~per_image["id_selected"], "two_stage/id_distance"].isna().all()


def test_protocol_is_written_and_the_same_for_the_same_seed(identity_runs, eval_dataset):
    first, second, embedded = identity_runs
    for name in (VERIFY_PROTOCOL_FILE, VERIFY_PROTOCOL_FILE + ".json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    pairs = idn.load_protocol(first / VERIFY_PROTOCOL_FILE)
    assert pairs.attrs["seed"] == 3 and pairs.attrs["impostors"] == 2 and pairs.attrs["max_probes"] == N
    keys = _split_keys(eval_dataset)
    probes, gallery = idn.probe_keys(pairs), idn.gallery_keys(pairs)
    assert set(probes) <= set(keys[:N])
    assert set(gallery) <= set(keys)  # the gallery comes from the same split ...
    assert set(gallery) - set(keys[:N])  # ... and reaches beyond the identity samples
    # each image embedded once: N ground truths, N outputs per method, the other gallery crops
    assert embedded == N * (1 + len(METHODS)) + len(set(gallery) - set(keys[:N]))
    assert _metrics(first)[PROTOCOL]["identity"]["images_embedded"] == embedded
    a, b = _metrics(first), _metrics(second)
    assert {k: v for k, v in a.items() if k.startswith("verify/")} == {k: v for k, v in b.items()
                                                                      if k.startswith("verify/")}


def test_a_probe_without_embedding_is_counted_not_dropped(tmp_path, eval_dataset, two_stage_run, monkeypatch):
    monkeypatch.setattr(idn, "embed", FakeEmbed())
    run = Methods.run

    def mark_ns(self, batch):  # no embedding for Navier-Stokes given the predicted map
        pred_map, outputs = run(self, batch)
        images, given = outputs["ns_pred_map"]
        images = images.copy()
        images[:, 0, 0] = MARK
        outputs["ns_pred_map"] = (images, given)
        return pred_map, outputs

    monkeypatch.setattr(Methods, "run", mark_ns)
    summary = run_evaluation(EvalOptions(
        data=eval_dataset, checkpoint=two_stage_run, out=tmp_path / "out", resolution=EVAL_RES, batch_size=3,
        device="cpu", figures=False, baselines=("ns",), fid_weights=tmp_path / "absent.pth", identity=True,
        identity_max_samples=N))
    n_pairs = summary["verify/n_pairs"]
    assert n_pairs > 0
    assert summary["verify/ns_pred_map/n_invalid"] == n_pairs  # every pair kept, none accepted
    assert summary["verify/two_stage/n_invalid"] == summary["verify/ns_gt_map/n_invalid"] == 0
    table = pd.read_csv(tmp_path / "out" / VERIFY_FILE).set_index("probe_type")
    assert table.loc["ns_pred_map", "n_pairs"] == table.loc["two_stage", "n_pairs"] == n_pairs
    assert table.loc["ns_pred_map", "n_invalid_probes"] == summary["verify/n_probes"]
    # an invalid pair is a rejection: right for the impostor pairs, wrong for the genuine ones
    assert summary["verify/ns_pred_map/accuracy"] == pytest.approx(table.loc["ns_pred_map", "n_impostor"] / n_pairs)
    assert summary["verify/ns_pred_map/tar_far_1"] == 0.0
    assert summary["ns_pred_map/id_match_rate"] is None  # no embedding at all: null with a reason, not 0
    assert summary["ns_pred_map/id_distance"] is None
    assert "embedding" in summary[PROTOCOL]["null_reasons"]["ns_pred_map/id_distance"]


def _header(table: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith("| Method") or line.startswith("| Probe"))
    return [re.sub(r" [↑↓]$", "", cell.strip()) for cell in line.strip("|").split("|")]


def _cell(table: str, label: str, column: str) -> str:
    line = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][_header(table).index(column)]


def test_compare_shows_the_identity_columns(identity_runs, tmp_path):
    out = identity_runs[0]
    data = _metrics(out)
    output = tmp_path / "table.md"
    result = CliRunner().invoke(compare, [str(out), "-o", str(output), "--methods", "all"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = output.read_text()
    header = _header(table)
    assert {"ID match", "Verif. accuracy", "TAR@FAR 1%"} <= set(header)
    assert "Verif. accuracy ↑" in table and "ID match ↑" in table  # higher is better
    two = method_label("two_stage")
    assert _cell(table, two, "Verif. accuracy").strip("*") == f"{data['verify/two_stage/accuracy']:.1%}"
    assert _cell(table, method_label("input"), "Verif. accuracy").strip("*") == f"{data['verify/masked/accuracy']:.1%}"
    assert _cell(table, two, "ID match").strip("*") == f"{data['two_stage/id_match_rate']:.1%}"
    assert "verification:" in table and "seed 3" in table


def test_report_has_the_identity_section(identity_runs, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(report, [str(identity_runs[0]), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    section = text[text.index("## Identity"):text.index("## Protocol")]
    data = _metrics(identity_runs[0])
    for label in ("Ground truth (unmasked)", "Masked input", method_label("two_stage"), method_label("one_stage"),
                  method_label("telea_pred_map"), method_label("ns_pred_map")):
        assert f"| {label} |" in section, label
    assert {"Verif. accuracy", "TAR@FAR 1%", "TAR@FAR 0.1%", "ID match"} <= set(_header(section))
    assert _cell(section, "Ground truth (unmasked)", "Verif. accuracy") == f"{data['verify/ground_truth/accuracy']:.1%}"
    assert re.search(r"identity target .*\*\*(holds|does not hold)\*\*", section)
    assert re.search(r"two-stage vs Telea .*\*\*(beats|ties with|does not beat)\*\* Telea", section)
    assert "verification protocol:" in section and "seed 3" in section and VERIFY_PROTOCOL_FILE in section


def _write_identity_eval(directory, accuracy: dict[str, float]):
    directory.mkdir(parents=True)
    values = {f"verify/{probe}/accuracy": value for probe, value in accuracy.items()}
    values.update({"verify/n_pairs": 20.0, "verify/n_probes": 10.0})
    values.update({f"{m}/psnr": 20.0 for m in ("two_stage", "telea_pred_map", "input")})
    protocol = {"data": "d", "split": "test", "resolution": 256, "count": 10, "checkpoint": "c",
                "methods": {m: {} for m in ("two_stage", "telea_pred_map", "input")}, "null_reasons": {},
                "identity": {"requested": True, "reason": None, "samples": "the first 10 samples", "count": 10,
                             "verification": {"reason": None, "seed": 0, "impostors": 1, "n_probes": 10,
                                              "n_pairs": 20}}}
    (directory / METRICS_FILE).write_text(json.dumps({**values, PROTOCOL: protocol}))
    return directory


@pytest.mark.parametrize("two_stage, telea, holds, verdict", [
    (0.85, 0.70, "holds", "beats"),  # gain 0.25 >= 0.5 * 0.40
    (0.79, 0.75, "does not hold", "beats"),  # gain 0.19 < 0.20
    (0.80, 0.85, "holds", "does not beat"),  # exactly half (in floating point 0.2000...07 vs 0.2)
    (0.70, 0.70, "does not hold", "ties with"),
])
def test_report_states_the_identity_target(tmp_path, two_stage, telea, holds, verdict):
    ev = _write_identity_eval(tmp_path / "ev", {"ground_truth": 1.0, "masked": 0.6, "two_stage": two_stage,
                                                "telea_pred_map": telea})
    out = tmp_path / "report"
    result = CliRunner().invoke(report, [str(ev), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert re.search(rf"identity target .*: \*\*{holds}\*\*", text)
    assert f"two-stage **{verdict}** Telea" in text


def test_verification_with_the_real_embeddings(tmp_path, eval_dataset, two_stage_run):
    summary = run_evaluation(EvalOptions(
        data=eval_dataset, checkpoint=two_stage_run, out=tmp_path / "out", resolution=EVAL_RES, batch_size=4,
        device="cpu", figures=False, baselines=(), fid_weights=tmp_path / "absent.pth", identity=True,
        identity_max_samples=2))
    if not summary["verify/n_pairs"]:
        pytest.skip("no probe among the first 2 samples has another photo of its identity")
    for probe in ("ground_truth", "masked", "two_stage", "two_stage_gt_map"):
        assert 0 <= summary[f"verify/{probe}/accuracy"] <= 1
        assert summary[f"verify/{probe}/n_invalid"] == 0  # the crops carry their landmarks
    assert (tmp_path / "out" / VERIFY_PROTOCOL_FILE).is_file()


def test_no_verification_without_identities():
    from unmask.evaluation.verification import verification_reason, verify_scores

    samples = pd.DataFrame({"key": ["a", "b"], "source": ["a.jpg", "b.jpg"], "identity": [None, None]})
    reason = verification_reason(samples)
    assert "no sample of the split has a known identity" in reason
    groups = verify_scores(None, None, ["ground_truth", "two_stage"], reason)
    assert groups["verify/two_stage"]["accuracy"] == (None, reason)
    assert groups["verify"]["n_pairs"] == (None, reason)
