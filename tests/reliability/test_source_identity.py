"""What a build is made of, by content: source images, a --landmarks file and template packs are recorded by
their bytes, so another source under the same names, an image or a pack changed between a kill and the
rerun, or a folder that holds another dataset is refused in one line before anything is written; and
--landmarks rows of other images are not used."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from maskgen import format as fmt
from maskgen.build import CONTENT_KEYS, BuildConfig, BuildError, build
from maskgen.cli import main
from maskgen.compose import MaskOptions
from tests.reliability.faults import dataset_files

ARGS = dict(res=128, seed=2, shard_size=4)  # 12 faces, one pair each: 3 train shards and 1 val shard
PACK_TEMPLATES = ("surgical", "surgical_left", "surgical_right")  # a small copy of the shared pack


@pytest.fixture(scope="module")
def celeba(tmp_path_factory, celeba_dir) -> dict:
    """12 images of 4 identities (their names and identity rows) and 12 other images to put under those names."""
    rows = [line.split() for line in (celeba_dir / "identity_CelebA.txt").read_text().splitlines() if line.strip()]
    by_id: dict[str, list[str]] = {}
    for name, ident in rows:
        by_id.setdefault(ident, []).append(name)
    chosen = [ident for ident in sorted(by_id) if len(by_id[ident]) >= 3][:4]
    names = [name for ident in chosen for name in sorted(by_id[ident])[:3]]
    taken = set(names)
    others = [name for name, _ in rows if name not in taken][:len(names)]
    root = tmp_path_factory.mktemp("identity")
    identities = [ident for ident in chosen for _ in range(3)]
    (root / "identity.txt").write_text("".join(f"{name} {ident}\n"
                                               for name, ident in zip(names, identities, strict=True)))
    return {"root": root, "names": names, "others": others}


def _make_faces(celeba: dict, celeba_dir: Path, folder: str, images: list[str]) -> Path:
    """A CelebA-layout folder of real files (so a test can change one): the i-th name holds ``images[i]``."""
    root = celeba["root"] / folder
    (root / "img_align_celeba").mkdir(parents=True)
    for name, image in zip(celeba["names"], images, strict=True):
        shutil.copyfile(celeba_dir / "img_align_celeba" / image, root / "img_align_celeba" / name)
    shutil.copyfile(celeba["root"] / "identity.txt", root / "identity_CelebA.txt")
    return root


@pytest.fixture(scope="module")
def faces(celeba, celeba_dir) -> Path:
    return _make_faces(celeba, celeba_dir, "faces", celeba["names"])


@pytest.fixture(scope="module")
def impostors(celeba, celeba_dir) -> Path:
    """Another source under the same names: every file holds another image."""
    return _make_faces(celeba, celeba_dir, "impostors", celeba["others"])


def _build(source: Path, out: Path, **kwargs):
    return build(BuildConfig(source=str(source), out=str(out), workers=1, progress=False, **{**ARGS, **kwargs}))


@pytest.fixture(scope="module")
def clean(faces, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "ds"
    _build(faces, out)
    return out


def _refused(source: Path, out: Path, **kwargs) -> str:
    """The one-line BuildError of a build that must write nothing into ``out``."""
    before = dataset_files(out) if out.exists() else None
    with pytest.raises(BuildError) as refusal:
        _build(source, out, **kwargs)
    assert (dataset_files(out) if out.exists() else None) == before
    message = str(refusal.value)
    assert "\n" not in message
    return message


# --- 1 (a): a --landmarks file of other images -----------------------------------------------------------------

def test_a_landmarks_file_of_another_source_is_refused(impostors, clean, tmp_path):
    out = tmp_path / "ds"
    message = _refused(impostors, out, landmarks=str(clean / fmt.LANDMARKS))
    assert message.startswith(f"--landmarks {clean / fmt.LANDMARKS} was made for other images: its 12 rows named "
                              "like sources here are of other content (e.g. "), message
    assert not out.exists()


def test_landmark_rows_of_changed_images_are_found_again(celeba, celeba_dir, clean, tmp_path, caplog):
    images = list(celeba["names"])
    images[1], images[7] = celeba["others"][0], celeba["others"][1]  # two files replaced by other faces
    changed = _make_faces(celeba, celeba_dir, "two-changed", images)
    expected = tmp_path / "detected"
    _build(changed, expected)
    with caplog.at_level(logging.WARNING, logger="maskgen.build"):
        result = _build(changed, tmp_path / "ds", landmarks=str(clean / fmt.LANDMARKS))
    assert result.landmarks_mismatched == 2
    assert "2 rows are of other images than the sources of the same name" in caplog.text
    # Their faces were found again on the new images: the same dataset as without --landmarks.
    assert dataset_files(tmp_path / "ds") == dataset_files(expected)
    # The rows of the unchanged images were used: their landmarks.parquet rows are the clean build's.
    lm, lm_clean = (pd.read_parquet(d / fmt.LANDMARKS).set_index("source") for d in (expected, clean))
    same = [n for i, n in enumerate(celeba["names"]) if i not in (1, 7)]
    assert lm.loc[same, "sha256"].equals(lm_clean.loc[same, "sha256"])
    assert (lm.loc[[celeba["names"][1], celeba["names"][7]], "sha256"] !=
            lm_clean.loc[[celeba["names"][1], celeba["names"][7]], "sha256"]).all()


# --- 1 (b), (c) and 2: a folder that holds another build -----------------------------------------------------

def test_an_image_changed_between_a_kill_and_the_rerun_is_refused(celeba, celeba_dir, faces, clean, tmp_path):
    source = tmp_path / "faces"
    shutil.copytree(faces, source)
    out = tmp_path / "ds"
    shutil.copytree(clean, out)
    # As a kill leaves it: the last shard and everything after it not written yet.
    for name in ("val-000000.tar", fmt.MANIFEST, fmt.STATS, fmt.FAILURES, fmt.LANDMARKS):
        (out / name).unlink()
    for part_file in (out / fmt.WORK_DIR).glob("part-000-of-001-*.*"):
        if "-landmarks-" not in part_file.name:  # the landmark chunks stay: the first phase was over
            part_file.unlink()
    changed = source / "img_align_celeba" / celeba["names"][5]
    original = changed.read_bytes()
    shutil.copyfile(celeba_dir / "img_align_celeba" / celeba["others"][0], changed)
    assert _refused(source, out) == (f"{out} was built from other images under the same names (1 of 12 differ, e.g. "
                                     f"{celeba['names'][5]}): restore them, or choose an empty folder or delete it")
    changed.write_bytes(original)
    _build(source, out)
    assert dataset_files(out) == dataset_files(clean)


def test_a_build_into_a_folder_of_another_sources_dataset_is_refused(impostors, clean, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(clean, out)
    message = _refused(impostors, out)
    assert message.startswith(f"{out} was built from other images under the same names (12 of 12 differ, e.g. ")
    assert message.endswith("restore them, or choose an empty folder or delete it")
    fewer = tmp_path / "fewer"
    shutil.copytree(impostors, fewer)
    next((fewer / "img_align_celeba").iterdir()).unlink()
    assert _refused(fewer, out) == (f"{out} was built from another source (other image names: 12 images then, 11 now); "
                                    "choose an empty folder or delete it")


def test_a_folder_with_another_dataset_is_refused_before_anything_is_written(faces, clean, tmp_path):
    other_arguments, no_record = tmp_path / "other-arguments", tmp_path / "no-record"
    for out in (other_arguments, no_record):
        shutil.copytree(clean, out)
    assert _refused(faces, other_arguments, jpeg_quality=90) == (
        f"{other_arguments} holds a dataset built with other arguments (differs in: jpeg_quality); "
        "choose an empty folder or delete it")
    # Without its build.json (deleted, as a user might to get past the refusal above), the other dataset's
    # shards would stay beside the new ones, and `verify` and `train` would refuse the folder.
    (no_record / fmt.BUILD_INFO).unlink()
    assert _refused(faces, no_record, shard_size=6) == (
        f"{no_record} holds files of a dataset but no {fmt.BUILD_INFO} (e.g. {fmt.FAILURES}): "
        "choose an empty folder or delete it")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a dataset file")
    assert _build(faces, empty).complete


# --- 3: template packs, by content -----------------------------------------------------------------------------

@pytest.fixture()
def pack(template_pack, tmp_path) -> Path:
    """A copy of three templates of the shared pack, to edit."""
    import configparser

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(template_pack / "masks.cfg")
    copy = tmp_path / "pack"
    (copy / "templates").mkdir(parents=True)
    with open(copy / "masks.cfg", "w") as f:
        for name in PACK_TEMPLATES:
            f.write(f"[{name}]\n" + "".join(f"{k}: {v}\n" for k, v in cfg[name].items()) + "\n")
            image = Path(cfg[name]["template"]).name
            shutil.copyfile(template_pack / "templates" / image, copy / "templates" / image)
    return copy


def test_a_template_pack_changed_between_parts_or_a_kill_is_refused(faces, pack, tmp_path):
    out = tmp_path / "ds"
    mask = MaskOptions.create(templates=str(pack))
    assert not _build(faces, out, mask=mask, part=(0, 2)).complete
    build_json = json.loads((out / fmt.BUILD_INFO).read_text())
    assert len(build_json["template_digests"]) == 1 and len(build_json["template_digests"][0]) == 64
    image = pack / "templates" / "surgical_left.png"
    original = image.read_bytes()
    rgba = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
    rgba[0, 0, 3] ^= 1  # one pixel's alpha: another machine's copy, or an edit between a kill and the rerun
    cv2.imwrite(str(image), rgba)
    mask = MaskOptions.create(templates=str(pack))  # (loads and checks it: it is still a good pack)
    refusal = (f"{out} was built with other files in template pack {pack} (its masks.cfg or images differ from "
               "the ones recorded): restore them, or choose an empty folder or delete it")
    assert _refused(faces, out, mask=mask, part=(1, 2)) == refusal
    assert _refused(faces, out, mask=mask, part=(0, 2)) == refusal
    image.write_bytes(original)
    cfg = pack / "masks.cfg"
    cfg.write_text(cfg.read_text().replace("mask_a: 21, 97", "mask_a: 22, 97", 1))
    assert _refused(faces, out, mask=MaskOptions.create(templates=str(pack)), part=(1, 2)) == refusal
    cfg.write_text(cfg.read_text().replace("mask_a: 22, 97", "mask_a: 21, 97", 1))
    assert _build(faces, out, mask=MaskOptions.create(templates=str(pack)), part=(1, 2)).complete


# --- 4: a bad --landmarks file, before anything is written ----------------------------------------------------

def _landmarks_file(clean: Path, path: Path, change) -> Path:
    frame = pd.read_parquet(clean / fmt.LANDMARKS)
    frame = change(frame)
    frame.to_parquet(path, index=False)
    return path


def _set(frame: pd.DataFrame, column: str, value) -> pd.DataFrame:
    frame[column] = frame[column].astype(object)
    frame.at[3, column] = value
    return frame


BAD_LANDMARKS = {  # how the file is spoiled, what the one line says after "--landmarks PATH"
    "not parquet": (None, ": not a readable landmarks.parquet ("),
    "no points": (lambda f: f.drop(columns=["points"]),
                  " lacks columns points (give a maskgen build's landmarks.parquet)"),
    "n_faces missing": (lambda f: _set(f, "n_faces", None), ": row 4 ("),
    "sources numbers": (lambda f: f.assign(source=range(len(f))), ": row 1 (0) is malformed: source is int, not text"),
    "points numbers": (lambda f: f.assign(points=1.5), ": row 1 ("),
    "sha256 garbage": (lambda f: _set(f, "sha256", "xyz"), ": row 4 ("),
    "no row named like a source": (lambda f: f.assign(source="elsewhere/" + f["source"]),
                                   " has no row for any image of this source (12 usable rows"),
    "ok all null": (lambda f: f.assign(ok=None), ": row 1 ("),
    "100 points": (lambda f: f.assign(points=[np.arange(100.0) if i == 3 else p for i, p in enumerate(f["points"])]),
                   ": row 4 ("),
    "two rows of one source": (lambda f: pd.concat([f, f.iloc[[3]].assign(points=[f["points"][3] + 1.0])],
                                                   ignore_index=True),
                               ": rows 4 and 13 give "),
}
BAD_LANDMARKS_SAY = {  # the rest of the line, where it says what is wrong
    "ok all null": "is malformed: ok is None, not true or false",
    "100 points": "is malformed: points has 100 values, not 136 (68 x, y pairs)",
    "two rows of one source": "different landmarks; keep one of them",
}


@pytest.mark.parametrize("spoiled", list(BAD_LANDMARKS))
def test_a_bad_landmarks_file_is_refused_before_anything_is_written(faces, clean, tmp_path, spoiled):
    change, says = BAD_LANDMARKS[spoiled]
    path = tmp_path / "landmarks.parquet"
    if change is None:
        path.write_bytes(b"PAR1 not really" * 50)
    else:
        _landmarks_file(clean, path, change)
    out = tmp_path / "ds"
    message = _refused(faces, out, landmarks=str(path))
    assert message.startswith(f"--landmarks {path}{says}"), message
    assert message.endswith(BAD_LANDMARKS_SAY.get(spoiled, "")), message
    assert not out.exists()
    res = CliRunner().invoke(main, ["build", "--source", str(faces), "--out", str(out), "--landmarks", str(path),
                                    "--workers", "1", "--no-progress"])
    assert res.exit_code == 1 and res.output.splitlines() == [f"Error: {message}"], res.output
    assert not out.exists()


# --- datasets and landmarks of an older maskgen ------------------------------------------------------------

def _as_an_older_maskgen_wrote_it(out: Path) -> None:
    """No content recorded: build.json (and stats.json's copy) without CONTENT_KEYS, landmarks without sha256."""
    for name in (fmt.BUILD_INFO, fmt.STATS):
        record = json.loads((out / name).read_text())
        build_info = record if name == fmt.BUILD_INFO else record["build"]
        for key in CONTENT_KEYS:
            del build_info[key]
        (out / name).write_text(json.dumps(record))
    for path in [out / fmt.LANDMARKS, *(out / fmt.WORK_DIR).glob("*landmarks*.parquet")]:
        pd.read_parquet(path).drop(columns=["sha256"]).to_parquet(path, index=False)


def test_an_older_maskgens_dataset_and_landmarks_are_still_used(faces, clean, tmp_path, caplog):
    out = tmp_path / "ds"
    shutil.copytree(clean, out)
    _as_an_older_maskgen_wrote_it(out)
    (out / "train-000001.tar").unlink()
    with caplog.at_level(logging.WARNING, logger="maskgen.build"):
        result = _build(faces, out)
    assert (result.shards_written, result.shards_reused) == (1, 3)
    assert caplog.text.count("was built by an older maskgen, which recorded no content") == 1
    for name in [*(p.name for p in clean.glob("*.tar")), fmt.MANIFEST, fmt.FAILURES]:
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name
    old_landmarks = _landmarks_file(clean, tmp_path / "old-landmarks.parquet", lambda f: f.drop(columns=["sha256"]))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="maskgen.build"):
        _build(faces, tmp_path / "from-old-landmarks", landmarks=str(old_landmarks))
    assert "records no image content (an older maskgen wrote it)" in caplog.text
    assert dataset_files(tmp_path / "from-old-landmarks") == dataset_files(clean)


def test_a_landmarks_row_given_twice_alike_is_fine(faces, clean, tmp_path):
    path = _landmarks_file(clean, tmp_path / "twice.parquet", lambda f: pd.concat([f, f.iloc[[3]]], ignore_index=True))
    _build(faces, tmp_path / "ds", landmarks=str(path))
    assert dataset_files(tmp_path / "ds") == dataset_files(clean)


# --- a source replaced while the build runs ---------------------------------------------------------------------

@pytest.mark.parametrize("stage", ["landmarks", "compose"])
def test_a_source_replaced_during_the_build_is_a_failure_not_recorded_as_its_old_content(
        celeba, celeba_dir, tmp_path, monkeypatch, stage):
    """Sources are hashed up front (build.json and landmarks.parquet record those digests), read again by the
    workers: one replaced in between must not give landmarks or samples of the new image under the old digest."""
    from maskgen.build import run
    from maskgen.source import CHANGED, content_digest

    faces = _make_faces(celeba, celeba_dir, f"replaced-{stage}", celeba["names"])
    victim = faces / "img_align_celeba" / celeba["names"][5]
    old_digest = content_digest(victim)
    # Just after the hashing (landmarks) or just after the landmarks phase (compose): no sleep, no race.
    hooked = "source_digests" if stage == "landmarks" else "plan_shards"
    original = getattr(run, hooked)  # patched where build looks it up

    def then_replace(*args, **kwargs):
        result = original(*args, **kwargs)
        shutil.copyfile(celeba_dir / "img_align_celeba" / celeba["others"][0], victim)
        return result

    monkeypatch.setattr(run, hooked, then_replace)
    out = tmp_path / "ds"
    result = _build(faces, out)
    assert result.samples == len(celeba["names"]) - 1 and result.failures == 1
    failures = pd.read_csv(out / fmt.FAILURES)
    assert failures[["source", "stage", "reason"]].values.tolist() == [[victim.name, stage, CHANGED]]
    landmarks = pd.read_parquet(out / fmt.LANDMARKS).set_index("source")
    assert landmarks.at[victim.name, "sha256"] == old_digest
    assert landmarks.at[victim.name, "ok"] == (stage == "compose")  # points found on the old bytes, when at all
    assert victim.name not in set(pd.read_parquet(out / fmt.MANIFEST)["source"])


# --- template packs: by folder name and content, not path -------------------------------------------------------

def test_the_same_pack_at_another_path_is_the_same_build(faces, pack, tmp_path):
    out = tmp_path / "ds"
    assert not _build(faces, out, mask=MaskOptions.create(templates=str(pack)), part=(1, 2)).complete
    copy = tmp_path / "another-machine" / pack.name
    shutil.copytree(pack, copy)
    assert _build(faces, out, mask=MaskOptions.create(templates=str(copy)), part=(0, 2)).complete
    renamed = tmp_path / "pack-b"
    shutil.copytree(pack, renamed)
    digest = json.loads((out / fmt.BUILD_INFO).read_text())["template_digests"][0][:12]
    assert _refused(faces, out, mask=MaskOptions.create(templates=str(renamed)), part=(0, 2)) == (
        f"{out} holds a dataset built with other arguments (differs in: template packs, by folder name (the "
        f"manifest's generator) and content: [pack {digest}] then, [pack-b {digest}] now); choose an empty "
        "folder or delete it")
    assert _refused(faces, out, mask=MaskOptions.create(templates=str(copy), light_match=0.5), part=(0, 2)) == (
        f"{out} holds a dataset built with other arguments (differs in: mask.light_match); choose an empty "
        "folder or delete it")
