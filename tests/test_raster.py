"""Scene: real files of every kind a user has, and the mistakes they make."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window

from georefseg.errors import InputError
from georefseg.raster import Scene
from tests.fixtures import write_scene

UTM = Affine(2.0, 0, 600000, 0, -2.0, 5200000)


def test_landsat_with_nodata_collar(real_scenes):
    with Scene(real_scenes / "rasterio_edge_cases" / "RGB.byte.tif") as sc:
        assert sc.bands == [1, 2, 3]
        assert sc.crs.to_epsg() == 32618
        # uint8 is read as is: 0..255 → 0..1, same for every tile
        assert np.allclose(sc.stats.low, 0) and np.allclose(sc.stats.high, 255)
        img, valid = sc.read(Window(0, 0, 400, 400))
        assert img.shape == (3, 400, 400) and img.dtype == np.float32
        # the upper-left corner is the black collar: nodata, filled with the scene's typical value
        assert not valid[0, 0] and valid.any()
        assert np.allclose(img[:, 0, 0], sc.stats.fill)
        # a window of nothing but collar is never read at all
        img, valid = sc.read(Window(0, 0, 40, 40))
        assert img is None and not valid.any()
        px, py = sc.pixel_size_m()
        assert px == pytest.approx(300.04, abs=0.01) and py == pytest.approx(300.04, abs=0.01)


def test_rgba_uint16_uses_colour_interpretation_and_alpha(real_scenes):
    with Scene(real_scenes / "rasterio_edge_cases" / "RGBA.uint16.tif") as sc:
        assert sc.bands == [3, 2, 1]  # stored blue, green, red, alpha
        img, valid = sc.read(Window(0, 0, sc.width, sc.height))
        with rasterio.open(sc.path) as src:
            alpha = src.read(4)
            red = src.read(3)[alpha > 0].astype(float)
        assert np.array_equal(valid, alpha > 0)
        assert img.min() >= 0.0 and img.max() <= 1.0
        # stretch comes from valid pixels only: 2nd–98th percentiles of the red band
        assert sc.stats.low[0] == pytest.approx(np.percentile(red, 2), rel=0.05)


def test_single_band_satellite_image_is_repeated(real_scenes):
    with Scene(real_scenes / "spacenet_atlanta" / "sample_geotiff.tif") as sc:
        assert sc.bands == [1] and sc.dtype == "uint16"
        img, valid = sc.read(Window(100, 100, 64, 64))
        assert img.shape == (3, 64, 64)
        assert np.array_equal(img[0], img[1]) and np.array_equal(img[1], img[2])
        assert sc.pixel_size_m() == pytest.approx((0.5, 0.5))


def test_rotated_raster_without_crs_is_refused(real_scenes):
    with pytest.raises(InputError, match="no coordinate reference system"):
        Scene(real_scenes / "rasterio_edge_cases" / "rotated.tif")


def test_corrupt_tiff_is_reported_as_corrupt_but_its_header_reads(real_scenes):
    with Scene(real_scenes / "rasterio_edge_cases" / "corrupt.tif") as sc:
        header = sc.describe()  # what `georefseg info` prints: the header is whole
        assert header["width"] > 0 and header["crs"]
        with pytest.raises(InputError, match="corrupt or truncated"):
            sc.stats  # noqa: B018 - the first pixel read


def test_truncated_tiff(tmp_path):
    good = write_scene(tmp_path / "good.tif", np.full((3, 256, 256), 100, np.uint8), "EPSG:32633", UTM,
                       tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    data = good.read_bytes()
    bad = tmp_path / "truncated.tif"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated|not a raster"):
        Scene(bad).stats  # noqa: B018


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_dtypes_are_normalised_to_unit_range(tmp_path, dtype):
    rng = np.random.default_rng(1)
    lo, hi = {"uint8": (0, 255), "uint16": (200, 4000), "int16": (-500, 1500), "float32": (-1.0, 1.0)}[dtype]
    arr = rng.uniform(lo, hi, (3, 128, 96)).astype(dtype)
    path = write_scene(tmp_path / f"{dtype}.tif", arr, "EPSG:32633", UTM)
    with Scene(path) as sc:
        img, valid = sc.read(Window(0, 0, 96, 128))
        assert valid.all() and img.min() >= 0 and img.max() <= 1
        # scene-wide statistics: a window gives exactly the values the full read gives there
        part, _ = sc.read(Window(10, 20, 30, 40))
        assert np.array_equal(part, img[:, 20:60, 10:40])


def test_float_nan_and_nodata_value_are_invalid(tmp_path):
    arr = np.ones((1, 64, 64), np.float32)
    arr[0, :10] = np.nan
    arr[0, 50:] = -9999
    path = write_scene(tmp_path / "f.tif", arr, "EPSG:4326", Affine(0.001, 0, 10, 0, -0.001, 50), nodata=-9999)
    with Scene(path) as sc:
        _, valid = sc.read(Window(0, 0, 64, 64))
        assert not valid[:10].any() and not valid[50:].any() and valid[10:50].all()


def test_vrt_and_cog_are_read(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (3, 200, 300), dtype=np.uint8)
    src = write_scene(tmp_path / "a.tif", arr, "EPSG:32633", UTM)
    cog = tmp_path / "a_cog.tif"
    rasterio.shutil.copy(src, cog, driver="COG")
    vrt = tmp_path / "a.vrt"
    vrt.write_text(
        '<VRTDataset rasterXSize="300" rasterYSize="200"><SRS>EPSG:32633</SRS>'
        '<GeoTransform>600000, 2, 0, 5200000, 0, -2</GeoTransform>'
        + "".join(f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename '
                  f'relativeToVRT="1">a.tif</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource>'
                  f'</VRTRasterBand>' for b in (1, 2, 3)) + "</VRTDataset>")
    for path in (cog, vrt):
        with Scene(path) as sc:
            img, _ = sc.read(Window(0, 0, 300, 200))
            assert np.allclose(img * 255, arr, atol=1e-3)


def test_band_selection(tmp_path):
    arr = np.stack([np.full((32, 32), v, np.uint8) for v in (10, 20, 30, 40, 50)])
    path = write_scene(tmp_path / "ms.tif", arr, "EPSG:32633", UTM)
    with Scene(path, bands=[4, 3, 2]) as sc:
        img, _ = sc.read(Window(0, 0, 32, 32))
        assert np.allclose(img[:, 0, 0] * 255, [40, 30, 20])
    with Scene(path) as sc:  # no colour interpretation: the first three bands
        assert sc.bands == [1, 2, 3]
    with pytest.raises(InputError, match="band 6 is out of range"):
        Scene(path, bands=[6, 1, 2])
    with pytest.raises(InputError, match="1 or 3 band numbers"):
        Scene(path, bands=[1, 2])


def test_missing_not_a_raster_and_no_geotransform(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        Scene(tmp_path / "nope.tif")
    text = tmp_path / "notes.tif"
    text.write_text("hello")
    with pytest.raises(InputError, match="not a raster"):
        Scene(text)
    with pytest.raises(InputError, match="folder"):
        Scene(tmp_path)
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8", crs="EPSG:32633") as d:
        d.write(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(InputError, match="no geotransform"):
        Scene(plain)


def test_geographic_pixel_size_is_in_metres(tmp_path):
    arr = np.zeros((3, 10, 10), np.uint8)
    path = write_scene(tmp_path / "g.tif", arr, "EPSG:4326", Affine(1e-4, 0, 10.0, 0, -1e-4, 60.0))
    with Scene(path) as sc:
        px, py = sc.pixel_size_m()
        # at 60°N a degree of longitude is half as long as one of latitude
        assert px == pytest.approx(5.58, rel=0.01) and py == pytest.approx(11.13, rel=0.01)


def test_statistics_of_a_large_scene_come_from_samples_across_it(tmp_path):
    # 3000 × 2200 px without overviews: sampled in windows, not read whole
    xs = np.linspace(100, 5000, 3000, dtype=np.float32)
    arr = np.broadcast_to(xs, (2200, 3000)).astype(np.uint16)[None]
    path = write_scene(tmp_path / "big.tif", arr, "EPSG:32633", UTM, tiled=True, blockxsize=256, blockysize=256)
    with Scene(path) as sc:
        assert not sc.has_overviews
        # a smooth ramp is the hardest case for a grid of windows: within 10 %
        assert sc.stats.low[0] == pytest.approx(np.percentile(xs, 2), rel=0.1)
        assert sc.stats.high[0] == pytest.approx(np.percentile(xs, 98), rel=0.1)
