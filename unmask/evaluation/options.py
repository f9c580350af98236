"""What an evaluation pass is asked to do: ``EvalOptions``, checked when made.

Its own module so that the pass (``evaluate``) and the parts it drives (``methods``, ``scores``) all
read the options without importing one another, and the CLI reads their defaults without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import baselines as baseline_registry
from .labels import label_set_names


@dataclass
class EvalOptions:
    data: Path
    checkpoint: Path
    out: Path
    split: str = "test"
    one_stage: Path | None = None
    recon_only: Path | None = None
    resolution: int | None = None  # None: the data's own resolution
    batch_size: int = 16
    max_samples: int | None = None
    device: str = "auto"
    fid_weights: Path | None = None  # None: the torch hub cache
    lpips_weights: tuple[Path, Path] | None = None  # (AlexNet backbone, LPIPS linear layers)
    baselines: tuple[str, ...] = tuple(baseline_registry.BASELINES)
    inpaint_radius: int = baseline_registry.DEFAULT_RADIUS
    photos: Path | None = None
    # labels sets, each labels.csv or its folder (see ``labels``), scored apart; needs ``photos``. One path is
    # taken as a set of one, None as none.
    photo_labels: tuple[Path, ...] = ()
    max_photos: int | None = None  # without labels: the first N photos by name; with: the first N labelled ones of
    # each set
    identity: bool = False
    identity_max_samples: int | None = 200  # identity samples: the first N of the split in key order; None: all
    identity_seed: int = 0  # seed of the verification protocol
    impostors: int = 1  # impostor pairs per verification probe
    figures: bool = True
    sheet_rows: int = 4  # rows per contact sheet (per mask type, frontal, turned)
    failures: int = 8  # rows of each failure gallery
    progress: bool = False

    def __post_init__(self) -> None:
        self.data, self.checkpoint, self.out = Path(self.data), Path(self.checkpoint), Path(self.out)
        if self.photo_labels is None:
            self.photo_labels = ()
        elif isinstance(self.photo_labels, (str, Path)):
            self.photo_labels = (self.photo_labels,)
        self.photo_labels = tuple(Path(labels) for labels in self.photo_labels)
        if self.photo_labels and self.photos is None:
            raise ValueError("photo_labels (--photo-labels) requires photos (--photos)")
        label_set_names(self.photo_labels)  # two sets of one name fail before any work
        for name in self.baselines:
            baseline_registry.get(name)  # unknown names fail before any work
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.identity_max_samples is not None and self.identity_max_samples < 1:
            raise ValueError("identity_max_samples must be at least 1 (None: every sample)")
        if self.impostors < 0:
            raise ValueError("impostors must be at least 0")
