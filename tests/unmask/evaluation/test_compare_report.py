"""``unmask compare`` and ``unmask report`` from metrics files only."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from unmask.evaluation import METRICS_FILE, PROTOCOL, method_label
from unmask.evaluation.cli import compare, report

FID_REASON = "FID Inception weights not found"


def _write_eval(directory, values, count=100):
    directory.mkdir(parents=True)
    reasons = {k: FID_REASON for k, v in values.items() if v is None}
    protocol = {"data": "d", "split": "test", "resolution": 256, "count": count, "checkpoint": "c",
                "methods": {k.split("/")[0]: {} for k in values}, "null_reasons": reasons}
    (directory / METRICS_FILE).write_text(json.dumps({**values, PROTOCOL: protocol}))
    return directory


def _row(table: str, label: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| {label} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _header(table: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith("| Method"))
    return [re.sub(r" [↑↓]$", "", cell.strip()) for cell in line.strip("|").split("|")]


def _cell(table: str, label: str, column: str) -> str:
    return _row(table, label)[_header(table).index(column)]


def test_compare_marks_the_best_value_by_direction(tmp_path):
    _write_eval(tmp_path / "runs" / "ours" / "eval" / "test", {
        "two_stage/ssim": 0.90, "two_stage/psnr": 28.0, "two_stage/fid": 12.0, "two_stage/niqe": 5.0,
        "two_stage/brisque": 30.0, "two_stage/map_coverage": 0.2,
        "telea_pred_map/ssim": 0.92, "telea_pred_map/psnr": 27.0, "telea_pred_map/fid": 40.0,
        "telea_pred_map/niqe": 4.0, "telea_pred_map/brisque": 35.0, "telea_pred_map/map_coverage": 0.2,
    })
    ablation = _write_eval(tmp_path / "ablation", {
        "one_stage/ssim": 0.80, "one_stage/psnr": 25.0, "one_stage/fid": None, "one_stage/niqe": 6.0,
        "one_stage/brisque": 20.0, "one_stage/map_coverage": None,
    })
    output = tmp_path / "table.md"
    # a run directory (RUN/eval/test/metrics.json) and a metrics.json file, one of them named
    result = CliRunner().invoke(compare, [str(tmp_path / "runs" / "ours"), f"ablation={ablation / METRICS_FILE}",
                                          "-o", str(output)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = output.read_text()
    two, one, telea = (method_label(m) for m in ("two_stage", "one_stage", "telea_pred_map"))
    assert _cell(table, two, "PSNR (dB)") == "**28.00**"  # higher is better
    assert _cell(table, telea, "SSIM") == "**0.9200**"
    assert _cell(table, two, "FID") == "**12.00**"  # lower is better
    assert _cell(table, telea, "NIQE") == "**4.000**"
    assert _cell(table, one, "BRISQUE") == "**20.00**"
    assert _cell(table, telea, "FID") == "40.00"
    assert _cell(table, one, "FID") == "n/a [1]"
    assert f"[1] {FID_REASON}" in table
    assert _cell(table, two, "Map coverage") == "20.0%"  # not ranked
    assert [_row(table, label)[0] for label in (two, one, telea)] == [two, one, telea]
    assert table.index(two) < table.index(one) < table.index(telea)  # the paper's row order


def test_compare_keeps_rows_apart_and_drops_exact_repeats(tmp_path):
    values = {"two_stage/psnr": 20.0, "ns_gt_map/psnr": 19.0}
    a = _write_eval(tmp_path / "a", values)
    b = _write_eval(tmp_path / "b", {**values, "two_stage/psnr": 21.0})
    output = tmp_path / "t.md"
    result = CliRunner().invoke(compare, [str(a), str(b), "-o", str(output), "--methods", "all"])
    assert result.exit_code == 0, result.output
    table = output.read_text()
    assert _cell(table, method_label("two_stage") + " [b]", "PSNR (dB)") == "**21.00**"
    assert _cell(table, method_label("two_stage") + " [a]", "PSNR (dB)") == "20.00"
    assert table.count(method_label("ns_gt_map")) == 1  # the same numbers twice: one row


def test_report_mentions_every_method_and_embeds_the_figures(evaluated, tmp_path):
    out = tmp_path / "reports" / "tiny"
    result = CliRunner().invoke(report, [str(evaluated), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    protocol = json.loads((evaluated / METRICS_FILE).read_text())[PROTOCOL]
    for method in protocol["methods"]:
        assert method_label(method) in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    charts = [p for p in images if p.startswith("figures/charts/")]  # drawn by the report (test_charts)
    assert {p.rsplit("/", 1)[-1] for p in images if p not in charts} == set(protocol["figures"])
    for path in images:
        assert (out / path).is_file()  # copied next to the report
    assert "Dice" in text and "by mask type" in text and "n/a [" in text


def _write_per_image(directory, columns):
    import pandas as pd

    frame = pd.DataFrame(columns)
    frame.to_parquet(directory / "per_image.parquet")


def test_mean_intervals_match_a_hand_computation(tmp_path):
    from unmask.evaluation.compare import mean_interval

    constant = mean_interval(np.full(50, 0.25))
    assert constant == pytest.approx((0.25, 0.25, 0.25))
    values = np.arange(-10, 11, dtype=float)  # mean 0, symmetric
    mean, low, high = mean_interval(values)
    assert mean == 0.0 and low < 0 < high
    assert mean_interval(values) == (mean, low, high)  # seeded
    # the interval of a mean of 21 values of sd 6.2 is about +-2.6 wide
    assert 1.5 < high < 4.0 and -4.0 < low < -1.5


def test_compare_paired_table_matches_samples_by_key(tmp_path):
    ours = _write_eval(tmp_path / "ours", {"two_stage/psnr": 30.0, "recon_only/psnr": 29.0})
    keys = [f"s{i}" for i in range(6)]
    _write_per_image(ours, {"key": keys, "two_stage/psnr": [30.0, 31, 29, 30, 30, 30],
                            "recon_only/psnr": [29.0, 30, 28, 29, 29, 29]})
    other = _write_eval(tmp_path / "other", {"two_stage/psnr": 28.0})
    # another order and one sample the reference lacks: paired by key, the extra one left out
    _write_per_image(other, {"key": ["s5", "s4", "s3", "s2", "s1", "s0", "extra"],
                             "two_stage/psnr": [27.5, 27.5, 27.5, 27.5, 27.5, 27.5, 99.0]})
    output = tmp_path / "t.md"
    result = CliRunner().invoke(compare, [str(ours), str(other), "-o", str(output), "--methods", "two_stage",
                                          "--paired", "ours:recon_only"])
    assert result.exit_code == 0, result.output
    table = output.read_text().split("## Paired differences")[1]
    label = method_label("two_stage")
    assert _row(table, f"{label} [ours]")[1:] == ["+1.00 [+1.00, +1.00]", "6"]
    # other - reference: 27.5 - [29, 30, 28, 29, 29, 29] -> mean -1.5
    assert _row(table, f"{label} [other]")[1].startswith("-1.50 [")


def test_compare_paired_reports_a_missing_method_or_file_in_one_line(tmp_path):
    ours = _write_eval(tmp_path / "ours", {"two_stage/psnr": 30.0, "recon_only/psnr": 29.0})
    runner = CliRunner()
    missing = runner.invoke(compare, [str(ours), "-o", str(tmp_path / "t.md"), "--paired", "one_stage"])
    assert missing.exit_code == 1 and "no method 'one_stage'" in missing.output
    no_file = runner.invoke(compare, [str(ours), "-o", str(tmp_path / "t.md"), "--paired", "recon_only"])
    assert no_file.exit_code == 1 and "per_image.parquet is missing" in no_file.output
    assert not (tmp_path / "t.md").exists()  # nothing half-written
