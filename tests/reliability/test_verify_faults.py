"""A dataset that is not as recorded (damaged, renamed or rewritten shards, edited records): `maskgen verify`
names each problem, and stats, preview, verify and combine refuse it in one line."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from maskgen import format as fmt
from maskgen.reader import raw_samples
from maskgen.shard import ShardWriter
from tests.reliability.faults import CLI_ARGS, cli, error_line

# --- maskgen verify --------------------------------------------------------------------------------------------

def _replace_shard(out: Path, name: str, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    """Write a shard and record it in stats.json, as if the build had made it: only its content is wrong."""
    writer = ShardWriter(out / name)
    for key, members in samples:
        writer.write(key, members)
    record = writer.commit()
    stats = json.loads((out / fmt.STATS).read_text())
    stats["shards"][name], stats["shard_sizes"][name] = record["sha256"], record["bytes"]
    (out / fmt.STATS).write_text(json.dumps(stats))


def test_verify_names_each_problem(clean, tmp_path):
    assert cli("verify", clean).exit_code == 0 and cli("verify", "--quick", clean).exit_code == 0
    out = tmp_path / "ds"
    shutil.copytree(clean, out)
    samples = [({k: v for k, v in raw.items() if not k.startswith("__")}, raw["__key__"])
               for raw in raw_samples([str(out / "train-000000.tar")])]
    (a, key_a), (b, key_b), (c, key_c), (d, key_d) = samples
    gray_map = cv2.imencode(".png", np.full((128, 128), 128, np.uint8))[1].tobytes()
    color_map = cv2.imencode(".png", np.zeros((128, 128, 3), np.uint8))[1].tobytes()
    small = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    _replace_shard(out, "train-000000.tar", [
        (key_a, {k: v for k, v in a.items() if k != fmt.MAP}),
        (key_b, {**b, fmt.MAP: gray_map, fmt.MASKED: b"not an image"}),
        (key_c, {**c, fmt.MAP: color_map, fmt.UNMASKED: small}),
        ("stranger_00", d),
    ])
    (out / "train-000001.tar").unlink()
    zeros = out / "train-000002.tar"
    zeros.write_bytes(b"\0" * zeros.stat().st_size)  # the size recorded, not the hash: an empty tar
    (out / "test-000000.tar").write_bytes((out / "val-000000.tar").read_bytes())

    res = cli("verify", out)
    shard = out / "train-000000.tar"
    expected = [
        f"{shard}: {key_a}: no map.png member",
        f"{shard}: {key_b}: masked.jpg does not decode",
        f"{shard}: {key_b}: map.png has values other than 0 and 255",
        f"{shard}: {key_c}: unmasked.jpg is 64x64x3 uint8, expected 128x128x3 uint8",
        f"{shard}: {key_c}: map.png is 128x128x3 uint8, expected 128x128 uint8",
        f"{shard}: stranger_00: json names key '{key_d}'",
        f"{shard}: keys differ from the manifest's: 1 missing (e.g. {key_d}), 1 not in it (e.g. stranger_00)",
        f"{out / 'train-000001.tar'}: missing",
        f"{out / 'train-000002.tar'}: SHA-256 differs from the record",
        f"{zeros}: 0 samples, manifest.parquet lists 1: the shard is incomplete (maskgen build rebuilds it)",
        f"{out / 'test-000000.tar'}: a shard that is not in stats.json",
    ]
    lines = res.output.splitlines()
    assert sorted(lines[:-1]) == sorted(expected), res.output
    assert error_line(res) == f"Error: {out}: {len(expected)} problems (4 shards, 7 samples checked)"
    quick = cli("verify", "--quick", out)
    assert quick.exit_code == 1 and f"{out / 'train-000001.tar'}: missing" in quick.output
    assert f"{shard}: {key_a}" not in quick.output  # samples are not read


def _rename_keys(shard: Path) -> None:
    """The shard with every key changed, same length: another valid shard of the same size (as one of
    another build can be: tar sizes are multiples of 10240 bytes)."""
    samples = [(raw["__key__"], {k: v for k, v in raw.items() if not k.startswith("__")})
               for raw in raw_samples([str(shard)])]
    size = shard.stat().st_size
    writer = ShardWriter(shard)
    for key, members in samples:
        writer.write("9" + key[1:], members)
    writer.commit()
    assert shard.stat().st_size == size


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _rewrite_manifest(out: Path) -> None:
    manifest = pd.read_parquet(out / fmt.MANIFEST)
    manifest.loc[0, "coverage"] += 0.01
    manifest.to_parquet(out / fmt.MANIFEST, index=False)


FAULTS = {  # damage, the line stats/preview/verify give (verify: another, when it finds more by reading the bytes)
    "no build.json": (lambda out: (out / fmt.BUILD_INFO).unlink(), "not a maskgen dataset (no build.json)", None),
    "no manifest": (lambda out: (out / fmt.MANIFEST).unlink(), "manifest.parquet: missing", None),
    "no stats.json": (lambda out: (out / fmt.STATS).unlink(), "stats.json: missing", None),
    "a shard missing": (lambda out: (out / "val-000000.tar").unlink(), "val-000000.tar: missing", None),
    "a shard more": (lambda out: shutil.copy(out / "train-000000.tar", out / "train-000009.tar"),
                     "train-000009.tar: a shard that is not in stats.json", None),
    "a shard swapped": (lambda out: _rename_keys(out / "train-000001.tar"),
                        "train-000001.tar: keys differ from the manifest's: 4 missing",
                        "SHA-256 differs from the record"),
    "manifest rewritten": (_rewrite_manifest,
                           "manifest.parquet: differs from its record (manifest_sha256 in stats.json)", None),
    "manifest garbage": (lambda out: (out / fmt.MANIFEST).write_bytes(b"garbage" * 100),
                         "manifest.parquet: does not read", None),
    "build.json edited": (lambda out: _edit_json(out / fmt.BUILD_INFO, res=256),
                          "build.json: differs from the build recorded in stats.json (in: res)", None),
    "stats.json not an object": (lambda out: (out / fmt.STATS).write_text("[]"),
                                 "stats.json: is not a JSON object", None),
    "build.json not an object": (lambda out: (out / fmt.BUILD_INFO).write_text("[]"),
                                 "build.json: is not a JSON object", None),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_stats_preview_and_verify_refuse_a_dataset_that_is_not_as_recorded(clean, tmp_path, fault):
    damage, message, read_message = FAULTS[fault]
    out = tmp_path / "ds"
    shutil.copytree(clean, out)
    damage(out)
    for command in (["stats", out], ["preview", out, "-o", tmp_path / "grid.png"]):
        assert message in error_line(cli(*command))
    assert not (tmp_path / "grid.png").exists()
    res = cli("verify", out)
    assert res.exit_code == 1 and (read_message or message) in res.output.splitlines()[0], res.output
    if read_message is None:  # a problem of the records: one line for it, then the summary
        assert len(res.output.splitlines()) == 2, res.output


def test_combine_and_build_name_a_json_file_that_is_not_an_object(faces, clean, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(clean, out)
    (out / fmt.BUILD_INFO).write_text("[]")
    assert error_line(cli("combine", out)) == f"Error: {out / fmt.BUILD_INFO}: is not a JSON object"
    line = error_line(cli("build", "--source", faces, "--out", out, *CLI_ARGS))
    assert line == f"Error: {out / fmt.BUILD_INFO}: is not a JSON object: choose an empty folder or delete {out}"


def test_combine_on_a_folder_that_is_not_a_build(tmp_path):
    assert "is not a maskgen build folder" in error_line(cli("combine", tmp_path))


def test_verify_names_a_shard_that_is_a_fifo_and_does_not_wait_on_it(clean, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(clean, out)
    fifo = out / "val-000000.tar"
    fifo.unlink()
    os.mkfifo(fifo)
    result = {}
    check = threading.Thread(target=lambda: result.update(res=cli("verify", out)), daemon=True)
    check.start()
    check.join(60)
    if check.is_alive():  # opened for reading: a writer that closes at once lets it end
        with open(fifo, "wb"):
            pass
        check.join(60)
        pytest.fail("maskgen verify waited on a FIFO")
    res = result["res"]
    assert res.exit_code == 1 and f"{fifo}: not a regular file" in res.output.splitlines(), res.output
    assert f"{fifo}: not a regular file" in error_line(cli("stats", out))
