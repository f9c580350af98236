"""Build a dataset: source -> landmarks -> align -> mask -> compose -> shard.

Two phases, each parallel over joblib workers and each resumable:

1. landmarks (``landmark_cache``): every source image of this part is read and its 68 landmarks found (or
   taken from a CelebA 5-point row, or a ``--landmarks`` file); results are cached per chunk under ``OUT/.work``.
2. compose (``plan``, ``compose_phase``): the requested number of pairs is spread over the usable faces of
   each split, the samples are grouped into shards, and each missing shard is composed and written atomically.

Workers return encoded samples in a fixed order and only this process writes files, so the shards
are byte-identical whatever the worker count. A dataset can be built in parts on several machines
(``part=(k, n)``): part k takes every n-th source, writes shards named ``{split}-p{k}-NNNNNN.tar``,
and ``combine`` merges the parts' manifests once all are present.

Each finished shard has a record (``.work/{shard}.json``: its planned keys, manifest rows, failures and
the tar's size and SHA-256), written atomically before the tar is renamed into place; a rerun reuses a
shard only when the file matches its record, and rebuilds it otherwise. Parts may build into one
shared folder at once: each holds a lock for its part (``.work/part-K-of-N.lock``), removes only
temporaries that are provably its own leftovers, and ``combine`` runs under a lock of its own.

A folder holds one build of one content: a build into a folder whose build.json records other arguments,
sources or template packs is refused before anything is written (``output_folder``).
The sources are hashed once, in this process (bytes read, none decoded). A worker reads a source's bytes again
(from the page cache), hashes them and decodes them only when they are the hashed ones (``source.read_source``):
a source replaced during the build is a failure ("changed during the build"), not samples or landmarks of the
new image recorded under the old content.

Modules, one concern each: ``options`` (BuildConfig and each option's range), ``plan`` (fingerprints, keys,
pairs per face, shards), ``output_folder`` (part file names; preparing or refusing the folder),
``landmark_cache`` (the landmarks phase), ``compose_phase`` (the compose phase and shard records),
``parallel`` (joblib or Dask), ``combine_parts`` (``combine``: merging parts; stats), ``run`` (``build``: one
part end to end).
"""

from __future__ import annotations

from .combine_parts import combine, summarize
from .options import CONTENT_KEYS, MAX_PAIRS_PER_SOURCE, BuildConfig, BuildError, option_problem
from .run import BuildResult, build

__all__ = ["CONTENT_KEYS", "MAX_PAIRS_PER_SOURCE", "BuildConfig", "BuildError", "BuildResult", "build", "combine",
           "option_problem", "summarize"]
