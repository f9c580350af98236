"""Odd, broken and faceless inputs: loaded when usable, skipped with a reason when not."""

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from maskgen.build import BuildConfig, build
from maskgen.landmarks import NoFace, detect
from maskgen.source import MAX_PIXELS, BadImage, discover, load_image


@pytest.fixture(scope="module")
def face_rgb(celeba_images) -> np.ndarray:
    return np.asarray(Image.open(celeba_images[0]).convert("RGB"))


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory, face_rgb, celeba_images):
    """One file per awkward case, named after what is expected of it."""
    root = tmp_path_factory.mktemp("odd")
    face = Image.fromarray(face_rgb)
    ok = root / "ok"
    bad = root / "bad"
    ok.mkdir()
    bad.mkdir()
    _save(face.convert("L"), ok / "gray.png")
    _save(face.convert("CMYK"), ok / "cmyk.jpg")
    rgba = face.convert("RGBA")
    rgba.putalpha(200)
    _save(rgba, ok / "rgba.png")
    gray16 = (np.asarray(face.convert("L"), np.uint16) * 257)
    cv2.imwrite(str(ok / "gray16.png"), gray16)
    cv2.imwrite(str(ok / "rgb16.png"), cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    # EXIF orientation 6: stored rotated, displayed upright; detection only works after transposing.
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(face.transpose(Image.Transpose.ROTATE_90), ok / "exif_rotated.jpg", exif=exif.tobytes())
    _save(face, ok / "photo.webp")
    _save(face, ok / "photo.bmp")
    huge = face.resize((face.width * 24, face.height * 24), Image.Resampling.BILINEAR)
    _save(huge, ok / "huge.jpg", quality=70)
    two = Image.new("RGB", (face.width * 2 + 40, face.height), (40, 40, 40))
    two.paste(face, (0, 0))
    two.paste(face.resize((face.width * 3 // 4, face.height * 3 // 4)), (face.width + 40, 30))
    _save(two, ok / "two_faces.jpg")

    (bad / "zero_bytes.jpg").write_bytes(b"")
    (bad / "not_an_image.jpg").write_bytes(b"hello, this is text\n" * 10)
    buf = io.BytesIO()
    face.save(buf, format="JPEG")
    (bad / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    _save(face.resize((24, 30)), bad / "tiny.png")
    rng = np.random.default_rng(0)
    _save(Image.fromarray(cv2.GaussianBlur(rng.integers(0, 255, (220, 180, 3), dtype=np.uint8), (0, 0), 4)),
          bad / "no_face.jpg")
    _save(Image.new("RGB", (200, 200), (128, 128, 128)), bad / "blank.png")
    return root


def test_odd_but_valid_images_load_upright_and_show_a_face(odd_folder):
    for path in sorted((odd_folder / "ok").iterdir()):
        image = load_image(path)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, path.name
        found = detect(image)
        assert found.points.shape == (68, 2), path.name
        if path.name == "two_faces.jpg":
            assert found.n_faces == 2
            assert found.points[:, 0].max() < image.shape[1] / 2  # the larger face is kept
        if path.name == "huge.jpg":
            assert max(image.shape[:2]) <= 4096


@pytest.mark.parametrize("name,reason", [
    ("zero_bytes.jpg", "empty file"), ("not_an_image.jpg", "unreadable image"),
    ("truncated.jpg", "unreadable image"), ("tiny.png", "image too small")])
def test_broken_files_raise_bad_image_with_a_reason(odd_folder, name, reason):
    with pytest.raises(BadImage, match=reason):
        load_image(odd_folder / "bad" / name)


@pytest.mark.parametrize("name", ["no_face.jpg", "blank.png"])
def test_faceless_images_raise_no_face(odd_folder, name):
    with pytest.raises(NoFace):
        detect(load_image(odd_folder / "bad" / name))


@pytest.mark.slow
def test_build_skips_bad_files_with_reasons_and_keeps_the_rest(odd_folder, tmp_path):
    result = build(BuildConfig(source=str(odd_folder), out=str(tmp_path / "ds"), res=128, workers=1,
                               progress=False, split=(1.0, 0.0, 0.0)))
    failures = pd.read_csv(tmp_path / "ds" / "failures.csv")
    manifest = pd.read_parquet(tmp_path / "ds" / "manifest.parquet")
    n_ok = len(list((odd_folder / "ok").iterdir()))
    n_bad = len(list((odd_folder / "bad").iterdir()))
    assert result.samples == n_ok == len(manifest)
    assert sorted(failures["source"]) == sorted(f"bad/{p.name}" for p in (odd_folder / "bad").iterdir())
    assert len(failures) == n_bad and failures["reason"].str.len().min() > 5
    stats = pd.read_json(tmp_path / "ds" / "stats.json", typ="series")
    assert stats["failures"] == n_bad


def test_malformed_annotation_rows_are_skipped_with_a_reason(tmp_path, celeba_images):
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    names = [p.name for p in celeba_images[:4]]
    for p in celeba_images[:4]:
        (root / "img_align_celeba" / p.name).symlink_to(p)
    (root / "list_landmarks_align_celeba.txt").write_text(
        "4\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y\n"
        f"{names[0]} 69 109 106 113 77 142 73 152 108 154\n"
        f"{names[1]} 69 109 106 113 77\n"  # too few fields
        f"{names[2]} 69 109 abc 113 77 142 73 152 108 154\n")  # not a number; names[3] has no row
    (root / "list_eval_partition.txt").write_text(f"{names[0]} 0\n{names[1]} 0\n{names[2]} 1\n{names[3]} 7\n")
    listing = discover(root)
    assert [im.rel for im in listing.images] == [names[0]]
    assert listing.images[0].landmarks5 is not None and listing.images[0].partition == "train"
    problems = dict(listing.problems)
    assert "malformed landmark row" in problems[names[2]] and "malformed partition row" in problems[names[3]]
    assert any("malformed row" in r for r in problems.values())


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` RGB pixels, with no pixel data: decoding it fails."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


LIMIT_W = MAX_PIXELS // 20000  # a LIMIT_W x 20000 image is at the limit


@pytest.mark.parametrize("width,height,reason", [
    (LIMIT_W, 20000, "unreadable image"),  # at the limit: decoded (and found to hold no pixels)
    (LIMIT_W + 1, 20000, f"image too large ({LIMIT_W + 1}x20000 px, limit {MAX_PIXELS} px): not decoded"),
    (2 * LIMIT_W + 1, 20000, f"image too large (over {2 * MAX_PIXELS} px, limit {MAX_PIXELS} px): not decoded"),
])
def test_an_image_past_the_pixel_limit_is_refused_from_its_header(tmp_path, recwarn, width, height, reason):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(width, height))
    with pytest.raises(BadImage) as error:
        load_image(path, max_side=None)
    assert str(error.value).startswith(reason)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_every_skipped_source_is_a_failure_row_with_a_relative_path(tmp_path, celeba_images, monkeypatch):
    import shutil

    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    for i, image in enumerate(celeba_images[:2]):
        shutil.copy(image, root / ("sub" if i else ".") / f"face{i}.jpg")
    real = tmp_path / "elsewhere"
    real.mkdir()
    (root / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (root / "loop.jpg").symlink_to("loop.jpg")
    (root / "folder.jpg").mkdir()
    (root / "linked").symlink_to(real, target_is_directory=True)
    (root / "text.jpg").write_text("not an image\n")
    (root / "empty.png").write_bytes(b"")
    (root / "zero_size.png").write_bytes(png_header_only(0, 0))
    (root / "bomb.png").write_bytes(png_header_only(LIMIT_W + 1, 20000))  # past the limit, in 65 bytes
    (root / "animation.gif").write_bytes(b"GIF89a")
    (root / "notes.txt").write_text("not a source: not listed\n")
    locked = root / "sub" / "locked.jpg"
    shutil.copy(celeba_images[2], locked)
    locked.chmod(0)
    private = root / "private"
    private.mkdir()
    private.chmod(0)
    if os.geteuid() == 0:  # root reads any file and lists any folder: the permission errors are raised for it
        real_read, real_access = Path.read_bytes, os.access  # (a build decodes the bytes it read and hashed)
        monkeypatch.setattr(Path, "read_bytes", lambda path: _denied(path) if path == locked else real_read(path))
        monkeypatch.setattr(os, "access", lambda path, mode, **k: path != private and real_access(path, mode, **k))
    expected = {  # source: (stage, start of the reason)
        "dangling.jpg": ("source", "dangling symbolic link"), "loop.jpg": ("source", "symbolic link loop"),
        "folder.jpg": ("source", "a folder, not an image file"), "linked": ("source", "symbolic link to a folder"),
        "animation.gif": ("source", "gif images are not read"), "empty.png": ("landmarks", "empty file"),
        "text.jpg": ("landmarks", "unreadable image"), "zero_size.png": ("landmarks", "unreadable image"),
        "bomb.png": ("landmarks", "image too large"),
        "sub/locked.jpg": ("landmarks", "unreadable image: PermissionError: Permission denied"),
        "private": ("source", "folder cannot be listed (permission denied)"),
    }
    try:
        result = build(BuildConfig(source=str(root), out=str(tmp_path / "ds"), res=128, workers=1, progress=False,
                                   split=(1.0, 0.0, 0.0)))
    finally:
        locked.chmod(0o644)
        private.chmod(0o755)
    text = (tmp_path / "ds" / "failures.csv").read_text()
    failures = pd.read_csv(tmp_path / "ds" / "failures.csv")
    assert sorted(failures["source"]) == sorted(expected)
    for row in failures.itertuples():
        stage, reason = expected[row.source]
        assert row.stage == stage and row.reason.startswith(reason), row
    assert str(tmp_path) not in text and "elsewhere" not in text  # no absolute path, no link target
    manifest = pd.read_parquet(tmp_path / "ds" / "manifest.parquet")
    assert result.samples == 2 and sorted(manifest["source"]) == ["face0.jpg", "sub/face1.jpg"]


def _denied(path):
    raise PermissionError(13, "Permission denied", os.fspath(path))


def test_an_rgb_image_is_read_by_strips_into_the_bytes_of_its_whole_conversion(monkeypatch, real_masked_dir):
    from maskgen import source

    monkeypatch.setattr(source, "STRIP_BYTES", 1000)  # many strips, the last one short
    path = real_masked_dir / "0761.jpg"
    with Image.open(path) as img:
        expected = np.asarray(img.convert("RGB"))
    read = load_image(path, max_side=None)
    assert read.flags.writeable and read.flags.c_contiguous and np.array_equal(read, expected)
