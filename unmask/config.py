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
import types
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
    resolution: int = 256  # maskgen build's default crop size; must be a multiple of 32
    batch_size: int = 8  # per process (per GPU); not given in the paper
    epochs: int = 20  # per stage
    steps: int | None = None  # when set, overrides epochs
    seed: int = 0
    num_workers: int = 4
    shuffle_buffer: int = 512  # samples, per loader worker
    # Mixed precision on CUDA: "auto" = bf16 where supported, else fp16 with a GradScaler.
    # Ignored (off) on CPU.
    amp: str = "auto"
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
# for tests. Only widths and resolution change; everything else stays as configured.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": {
        "mseg.base_width": 16, "generator.base_width": 24, "discriminator.base_width": 24,
        "train.resolution": 128,
    },
    "tiny": {
        "mseg.base_width": 8, "generator.base_width": 8, "discriminator.base_width": 8,
        "train.resolution": 64,
    },
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
    """``"gan_optim.lr=2e-4"`` -> ``("gan_optim.lr", 0.0002)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    value = yaml.safe_load(raw)
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


def _validate(cfg: Config) -> None:
    t = cfg.train
    if t.resolution % 32:
        raise ValueError(f"train.resolution must be a multiple of 32 (five 2x poolings), got {t.resolution}")
    if len(cfg.mseg.width_mults) != 5 or len(cfg.generator.width_mults) != 5:
        raise ValueError("mseg.width_mults and generator.width_mults need five entries (five blocks)")
    if len(cfg.loss.vgg_layers) != len(cfg.loss.vgg_weights):
        raise ValueError("loss.vgg_layers and loss.vgg_weights must have the same length")
    if t.amp not in ("auto", "off", "bf16", "fp16"):
        raise ValueError(f"train.amp must be auto, off, bf16 or fp16, got {t.amp!r}")
    if t.gan_maps not in ("gt", "predicted"):
        raise ValueError(f"train.gan_maps must be gt or predicted, got {t.gan_maps!r}")
    for name in ("seg_recolor", "seg_jitter"):
        if not 0 <= getattr(t, name) <= 1:
            raise ValueError(f"train.{name} is a share of images: 0..1, got {getattr(t, name)}")
    if t.gan_maps == "predicted" and not cfg.generator.use_map:
        raise ValueError("train.gan_maps=predicted needs generator.use_map (the one-stage ablation uses no map)")
    if t.max_bad_samples < 0:
        raise ValueError(f"train.max_bad_samples must be at least 0, got {t.max_bad_samples}")
    if t.batch_size < 1 or t.epochs < 1 or (t.steps is not None and t.steps < 1):
        raise ValueError("train.batch_size, train.epochs and train.steps must be positive")
    for name, optim in (("seg_optim", cfg.seg_optim), ("gan_optim", cfg.gan_optim)):
        if any(not 0 < m < 1 for m in optim.lr_milestones):
            raise ValueError(f"{name}.lr_milestones are fractions of the run, each in (0, 1)")


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
        elif get_origin(hint) is tuple:
            item_type = get_args(hint)[0]
            kwargs[name] = tuple(_coerce(item_type, v) for v in value)
        else:
            kwargs[name] = _coerce(hint, value)
    return cls(**kwargs)


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
