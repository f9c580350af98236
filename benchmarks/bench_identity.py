"""Identity on ~40 CelebA-sample faces at 256 px: match rate and verification, ground truth vs masked.

    python benchmarks/bench_identity.py [N_IDENTITIES]
"""
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from maskgen.compose import image_to_triplets
from unmask import identity as idn
from unmask.identity.embedding import _model as load_face_model

root = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-sample"
n_ids, per = int(sys.argv[1]) if len(sys.argv) > 1 else 20, 2
rows = [line.split() for line in (root / "identity_CelebA.txt").read_text().splitlines() if line.strip()]
by = {}
for name, ident in rows:
    by.setdefault(ident, []).append(name)
chosen = sorted(by)[:n_ids]
trips, meta = [], []
t0 = time.time()
for ident in chosen:
    for name in sorted(by[ident])[:per]:
        tr = image_to_triplets(root / "img_align_celeba" / name, n=1, res=256, seed=0)[0]
        trips.append(tr)
        meta.append({"key": tr.meta.key, "source": name, "identity": ident})
print(f"crops: {len(trips)} in {time.time()-t0:.1f}s")
lm = [np.array(t.meta.landmarks) for t in trips]
load_face_model()  # loaded before the clock starts
t0 = time.time()
gt = idn.embed([t.unmasked for t in trips], lm)
dt = time.time() - t0
masked = idn.embed([t.masked for t in trips], lm)
print(f"embed: {dt / len(trips) * 1000:.0f} ms/image (1 core)")
for name, e in (("ground_truth", gt), ("masked", masked)):
    d = idn.id_distance(e, gt)
    r, nv, ni = idn.id_match_rate(d)
    print(f"{name}: match rate vs own GT {r:.3f} (valid {nv}, invalid {ni}), mean dist {np.nanmean(d):.3f}")
samples = pd.DataFrame(meta)
keys = samples["key"].tolist()
for K in (1, 3):
    proto = idn.build_protocol(samples, seed=0, impostors=K)
    pk, gk = idn.probe_keys(proto), idn.gallery_keys(proto)
    pos = {k: i for i, k in enumerate(keys)}
    probes = {"ground_truth": gt[[pos[k] for k in pk]], "masked": masked[[pos[k] for k in pk]]}
    gallery = gt[[pos[k] for k in gk]]
    import warnings
    warnings.simplefilter("ignore")
    res = idn.verify(probes, gallery, proto)
    print(f"impostors={K}: {len(proto)} pairs, skipped {proto.attrs['n_skipped']}")
    shown = ["probe_type", "accuracy", "tar", "far", "tar_far_1", "tar_far_0.1", "n_pairs", "n_invalid"]
    print(res[shown].to_string(index=False))
