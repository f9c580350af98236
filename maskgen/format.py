"""The on-disk dataset format: one place for every name, field and range.

A dataset directory ``OUT`` holds

* ``{split}-{index:06d}.tar`` WebDataset shards (``{split}-p{part:03d}-{index:06d}.tar`` when built
  in parts, see ``maskgen build --part``). Each sample has the members

  - ``masked.jpg``   RGB, uint8, res x res: the face wearing the synthetic mask
  - ``unmasked.jpg`` RGB, uint8, res x res: the same aligned face without the mask
  - ``map.png``      single channel uint8, 0 or 255: 255 where the mask is seen on the face
                     (template alpha >= 0.5 after warping, less what an occluder in front of it
                     hides, see ``maskgen.occluders``); outside it masked == unmasked before
                     JPEG encoding
  - ``json``         metadata, see ``SampleMeta`` in ``maskgen.compose``

  Keys contain no dots (WebDataset splits member names at the first dot).
* ``manifest.parquet``  one row per sample (columns: ``MANIFEST_COLUMNS``)
* ``failures.csv``      one row per skipped source (columns: ``FAILURE_COLUMNS``)
* ``stats.json``        compact summary: counts by split, mask type, wear, generator, print and occluder, creased
  masks (``folds``), coverage
  quantiles, failures; the record of every shard: ``shards`` (its SHA-256) and ``shard_sizes`` (its
  size in bytes), as written (``maskgen verify`` and ``maskgen.verify.check_shards`` compare with them)
* ``landmarks.parquet`` per source: ok, reason, method, n_faces and the 68 landmarks (136 floats, x0 y0 x1 ...)
  in source-image pixels, and ``sha256`` (of the image file's bytes); reusable by another build of the same
  source (``--landmarks``: a row whose sha256 is not the source's is not used)
* ``build.json``        the arguments the dataset was built with and the content of its inputs (``source_content``,
  ``template_digests``): a rerun must match them to resume
* ``.work/``            what a rerun resumes from (see ``maskgen.build``), e.g. ``{shard}.json`` per
  finished shard: its planned keys, manifest rows, failures and ``tar`` (``{"bytes", "sha256"}`` of the
  shard as written, or null when it has no sample), which ``stats.json``'s records are copied from
"""

MASKED = "masked.jpg"
UNMASKED = "unmasked.jpg"
MAP = "map.png"
META = "json"
SAMPLE_MEMBERS = (MASKED, UNMASKED, MAP, META)

SPLITS = ("train", "val", "test")

# ``source`` (here, in failures.csv, landmarks.parquet and the sample's json) is the image's path below
# --source with forward slashes, as it is when the name is valid UTF-8 (nearly always). A name that is
# not valid UTF-8, or that is written only of ``\xNN`` escapes where it has backslashes, is stored with
# each undecodable byte as ``\xNN`` (lower-case hex) and each backslash as ``\x5c``; the rest as is.
# Reversible: maskgen.source.encode_name / decode_name.
MANIFEST_COLUMNS = (
    "key", "shard", "split", "source", "identity", "mask_type", "color", "texture",
    "variant", "wear", "generator", "coverage", "yaw", "upsampled", "face_scale", "print", "print_source", "folds",
    "occluder", "occluded",
)
FAILURE_COLUMNS = ("source", "stage", "reason")

# Values of the sample's json and the manifest that readers group by:
WEARS = ("correct", "nose", "mouth", "chin")  # ``wear``: correctly worn; nose / nose and mouth / chin uncovered
YAW_THRESHOLD = 0.3  # ``variant``: left / right when the head's |yaw| is above this, else front

MANIFEST = "manifest.parquet"
FAILURES = "failures.csv"
STATS = "stats.json"
LANDMARKS = "landmarks.parquet"
BUILD_INFO = "build.json"
WORK_DIR = ".work"  # per-chunk and per-shard intermediate results, kept for resuming


def shard_name(split: str, index: int, part: int | None = None) -> str:
    if part is None:
        return f"{split}-{index:06d}.tar"
    return f"{split}-p{part:03d}-{index:06d}.tar"


def shard_glob(split: str) -> str:
    """Glob matching every shard of one split, built in one part or many."""
    return f"{split}-*.tar"
