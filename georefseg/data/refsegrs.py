"""RefSegRS in the layout its authors publish:

    ROOT/output_phrase_{train,val,test}.txt   "ID expression words …" one per line
    ROOT/images/ID.tif                         the 512×512 image
    ROOT/masks/ID.tif                          the target mask of that line
"""

from __future__ import annotations

from pathlib import Path

from georefseg.data.samples import SPLITS, RefSample
from georefseg.errors import DatasetError


def is_refsegrs(root: Path) -> bool:
    return (root / "output_phrase_train.txt").is_file() or (root / "output_phrase_test.txt").is_file()


def read_refsegrs(root: Path) -> list[RefSample]:
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise DatasetError(f"{root / sub} is missing: RefSegRS needs images/ and masks/ beside "
                               "the output_phrase_*.txt files")
    samples = []
    for split in SPLITS:
        listing = root / f"output_phrase_{split}.txt"
        if not listing.is_file():
            continue
        for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.strip().split(" ", 1)
            if not parts[0]:
                continue
            if len(parts) < 2 or not parts[1].strip():
                raise DatasetError(f"{listing}, line {n}: expected 'ID expression', got {line!r}")
            stem, text = parts[0], parts[1].strip()
            image, mask = root / "images" / f"{stem}.tif", root / "masks" / f"{stem}.tif"
            for p in (image, mask):
                if not p.is_file():
                    raise DatasetError(f"{listing}, line {n}: {p} is missing")
            samples.append(RefSample(f"{split}_{n}", image, text, split, mask))
    return samples
