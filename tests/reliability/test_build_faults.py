"""Faults during and after a build: damaged shards, parts building into one folder at once, a full disk, kill -9
at random moments, landmarks that cannot place a crop. Every case ends byte-identical to a clean build."""

from __future__ import annotations

import errno
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import maskgen.files
import maskgen.shard
from maskgen import format as fmt
from maskgen.build import BuildConfig, BuildError, build
from maskgen.build.output_folder import io_problem
from maskgen.files import HOST, create_exclusive, exclusive_lock, json_bytes
from maskgen.verify import check_shards
from tests.reliability.faults import ARGS, CLI_ARGS, build_small, cli, dataset_files, error_line


def _outputs(folder: Path) -> dict[str, bytes]:
    """What a user of the dataset reads: shards, manifest, stats, failures, landmarks, build.json."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _assert_shards_whole(out: Path) -> None:
    """Every shard under its final name is the one its record describes."""
    for tar in out.glob("*.tar"):
        record = json.loads((out / fmt.WORK_DIR / f"{tar.name}.json").read_text())["tar"]
        assert tar.stat().st_size == record["bytes"]


def _assert_no_torn_files(out: Path) -> None:
    """No temporary left, and every shard under its final name whole."""
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    _assert_shards_whole(out)


def _build_command(faces: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "maskgen.cli", "build", "--source", str(faces), "--out", str(out), *CLI_ARGS]


# --- verified reuse ------------------------------------------------------------------------------------------

def test_damaged_shards_are_rebuilt_not_reused(faces, clean, tmp_path, caplog):
    out = tmp_path / "ds"
    build_small(faces, out)
    truncated, flipped = out / "train-000001.tar", out / "val-000000.tar"
    truncated.write_bytes(truncated.read_bytes()[:10240])  # at a member boundary: still a readable tar
    data = bytearray(flipped.read_bytes())
    data[700] ^= 1  # same size: only the hash tells
    flipped.write_bytes(bytes(data))
    recorded_size = len(clean.joinpath(truncated.name).read_bytes())
    assert check_shards(out) == [f"{truncated}: 10240 bytes, recorded {recorded_size}"]
    assert check_shards(out, full_hash=True)[1:] == [f"{flipped}: SHA-256 differs from the record"]

    result = build_small(faces, out)
    assert (result.shards_rebuilt, result.shards_written, result.shards_reused) == (2, 2, 2)
    assert "train-000001.tar does not match its record" in caplog.text
    assert dataset_files(out) == dataset_files(clean)  # stats.json's digests are the records, not the damaged files'
    assert check_shards(out, full_hash=True) == []


def test_records_of_an_older_maskgen_mean_a_rebuild(faces, clean, tmp_path, caplog):
    out = tmp_path / "ds"
    build_small(faces, out)
    for sidecar in (out / fmt.WORK_DIR).glob("*.tar.json"):
        record = json.loads(sidecar.read_text())
        del record["tar"]
        sidecar.write_text(json.dumps(record))
    assert "has no recorded size and SHA-256" in error_line(cli("combine", out))
    result = build_small(faces, out)
    assert result.shards_rebuilt == result.shards_written == 4
    assert caplog.text.count("no recorded size and SHA-256") == 1
    assert dataset_files(out) == dataset_files(clean)


# --- parts building into one folder at once ----------------------------------------------------------------

def test_a_part_removes_only_its_own_leftovers(faces, tmp_path):
    out = tmp_path / "ds"
    (out / fmt.WORK_DIR).mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # a pid that no longer runs
    kept = [out / "train-p001-000000.tar.tmp-otherhost-4242-0a0b0c0d",  # the other part, on another machine
            out / fmt.WORK_DIR / "part-001-of-002-landmarks-00000.parquet.tmp-otherhost-4242-0a0b0c0d",
            out / f"{fmt.BUILD_INFO}.tmp-otherhost-4242-0a0b0c0d",  # another machine: not provably stale
            out / f"{fmt.BUILD_INFO}.tmp-{HOST}-{os.getpid()}-0a0b0c0d"]  # a process still running here
    removed = [out / "train-p000-000001.tar.tmp-otherhost-4242-0a0b0c0d",  # this part's: it holds the part lock
               out / fmt.WORK_DIR / "train-p000-000000.tar.json.tmp-3",  # named by an older maskgen
               out / f"{fmt.BUILD_INFO}.tmp-{HOST}-{dead}-0a0b0c0d",  # its process is gone
               out / f"{fmt.STATS}.tmp-otherhost-4242-0a0b0c0d"]  # combine's: only the combine lock's holder writes it
    for p in kept + removed:
        p.write_bytes(b"half")
    build_small(faces, out, part=(0, 2))
    assert [p.exists() for p in kept + removed] == [True] * len(kept) + [False] * len(removed)


def test_a_part_already_being_built_is_refused(faces, tmp_path):
    out = tmp_path / "ds"
    (out / fmt.WORK_DIR).mkdir(parents=True)
    with exclusive_lock(out / fmt.WORK_DIR / "part-001-of-002.lock"):
        with pytest.raises(BuildError, match="another process is building part 2/2"):
            build_small(faces, out, part=(1, 2))


@pytest.mark.parametrize("hard_links", [True, False])
def test_build_json_is_created_once_and_whole(tmp_path, monkeypatch, hard_links):
    path = tmp_path / fmt.BUILD_INFO
    seen = []  # what a reader finds at the name whenever a writer opens a file: nothing, or the whole file

    def watched_open(file, mode="r", *args, **kwargs):
        seen.append(path.read_bytes() if path.exists() else None)
        return open(file, mode, *args, **kwargs)

    monkeypatch.setattr(maskgen.files, "open", watched_open, raising=False)
    if not hard_links:
        def no_link(*args):
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))

        monkeypatch.setattr(os, "link", no_link)
    first, second = json_bytes({"seed": 1}), json_bytes({"seed": 2})
    assert create_exclusive(path, first)
    assert not create_exclusive(path, second)
    assert path.read_bytes() == first and set(seen) <= {None, first}, seen
    lock = [] if hard_links else [f"{fmt.BUILD_INFO}.lock"]  # the lock stays (see create_exclusive)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fmt.BUILD_INFO, *lock])


def test_a_part_is_finished_only_when_all_its_files_are_written(faces, clean, tmp_path, monkeypatch):
    out, landmarks = tmp_path / "ds", str(clean / fmt.LANDMARKS)
    written, commit = [], maskgen.files.commit_temporary

    def recorded(tmp, path):
        written.append(Path(path).name)
        commit(tmp, path)

    monkeypatch.setattr(maskgen.files, "commit_temporary", recorded)
    build_small(faces, out, part=(1, 2), landmarks=landmarks)
    tag = "part-001-of-002"
    assert [n for n in written if n.startswith(tag) and "-landmarks-" not in n][-1] == f"{tag}-manifest.parquet"
    # Part 2 as if still writing its files (or killed while an older maskgen, which wrote the manifest
    # first, did): part 1's combine waits for it instead of failing on the missing file.
    aside = tmp_path / "landmarks.parquet"
    (out / fmt.WORK_DIR / f"{tag}-landmarks.parquet").rename(aside)
    assert not build_small(faces, out, part=(0, 2), landmarks=landmarks).complete
    assert not (out / fmt.MANIFEST).exists()
    aside.rename(out / fmt.WORK_DIR / f"{tag}-landmarks.parquet")
    assert cli("combine", out).exit_code == 0 and check_shards(out, full_hash=True) == []
    # pyarrow's FileNotFoundError has no errno or file name: the path is its message
    assert io_problem(FileNotFoundError("ds/.work/x.parquet")) == "ds/.work/x.parquet: No such file or directory"


@pytest.mark.slow
def test_parts_built_at_once_equal_parts_built_one_after_the_other(faces, clean, tmp_path):
    together, apart = tmp_path / "together", tmp_path / "apart"
    landmarks = clean / fmt.LANDMARKS  # detection would take most of the time, and change no byte
    procs = [subprocess.Popen([*_build_command(faces, together), "--part", f"{k}/2", "--landmarks", str(landmarks)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in (1, 2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    for k in range(2):
        build_small(faces, apart, part=(k, 2), landmarks=str(landmarks))
    assert sorted(_outputs(together)) == sorted(_outputs(apart))
    assert {".".join(name.split(".")[1:]) for name in _outputs(apart)} >= {"tar", "parquet", "json", "csv"}
    assert dataset_files(together) == dataset_files(apart)  # shards, manifest, stats, failures, landmarks, the records
    _assert_no_torn_files(together)


# --- a full disk ---------------------------------------------------------------------------------------------

class _Disk:
    """``open`` for maskgen's writers on a disk with ``free`` bytes left: past them, writes fail with ENOSPC."""

    def __init__(self, free: float):
        self.free, self.used = free, 0
        disk = self

        class File(io.FileIO):
            def write(self, data) -> int:
                if disk.free <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                n = int(min(len(data), disk.free))
                written = super().write(bytes(data)[:n])
                disk.free -= written
                disk.used += written
                return written

        self.File = File

    def open(self, file, mode="r", *args, **kwargs):
        if mode != "wb":
            return open(file, mode, *args, **kwargs)
        return io.BufferedWriter(self.File(file, "w"))


def test_a_full_disk_is_one_line_and_a_rerun_after_freeing_space_finishes_identically(faces, clean, tmp_path,
                                                                                       monkeypatch):
    measure = _Disk(float("inf"))
    for module in (maskgen.files, maskgen.shard):
        monkeypatch.setattr(module, "open", measure.open, raising=False)
    build_small(faces, tmp_path / "measured")
    assert dataset_files(tmp_path / "measured") == dataset_files(clean)  # the patched writes write what open's do
    # Full early (during the first shards), late (during combine's outputs), and in between.
    for i, free in enumerate((30_000, measure.used // 2, measure.used - 2_000)):
        out = tmp_path / f"full{i}"
        disk = _Disk(free)
        for module in (maskgen.files, maskgen.shard):
            monkeypatch.setattr(module, "open", disk.open, raising=False)
        line = error_line(cli("build", "--source", faces, "--out", out, *CLI_ARGS))
        assert line.startswith(f"Error: {out}/") and line.endswith(": No space left on device"), line
        _assert_no_torn_files(out)
        monkeypatch.undo()
        build_small(faces, out)
        assert dataset_files(out) == dataset_files(clean), free


# --- kill -9 --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_at_random_moments_then_rerun_is_byte_identical(faces, clean, tmp_path):
    out = tmp_path / "ds"
    rng = random.Random(16)
    killed = 0
    for _ in range(3):  # each run resumes what the killed one left
        proc = subprocess.Popen(_build_command(faces, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # From when the build starts writing (build.json: the imports, seconds, are over) to about
        # when an uninterrupted one ends.
        while not (out / fmt.BUILD_INFO).exists() and proc.poll() is None:
            time.sleep(0.01)
        try:
            proc.wait(timeout=rng.uniform(0.0, 2.0))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed += 1
        _assert_shards_whole(out)
    assert killed >= 2
    build_small(faces, out)
    assert dataset_files(out) == dataset_files(clean)


def test_landmarks_far_outside_the_image_are_a_failure_not_a_hang():
    """A corrupt or foreign landmarks file (``--landmarks``) can put a point anywhere: aligning to
    1e12 never ends. Such a source is a failure with a reason; its true landmarks still compose."""
    from maskgen.compose import MaskOptions
    from maskgen.landmarks import locate
    from maskgen.source import content_digest, load_image
    from maskgen.workers import compose_task
    from tests.testdata import CELEBA

    path = CELEBA / "img_align_celeba" / "000002.jpg"
    if not path.is_file():
        pytest.skip(f"shared test data absent: {path}")
    points = locate(load_image(path)).points

    def compose(pts):
        spec = {"key": "k_00", "path": str(path), "sha256": content_digest(path), "source": "000002.jpg",
                "identity": None, "split": "train",
                "points": pts.ravel().tolist(), "method": "file"}
        return compose_task([spec], MaskOptions.create(), 128, 0.72, 0, 95)[0]

    assert compose(points)[1] is not None
    for bad, why in ((1e12, "landmarks far outside the image"), (np.nan, "landmarks not finite"),
                     (-5000.0, "landmarks far outside the image")):
        corrupt = points.copy()
        corrupt[30] = bad
        key, members, reason = compose(corrupt)
        assert members is None and reason.startswith(why), reason


# --- landmarks that cannot place a crop, builds with nothing to write ------------------------------------------

def _landmarks_with(clean: Path, path: Path, rows: dict[int, np.ndarray]) -> Path:
    """``clean``'s landmarks.parquet with the points of the rows given replaced."""
    frame = pd.read_parquet(clean / fmt.LANDMARKS)
    frame["points"] = [rows.get(i, points) for i, points in enumerate(frame["points"])]
    frame.to_parquet(path, index=False)
    return path


def _cli_build(faces: Path, out: Path, *extra: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """``maskgen build`` in a process group of its own: a build that hangs fails the test instead of stopping it
    (its whole group is killed: a worker left holding the pipes would keep ``communicate`` waiting)."""
    proc = subprocess.Popen([*_build_command(faces, out), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"maskgen build {' '.join(extra)} still running after {timeout} s (hung)")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_collapsed_landmarks_are_a_counted_failure_not_a_hang(faces, clean, tmp_path):
    """Points all at 0, or all one value, make a NaN alignment; OpenCV's warp with it never returns."""
    path = _landmarks_with(clean, tmp_path / "collapsed.parquet", {0: np.zeros(136), 1: np.full(136, 50.0)})
    out = tmp_path / "ds"
    res = _cli_build(faces, out, "--landmarks", str(path))
    assert res.returncode == 0, res.stderr
    failures = pd.read_csv(out / fmt.FAILURES)
    collapsed = pd.read_parquet(path)["source"][:2].tolist()
    assert sorted(failures["source"]) == sorted(collapsed)
    assert failures["reason"].str.startswith("degenerate landmarks").all(), failures["reason"].tolist()
    assert len(pd.read_parquet(out / fmt.MANIFEST)) == len(pd.read_parquet(clean / fmt.MANIFEST)) - 2


def test_align_face_refuses_collapsed_points_whatever_gave_them():
    """The last guard, for every caller of align_face (prediction too): a clear error, never a NaN warp."""
    code = ("import numpy as np; from maskgen.align import align_face\n"
            "for points in (np.zeros((68, 2)), np.full((68, 2), 50.0)):\n"
            "    try:\n        align_face(np.zeros((218, 178, 3), np.uint8), points, 128)\n"
            "    except ValueError as err:\n        print(err)\n")
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("align_face with collapsed points hung")
    assert res.stdout.splitlines() == ["degenerate landmarks (no finite alignment: the points are not spread out)"] * 2


def test_a_build_with_no_usable_sample_fails_in_one_line_and_records_no_shard(faces, clean, tmp_path):
    frame = pd.read_parquet(clean / fmt.LANDMARKS)
    path = _landmarks_with(clean, tmp_path / "nan.parquet", {i: np.full(136, np.nan) for i in range(len(frame))})
    out = tmp_path / "ds"
    res = _cli_build(faces, out, "--landmarks", str(path))
    assert res.returncode == 1
    assert res.stdout == "" and res.stderr.splitlines() == [
        f"Error: no usable sample: 12 of 12 sources failed (e.g. {frame['source'][0]}: landmarks not finite)"], res
    assert not list(out.glob("*.tar")) and not list((out / fmt.WORK_DIR).glob("*.tar.json"))
    assert not (out / fmt.MANIFEST).exists()


def test_shards_whose_samples_all_failed_are_not_counted_or_recorded(faces, clean, tmp_path):
    path = _landmarks_with(clean, tmp_path / "one-nan.parquet", {0: np.full(136, np.nan)})
    out = tmp_path / "ds"
    result = build(BuildConfig(source=str(faces), out=str(out), workers=1, progress=False,
                               landmarks=str(path), **{**ARGS, "shard_size": 1}))
    assert result.samples == result.shards_written == 11 and result.failures == 1
    assert len(list(out.glob("*.tar"))) == len(list((out / fmt.WORK_DIR).glob("*.tar.json"))) == 11
