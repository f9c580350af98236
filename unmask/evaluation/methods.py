"""What makes an output: the methods of an evaluation (names: see ``unmask.evaluation``), run on one
batch at a time.

* ``two_stage``: the full chain, M-Seg's map -> FU-Net (``Unmasker.unmask_crops``, at M-Seg's calibrated threshold);
  ``two_stage_gt_map``: FU-Net given the ground-truth map;
  as in ``predict``, FU-Net and the baselines fill a predicted map grown by ``unmask.predict.MAP_GROWTH``
  (its edge is where stage 1 is least sure); a ground-truth map is exact and filled as it is;
* ``one_stage``: the ablation generator (trained with ``use_map=False``);
* ``recon_only``: a generator trained with ``--adv 0`` (no GAN) given the two-stage model's
  predicted map;
* every registered baseline given the predicted map and the ground-truth map;
* ``input``: the masked face itself, the score of doing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from unmask.checkpoint import load_models
from unmask.predict import Unmasker, grow_maps
from unmask.tensors import images_to_model

from . import (
    GT_MAP,
    INPUT,
    MAP_NAMES,
    ONE_STAGE,
    PRED_MAP,
    RECON_ONLY,
    TWO_STAGE,
    TWO_STAGE_GT_MAP,
    baseline_method,
    method_order,
)
from . import baselines as baseline_registry
from .samples import EvalBatch

if TYPE_CHECKING:
    from .options import EvalOptions


@dataclass
class Method:
    name: str
    map_source: str | None  # PRED_MAP, GT_MAP or None (given no map)
    description: str


class Methods:
    """The models and baselines of one evaluation, run on one batch at a time."""

    def __init__(self, opts: EvalOptions, device: torch.device) -> None:
        self.device = device
        self.radius = opts.inpaint_radius
        self.baselines = [baseline_registry.get(name) for name in opts.baselines]
        config, self.mseg, generator = load_models(opts.checkpoint, device)
        self.model_resolution = config.train.resolution
        self.two_stage: Unmasker | None = None
        self.one_stage: Unmasker | None = None
        self.skipped: dict[str, str] = {}  # method -> why it did not run
        if generator is not None and generator.use_map:
            self.two_stage = Unmasker(generator, self.mseg, config, device)
            if self.mseg is None:
                self.skipped[TWO_STAGE] = f"{opts.checkpoint} holds no stage-1 (M-Seg) model to predict maps"
        elif generator is not None:  # the checkpoint itself is the one-stage ablation
            if opts.one_stage is not None:
                raise ValueError(f"{opts.checkpoint} is already a one-stage (use_map=False) model; drop --one-stage")
            self.one_stage = Unmasker(generator, None, config, device)
        else:
            self.skipped[TWO_STAGE] = self.skipped[TWO_STAGE_GT_MAP] = f"{opts.checkpoint} holds no stage-2 generator"
        if opts.one_stage is not None:
            one_config, _, one_generator = load_models(opts.one_stage, device)
            if one_generator is None or one_generator.use_map:
                raise ValueError(f"--one-stage {opts.one_stage}: expected a generator trained with use_map=False")
            self.one_stage = Unmasker(one_generator, None, one_config, device)
        elif self.one_stage is None:
            self.skipped[ONE_STAGE] = "no one-stage checkpoint given (--one-stage)"
        self.recon_only: Unmasker | None = None
        if opts.recon_only is not None:
            recon_config, _, recon_generator = load_models(opts.recon_only, device)
            if recon_generator is None or not recon_generator.use_map:
                raise ValueError(f"--recon-only {opts.recon_only}: expected a generator trained with the map")
            if recon_config.loss.adv != 0:
                raise ValueError(f"--recon-only {opts.recon_only}: trained with an adversarial loss "
                                 f"(loss.adv {recon_config.loss.adv}); train it with --adv 0")
            if self.mseg is None:
                self.skipped[RECON_ONLY] = f"{opts.checkpoint} holds no stage-1 (M-Seg) model to predict maps"
            else:
                self.recon_only = Unmasker(recon_generator, None, recon_config, device)
        else:
            self.skipped[RECON_ONLY] = "no reconstruction-only checkpoint given (--recon-only)"
        self.methods = self._list(opts)

    def _list(self, opts: EvalOptions) -> list[Method]:
        found: dict[str, Method] = {}
        if self.two_stage is not None:
            if self.mseg is not None:
                found[TWO_STAGE] = Method(TWO_STAGE, PRED_MAP, f"M-Seg + FU-Net of {opts.checkpoint}")
            found[TWO_STAGE_GT_MAP] = Method(TWO_STAGE_GT_MAP, GT_MAP, f"FU-Net of {opts.checkpoint}, ground-truth map")
        if self.one_stage is not None:
            found[ONE_STAGE] = Method(ONE_STAGE, None, f"one-stage FU-Net of {opts.one_stage or opts.checkpoint}")
        if self.recon_only is not None:
            found[RECON_ONLY] = Method(RECON_ONLY, PRED_MAP, f"reconstruction-only FU-Net of {opts.recon_only}, "
                                                             f"given the predicted map of {opts.checkpoint}")
        sources = ([PRED_MAP] if self.mseg is not None else []) + [GT_MAP]
        for baseline in self.baselines:
            for source in sources:
                name = baseline_method(baseline.name, source)
                found[name] = Method(name, source, f"{baseline.label} (cv2.inpaint), radius {self.radius}, "
                                                   f"given the {MAP_NAMES[source]}")
        found[INPUT] = Method(INPUT, None, "the masked input unchanged")
        return [found[name] for name in method_order() if name in found]

    def predict_maps(self, masked: np.ndarray) -> np.ndarray:
        x = images_to_model(torch.from_numpy(np.ascontiguousarray(masked)).permute(0, 3, 1, 2).to(self.device))
        return self.mseg.predict_map(x)[:, 0].cpu().numpy().astype(bool)

    @torch.no_grad()
    def run(self, batch: EvalBatch) -> tuple[np.ndarray | None, dict[str, tuple[np.ndarray, np.ndarray | None]]]:
        """(predicted maps or None, {method: (outputs, map given or None)})."""
        outputs: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        pred_map = None
        if self.two_stage is not None and self.mseg is not None:
            images, maps = self.two_stage.unmask_crops(batch.masked)  # the full chain, as predict runs it
            pred_map = maps > 127
            outputs[TWO_STAGE] = (images, pred_map)
        elif self.mseg is not None:
            pred_map = self.predict_maps(batch.masked)
        if self.two_stage is not None:
            images, _ = self.two_stage.unmask_crops(batch.masked, batch.gt_map, grow=False)
            outputs[TWO_STAGE_GT_MAP] = (images, batch.gt_map)
        if self.one_stage is not None:
            outputs[ONE_STAGE] = (self.one_stage.unmask_crops(batch.masked)[0], None)
        if self.recon_only is not None:
            images, _ = self.recon_only.unmask_crops(batch.masked, pred_map.astype(np.uint8) * 255)
            outputs[RECON_ONLY] = (images, pred_map)
        maps = {PRED_MAP: pred_map, GT_MAP: batch.gt_map}
        # The baselines fill the region FU-Net fills given the same map (a predicted one grown by MAP_GROWTH).
        filled = {source: grow_maps(given) > 0 if source == PRED_MAP else given
                  for source, given in maps.items() if given is not None and self.baselines}
        for baseline in self.baselines:
            for source, given in maps.items():
                if given is not None:
                    images = baseline.batch(batch.masked, filled[source], self.radius)
                    outputs[baseline_method(baseline.name, source)] = (images, given)
        outputs[INPUT] = (batch.masked, None)
        return pred_map, outputs
