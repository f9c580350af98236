"""Planning a build: the sources' fingerprints (names, bytes), a unique key per source, the pairs each gets,
and the samples grouped into shards (each with everything a worker needs to compose it)."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .. import format as fmt
from ..source import SourceImage, content_digest, source_key
from .options import BuildConfig, BuildError

log = logging.getLogger("maskgen.build")  # one name in the log lines, whichever step writes

# Sources hashed at once: each read waits on the disk when the cache is cold (a first build, a network file
# system); a few threads overlap those waits (hashlib and reads release the GIL).
HASH_THREADS = 8


def name_fingerprint(images: list[SourceImage]) -> str:
    h = hashlib.sha256()
    for im in images:
        h.update(im.rel.encode() + b"\0")
    return f"{len(images)}:{h.hexdigest()[:16]}"


def source_digests(images: list[SourceImage]) -> dict[str, str | None]:
    """Each source's ``content_digest`` (its bytes read once, none decoded), by ``rel``."""
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        return dict(zip([im.rel for im in images], pool.map(content_digest, [im.path for im in images]), strict=True))


def content_fingerprint(images: list[SourceImage], digests: dict[str, str | None]) -> str:
    """The sources' names and bytes (``digests``: each one's ``content_digest``), as one short value."""
    h = hashlib.sha256()
    for im in images:
        h.update(f"{im.rel}\0{digests[im.rel] or '-'}\n".encode())
    return f"{len(images)}:{h.hexdigest()[:16]}"


def unique_keys(images: list[SourceImage]) -> dict[str, str]:
    """Source key stems, unique: a stem shared by several paths (they differ only in characters the
    sanitiser drops: unicode, spaces, punctuation) gets a hash of the path, longer when even that clashes."""
    stems = {im.rel: source_key(im.rel) for im in images}
    shared = Counter(stems.values())
    keys = {rel: stem if shared[stem] == 1 else f"{stem}_{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
            for rel, stem in stems.items()}
    for length in (16, 40):
        taken = Counter(keys.values())
        clashing = [rel for rel, key in keys.items() if taken[key] > 1]
        if not clashing:
            break
        for rel in clashing:
            keys[rel] = f"{stems[rel]}_{hashlib.sha1(rel.encode()).hexdigest()[:length]}"
    if len(set(keys.values())) != len(keys):
        raise BuildError("could not give every source a unique key; rename the files whose names end in a hash")
    return keys


def quotas(images: list[SourceImage], pairs: int | None, seed: int) -> dict[str, int] | None:
    """Pairs per source over the whole dataset (all parts), before knowing which faces are usable.

    None when no pair count is asked for: then every usable face gets one pair.
    """
    n = len(images)
    if pairs is None:
        return None
    base, extra = divmod(pairs, n)
    order = np.random.default_rng(seed).permutation(n)
    quota = {im.rel: base for im in images}
    for i in order[:extra]:
        quota[images[i].rel] += 1
    return quota


def _spread(total: int, usable: list[str], seed: int, salt: str) -> dict[str, int]:
    """``total`` pairs over the usable faces: as even as possible, extras to a seeded subset."""
    if not usable or total <= 0:
        return {}
    base, extra = divmod(total, len(usable))
    salt_key = int(hashlib.sha1(salt.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(salt_key,)))
    order = rng.permutation(len(usable))
    counts = {rel: base for rel in usable}
    for i in order[:extra]:
        counts[usable[i]] += 1
    return {rel: c for rel, c in counts.items() if c > 0}


@dataclass
class Shard:
    name: str
    samples: list[dict]


def photo_source(seed: int, key: str, own: str, every: list[SourceImage]) -> SourceImage | None:
    """Another source image that a sample's photo print is cut from (maskgen.prints): picked from the whole
    source's list by the sample's key and seed alone, so that it is the same in every part and worker count."""
    if len(every) < 2:
        return None
    index = int(hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()[:12], 16) % len(every)
    if every[index].rel == own:
        index = (index + 1) % len(every)
    return every[index]


def plan_shards(config: BuildConfig, images: list[SourceImage], usable: dict[str, dict], split_of: dict[str, str],
                 quota: dict[str, int] | None, keys: dict[str, str], digests: dict[str, str | None],
                 every: list[SourceImage] | None = None) -> list[Shard]:
    """The part's shards; ``every``: all the source's images (all parts), that photo prints are cut from."""
    k, n_parts = config.part
    every = sorted(every or images, key=lambda im: im.rel)
    shards = []
    for split in fmt.SPLITS:
        in_split = [im for im in images if split_of[im.rel] == split]
        ok = [im.rel for im in in_split if im.rel in usable]
        # Pairs lost to unusable faces go to the usable ones of the same split and part.
        wanted = len(ok) if quota is None else sum(quota[im.rel] for im in in_split)
        counts = _spread(wanted, ok, config.seed, f"{split}:{k}:{n_parts}")
        if wanted and not ok:
            log.warning("split %s: %d pairs requested but no usable face in this part", split, wanted)
        samples = []
        for im in in_split:
            record = usable.get(im.rel)
            for v in range(counts.get(im.rel, 0)):
                key = f"{keys[im.rel]}_{v:02d}"
                other = photo_source(config.seed, key, im.rel, every)
                samples.append({"key": key, "path": str(im.path), "sha256": digests[im.rel],
                                "source": im.rel,
                                "identity": im.identity, "split": split, "points": record["points"],
                                "method": record["method"],
                                "photo": None if other is None else
                                {"path": str(other.path), "sha256": digests.get(other.rel), "source": other.rel}})
        for i in range(0, len(samples), config.shard_size):
            name = fmt.shard_name(split, i // config.shard_size, None if n_parts == 1 else k)
            shards.append(Shard(name, samples[i:i + config.shard_size]))
    return shards

