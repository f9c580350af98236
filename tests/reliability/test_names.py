"""Any file name the OS gives builds: keys stay ASCII-safe and unique, the manifest keeps the name losslessly."""

from __future__ import annotations

import hashlib
import os
import shutil

import pandas as pd
import pytest

from maskgen.build import BuildConfig, build
from maskgen.build.plan import unique_keys
from maskgen.source import SourceImage, decode_name, encode_name, source_key

NOT_UTF8 = os.fsdecode(b"caf\xe9 \xff.jpg")  # Latin-1 bytes, as an old camera or archive writes them


@pytest.mark.parametrize("name,unchanged", [
    ("000001.jpg", True), ("a b ü.jpg", True), ("日本/写真.png", True), ("back\\slash.jpg", True),
    ("lit\\x41eral.jpg", False),  # valid, but reads as an escaped name: escaped itself
    (NOT_UTF8, False), (os.fsdecode(b"both\\\xfe.jpg"), False), (os.fsdecode(b"\xed\xa0\x80.jpg"), False),
])
def test_names_round_trip_and_valid_utf8_ones_stay_as_they_are(name, unchanged):
    text = encode_name(name)
    assert decode_name(text) == name
    text.encode("utf-8")  # storable in parquet, csv and json as it is
    assert (text == name) == unchanged


def test_a_valid_name_that_reads_as_escaped_is_kept_apart_from_the_name_it_would_mean():
    literal, meant = "a\\xff.jpg", os.fsdecode(b"a\xff.jpg")
    assert encode_name(literal) != encode_name(meant)
    assert decode_name(encode_name(literal)) == literal and decode_name(encode_name(meant)) == meant


def _images(*rels):
    return [SourceImage(path=None, rel=r) for r in rels]  # type: ignore[arg-type]


def test_keys_of_ordinary_names_are_as_before_and_clashes_get_longer_hashes():
    def short(rel):
        return hashlib.sha1(rel.encode()).hexdigest()[:8]

    keys = unique_keys(_images("x.jpg", "sub/y.png", "a b.jpg", "a_b.jpg"))
    assert keys == {"x.jpg": "x", "sub/y.png": "sub_y", "a b.jpg": f"a_b_{short('a b.jpg')}",
                    "a_b.jpg": f"a_b_{short('a_b.jpg')}"}
    # A file named like another's hashed key: every key is still unique.
    impostor = f"a_b_{short('a b.jpg')}.jpg"
    keys = unique_keys(_images("a b.jpg", "a_b.jpg", impostor))
    assert len(set(keys.values())) == 3 and all(k.startswith("a_b_") for k in keys.values())


def test_build_takes_any_file_name(tmp_path, celeba_images):
    root = tmp_path / "src"
    long_dir = root / ("d" * 200) / ("e" * 200)
    long_dir.mkdir(parents=True)
    names = [NOT_UTF8, "a b.jpg", "a_b.jpg", "ü.jpg", "é.jpg",
             os.path.join(long_dir.relative_to(root), "f" * 240 + ".jpg")]
    for name, image in zip(names, celeba_images, strict=False):
        shutil.copy(image, os.fsencode(root) + b"/" + os.fsencode(name))
    result = build(BuildConfig(source=str(root), out=str(tmp_path / "ds"), res=128, workers=1, progress=False,
                               split=(1.0, 0.0, 0.0)))
    manifest = pd.read_parquet(tmp_path / "ds" / "manifest.parquet")
    failures = pd.read_csv(tmp_path / "ds" / "failures.csv")
    assert result.samples == len(names) and failures.empty
    assert sorted(decode_name(s) for s in manifest["source"]) == sorted(names)
    assert all((root / decode_name(s)).is_file() for s in manifest["source"])
    assert manifest["key"].is_unique
    assert all(k.isascii() and "." not in k and "/" not in k for k in manifest["key"])
    assert encode_name(NOT_UTF8) in set(manifest["source"]) and "a b.jpg" in set(manifest["source"])
    assert source_key("a b.jpg") == source_key("a_b.jpg")  # the case the hash keeps apart
