"""Compose triplets: an aligned face plus a sampled mask -> (masked, unmasked, map, metadata).

This is the library entry point for one image: ``image_to_triplets(path, n=3, res=256, seed=0)``.
Every random choice of a sample comes from a generator seeded by (seed, sample key), so a sample
is the same whichever process, worker count or machine part makes it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from . import appearance, neckwear, packs, prints, textures
from . import templates as tpl
from .align import DEFAULT_FACE_SCALE, AlignedFace, align_face
from .cartridges import add_cartridges
from .face_points import estimate_yaw
from .format import WEARS, YAW_THRESHOLD
from .landmarks import locate
from .mask import DEFAULT_WEAR_WEIGHTS, composite, face_anchors, narrowed, warp_template
from .occluders import DEFAULT_OCCLUDER_SHARE, DEFAULT_OCCLUDER_WEIGHTS, OCCLUDERS, occlude
from .source import load_image, source_key


def _weights(given: dict[str, float] | list[str] | None, defaults: dict[str, float], known: tuple[str, ...],
             what: str) -> tuple[tuple[str, float], ...]:
    """Named weights from ``{name: weight}`` or a list of names (their default weights, else 1)."""
    if given is None:
        weights = dict(defaults)
    elif isinstance(given, dict):
        weights = {k: float(v) for k, v in given.items()}
    else:
        weights = {k: defaults.get(k, 1.0) for k in given}
    unknown = set(weights) - set(known)
    if unknown:
        raise ValueError(f"unknown {what}(s) {', '.join(sorted(unknown))}; choose from {', '.join(known)}")
    if not all(math.isfinite(w) for w in weights.values()):
        listed = ", ".join(f"{k}={w:g}" for k, w in weights.items())
        raise ValueError(f"{what} weights must be finite numbers (got {listed})")
    if not weights or min(weights.values()) < 0 or not sum(weights.values()) > 0:
        raise ValueError(f"{what} weights must be non-negative and not all zero")
    return tuple(sorted(weights.items()))


def template_share_problem(share: float) -> str | None:
    """Why ``share`` is not a share of samples (``MaskOptions.template_share``), or None."""
    return None if 0.0 <= share <= 1.0 else f"must be in 0..1 (got {share:g})"


share_problem = template_share_problem  # the same range for every share option (--occluder-share, ...)


@dataclass(frozen=True)
class MaskOptions:
    """How masks are chosen and worn. Picklable, so it travels to worker processes as it is."""

    type_weights: tuple[tuple[str, float], ...] = tuple(sorted(tpl.DEFAULT_TYPE_WEIGHTS.items()))
    wear_weights: tuple[tuple[str, float], ...] = tuple(sorted(DEFAULT_WEAR_WEIGHTS.items()))
    templates: tuple[str, ...] = ()  # MaskTheFace-format packs (resolved folders), mixed with the built-in masks
    template_share: float = 1.0  # of the samples that take a pack template, when packs are given
    light_match: float = 0.8
    # Occluders in front of the mask (maskgen.occluders) on occluder_share of the samples; prints on
    # print_share of the printable masks (maskgen.prints); creases on fold_share of the fabric ones
    # (maskgen.appearance.crease_shading). 0 leaves the masks exactly as they were without them.
    occluder_weights: tuple[tuple[str, float], ...] = tuple(sorted(DEFAULT_OCCLUDER_WEIGHTS.items()))
    occluder_share: float = DEFAULT_OCCLUDER_SHARE
    print_share: float = prints.DEFAULT_PRINT_SHARE
    fold_share: float = appearance.DEFAULT_FOLD_SHARE

    @classmethod
    def create(cls, mask_types: dict[str, float] | list[str] | None = None,
               templates: str | Path | list[str | Path] | tuple[str | Path, ...] | None = None,
               light_match: float = 0.8, wear: dict[str, float] | list[str] | None = None,
               template_share: float | None = None, occluders: dict[str, float] | list[str] | None = None,
               occluder_share: float | None = None, print_share: float | None = None,
               fold_share: float | None = None) -> "MaskOptions":
        """Checked options: unknown names, bad weights and unreadable packs raise ValueError or
        FileNotFoundError here, before a build writes anything."""
        packs = [templates] if isinstance(templates, (str, Path)) else list(templates or [])
        if template_share is not None and not packs:
            raise ValueError("--template-share needs --templates (a template pack to mix in)")
        share = 1.0 if template_share is None else float(template_share)
        problem = template_share_problem(share)
        if problem:
            raise ValueError(f"--template-share {problem}")
        if not 0.0 <= float(light_match) <= 1.0:
            raise ValueError(f"light_match must be in 0..1 (got {light_match})")
        shares = {"occluder_share": (occluder_share, DEFAULT_OCCLUDER_SHARE),
                  "print_share": (print_share, prints.DEFAULT_PRINT_SHARE),
                  "fold_share": (fold_share, appearance.DEFAULT_FOLD_SHARE)}
        shares = {name: default if given is None else float(given) for name, (given, default) in shares.items()}
        for name, value in shares.items():
            problem = share_problem(value)
            if problem:
                raise ValueError(f"--{name.replace('_', '-')} {problem}")
        resolved = tuple(str(Path(p).resolve()) for p in packs)
        for pack in resolved:
            _pack(pack)  # loads and checks it (cached for the build)
        # A list of the first five types mixes them as before the others came (the same weights, bit for bit).
        listed = isinstance(mask_types, (list, tuple)) and set(mask_types) <= set(tpl.ORIGINAL_TYPE_WEIGHTS)
        type_weights = _weights(mask_types, tpl.ORIGINAL_TYPE_WEIGHTS if listed else tpl.DEFAULT_TYPE_WEIGHTS,
                                tpl.MASK_TYPES, "mask type")
        wear_weights = _weights(wear, DEFAULT_WEAR_WEIGHTS, WEARS, "wear")
        if {k for k, w in type_weights if w > 0} <= set(neckwear.NECK_TYPES) and \
                {k for k, w in wear_weights if w > 0} == {"chin"}:
            raise ValueError("--wear chin: gaiters and bandanas cover the chin; give another wear or mask type")
        return cls(type_weights=type_weights, wear_weights=wear_weights,
                   templates=resolved, template_share=share, light_match=light_match,
                   occluder_weights=_weights(occluders, DEFAULT_OCCLUDER_WEIGHTS, OCCLUDERS, "occluder"), **shares)


@lru_cache(maxsize=None)  # a build uses a handful of packs; reloading one costs seconds
def _pack(path: str) -> dict[str, dict[str, tpl.MaskTemplate]]:
    """Pack templates grouped as {base name: {variant: template}}."""
    groups: dict[str, dict[str, tpl.MaskTemplate]] = {}
    for t in packs.load_pack(path):
        base = t.name[: -len("_" + t.variant)] if t.variant != "front" else t.name
        groups.setdefault(base, {})[t.variant] = t
    return groups


BUILTIN = "builtin"  # SampleMeta.generator of the procedural masks; pack templates give their pack's folder name


@dataclass
class MaskChoice:
    template: tpl.MaskTemplate  # full size; see templates.scaled_for
    color: str
    texture: str
    pattern_variant: int = 0
    accent: tuple[int, int, int] | None = None
    variant: str = "front"  # head turn: front, left or right (the warp follows the jaw either way)
    wear: str = "correct"  # see maskgen.format.WEARS
    generator: str = BUILTIN  # or the pack's folder name
    art: prints.Print | None = None  # a printed figure, logo or photo instead of the texture
    folds: int = 0  # creases (appearance.crease_shading)
    fold_seed: int = 0

    def _accent(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """The accent colour; without one (direct API use), one drawn as ``choose_mask`` would."""
        if self.accent is not None:
            return self.accent
        base = textures.COLORS[self.color]
        if self.texture == "solid" and self.template.mask_type in textures.PART_COLORS:
            return textures.part_color(self.template.mask_type, base, rng)
        return textures.accent_color(base, rng)

    def place(self, anchors: np.ndarray, res: int, rng: np.random.Generator | None = None
              ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
        """Warp the chosen mask onto the anchors: (rgb float32, alpha float32, box) over the crop box.

        Drawn masks get a width (``templates.FIT_RANGE``), a drawn style (a valve or not), and a
        per-sample look (relief strength, colour jitter) from ``rng`` (default: a fixed one). Colour
        and texture are applied after warping, on the few crop pixels the mask covers.
        """
        if self.template.rgb is not None:
            level, _ = tpl.scaled_for(self.template, float(np.linalg.norm(anchors[2] - anchors[0])))
            return warp_template(level, tpl.float_rgb(level), anchors, (res, res))
        rng = rng if rng is not None else np.random.default_rng(0)
        if self.template.mask_type in neckwear.NECK_TYPES:  # down the neck, off the crop's bottom edge
            anchors = neckwear.reach_neck(anchors, res)
        low, high = tpl.FIT_RANGE.get(self.template.mask_type, (1.0, 1.0))
        anchors = narrowed(anchors, low + (high - low) * float(rng.random()))  # one draw for every kind
        target_width = float(np.linalg.norm(anchors[2] - anchors[0]))
        style = tpl.choose_style(self.template.mask_type, rng)
        look = appearance.sample_look(rng)
        accent_rgb = self._accent(rng)  # choose_mask always gives one: then nothing is drawn
        third = textures.third_color(self.texture, textures.COLORS[self.color], accent_rgb, rng) \
            if self.texture in textures.TWO_ACCENT_TEXTURES else None
        template = tpl.builtin_template(self.template.mask_type, style) if style else self.template
        level, factor = tpl.scaled_for(template, target_width)
        base = [c * g for c, g in zip(textures.COLORS[self.color], look.base_gain, strict=True)]
        accent = [c * g for c, g in zip(accent_rgb, look.accent_gain, strict=True)]
        rgb, alpha, box = self._coloured(level, factor, anchors, res, look, base, accent, third)
        # A respirator's cartridges take the accent: a part colour on a solid one, the pattern's on a patterned one.
        if self.template.mask_type in textures.PART_COLORS:
            rgb, alpha, box = add_cartridges(rgb, alpha, box, anchors, accent, (res, res), rng)
        return rgb, alpha, box

    def _coloured(self, level: tpl.MaskTemplate, factor: float, anchors: np.ndarray, res: int,
                  look: appearance.Look, base: list[float], accent: list[float], third: tuple | None
                  ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
        """A drawn template warped onto the anchors in its colours: (rgb, alpha, box) as ``place``."""
        if self.art is not None:
            return self._printed(level, factor, anchors, res, look)
        if self.texture == "solid":
            shade, alpha, box = warp_template(level, level.shade, anchors, (res, res))
            shade = self._creased(appearance.with_relief(shade, look.relief))
            return cv2.merge([shade * c for c in base]), alpha, box
        pattern = textures.texture_pattern(self.texture, self.pattern_variant, level.alpha.shape, factor)
        second = textures.second_pattern(self.texture, self.pattern_variant, level.alpha.shape, factor)
        # Four channels (OpenCV warps 2-channel float images ~8x slower than 4-channel ones).
        layers = cv2.merge([level.shade, pattern, second if second is not None else np.zeros_like(pattern),
                            np.zeros_like(pattern)])
        warped, alpha, box = warp_template(level, layers, anchors, (res, res))
        # shade * (base + (accent - base) * pattern + (third - base) * second), channel by channel
        # (OpenCV's per-channel passes are several times faster than numpy broadcasting).
        shade, pattern, second = cv2.split(warped)[:3]
        channels = [cv2.addWeighted(pattern, float(a - b), pattern, 0.0, float(b))
                    for b, a in zip(base, accent, strict=True)]
        if third is not None:
            channels = [cv2.scaleAdd(second, float(t - b), ch) for ch, b, t in zip(channels, base, third, strict=True)]
        shade = self._creased(appearance.with_relief(shade, look.relief))
        rgb = cv2.multiply(cv2.merge(channels), cv2.merge([shade, shade, shade]))
        return rgb, alpha, box

    def _creased(self, shade: np.ndarray) -> np.ndarray:
        """The warped shading with this sample's creases, if any."""
        if not self.folds:
            return shade
        return cv2.multiply(shade, appearance.crease_shading(self.folds, self.fold_seed, shade.shape[:2]))

    def _printed(self, level: tpl.MaskTemplate, factor: float, anchors: np.ndarray, res: int, look: appearance.Look
                 ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
        """A printed mask: the print (on the base colour) warped with the shading, as ``_coloured``."""
        art = prints.draw_print(self.art, textures.COLORS[self.color], level, factor)
        layers = cv2.merge([level.shade, *cv2.split(art)])
        warped, alpha, box = warp_template(level, layers, anchors, (res, res))
        shade, *colour = cv2.split(warped)
        shade = self._creased(appearance.with_relief(shade, look.relief))
        rgb = cv2.merge([cv2.multiply(ch, shade, scale=gain) for ch, gain in zip(colour, look.base_gain, strict=True)])
        return rgb, alpha, box


def _pick(weights: tuple[tuple[str, float], ...] | dict[str, float], rng: np.random.Generator) -> str:
    names, cdf = _names_and_cdf(tuple(dict(weights).items()))
    return names[_draw_index(cdf, rng)]


@lru_cache(maxsize=64)
def _names_and_cdf(weights: tuple[tuple[str, float], ...]) -> tuple[tuple[str, ...], np.ndarray]:
    names = tuple(k for k, w in weights if w > 0)
    return names, _cdf(np.array([w for _, w in weights if w > 0], np.float64))


def _cdf(p: np.ndarray) -> np.ndarray:
    """The cumulative distribution ``Generator.choice`` draws from; read-only (cached ones are shared)."""
    p = p / p.sum()
    cdf = p.cumsum()
    cdf /= cdf[-1]
    cdf.flags.writeable = False
    return cdf


def _draw_index(cdf: np.ndarray, rng: np.random.Generator) -> int:
    """``rng.choice(len(cdf), p=...)`` for the distribution whose ``_cdf`` this is: the same draw
    from the stream and the same index (numpy's own algorithm), without choice's checks, which
    cost more than the rest of a sample's choices."""
    return int(cdf.searchsorted(rng.random(), side="right"))


@lru_cache(maxsize=None)
def _texture_cdf(kind: str) -> np.ndarray:
    return _cdf(np.array(textures.TYPE_TEXTURE_WEIGHTS[kind], np.float64))


def choose_mask(options: MaskOptions, rng: np.random.Generator, yaw: float) -> MaskChoice:
    weights = dict(options.type_weights)
    # a turned head: pack templates use their _left/_right art
    variant = "left" if yaw < -YAW_THRESHOLD else "right" if yaw > YAW_THRESHOLD else "front"
    wear = _pick(options.wear_weights, rng)
    # A draw only where there is a choice, so a pack-only or builtin-only build keeps its stream.
    use_pack = bool(options.templates) and (options.template_share >= 1.0 or
                                            (options.template_share > 0.0 and rng.random() < options.template_share))
    if use_pack:
        pack = options.templates[int(rng.integers(len(options.templates)))] if len(options.templates) > 1 \
            else options.templates[0]
        groups = _pack(pack)
        names = sorted(groups)
        p = np.array([weights.get(next(iter(groups[n].values())).mask_type, 0.0) for n in names])
        if p.sum() <= 0:  # the pack's types are not among the weighted ones: use all uniformly
            p = np.ones(len(names))
        base = names[_draw_index(_cdf(p), rng)]
        template = groups[base].get(variant, groups[base].get("front", next(iter(groups[base].values()))))
        return MaskChoice(template, "template", "template", variant=variant, wear=wear, generator=Path(pack).name)
    kind = _pick(weights, rng)
    if wear == "chin" and kind in neckwear.NECK_TYPES:  # a neck covering cannot leave the chin out
        wear = "correct"
    color = str(rng.choice(textures.TYPE_COLORS[kind]))
    texture = textures.TEXTURES[_draw_index(_texture_cdf(kind), rng)]
    pattern_variant = int(rng.integers(textures.PATTERN_VARIANTS))
    # a solid mask with parts (cartridges) colours them apart; a patterned one takes the pattern's accent
    color_rgb = textures.COLORS[color]
    accent = textures.part_color(kind, color_rgb, rng) if texture == "solid" and kind in textures.PART_COLORS \
        else textures.accent_color(color_rgb, rng)
    return MaskChoice(tpl.builtin_template(kind), color, texture, pattern_variant, accent, variant, wear=wear)


@dataclass
class SampleMeta:
    """The ``json`` member of every sample."""

    key: str
    source: str
    identity: str | None
    split: str | None
    mask_type: str
    template: str
    color: str
    texture: str
    variant: str
    wear: str  # maskgen.format.WEARS
    generator: str  # "builtin" or the template pack's folder name
    yaw: float
    coverage: float  # fraction of crop pixels in the map
    res: int
    scale: float  # crop pixels per source pixel
    face_scale: float  # the framing: the face's size in the crop (maskgen build --face-scale)
    upsampled: bool
    landmark_method: str
    seed: int
    landmarks: list = field(default_factory=list)  # 68 [x, y] in crop pixels
    # Camera effects applied to both images (maskgen.appearance.Camera): 0 = none.
    camera_noise: float = 0.0  # sensor noise sigma, 0-255 units
    camera_blur: float = 0.0  # Gaussian blur sigma, px
    camera_jpeg: int = 0  # JPEG quality
    camera_cast: float = 0.0  # white balance: red gain 1 + cast, blue gain 1 - cast
    print: str = "none"  # a printed figure, logo or photo (maskgen.prints.PRINT_MODES): texture "print"
    print_source: str = ""  # the source image a photo print was cut from ("" when made up)
    folds: int = 0  # creases drawn on the fabric (0 = none)
    occluder: str = "none"  # in front of the mask (maskgen.occluders.OCCLUDERS)
    occluded: float = 0.0  # the share of the mask's pixels it hides (they are not in the map)

    def as_dict(self) -> dict:
        return dict(vars(self))  # flat fields: no need for dataclasses.asdict's deep copy


@dataclass
class Triplet:
    masked: np.ndarray  # (res, res, 3) uint8 RGB
    unmasked: np.ndarray
    map: np.ndarray  # (res, res) uint8, 0/255
    meta: SampleMeta


def sample_rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(zlib.crc32(key.encode()),)))


def feature_rng(seed: int, key: str, feature: str) -> np.random.Generator:
    """A generator for one later-added feature of a sample (prints, creases, occluders): a stream apart from
    ``sample_rng``'s, so that with the feature off every other choice of the sample stays as it was."""
    return np.random.default_rng(np.random.SeedSequence(
        entropy=seed, spawn_key=(zlib.crc32(key.encode()), zlib.crc32(feature.encode()))))


def make_triplet(face: AlignedFace, options: MaskOptions, seed: int, key: str, source: str = "",
                 identity: str | None = None, split: str | None = None, landmark_method: str = "",
                 photo: tuple[str, Callable[[], np.ndarray | None]] | None = None) -> Triplet:
    """Put one sampled mask on an aligned face.

    ``photo``: (its source name, a loader) of another image that a photo print is cut from; without
    one, photo prints are made up (``maskgen.prints``). It is loaded only when a sample takes one.
    """
    rng = sample_rng(seed, key)
    yaw = estimate_yaw(face.landmarks)
    choice = choose_mask(options, rng, yaw)
    print_source = ""
    if choice.generator == BUILTIN:
        fabric = feature_rng(seed, key, "fabric")
        art = prints.choose_print(choice.template.mask_type, options.print_share, fabric)
        if art is not None and art.mode == "photo" and photo is not None:
            picture = photo[1]()
            if picture is not None:  # an unreadable image: the print is made up
                print_source, art = photo[0], replace(art, photo=picture)
        folds, fold_seed = appearance.choose_folds(choice.template.mask_type, options.fold_share, fabric)
        choice = replace(choice, art=art, folds=folds, fold_seed=fold_seed,
                         texture="print" if art is not None else choice.texture)
    res = face.image.shape[0]
    anchors = face_anchors(face.landmarks, choice.wear)
    rgb, alpha, box = choice.place(anchors, res, rng)
    masked, binary = composite(face.image, rgb, alpha, box, options.light_match)
    unmasked, occluder, occluded = face.image, "none", 0.0
    if options.occluder_share > 0:
        front = feature_rng(seed, key, "occluder")
        if front.random() < options.occluder_share:
            name = _pick(options.occluder_weights, front)
            hidden = occlude(name, unmasked, masked, binary, face.landmarks, front)
            if hidden is not None:
                unmasked, masked, binary, occluded = hidden
                occluder = name
    masked, unmasked, camera = appearance.apply_camera(unmasked, masked, binary, box, rng)
    meta = SampleMeta(
        key=key, source=source, identity=identity, split=split, mask_type=choice.template.mask_type,
        template=choice.template.name, color=choice.color, texture=choice.texture,
        variant=choice.variant, wear=choice.wear, generator=choice.generator, yaw=round(yaw, 4),
        coverage=round(cv2.countNonZero(binary) / binary.size, 6),
        res=res, scale=round(face.scale, 4), face_scale=face.face_scale, upsampled=face.upsampled,
        landmark_method=landmark_method,
        seed=seed, landmarks=np.round(face.landmarks, 2).tolist(), **camera.meta(),
        print=choice.art.mode if choice.art is not None else "none", print_source=print_source, folds=choice.folds,
        occluder=occluder, occluded=round(occluded, 4))
    return Triplet(masked=masked, unmasked=unmasked, map=binary, meta=meta)


def encode(triplet: Triplet, jpeg_quality: int = 95) -> dict[str, bytes]:
    """Sample members as bytes (see maskgen.format)."""
    import json

    from . import format as fmt

    jpeg = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    ok1, masked = cv2.imencode(".jpg", cv2.cvtColor(triplet.masked, cv2.COLOR_RGB2BGR), jpeg)
    ok2, unmasked = cv2.imencode(".jpg", cv2.cvtColor(triplet.unmasked, cv2.COLOR_RGB2BGR), jpeg)
    # No PNG row filter, fast deflate: a 0/255 map compresses as well and encodes 4x faster.
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    ok3, binary = cv2.imencode(".png", triplet.map, png)
    if not (ok1 and ok2 and ok3):
        raise RuntimeError("image encoding failed")
    meta = json.dumps(triplet.meta.as_dict(), separators=(",", ":"), sort_keys=True)
    return {fmt.MASKED: masked.tobytes(), fmt.UNMASKED: unmasked.tobytes(), fmt.MAP: binary.tobytes(),
            fmt.META: meta.encode()}


def image_to_triplets(image: str | Path | np.ndarray, n: int = 1, res: int = 256, seed: int = 0,
                      options: MaskOptions | None = None, landmarks5: np.ndarray | None = None,
                      face_scale: float = DEFAULT_FACE_SCALE, key: str | None = None,
                      prior5: np.ndarray | None = None) -> list[Triplet]:
    """Detect, align and mask one image ``n`` times (different masks, same face).

    ``landmarks5`` is a CelebA 5-point row; ``prior5`` where such points usually are (e.g.
    ``landmarks.CELEBA_ALIGNED_PRIOR`` for CelebA's aligned images), tried before detection.

    Raises ``maskgen.source.BadImage`` or ``maskgen.landmarks.NoFace`` with the reason.
    """
    options = options or MaskOptions()
    if isinstance(image, (str, Path)):
        source = str(image)
        key = key or source_key(Path(image).name)
        image = load_image(image)
    else:
        source, key = "", key or "image"
    found = locate(image, landmarks5, prior5)
    face = align_face(image, found.points, res, face_scale)
    return [make_triplet(face, options, seed, f"{key}_{v:02d}", source=source, landmark_method=found.method)
            for v in range(n)]
