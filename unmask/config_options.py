"""How ``unmask train``'s command line becomes a ``Config``: which option sets which config key, each
value checked as the config checks it, the order they apply in (preset or file, options, ``--set``), and
the resolution a run takes from its dataset unless one is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

from maskgen.clitools import DeprecatedOption, value_name
from maskgen.format import BUILD_INFO
from maskgen.reader import built_resolution
from unmask.config import Config, parse_assignment, preset, value_problem

# CLI option -> config key, for the options that only set one config value. Each option is named after
# its config key (``--adv`` sets ``loss.adv``, ``--mseg-width`` ``mseg.base_width``), and each params.yaml key
# after its option (``train.adv``, ``train.mseg_width``); the options' former names are deprecated
# (``DeprecatedOption``: hidden, they warn naming the new one).
CONFIG_OPTIONS = {
    "resolution": "train.resolution",
    "epochs": "train.epochs",
    "steps": "train.steps",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
    "num_workers": "train.num_workers",
    "amp": "train.amp",
    "checkpoint_every": "train.checkpoint_every",
    "val_max_batches": "train.val_max_batches",
    "channels_last": "train.channels_last",
    "require_pretrained": "train.require_pretrained",
    "gan_maps": "train.gan_maps",
    "mseg_width": "mseg.base_width",
    "generator_width": "generator.base_width",
    "discriminator_width": "discriminator.base_width",
    "use_map": "generator.use_map",
    "adv": "loss.adv",
    "rec": "loss.rec",
    "per": "loss.per",
}


OPTIMS = ("seg_optim", "gan_optim")  # --lr and --lr-milestones set the value of both


def checked(values: dict[str, Any]) -> None:
    """Config values given on the command line, checked as the config checks them: a bad one is a usage
    error (see maskgen.clitools)."""
    for key, value in values.items():
        problem = value_problem(key, value)
        if problem:
            raise click.BadParameter(problem)


def config_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None:
        checked({CONFIG_OPTIONS[value_name(ctx, param)]: value})
    return value


def deprecated_option(old: str, new: str, **attrs: Any) -> Any:
    """A former name of option ``new`` (one that sets a config value): hidden, it warns naming ``new``."""
    name = new.lstrip("-").replace("-", "_")
    return click.option(old, cls=DeprecatedOption, replacement=new, setting=CONFIG_OPTIONS[name],
                        callback=config_option, **attrs)


def optims_option(_ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """--lr, --lr-milestones (comma-separated fractions -> a list): the value of both optimisers."""
    if value is None:
        return None
    if param.name == "lr_milestones":
        try:
            value = [float(x) for x in value.split(",") if x.strip()]
        except ValueError:
            raise click.BadParameter("comma-separated fractions, e.g. 0.5,0.75") from None
    checked({f"{optim}.{param.name}": value for optim in OPTIMS})
    return value


def assignments_option(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[tuple[str, Any]]:
    """--set KEY=VALUE ... -> [(key, value)], each checked."""
    pairs = []
    for text in values:
        try:
            key, value = parse_assignment(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        problem = value_problem(key, value)
        if problem:
            raise click.BadParameter(f"{key}: {problem}")
        pairs.append((key, value))
    return pairs


def one_line(error: Exception) -> str:
    return " ".join(str(error.args[0] if isinstance(error, KeyError) and error.args else error).split())


def load_config(path: Path) -> Config:
    """A config file; ValueError naming it when it does not read as a valid config."""
    try:
        return Config.load(path)
    except (KeyError, ValueError, TypeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {one_line(exc)}") from exc


def build_config(
    config_file: Path | None, preset_name: str | None, options: dict[str, Any], lr: float | None,
    lr_milestones: list[float] | None, assignments: list[tuple[str, Any]],
) -> Config:
    """Config from (preset or file), then the explicit options, then ``--set`` assignments (key, value)."""
    if config_file and preset_name:
        raise click.ClickException("--config and --preset are alternatives; use one")  # each fine alone: exit 1
    cfg = load_config(config_file) if config_file else preset(preset_name or "paper")
    overrides: dict[str, Any] = {CONFIG_OPTIONS[k]: v for k, v in options.items() if v is not None}
    for name, value in (("lr", lr), ("lr_milestones", lr_milestones)):
        if value is not None:
            overrides.update({f"{optim}.{name}": value for optim in OPTIMS})
    overrides.update(assignments)
    return cfg.replace(**overrides)


def file_gives(path: Path, key: str) -> bool:
    """Whether the config file ``path`` (one that loads) gives the dotted ``key`` itself."""
    node: Any = yaml.safe_load(path.read_text()) or {}
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def with_dataset_resolution(cfg: Config, data_dir: Path, given: str | None) -> tuple[Config, str]:
    """``cfg`` training at the crop size the dataset was built at (build.json) unless a resolution was
    ``given`` (where: for the log), and the log line that says which resolution and why. A dataset without
    that record keeps the config's. A given resolution is used whatever the dataset's: every image is
    resized to it as it loads."""
    built = built_resolution(data_dir)
    used = cfg.train.resolution
    if given:
        resized = "" if built in (None, used) else f"; the dataset's crops are {built} px, resized as they load"
        return cfg, f"resolution: {used} px, given ({given}){resized}"
    if built is None:
        return cfg, f"resolution: {used} px, the config's ({data_dir} records no crop size; --resolution to choose)"
    return (cfg.replace(**{"train.resolution": built}),
            f"resolution: {built} px, the dataset's crop size ({data_dir / BUILD_INFO}; --resolution to choose)")
