"""CelebA's list_eval_partition.txt: a byte order mark is not part of a name; a file that gives no
partition, or two partitions for one image, is refused in one line naming the file (it would silently
turn into a split by fractions, or let the last row win)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from maskgen.cli import main as maskgen_main
from maskgen.source import AnnotationError, discover


@pytest.fixture
def celeba(tmp_path, celeba_images) -> tuple[Path, list[str]]:
    """A CelebA layout with four of the sample's images (links) and no partition file yet."""
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    for image in celeba_images[:4]:
        (root / "img_align_celeba" / image.name).symlink_to(image)
    return root, [image.name for image in celeba_images[:4]]


def _partition(root: Path, text: str, encoding: str = "utf-8") -> Path:
    path = root / "list_eval_partition.txt"
    path.write_bytes(text.encode(encoding))
    return path


def test_a_byte_order_mark_is_not_part_of_the_first_name(celeba):
    root, names = celeba
    _partition(root, "".join(f"{name} {i % 3}\r\n" for i, name in enumerate(names)), encoding="utf-8-sig")
    listing = discover(root)
    assert [im.partition for im in listing.images] == ["train", "val", "test", "train"]
    assert listing.problems == []


def test_repeating_a_row_is_fine(celeba):
    root, names = celeba
    _partition(root, "".join(f"{name} 0\n" for name in names) + f"{names[1]} 0\n")
    assert [im.partition for im in discover(root).images] == ["train"] * 4


@pytest.mark.parametrize("text", ["", "\n\n", "{0},0\n{1},1\n", "image_id partition\n{0} train\n{1} 7\n"])
def test_a_file_with_no_valid_row_is_refused(celeba, text):
    root, names = celeba
    path = _partition(root, text.format(*names))
    with pytest.raises(AnnotationError, match=f"^{path}: no valid row"):
        discover(root)


def test_two_partitions_for_one_image_name_the_image_and_both_lines(celeba):
    root, names = celeba
    path = _partition(root, f"{names[0]} 0\n{names[1]} 0\n{names[2]} 1\n{names[1]} 2\n")
    with pytest.raises(AnnotationError) as caught:
        discover(root)
    assert str(caught.value) == f"{path}: {names[1]} has two different rows (line 2: 0; line 4: 2); keep one"


@pytest.mark.parametrize("text,message", [("", "no valid row"), ("{0} 0\n{0} 1\n", "(line 1: 0; line 2: 1)")])
def test_build_stops_in_one_line_before_writing(celeba, tmp_path, text, message):
    root, names = celeba
    path = _partition(root, text.format(*names))
    out = tmp_path / "out"
    result = CliRunner().invoke(maskgen_main, ["build", "--source", str(root), "--out", str(out), "--workers", "1",
                                               "--no-progress"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {path}: ") and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("name", ["list_eval_partition.txt", "identity_CelebA.txt"])
@pytest.mark.parametrize("what", ["a folder", "a link to nothing"])
def test_an_annotation_that_is_not_a_file_is_refused_not_ignored(celeba, tmp_path, name, what):
    """Ignored, it would give a random split (or no identities) instead of CelebA's."""
    root, _ = celeba
    path = root / name
    if what == "a folder":
        path.mkdir()
    else:
        path.symlink_to(tmp_path / "nonexistent")
    with pytest.raises(AnnotationError, match="is not a readable file"):
        discover(root)
    out = tmp_path / "out"
    result = CliRunner().invoke(maskgen_main, ["build", "--source", str(root), "--out", str(out), "--workers", "1",
                                               "--no-progress"])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [f"Error: {path} is not a readable file ({what}): make it the annotation "
                                          "file or remove it"]
    assert not out.exists()


# --- identity_CelebA.txt: checked as the partition file is ------------------------------------------------------

def _identities(root: Path, text: str) -> Path:
    path = root / "identity_CelebA.txt"
    path.write_text(text)
    return path


def test_two_identities_for_one_image_name_the_image_and_both_lines(celeba):
    root, names = celeba
    path = _identities(root, f"{names[0]} 7\n{names[1]} 7\n{names[1]} 7\n{names[1]} 9\n")
    with pytest.raises(AnnotationError) as caught:
        discover(root)
    assert str(caught.value) == f"{path}: {names[1]} has two different rows (line 2: 7; line 4: 9); keep one"


@pytest.mark.parametrize("text", ["", "junk junk\njunk\n", "{0},7\n{1},7\n", "image_id identity\n{0} alice\n"])
def test_an_identity_file_with_no_valid_row_is_refused(celeba, text):
    root, names = celeba
    path = _identities(root, text.format(*names))
    with pytest.raises(AnnotationError, match=f"^{path}: no valid row"):
        discover(root)


def test_a_malformed_identity_row_skips_its_image(celeba):
    root, names = celeba
    _identities(root, f"{names[0]} 7\n{names[1]} 8\n{names[2]} someone\n{names[3]}\n")
    listing = discover(root)
    assert [im.identity for im in listing.images] == ["7", "8"]
    assert [reason for _, reason in listing.problems if "identity row" in reason] == \
        [f"malformed identity row for {names[2]}", f"malformed identity row for {names[3]}"]
