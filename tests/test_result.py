"""What a run returns: its probability raster as a lazy, georeferenced xarray."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from georefseg.errors import InputError
from georefseg.segmenter import segment
from tests.fixtures import ColourModel, scene_with_square, write_scene


def test_the_probability_raster_opens_lazily_on_the_scene_grid(tmp_path):
    transform = Affine(0.5, 0, 500000, 0, -0.5, 4000000)
    scene = write_scene(tmp_path / "utm.tif", scene_with_square(300, 400, (100, 140, 50, 130)), "EPSG:32633",
                        transform)
    result = segment(scene, "the red roof", prob=tmp_path / "p.tif", model=ColourModel())
    prob = result.probability_array()
    assert prob.dims == ("y", "x") and prob.shape == (300, 400)
    assert prob.rio.crs.to_epsg() == 32633 and prob.rio.transform() == transform
    assert not prob.variable._in_memory  # nothing read yet: it serves scenes of any size
    with rasterio.open(tmp_path / "p.tif") as src:
        np.testing.assert_array_equal(prob.values, src.read(1))
    inside = float(prob.sel(x=500045, y=3999940, method="nearest"))  # the roof's centre, in metres
    assert inside > 0.9 and float(prob.sel(x=500150, y=3999990, method="nearest")) < 0.1
    with pytest.raises(InputError, match="wrote no probability raster: run it with prob="):
        segment(scene, "the red roof", model=ColourModel()).probability_array()
