"""MaskTheFace template packs: a folder with ``masks.cfg`` (six anchors per template) and RGBA images, read
and checked (``load_pack``) and identified by content (``pack_digest``)."""

from __future__ import annotations

import configparser
import hashlib
from pathlib import Path

import cv2
import numpy as np

from .templates import MASK_TYPES, MaskTemplate


def _pack_type(name: str) -> str:
    low = name.lower()
    for kind in MASK_TYPES:
        if low.startswith(kind):
            return kind
    return "other"


def _read_masks_cfg(path: str | Path) -> tuple[Path, configparser.ConfigParser]:
    """A pack's masks.cfg (the pack's folder or the file itself), parsed: its path and content."""
    path = Path(path)
    cfg_path = path / "masks.cfg" if path.is_dir() else path
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no masks.cfg in template pack {path}")
    cfg = configparser.ConfigParser(interpolation=None)  # MaskTheFace's files have none; '%' is a file name's
    try:
        with open(cfg_path, encoding="utf-8") as text:
            cfg.read_file(text)
    except OSError as err:
        raise ValueError(f"{cfg_path}: cannot read it: {err.strerror or err}") from None
    except (configparser.Error, UnicodeDecodeError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise ValueError(f"{cfg_path}: not a MaskTheFace masks.cfg ({first_line})") from None
    return cfg_path, cfg


def _template_sections(cfg: configparser.ConfigParser) -> list[str]:
    """The sections that describe a template; MaskTheFace's placeholder ones (empty, inpaint) carry none."""
    return [name for name in cfg.sections() if any(k.startswith("mask_") for k in cfg[name])]


def _template_image(cfg_path: Path, cfg: configparser.ConfigParser, name: str) -> Path:
    """The image file of template ``name`` (as written in masks.cfg, or beside it in templates/)."""
    root, rel = cfg_path.parent, Path(cfg[name].get("template", f"templates/{name}.png"))
    image_path = next((p for p in (root / rel, root / "templates" / rel.name) if p.is_file()), None)
    if image_path is None:
        raise FileNotFoundError(f"{cfg_path}: template image for [{name}] not found ({rel})")
    return image_path


def pack_digest(path: str | Path) -> str:
    """What a pack is, wherever it lies: the SHA-256 (hex) of its masks.cfg and of each template image it
    names, in its order (the files ``load_pack`` reads). A build records it, so a pack edited between a
    kill and the rerun, or another machine's copy that differs, is refused instead of mixed in."""
    cfg_path, cfg = _read_masks_cfg(path)
    digest = hashlib.sha256(cfg_path.read_bytes())
    for name in _template_sections(cfg):
        digest.update(b"\0" + name.encode() + b"\0" + _template_image(cfg_path, cfg, name).read_bytes())
    return digest.hexdigest()


def load_pack(path: str | Path) -> list[MaskTemplate]:
    """Templates of a MaskTheFace-format pack: ``masks.cfg`` with six anchors each + RGBA PNGs.

    The whole pack is checked here, before a build uses it: a missing or unreadable masks.cfg or
    image, bad anchors or an empty drawing raise FileNotFoundError or ValueError with one line
    naming the file and the template.
    """
    cfg_path, cfg = _read_masks_cfg(path)
    templates = []
    for name in _template_sections(cfg):
        sec = cfg[name]
        try:
            anchors = np.array([[float(v) for v in sec[f"mask_{k}"].split(",")] for k in "abcdef"])
        except (KeyError, ValueError) as err:
            raise ValueError(f"{cfg_path}: template [{name}] needs mask_a..mask_f as 'x, y': {err}") from None
        a, b, c, _, e, _ = anchors
        if not np.isfinite(anchors).all() or c[0] - a[0] < 2 or e[1] - b[1] < 2:
            raise ValueError(f"{cfg_path}: template [{name}] has unusable anchors (need mask_a left of mask_c "
                             "and mask_b above mask_e)")
        image_path = _template_image(cfg_path, cfg, name)
        rgba = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
        if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
            raise ValueError(f"{image_path}: expected an RGBA PNG")
        if rgba.dtype != np.uint8:
            rgba = (rgba / 257).astype(np.uint8)
        rgba = cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGBA)
        if not rgba[..., 3].any():
            raise ValueError(f"{image_path}: template [{name}] is fully transparent")
        low = name.lower()
        variant = "left" if low.endswith("_left") else "right" if low.endswith("_right") else "front"
        templates.append(MaskTemplate(
            name=name, mask_type=_pack_type(name), variant=variant,
            alpha=(rgba[..., 3] / 255.0).astype(np.float32), shade=np.ones(rgba.shape[:2], np.float32),
            anchors=anchors, rgb=np.ascontiguousarray(rgba[..., :3])))
    if not templates:
        raise ValueError(f"{cfg_path}: no templates (sections with mask_a..mask_f and an RGBA image)")
    return templates
