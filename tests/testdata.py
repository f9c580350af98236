"""Where the shared test data lives, and small helpers to lay it out (importable from any test)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GANMASKER_SHARED_DATA", REPO.parent / "shared" / "data"))
CELEBA = SHARED / "celeba-sample"
TEMPLATE_PACK = SHARED / "masktheface-templates"
REAL_MASKED = SHARED / "real-masked-photos"
WILD = SHARED / "wild-faces"



def make_celeba_subset(root: Path, celeba_dir: Path, n_identities: int, per_identity: int) -> Path:
    """A CelebA-layout folder of symlinks: n identities x k images, with its identity file."""
    rows = [line.split() for line in (celeba_dir / "identity_CelebA.txt").read_text().splitlines() if line.strip()]
    by_id: dict[str, list[str]] = {}
    for name, ident in rows:
        by_id.setdefault(ident, []).append(name)
    chosen = sorted(by_id)[:n_identities]
    img_dir = root / "img_align_celeba"
    img_dir.mkdir(parents=True)
    lines = []
    for ident in chosen:
        for name in sorted(by_id[ident])[:per_identity]:
            (img_dir / name).symlink_to(celeba_dir / "img_align_celeba" / name)
            lines.append(f"{name} {ident}")
    (root / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    return root
