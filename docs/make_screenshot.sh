#!/usr/bin/env bash
# docs/qgis_panel.png from real QGIS under Xvfb; see docs/make_screenshot.py.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
plugins="$work/profiles/default/python/plugins"
mkdir -p "$plugins" "$work/profiles/default/QGIS"
zip=$(/usr/bin/python3 plugins/qgis/build_zip.py "$work/dist")
/usr/bin/python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$zip" "$plugins"
cat > "$work/profiles/default/QGIS/QGIS3.ini" <<INI
[PythonPlugins]
georefseg_qgis=true

[georefseg]
executable=$PWD/.venv/bin/georefseg

[qgis]
showTips322=false
checkVersion=false
INI
# QGIS's embedded Python must not find a venv's python3 first on PATH.
cp sample_data/scene.tif "$work/scene.tif"  # QGIS leaves statistics (.aux.xml) beside a raster it draws
PATH=/usr/bin:/bin QGIS_CUSTOM_CONFIG_PATH="$work" SCENE="$work/scene.tif" SHOT="$PWD/docs/qgis_panel.png" \
    timeout 300 xvfb-run -a -s "-screen 0 1500x900x24" qgis --noversioncheck --nologo --code docs/make_screenshot.py
# 256 colours are plenty for a screenshot and keep the repository small.
.venv/bin/python -c "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB').quantize(256, method=2).save(sys.argv[1], optimize=True)" docs/qgis_panel.png
ls -l docs/qgis_panel.png
