"""Every tunable choice of the GANMasker networks, losses and training, with its reason.

The paper (Mohamed & Kang, "GANMasker", Sensors 2023, 23, 7094) fixes the block structure
(five Se/Sd blocks in M-Seg; five Ge blocks, four dilated blocks with dilations 2, 4, 8, 16 and five
decoder blocks in FU-Net; LSGAN with a = 0, b = 1, c = 1; lr 1e-3 decayed by 0.1). Where it leaves
a value open, the default below is ours and its comment says why. Nothing else in the package
hard-codes these values: models, losses and the trainer read them from a ``Config``.

A ``Config`` round-trips through a plain dict / YAML (``to_dict``, ``from_dict``, ``load``,
``save``) and is stored in every checkpoint, so a checkpoint rebuilds its own models.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from maskgen.files import write_text_atomic


@dataclass
class MSegConfig:
    """Stage 1: the mask segmentation network (Se / Sd blocks)."""

    # Widths base_width * width_mults per Se block (the Sd blocks mirror them). The paper gives
    # no widths; 32..512 is half a classic U-Net (64..1024): a binary map of a large, smooth region needs
    # far less capacity than the inpainting generator.
    base_width: int = 32
    width_mults: tuple[int, ...] = (1, 2, 4, 8, 16)
    # CBAM's channel-MLP reduction and spatial kernel: the CBAM paper's values (Woo et al. 2018)
    # are 16 and 7; 8 keeps the MLP non-trivial at the narrow first blocks.
    cbam_reduction: int = 8
    cbam_kernel: int = 7


@dataclass
class GeneratorConfig:
    """Stage 2: FU-Net generator (Ge blocks, dilated bottleneck, decoder, MURF)."""

    # Widths per Ge block; capped at 8x (512) like pix2pix's U-Net: the 1/16-resolution
    # bottleneck carries global face structure, and 1024 channels there would double the
    # parameter count for little gain.
    base_width: int = 64
    width_mults: tuple[int, ...] = (1, 2, 4, 8, 8)
    cbam_reduction: int = 16  # CBAM paper default
    cbam_kernel: int = 7
    dilations: tuple[int, ...] = (2, 4, 8, 16)  # paper
    leaky_slope: float = 0.2  # the usual GAN LeakyReLU slope (DCGAN, pix2pix)
    # True: the paper's two-stage network (masked face + map in, MURF out). False: the one-stage
    # ablation, 3-channel input and the raw output used as it is.
    use_map: bool = True


@dataclass
class DiscriminatorConfig:
    """Patch discriminator, spectral normalisation on every conv."""

    # pix2pix's 70x70 PatchGAN: three stride-2 convs from 64 channels. The paper gives no depth;
    # 70 px patches at 256 px cover a mouth or a nose, the parts a mask hides.
    base_width: int = 64
    n_layers: int = 3
    leaky_slope: float = 0.2


@dataclass
class LossConfig:
    """Loss weights. Segmentation: BCE + Dice. GAN: alpha * adv + beta * rec + gamma * per."""

    seg_bce: float = 1.0  # the paper sums BCE and Dice with equal weight
    seg_dice: float = 1.0
    # LSGAN targets (paper): a for fake and b for real in the D loss, c in the G loss.
    lsgan_a: float = 0.0
    lsgan_b: float = 1.0
    lsgan_c: float = 1.0
    # alpha / beta / gamma: the paper leaves them open. EdgeConnect's inpainting weights
    # (adversarial 0.1, L1 1, perceptual 0.1) keep reconstruction dominant, which a
    # supervised, paired task allows.
    adv: float = 0.1
    rec: float = 1.0
    per: float = 0.1
    # VGG19 layers for the perceptual term and their weights: the first ReLU of each scale, equal
    # weights (EdgeConnect's perceptual loss), so fine texture and coarse structure both count.
    vgg_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    vgg_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)


@dataclass
class OptimConfig:
    """Adam with the paper's step schedule: lr, multiplied by lr_decay at each milestone."""

    lr: float = 1e-3  # paper
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    # Milestones as fractions of the stage's total steps, so the schedule keeps its shape
    # whatever the run length (the paper decays by 0.1; where exactly is not given).
    lr_milestones: tuple[float, ...] = (0.5, 0.75)
    lr_decay: float = 0.1  # paper


def _gan_optim() -> OptimConfig:
    # beta1 = 0.5 is the DCGAN / pix2pix setting; the default 0.9 makes adversarial training
    # oscillate more.
    return OptimConfig(betas=(0.5, 0.999))


@dataclass
class TrainConfig:
    # Must be a multiple of 32. ``unmask train`` sets it to the dataset's crop size (maskgen build --resolution)
    # unless one is given; 256 is maskgen build's default, used for shards that record none.
    resolution: int = 256
    batch_size: int = 8  # per process (per GPU); not given in the paper
    epochs: int = 20  # per stage
    steps: int | None = None  # when set, overrides epochs
    seed: int = 0
    num_workers: int = 4
    shuffle_buffer: int = 512  # samples, per loader worker
    # Mixed precision. "auto": on CUDA bf16 where the GPU has it, else fp16 with a GradScaler (twice the
    # tensor-core rate, half the activation memory); off on the CPU, where it gains nothing that matters and a
    # default CPU run stays float32. "bf16" / "fp16" apply on the CPU too: the CUDA code path, run without a GPU.
    amp: str = "auto"
    # Weights and activations in NHWC layout (channels_last), the layout oneDNN and tensor cores take without a
    # transpose. Off: its kernels round differently, so turning it on changes every number a run produces (the
    # default run's must not change), and on a GPU it is not measured yet. On an idle CPU at the default
    # pipeline's size: stage 1 about as fast, stage 2 ~0.86x the step time (docs/gpus.md).
    channels_last: bool = False
    # torch.compile of the trained networks (inductor: C++ on the CPU, Triton on CUDA). Off: it needs a compiler,
    # the first steps pay its compilation (7-10 minutes per stage on a busy 2-core CPU), and its fused kernels
    # round differently (the default run's numbers must not change). Measured on the CPU at the default pipeline's
    # size once compiled, under heavy load (noisy): 0.56x / 0.67x the step time of stage 1 / 2 (docs/gpus.md).
    compile: bool = False
    checkpoint_every: int = 1000  # steps; a checkpoint is also written at the end
    val_max_batches: int | None = None  # None = the whole validation split
    sample_images: int = 4  # rows in the per-epoch sample grid
    # Maps fed to stage 2: "gt" trains on the ground-truth maps (paper), "predicted" on
    # binarised M-Seg predictions (needs a stage-1 checkpoint).
    gan_maps: str = "gt"
    # Stage 1's photometric augmentation (unmask/training/augment.py): the share of training images
    # whose mask pixels are recoloured (real masks come in any colour and print; maskgen draws a
    # palette) and of images jittered as a whole (light, camera). 0 turns one off.
    seg_recolor: float = 0.5
    seg_jitter: float = 0.5
    # torch.use_deterministic_algorithms. None: on for CPU runs (costs nothing there), off on CUDA
    # (where it disables cuDNN autotuning and some kernels only warn).
    deterministic: bool | None = None
    # Samples that do not decode (bad image bytes, a missing member, members of different sizes) are
    # skipped and listed in RUN/logs/skipped.tsv, up to this many per stage. A few are a damaged
    # file or two that should not cost a long run; more mean the data itself is broken (a bad build
    # or a failing disk) and the run stops to say so. Never changes what is trained on sound data.
    max_bad_samples: int = 10
    # Fail at the start when a pretrained file the paper's protocol needs is missing and cannot be fetched
    # (unmask.weights): VGG19 for the perceptual term (when loss.per > 0) and FID's Inception for the
    # evaluation after training. Off, a run goes on without them, loudly (the default CPU pipeline, offline);
    # the paper configurations (pipelines/celeba*.yaml) turn it on: hours of GPU time never make another model.
    require_pretrained: bool = False


@dataclass
class Config:
    mseg: MSegConfig = field(default_factory=MSegConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    seg_optim: OptimConfig = field(default_factory=OptimConfig)
    gan_optim: OptimConfig = field(default_factory=_gan_optim)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of lists and scalars (YAML- and ``torch.load(weights_only=True)``-safe)."""
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Inverse of ``to_dict``; missing keys keep their defaults, unknown keys are errors."""
        return _build(cls, data, "")

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})

    def replace(self, **overrides: Any) -> Config:
        """A copy with dotted-path overrides, e.g. ``replace(**{"train.seed": 1})``."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            _set_dotted(data, dotted, value)
        return Config.from_dict(data)


# Width presets: "paper" is the default model; "cpu" trains in minutes on a laptop; "tiny" is
# for tests. Only widths change; everything else stays as configured, and the resolution is the
# dataset's (``unmask train`` takes its crop size unless told one).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": {"mseg.base_width": 16, "generator.base_width": 24, "discriminator.base_width": 24},
    "tiny": {"mseg.base_width": 8, "generator.base_width": 8, "discriminator.base_width": 8},
}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return Config().replace(**PRESETS[name])


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``dotted = "a.b"``; the path must already exist."""
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise KeyError(f"unknown config section {dotted!r}")
        node = node[part]
    if leaf not in node:
        raise KeyError(f"unknown config key {dotted!r}")
    node[leaf] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"gan_optim.lr=2e-4"`` -> ``("gan_optim.lr", 0.0002)``; the value is parsed as YAML (ValueError, one
    line naming the key, when it is not YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:  # e.g. "[0.5," (the message's first line says what the parser met)
        problem = str(getattr(exc, "problem", None) or "").strip()
        raise ValueError(f"{key.strip()}: {raw!r} is not valid YAML" + (f" ({problem})" if problem else "")) from None
    if isinstance(value, str):  # YAML reads "1e-3" as a string; numbers are meant here
        try:
            value = float(value)
        except ValueError:
            pass
    return key.strip(), value


def diff(a: Config, b: Config) -> list[str]:
    """Dotted keys whose values differ, e.g. ``["train.seed: 0 != 1"]``."""
    out: list[str] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, dict):
            for key in x:
                walk(x[key], y[key], f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix[:-1]}: {x!r} != {y!r}")

    walk(a.to_dict(), b.to_dict(), "")
    return out


# --- checks ------------------------------------------------------------------------------------------
# Each value's own range, one rule per key: ``_validate`` applies them to every config, wherever its values
# came from, and ``unmask train`` to each option and --set value given while it parses the command line
# (a bad one is a usage error there), so each range is written here only. Checks between keys are below.

AMP_MODES = ("auto", "off", "bf16", "fp16")
GAN_MAPS = ("gt", "predicted")
RESOLUTION_STEP = 32  # the networks pool five times by 2


def resolution_problem(value: int) -> str | None:
    """Why the networks cannot take ``value`` x ``value`` images, or None."""
    if value >= RESOLUTION_STEP and value % RESOLUTION_STEP == 0:
        return None
    return f"must be a positive multiple of {RESOLUTION_STEP} (five 2x poolings), got {value}"


def _at_least(low: int | float) -> Callable[[Any], str | None]:
    return lambda value: None if value >= low else f"must be at least {low}, got {value}"


def _finite(low: float, *, above: bool = False) -> Callable[[Any], str | None]:
    """A finite number >= ``low`` (> with ``above``)."""
    def problem(value: float) -> str | None:
        if math.isfinite(value) and (value > low if above else value >= low):
            return None
        return f"must be a finite number {'above' if above else 'at least'} {low:g}, got {value}"
    return problem


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else \
        f"must be {', '.join(choices[:-1])} or {choices[-1]}, got {value!r}"


def _each(rule: Callable[[Any], str | None], count: int | None = None) -> Callable[[Any], str | None]:
    """A rule for every item of a sequence (of ``count`` items when given)."""
    def problem(values: Any) -> str | None:
        if count is not None and len(values) != count:
            return f"needs {count} entries, got {len(values)}"
        return next((f"{p} (in {list(values)})" for p in map(rule, values) if p), None)
    return problem


def _fraction(open_low: bool, open_high: bool, what: str = "") -> Callable[[Any], str | None]:
    def problem(value: float) -> str | None:
        if (0 < value if open_low else 0 <= value) and (value < 1 if open_high else value <= 1):
            return None
        return f"must be in {'(' if open_low else '['}0, 1{')' if open_high else ']'}{what}, got {value}"
    return problem


_RULES: dict[str, Callable[[Any], str | None]] = {
    **{f"{net}.base_width": _at_least(1) for net in ("mseg", "generator", "discriminator")},
    **{f"{net}.width_mults": _each(_at_least(1), 5) for net in ("mseg", "generator")},  # five blocks
    **{f"{net}.cbam_reduction": _at_least(1) for net in ("mseg", "generator")},
    "generator.dilations": _each(_at_least(1)),
    "discriminator.n_layers": _at_least(1),
    **{f"loss.{name}": _finite(0.0) for name in ("seg_bce", "seg_dice", "adv", "rec", "per")},
    "loss.vgg_weights": _each(_finite(0.0)),
    **{f"{optim}.{name}": rule for optim in ("seg_optim", "gan_optim") for name, rule in {
        "lr": _finite(0.0, above=True),
        "betas": _each(_fraction(open_low=False, open_high=True), 2),
        "weight_decay": _finite(0.0),
        "lr_milestones": _each(_fraction(open_low=True, open_high=True, what=" (fractions of the run)")),
        "lr_decay": _finite(0.0, above=True),
    }.items()},
    "train.resolution": resolution_problem,
    "train.batch_size": _at_least(1),
    "train.epochs": _at_least(1),
    "train.steps": _at_least(1),
    "train.seed": _at_least(0),
    "train.num_workers": _at_least(0),
    "train.shuffle_buffer": _at_least(1),
    "train.amp": _one_of(AMP_MODES),
    "train.checkpoint_every": _at_least(1),
    "train.val_max_batches": _at_least(1),
    "train.sample_images": _at_least(0),
    "train.gan_maps": _one_of(GAN_MAPS),
    **{f"train.{name}": _fraction(open_low=False, open_high=False, what=" (a share of images)")
       for name in ("seg_recolor", "seg_jitter")},
    "train.max_bad_samples": _at_least(0),
}


def value_problem(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the dotted config ``key`` on its own (an unknown key, a value of the
    wrong type or out of its range), or None. Checks between keys are ``Config``'s."""
    section: Any = Config
    *parents, leaf = key.split(".")
    for part in parents:
        hint = get_type_hints(section).get(part) if dataclasses.is_dataclass(section) else None
        if not dataclasses.is_dataclass(hint):
            return "no such config section"
        section = hint
    hint = get_type_hints(section).get(leaf) if dataclasses.is_dataclass(section) else None
    if hint is None or dataclasses.is_dataclass(hint):
        return "no such config key"
    try:
        value = _coerce_field(hint, value)
    except (ValueError, TypeError) as exc:
        return str(exc)
    if value is None:
        return None if type(None) in get_args(hint) else "must have a value"
    rule = _RULES.get(key)
    return None if rule is None else rule(value)


def _validate(cfg: Config) -> None:
    data = cfg.to_dict()
    for key, rule in _RULES.items():
        section, leaf = key.rsplit(".", 1)
        value = data[section][leaf]
        problem = None if value is None else rule(value)
        if problem:
            raise ValueError(f"{key} {problem}")
    if len(cfg.loss.vgg_layers) != len(cfg.loss.vgg_weights):
        raise ValueError("loss.vgg_layers and loss.vgg_weights must have the same length")
    if cfg.train.gan_maps == "predicted" and not cfg.generator.use_map:
        raise ValueError("train.gan_maps=predicted needs generator.use_map (the one-stage ablation uses no map)")


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise TypeError(f"config section {prefix or '<root>'!r} must be a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise KeyError(f"unknown config keys in {prefix or '<root>'}: {unknown}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce_field(hint, value)
    return cls(**kwargs)


def _coerce_field(hint: Any, value: Any) -> Any:
    """``value`` as a field of type ``hint`` holds it (a tuple field: each item); ValueError if it cannot."""
    if get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {value!r}")
        return tuple(_coerce(get_args(hint)[0], v) for v in value)
    return _coerce(hint, value)


def _coerce(hint: Any, value: Any) -> Any:
    # YAML and click hand over ints where floats are meant ("lr: 1"); reject what cannot be meant.
    if value is None:
        return None
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) in (Union, types.UnionType) and len(args) == 1:
        hint = args[0]  # Optional[X] -> X
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true/false, got {value!r}")
        return value
    if hint in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"expected a number, got {value!r}")
    if hint is float:
        return float(value)
    if hint is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value}")
        return int(value)
    return value
