"""maskgen: paired masked / unmasked / binary-map face datasets.

Data flow: ``source`` (find and read images) -> ``landmarks`` (68 points) -> ``align`` (canonical
crop) -> ``mask`` (place a template) -> ``compose`` (triplets) -> ``shard`` / ``build`` (WebDataset).
The file format is defined in ``maskgen.format``.

The names below are imported on first use, so a build's worker processes (``maskgen.workers``)
do not pay for the build's imports (pandas, joblib). ``maskgen.build`` is the build's package; its
``build`` function is ``maskgen.build.build``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "align": ("AlignedFace", "align_face", "paste_back"),
    "build": ("BuildConfig", "BuildError", "combine"),
    "compose": ("MaskOptions", "Triplet", "image_to_triplets", "make_triplet"),
    "landmarks": ("FaceLandmarks", "NoFace", "detect", "locate"),
    "source": ("BadImage", "discover", "load_image"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
