"""Whole builds: shards read back with webdataset, determinism, resume after kill -9, parts, CLI errors."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import webdataset as wds
from click.testing import CliRunner

from maskgen import format as fmt
from maskgen.build import BuildConfig, BuildError, build, combine
from maskgen.cli import main
from maskgen.reader import decode, iter_raw_samples


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.tar"))}


@pytest.fixture(scope="module")
def reference(small_celeba, tmp_path_factory) -> Path:
    """The small sample built once, with 2 workers, 3 variants per face on average."""
    out = tmp_path_factory.mktemp("ref") / "ds"
    build(BuildConfig(source=str(small_celeba), out=str(out), res=128, pairs=130, seed=3, workers=2,
                      shard_size=16, progress=False))
    return out


def test_shards_read_back_with_webdataset(reference):
    manifest = pd.read_parquet(reference / fmt.MANIFEST)
    assert len(manifest) == 130
    seen = []
    urls = sorted(str(p) for p in reference.glob("*.tar"))
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        assert "." not in sample["__key__"]
        assert set(fmt.SAMPLE_MEMBERS) <= set(sample)
        decoded = decode(sample)
        masked, binary, unmasked, meta = decoded.masked, decoded.map, decoded.unmasked, decoded.meta
        assert masked.shape == unmasked.shape == (128, 128, 3) and binary.shape == (128, 128)
        assert set(np.unique(binary)) <= {0, 255}
        assert abs((binary > 0).mean() - meta["coverage"]) < 1e-6
        # After JPEG the invariant holds approximately: far from the map, masked ~ unmasked.
        outside = binary == 0
        diff = np.abs(masked.astype(int) - unmasked.astype(int)).max(axis=2)
        assert np.median(diff[outside]) <= 2 and np.median(diff[~outside]) > 10
        seen.append((sample["__key__"], meta["split"], meta["identity"]))
    keys = [k for k, _, _ in seen]
    assert sorted(keys) == sorted(manifest["key"]) and len(set(keys)) == len(keys)
    # No identity (and so no source image) in two splits.
    by_identity = pd.DataFrame(seen, columns=["key", "split", "identity"]).groupby("identity")["split"].nunique()
    assert by_identity.max() == 1
    assert set(manifest["split"]) == {"train", "val", "test"}
    # Several variants per face when pairs exceed faces.
    assert manifest.groupby("source").size().max() >= 2


def test_stats_and_manifest_agree(reference):
    stats = json.loads((reference / fmt.STATS).read_text())
    manifest = pd.read_parquet(reference / fmt.MANIFEST)
    assert stats["samples"] == len(manifest) == sum(stats["by_split"].values()) == sum(stats["by_mask_type"].values())
    assert set(stats["shards"]) == set(manifest["shard"]) == {p.name for p in reference.glob("*.tar")}
    assert 0.05 < stats["coverage"]["q50"] < 0.35
    for column, counts in (("wear", stats["by_wear"]), ("generator", stats["by_generator"])):
        assert counts == manifest[column].value_counts().to_dict() and sum(counts.values()) == len(manifest)
    assert stats["by_generator"] == {"builtin": len(manifest)}


def test_byte_identical_whatever_the_worker_count(reference, small_celeba, tmp_path):
    build(BuildConfig(source=str(small_celeba), out=str(tmp_path / "one"), res=128, pairs=130, seed=3, workers=1,
                      shard_size=16, progress=False))
    assert _digests(tmp_path / "one") == _digests(reference)
    assert (tmp_path / "one" / fmt.MANIFEST).read_bytes() == (reference / fmt.MANIFEST).read_bytes()


def test_rerun_reuses_everything(reference, small_celeba):
    result = build(BuildConfig(source=str(small_celeba), out=str(reference), res=128, pairs=130, seed=3, workers=1,
                               shard_size=16, progress=False))
    assert result.shards_written == 0 and result.shards_reused == len(list(reference.glob("*.tar")))


def test_other_arguments_into_the_same_folder_are_refused(reference, small_celeba):
    with pytest.raises(BuildError, match="other arguments.*seed"):
        build(BuildConfig(source=str(small_celeba), out=str(reference), res=128, pairs=130, seed=4, shard_size=16,
                          progress=False))


@pytest.mark.slow
def test_resume_after_kill_9(reference, small_celeba, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "maskgen.cli", "build", "--source", str(small_celeba), "--out", str(out),
           "--resolution", "128", "--pairs", "130", "--seed", "3", "--shard-size", "16", "--workers", "1",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.tar"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be killed; make it bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / fmt.MANIFEST).exists()
    for tar in out.glob("*.tar"):  # whatever is there under a final name is a complete shard
        list(wds.WebDataset(str(tar), shardshuffle=False, empty_check=False))
    result = build(BuildConfig(source=str(small_celeba), out=str(out), res=128, pairs=130, seed=3, workers=2,
                               shard_size=16, progress=False))
    assert result.shards_reused >= 1
    assert _digests(out) == _digests(reference)
    assert pd.read_parquet(out / fmt.MANIFEST).equals(pd.read_parquet(reference / fmt.MANIFEST))
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_parts_combine_into_one_dataset(small_celeba, tmp_path):
    out = tmp_path / "parts"
    results = [build(BuildConfig(source=str(small_celeba), out=str(out), res=128, pairs=60, seed=1, shard_size=8,
                                 workers=1, part=(k, 2), progress=False)) for k in range(2)]
    assert not results[0].complete and results[1].complete
    manifest = pd.read_parquet(out / fmt.MANIFEST)
    assert len(manifest) == 60 == sum(r.samples for r in results)
    assert manifest["key"].is_unique
    assert {p.name.split("-")[1] for p in out.glob("*.tar")} == {"p000", "p001"}
    # The two parts took disjoint sources.
    part_of = manifest.assign(part=manifest["shard"].str.split("-").str[1]).groupby("source")["part"].nunique()
    assert part_of.max() == 1
    assert combine(out)["samples"] == 60


def test_cli_build_preview_stats(small_celeba, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(main, ["build", "--source", str(small_celeba), "--out", str(out), "--resolution", "128",
                               "--pairs", "20", "--workers", "1", "--mask-types", "surgical=1,kn95=1",
                               "--wear", "correct=1,nose=1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "20 triplets" in res.output
    manifest = pd.read_parquet(out / fmt.MANIFEST)
    assert set(manifest["mask_type"]) <= {"surgical", "kn95"}
    assert set(manifest["wear"]) == {"correct", "nose"}
    meta = json.loads(next(iter_raw_samples(out))["json"])
    assert meta["wear"] in ("correct", "nose") and meta["generator"] == "builtin"
    res = runner.invoke(main, ["preview", str(out), "-n", "4", "-o", str(tmp_path / "grid.png")])
    assert res.exit_code == 0 and (tmp_path / "grid.png").stat().st_size > 1000
    res = runner.invoke(main, ["stats", str(out), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["samples"] == 20


@pytest.mark.parametrize("args,message", [
    (["--source", "/nonexistent/faces", "--out", "{tmp}/x"], "source not found"),
    (["--source", "{src}", "--out", "/proc/forbidden"], "cannot write to --out"),
    (["--source", "{src}", "--out", "{tmp}/x", "--resolution", "300"], "'--resolution': must be one of"),
    (["--source", "{src}", "--out", "{tmp}/x", "--mask-types", "scarf"], "unknown mask type"),
    (["--source", "{src}", "--out", "{tmp}/x", "--part", "9/8"], "K/N"),
    (["--source", "{src}", "--out", "{tmp}/x", "--wear", "correct=1,sideways=1"], "unknown wear"),
    (["--source", "{src}", "--out", "{tmp}/x", "--wear", "correct=0,nose=0"], "not all zero"),
    (["--source", "{src}", "--out", "{tmp}/x", "--wear", "correct=-1,nose=2"], "non-negative"),
    (["--source", "{src}", "--out", "{tmp}/x", "--template-share", "0.5"], "needs --templates"),
    (["--source", "{src}", "--out", "{tmp}/x", "--templates", "{src}"], "no masks.cfg"),
    (["--source", "{src}", "--out", "{tmp}/x", "--split", "80/x/10"], "could not convert|split"),
])
def test_cli_errors_are_one_line_and_non_zero(small_celeba, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, src=small_celeba) for a in args]
    res = CliRunner().invoke(main, ["build", *args, "--no-progress"])
    assert res.exit_code != 0
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    import re

    assert re.search(message, res.output), res.output
    assert len([line for line in res.output.strip().splitlines() if line.startswith("Error")]) == 1
    assert not (tmp_path / "x").exists()  # refused before anything was written


@pytest.mark.parametrize("args, warning", [
    (["--resolution", "512"], None),
    (["--res", "512"], "DeprecationWarning: The option '--res' is deprecated. Use --resolution."),
])
def test_resolution_and_its_deprecated_name_set_the_crop_size(small_celeba, tmp_path, monkeypatch, args, warning):
    built = []

    def stop(config):
        built.append(config)
        raise BuildError("stopped here")

    monkeypatch.setattr("maskgen.build.build", stop)
    res = CliRunner().invoke(main, ["build", "--source", str(small_celeba), "--out", str(tmp_path / "x"), *args])
    assert res.exit_code == 1 and "stopped here" in res.output
    assert built[0].res == 512  # BuildConfig.res: what build.json records, unchanged
    assert [line for line in res.output.splitlines() if "eprecat" in line] == ([warning] if warning else [])
    both = CliRunner().invoke(main, ["build", "--source", str(small_celeba), "--out", str(tmp_path / "x"),
                                     "--resolution", "256", "--res", "512"])
    assert both.exit_code == 2 and "--res is the former name of --resolution: give --resolution only" in both.output
    shown = CliRunner().invoke(main, ["build", "--help"]).output
    assert "--resolution" in shown and "--res " not in shown  # hidden


def test_landmarks_of_an_earlier_build_are_reused(reference, small_celeba, tmp_path, monkeypatch):
    import maskgen.workers as workers

    def no_detection(*args, **kwargs):
        raise AssertionError("detection ran although all landmarks were given")

    monkeypatch.setattr(workers, "landmark_chunk", no_detection)
    out = tmp_path / "again"
    build(BuildConfig(source=str(small_celeba), out=str(out), res=128, pairs=130, seed=3, workers=1, shard_size=16,
                      progress=False, landmarks=str(reference / fmt.LANDMARKS)))
    assert _digests(out) == _digests(reference)


@pytest.mark.slow
def test_dask_backend_on_a_local_cluster_gives_the_same_bytes(small_celeba, tmp_path):
    distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] not installed")
    kwargs = dict(source=str(small_celeba), res=128, pairs=24, seed=5, shard_size=8, progress=False)
    build(BuildConfig(out=str(tmp_path / "loky"), workers=1, **kwargs))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        build(BuildConfig(out=str(tmp_path / "dask"), workers=2, backend="dask", scheduler=cluster.scheduler_address,
                          **kwargs))
    assert _digests(tmp_path / "dask") == _digests(tmp_path / "loky")
    with pytest.raises(BuildError, match="--scheduler"):
        build(BuildConfig(out=str(tmp_path / "x"), backend="dask", **kwargs))


@pytest.mark.parametrize("key", ["000001_00", "deep_folder_" * 10 + "x_00", "caf\u00e9_00"])
def test_shard_bytes_equal_webdatasets_own_writer(tmp_path, key):
    from maskgen.shard import TAR_MODE, TAR_MTIME, TAR_OWNER, ShardWriter

    samples = [(f"{key}{i}", {"masked.jpg": os.urandom(700 + 513 * i), "map.png": b"\x89PNG" * i, "json": b"{}"})
               for i in range(3)]
    ours = ShardWriter(tmp_path / "ours.tar")
    for k, members in samples:
        ours.write(k, members)
    ours.commit()
    with wds.TarWriter(str(tmp_path / "theirs.tar"), user=TAR_OWNER, group=TAR_OWNER, mode=TAR_MODE,
                       mtime=TAR_MTIME, encoder=False) as theirs:
        for k, members in samples:
            theirs.write({"__key__": k, **members})
    assert (tmp_path / "ours.tar").read_bytes() == (tmp_path / "theirs.tar").read_bytes()


def test_a_framing_range_draws_each_sample_s_face_scale_and_records_it(small_celeba, tmp_path):
    """--face-scale LOW-HIGH: each sample framed at its own draw, seeded (any worker count, the same bytes), recorded
    in its json, the manifest and build.json; the masks and everything else drawn as at a fixed framing."""
    def built(name: str, face_scale, workers: int) -> Path:
        out = tmp_path / name
        build(BuildConfig(source=str(small_celeba), out=str(out), res=128, pairs=40, seed=3, workers=workers,
                          shard_size=16, face_scale=face_scale, progress=False))
        return out

    ranged, ranged_one, fixed = built("ranged", (0.55, 0.8), 2), built("one", (0.55, 0.8), 1), built("fixed", 0.72, 1)
    assert _digests(ranged) == _digests(ranged_one)
    manifest = pd.read_parquet(ranged / fmt.MANIFEST)
    assert manifest["face_scale"].between(0.55, 0.8).all() and manifest["face_scale"].nunique() > 30
    assert (pd.read_parquet(fixed / fmt.MANIFEST)["face_scale"] == 0.72).all()
    assert json.loads((ranged / fmt.BUILD_INFO).read_text())["face_scale"] == [0.55, 0.8]
    samples = {s["__key__"]: s for s in iter_raw_samples(ranged)}
    fixed_samples = {s["__key__"]: s for s in iter_raw_samples(fixed)}
    for key, sample in samples.items():
        meta, fixed_meta = json.loads(sample[fmt.META]), json.loads(fixed_samples[key][fmt.META])
        assert meta["face_scale"] == manifest.set_index("key").loc[key, "face_scale"]
        assert {k: meta[k] for k in ("mask_type", "color", "texture", "wear")} == \
            {k: fixed_meta[k] for k in ("mask_type", "color", "texture", "wear")}
        # the face's size in the crop follows the draw: the eye distance scales with face_scale
        eyes = np.asarray(meta["landmarks"])[[36, 45]]
        fixed_eyes = np.asarray(fixed_meta["landmarks"])[[36, 45]]
        ratio = np.linalg.norm(eyes[1] - eyes[0]) / np.linalg.norm(fixed_eyes[1] - fixed_eyes[0])
        assert ratio == pytest.approx(meta["face_scale"] / 0.72, rel=0.02)
