"""The verification protocol: seeded, deterministic, counts what it skips, round-trips through files."""

from __future__ import annotations

import pandas as pd
import pytest

from unmask import identity as idn


def make_samples(n_identities: int = 8, photos: int = 3, variants: int = 2) -> pd.DataFrame:
    """Keys like maskgen's (source stem + variant), identities with leading zeros kept as strings."""
    rows = []
    for i in range(n_identities):
        for p in range(photos):
            source = f"{i * 100 + p:06d}.jpg"
            for v in range(variants):
                rows.append({"key": f"{i * 100 + p:06d}_{v:02d}", "source": source, "identity": f"{i:04d}"})
    return pd.DataFrame(rows)


def test_same_seed_same_protocol_other_seed_differs():
    samples = make_samples()
    a = idn.build_protocol(samples, seed=0, impostors=3)
    shuffled = samples.sample(frac=1.0, random_state=1).reset_index(drop=True)
    b = idn.build_protocol(shuffled, seed=0, impostors=3)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs == b.attrs
    c = idn.build_protocol(samples, seed=1, impostors=3)
    assert len(c) == len(a) and not c.equals(a)


def test_pairs_are_genuine_other_photo_and_distinct_impostors():
    samples = make_samples()
    k = 3
    p = idn.build_protocol(samples, seed=0, impostors=k)
    source = dict(zip(samples["key"], samples["source"], strict=True))
    ident = dict(zip(samples["key"], samples["identity"], strict=True))
    assert list(p.columns) == idn.PROTOCOL_COLUMNS and p["genuine"].dtype == bool
    assert p.attrs["n_probes"] == len(samples) == 48 and p.attrs["n_skipped"] == 0
    assert len(p) == len(samples) * (1 + k)
    assert idn.probe_keys(p) == sorted(samples["key"])
    for probe, pairs in p.groupby("probe_key", sort=False):
        gen, imp = pairs[pairs["genuine"]], pairs[~pairs["genuine"]]
        assert len(gen) == 1 and len(imp) == k and bool(pairs["genuine"].iloc[0])  # genuine first
        g = gen["gallery_key"].iloc[0]
        assert ident[g] == ident[probe] and source[g] != source[probe]
        assert all(ident[x] != ident[probe] for x in imp["gallery_key"])
        assert imp["gallery_identity"].nunique() == k  # distinct impostor identities
        assert (pairs["gallery_identity"] == pairs["gallery_key"].map(ident)).all()
    # one gallery key per source photo: the smallest key of that source
    assert set(idn.gallery_keys(p)) <= {k for k in samples["key"] if k.endswith("_00")}


def test_probes_without_another_photo_are_skipped_and_counted():
    samples = make_samples(n_identities=3, photos=2, variants=2)
    extra = pd.DataFrame([
        {"key": "900000_00", "source": "900000.jpg", "identity": "0009"},  # one photo, two masked variants
        {"key": "900000_01", "source": "900000.jpg", "identity": "0009"},
        {"key": "950000_00", "source": "950000.jpg", "identity": None},  # identity unknown
        {"key": "960000_00", "source": "960000.jpg", "identity": float("nan")},
    ])
    p = idn.build_protocol(pd.concat([samples, extra]), seed=0, impostors=1)
    assert p.attrs["n_skipped"] == 2 and p.attrs["skipped_probes"] == ["900000_00", "900000_01"]
    assert p.attrs["n_no_identity"] == 2 and p.attrs["n_probes"] == 12 and p.attrs["n_samples"] == 16
    assert not set(p["probe_key"]) & {"900000_00", "900000_01", "950000_00", "960000_00"}
    # the single photo of identity 0009 still serves as an impostor for others
    assert len(p) == 24


def test_too_few_identities_for_k_impostors_is_counted():
    p = idn.build_protocol(make_samples(n_identities=3, photos=2, variants=1), seed=0, impostors=5)
    assert (~p["genuine"]).groupby(p["probe_key"]).sum().eq(2).all()
    assert p.attrs["n_missing_impostors"] == 6 * 3


def test_genuine_pairs_stable_when_samples_are_added():
    base = make_samples(n_identities=5)
    more = pd.concat([base, make_samples(n_identities=7).iloc[len(base):]])
    a = idn.build_protocol(base, seed=0)
    b = idn.build_protocol(more, seed=0)
    ga, gb = a[a["genuine"]].set_index("probe_key"), b[b["genuine"]].set_index("probe_key")
    pd.testing.assert_series_equal(ga["gallery_key"], gb.loc[ga.index, "gallery_key"])


def test_integer_identities_and_bad_input():
    samples = make_samples(n_identities=4, photos=2, variants=1)
    as_float = samples.assign(identity=samples["identity"].astype(float))  # 2937 -> 2937.0 via pandas NaN
    p = idn.build_protocol(as_float, seed=0)
    assert set(p["probe_identity"]) == {"0", "1", "2", "3"}
    with pytest.raises(ValueError, match="column"):
        idn.build_protocol(samples.drop(columns="source"))
    with pytest.raises(ValueError, match="duplicate"):
        idn.build_protocol(pd.concat([samples, samples.iloc[:1]]))
    empty = idn.build_protocol(samples.iloc[:0])
    assert list(empty.columns) == idn.PROTOCOL_COLUMNS and len(empty) == 0


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_save_load_round_trip(tmp_path, suffix):
    p = idn.build_protocol(make_samples(), seed=3, impostors=2)
    path = idn.save_protocol(p, tmp_path / "results" / f"protocol{suffix}")
    assert path.is_file() and (tmp_path / "results" / f"protocol{suffix}.json").is_file()
    q = idn.load_protocol(path)
    pd.testing.assert_frame_equal(p, q)  # leading zeros and bool dtype survive
    assert q.attrs["seed"] == 3 and q.attrs["impostors"] == 2 and q.attrs["n_skipped"] == 0
