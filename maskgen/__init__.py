"""maskgen: paired masked / unmasked / binary-map face datasets.

Data flow: ``source`` (find and read images) -> ``landmarks`` (68 points) -> ``align`` (canonical
crop) -> ``mask`` (place a template) -> ``compose`` (triplets) -> ``shard`` / ``build`` (WebDataset).
The file format is defined in ``maskgen.format``.
"""

from .align import AlignedFace, align_face, paste_back
from .builder import BuildConfig, BuildError, build, combine
from .compose import MaskOptions, Triplet, image_to_triplets, make_triplet
from .landmarks import FaceLandmarks, NoFace, detect, locate
from .source import BadImage, discover, load_image

__all__ = [
    "AlignedFace", "align_face", "paste_back", "BuildConfig", "BuildError", "build", "combine", "MaskOptions",
    "Triplet", "image_to_triplets", "make_triplet", "FaceLandmarks", "NoFace", "detect", "locate", "BadImage",
    "discover", "load_image",
]
__version__ = "0.1.0"
