"""Datasets: georefseg's own layout, RRSIS-D, RefSegRS, synthetic scenes and GIS layers."""

from __future__ import annotations

from pathlib import Path

from georefseg.data.samples import RefSample
from georefseg.errors import DatasetError


def open_dataset(root: str | Path) -> list[RefSample]:
    """All samples of a dataset folder, whichever supported layout it has."""
    from georefseg.data import native, refsegrs, rrsisd

    path = Path(root)
    if not path.is_dir():
        raise DatasetError(f"dataset folder {path} does not exist")
    if native.is_native(path):
        return native.read_native(path)
    if refsegrs.is_refsegrs(path):
        return refsegrs.read_refsegrs(path)
    if (refer_root := rrsisd.find_root(path)) is not None:
        return rrsisd.read_rrsisd(refer_root)
    raise DatasetError(
        f"{path} is not a dataset folder georefseg knows: expected dataset.json + samples.jsonl "
        "(georefseg), refs(unc).p + instances.json (RRSIS-D) or output_phrase_train.txt + "
        "images/ + masks/ (RefSegRS)")
