"""Python names that moved to other modules still work from their former place for one release, each use
warning with the new place (docs/pipeline.md, "Renamed settings")."""

from __future__ import annotations

import importlib
import sys

import pytest

MOVED = [  # (former module, name, module that has it now)
    ("maskgen.landmarks", "landmark_problem", "maskgen.face_points"),
    ("maskgen.landmarks", "JAW", "maskgen.face_points"),
    ("maskgen.landmarks", "estimate_yaw", "maskgen.face_points"),
    ("maskgen.templates", "load_pack", "maskgen.packs"),
    ("maskgen.templates", "texture_pattern", "maskgen.textures"),
    ("maskgen.templates", "COLORS", "maskgen.textures"),
]


@pytest.mark.parametrize("former,name,home", MOVED)
def test_a_moved_name_is_the_same_object_and_warns_naming_its_new_place(former, name, home):
    with pytest.warns(DeprecationWarning, match=rf"^{former}\.{name} is deprecated, use {home}\.{name}$"):
        value = getattr(importlib.import_module(former), name)
    assert value is getattr(importlib.import_module(home), name)


def test_an_unknown_name_is_still_an_attribute_error():
    import maskgen.landmarks

    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        maskgen.landmarks.no_such_name  # noqa: B018


def test_the_former_build_module_warns_and_gives_the_build():
    import maskgen.build

    sys.modules.pop("maskgen.builder", None)
    with pytest.warns(DeprecationWarning, match="maskgen.builder is deprecated, use maskgen.build"):
        builder = importlib.import_module("maskgen.builder")
    assert builder.build is maskgen.build.build and builder.BuildConfig is maskgen.build.BuildConfig


def test_the_former_quantiser_is_the_one_quantiser():
    import torch

    import unmask.data
    from unmask.tensors import quantize

    with pytest.warns(DeprecationWarning, match="use unmask.tensors.quantize"):
        former = unmask.data.images_to_uint8
    images = torch.linspace(-1.2, 1.2, 64).reshape(1, 1, 8, 8)
    assert torch.equal(former(images), quantize(images))
