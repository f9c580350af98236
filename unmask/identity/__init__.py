"""Identity: does an unmasked face still look like the same person to face recognition?

* ``embedding``: dlib's 128-d face descriptors of aligned crops, given their known landmarks
  (``embed``), and the distance of two descriptors (``id_distance``);
* ``protocol``: the seeded verification pairs (genuine and impostor) over a split, saved with the
  results (``build_protocol``, ``save_protocol``, ``load_protocol``);
* ``verification``: match rate, verification accuracy and TAR at a FAR on those pairs (``verify``).

Rows without an embedding are NaN, never dropped, and count as "no match" everywhere.
"""

from .embedding import (
    DEFAULT_PADDING,
    EMBEDDING_DIM,
    MATCH_THRESHOLD,
    MIN_IMAGE_SIDE,
    MODEL_FILE,
    embed,
    embed_with_reasons,
    embedding_problem,
    id_distance,
)
from .protocol import (
    PROTOCOL_COLUMNS,
    PROTOCOL_FORMAT,
    build_protocol,
    gallery_keys,
    load_protocol,
    probe_keys,
    save_protocol,
)
from .verification import (
    DEFAULT_FARS,
    GROUND_TRUTH_PROBE,
    CoarseFARWarning,
    far_thresholds,
    id_match_rate,
    pair_distances,
    verification_metrics,
    verify,
)

__all__ = [
    "DEFAULT_FARS", "DEFAULT_PADDING", "EMBEDDING_DIM", "GROUND_TRUTH_PROBE", "MATCH_THRESHOLD", "MIN_IMAGE_SIDE",
    "MODEL_FILE", "PROTOCOL_COLUMNS", "PROTOCOL_FORMAT", "CoarseFARWarning", "build_protocol", "embed",
    "embed_with_reasons", "embedding_problem", "far_thresholds", "gallery_keys", "id_distance", "id_match_rate",
    "load_protocol", "pair_distances", "probe_keys", "save_protocol", "verification_metrics", "verify",
]
