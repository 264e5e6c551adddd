"""georefseg's own dataset layout, written by `dataset synth` and `dataset from-labels`.

    DIR/dataset.json     {"format": "georefseg", "version": 1, ...how it was made}
    DIR/samples.jsonl    one sample a line: id, image, mask (or null), expression, split, kinds
    DIR/images/*.png     RGB images
    DIR/masks/*.png      target masks (0 / 255), one per sample with a referent
"""

from __future__ import annotations

import json
from pathlib import Path

from georefseg.atomic import remove_stale, write_text
from georefseg.data.samples import SPLITS, RefSample
from georefseg.errors import DatasetError

FORMAT = "georefseg"


def is_native(root: Path) -> bool:
    return (root / "dataset.json").is_file()


def read_native(root: Path) -> list[RefSample]:
    """All samples of a georefseg dataset folder."""
    index = root / "samples.jsonl"
    if not index.is_file():
        raise DatasetError(f"{index} is missing: not a complete georefseg dataset folder")
    samples = []
    with open(index, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                sample = RefSample(
                    id=str(rec["id"]), image=root / rec["image"], expression=rec["expression"],
                    split=rec["split"], mask=None if rec["mask"] is None else root / rec["mask"],
                    kinds=list(rec.get("kinds", [])))
            except (ValueError, KeyError, TypeError) as exc:
                raise DatasetError(f"{index}, line {n}: not a valid sample record ({exc})") from exc
            if sample.split not in SPLITS:
                raise DatasetError(f"{index}, line {n}: split {sample.split!r} is not one of {SPLITS}")
            if not sample.image.is_file():
                raise DatasetError(f"{index}, line {n}: image {sample.image} is missing")
            samples.append(sample)
    return samples


class NativeWriter:
    """Writes a dataset folder; the index is written last and atomically, so a folder with
    a samples.jsonl is always complete."""

    def __init__(self, root: Path, meta: dict):
        self.root = Path(root)
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        (self.root / "masks").mkdir(exist_ok=True)
        remove_stale(self.root)  # the part files of a run that was killed while writing the index
        self.meta = {"format": FORMAT, "version": 1, **meta}
        self.records: list[dict] = []

    def add(self, record: dict) -> None:
        self.records.append(record)

    def close(self) -> None:
        counts = {s: sum(r["split"] == s for r in self.records) for s in SPLITS}
        meta = {**self.meta, "samples": counts}
        write_text(self.root / "dataset.json", json.dumps(meta, indent=2))
        write_text(self.root / "samples.jsonl", "".join(json.dumps(rec) + "\n" for rec in self.records))
