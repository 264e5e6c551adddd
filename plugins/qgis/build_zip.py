"""Build the installable plugin zip: ``python plugins/qgis/build_zip.py [OUT_DIR]``.

The zip holds one folder, ``georefseg_qgis/``, with the plugin's modules, ``metadata.txt`` and its
icon: what QGIS's Plugin Manager (Install from ZIP) unpacks into a profile's
``python/plugins/``. No tests, caches or build files go in; entries are sorted and dated
1980-01-01 so that the same sources give the same bytes. Prints the zip's path.
"""

from __future__ import annotations

import configparser
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "georefseg_qgis"
SHIPPED = ("*.py", "metadata.txt", "icon.png")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def plugin_version() -> str:
    metadata = configparser.ConfigParser()
    metadata.read(PACKAGE / "metadata.txt", encoding="utf-8")
    return metadata["general"]["version"]


def plugin_files() -> list[Path]:
    return sorted({p for pattern in SHIPPED for p in PACKAGE.glob(pattern)})


def build(out_dir: str | Path = HERE / "dist") -> Path:
    """Write ``georefseg_qgis-<version>.zip`` into ``out_dir`` (atomically) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"georefseg_qgis-{plugin_version()}.zip"
    part = target.with_name(f".{target.name}.part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in plugin_files():
            info = zipfile.ZipInfo(f"{PACKAGE.name}/{path.name}", FIXED_TIME)
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            archive.writestr(info, path.read_bytes())
    part.replace(target)
    return target


if __name__ == "__main__":
    print(build(*sys.argv[1:2]))
