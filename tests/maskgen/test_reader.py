"""The one shard reader (maskgen.reader) and the one atomic writer (maskgen.files), on real faces."""

from __future__ import annotations

import errno
import itertools
import json
import os
import tarfile

import numpy as np
import pytest

from maskgen import files
from maskgen import format as fmt
from maskgen.compose import encode, image_to_triplets
from maskgen.files import HOST, atomic_output, clean_temporaries, temporaries, temporary_path, write_json_atomic
from maskgen.reader import (
    BadSample,
    BadShard,
    count_samples,
    decode,
    error_cause,
    iter_raw_samples,
    list_shards,
    member_names,
    raw_samples,
    sample_keys,
)
from maskgen.shard import ShardWriter


@pytest.fixture(scope="module")
def triplets(celeba_images):
    return [t for image in celeba_images[:3] for t in image_to_triplets(image, n=1, res=128, seed=1)]


def _write(path, samples):
    writer = ShardWriter(path)
    for key, members in samples:
        writer.write(key, members)
    writer.commit()


def test_samples_read_back_as_written(tmp_path, triplets):
    members = [(t.meta.key, encode(t)) for t in triplets]
    _write(tmp_path / fmt.shard_name("test", 1), members[2:])
    _write(tmp_path / fmt.shard_name("test", 0), members[:2])
    _write(tmp_path / fmt.shard_name("train", 0), members[:1])

    assert [p.rsplit("/", 1)[1] for p in list_shards(tmp_path, "test")] == ["test-000000.tar", "test-000001.tar"]
    assert count_samples(list_shards(tmp_path, "test")) == 3
    decoded = [decode(raw) for raw in iter_raw_samples(tmp_path, "test")]
    assert [s.key for s in decoded] == [t.meta.key for t in triplets]  # shard order, then sample order
    for sample, triplet in zip(decoded, triplets, strict=True):
        assert sample.map.dtype == np.uint8 and set(np.unique(sample.map)) <= {0, 255}
        assert np.array_equal(sample.map, triplet.map)  # PNG: lossless
        assert sample.masked.shape == triplet.masked.shape == (128, 128, 3)
        # JPEG at quality 95: close to the RGB that was encoded (a BGR/RGB swap would be far off: tens of levels;
        # a fine print such as paisley costs JPEG a few)
        assert np.abs(sample.masked.astype(int) - triplet.masked).mean() < 6
        assert np.abs(sample.unmasked.astype(int) - triplet.unmasked).mean() < 6
        assert sample.meta == json.loads(json.dumps(triplet.meta.as_dict()))
    assert len(list(iter_raw_samples(tmp_path))) == 4  # every split: train, val, test
    with pytest.raises(FileNotFoundError, match="for split val"):
        next(iter_raw_samples(tmp_path, "val"))


def test_a_bad_sample_is_named_by_key_and_shard(tmp_path, triplets):
    good = encode(triplets[0])
    _write(tmp_path / "test-000000.tar", [("broken_00", {**good, fmt.MASKED: b"not a jpeg"}),
                                          ("nomap_00", {k: v for k, v in good.items() if k != fmt.MAP})])
    broken, nomap = list(iter_raw_samples(tmp_path, "test"))
    with pytest.raises(BadSample, match=r"'broken_00' in .*test-000000.tar: masked.jpg does not decode"):
        decode(broken)
    with pytest.raises(BadSample, match=r"'nomap_00' in .*test-000000.tar: no map.png member"):
        decode(nomap)


def test_a_shard_that_does_not_read_to_its_end_is_named(tmp_path, triplets):
    whole = tmp_path / "test-000000.tar"
    _write(whole, [(t.meta.key, encode(t)) for t in triplets])
    cut = tmp_path / "test-000001.tar"
    with tarfile.open(whole) as tar:  # half way into the middle sample's first member
        member = [m for m in tar.getmembers() if m.name.startswith(triplets[1].meta.key)][0]
    cut.write_bytes(whole.read_bytes()[:member.offset_data + member.size // 2])
    samples = raw_samples([str(whole), str(cut)])
    assert [raw["__key__"] for raw in itertools.islice(samples, 3)] == [t.meta.key for t in triplets]
    with pytest.raises(BadShard, match=r"shard .*test-000001.tar does not read: unexpected end of data"):
        list(samples)
    with pytest.raises(BadShard, match=r"shard .*missing.tar does not read: No such file or directory"):
        list(raw_samples([str(tmp_path / "missing.tar")]))
    with pytest.raises(BadShard, match=r"shard .*test-000001.tar does not read: unexpected end of data"):
        count_samples([str(whole), str(cut)])


def test_the_keys_in_the_tar_headers_are_the_keys_read(tmp_path, triplets):
    shard = str(tmp_path / "test-000000.tar")
    _write(shard, [(t.meta.key, encode(t)) for t in triplets])
    assert (sample_keys(member_names(shard)) == [raw["__key__"] for raw in raw_samples([shard])]
            == [t.meta.key for t in triplets])
    # WebDataset's grouping: runs of one key up to the first dot; a name without a dot is not read
    assert sample_keys(["a.jpg", "a.json", "dir/b.c.png", "README", "a.jpg"]) == ["a", "dir/b", "a"]


def test_a_read_error_is_its_cause_in_a_few_words():
    truncated = ValueError("unexpected end of data @ <_io.BufferedReader name='x.tar'>\nmore")
    assert error_cause(truncated) == "unexpected end of data"
    missing = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "x.tar")
    assert error_cause(missing) == "No such file or directory"
    assert error_cause(KeyError()) == "KeyError"


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    write_json_atomic(target, {"b": 1, "a": [0.5]})
    assert target.read_text() == '{\n  "a": [\n    0.5\n  ],\n  "b": 1\n}\n'
    with pytest.raises(ValueError):
        write_json_atomic(target, {"x": float("nan")}, allow_nan=False)
    assert json.loads(target.read_text()) == {"a": [0.5], "b": 1}
    (tmp_path / "shard.tar.tmp-999").write_bytes(b"left by a killed writer")
    assert clean_temporaries(tmp_path) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_temporary_names_are_unique_to_a_machine_and_process(tmp_path, monkeypatch):
    names = {temporary_path(tmp_path / "out.bin").name for _ in range(100)}
    assert len(names) == 100 and all(n.startswith(f"out.bin.tmp-{HOST}-{os.getpid()}-") for n in names)
    (tmp_path / next(iter(names))).write_bytes(b"")
    (found,) = temporaries(tmp_path)
    assert (found.destination, found.host, found.pid, found.stale) == ("out.bin", HOST, os.getpid(), False)
    monkeypatch.setattr(files, "_running", lambda pid: False)
    assert found.stale  # this machine's, its process gone


def test_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    from tests.reliability.faults import fill_the_disk

    fill_the_disk(monkeypatch)
    with pytest.raises(OSError, match=r"No space left on device: '.*out.json'") as caught:
        write_json_atomic(tmp_path / "out.json", {"a": 1})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []
