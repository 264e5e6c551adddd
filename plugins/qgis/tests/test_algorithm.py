"""georefseg:segment in Processing, end to end with the real engine, against the CLI's own output."""

from __future__ import annotations

import subprocess

import processing
import pytest
from conftest import TANK
from georefseg_qgis.algorithm import split_destination
from georefseg_qgis.plugin import GeorefsegPlugin
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from stand_in_iface import StandInIface


@pytest.fixture(scope="module", autouse=True)
def provider():
    plugin = GeorefsegPlugin(StandInIface())
    plugin.initProcessing()
    yield
    plugin.unload()


def features(layer: QgsVectorLayer) -> list[dict]:
    return sorted(({"rank": f["rank"], "score": f["score"], "area_m2": f["area_m2"], "selected": bool(f["selected"]),
                    "wkt": f.geometry()} for f in layer.getFeatures()), key=lambda f: f["rank"])


def same_features(ours: list[dict], theirs: list[dict]) -> None:
    assert [f["rank"] for f in ours] == [f["rank"] for f in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-6) and a["area_m2"] == pytest.approx(b["area_m2"])
        assert a["wkt"].equals(b["wkt"]) or a["wkt"].symDifference(b["wkt"]).area() < 1e-6


def test_segment_in_processing_writes_what_the_cli_writes(scene, cli_result, tmp_path):
    feedback = QgsProcessingFeedback()
    progress = []
    feedback.progressChanged.connect(progress.append)
    out, prob = tmp_path / "tanks.gpkg", tmp_path / "prob.tif"
    result = processing.run("georefseg:segment", {"INPUT": str(scene), "EXPRESSION": TANK, "OUTPUT": str(out),
                                                  "PROB": str(prob)}, feedback=feedback)
    layer = QgsVectorLayer(result["OUTPUT"], "tanks", "ogr")
    raster = QgsRasterLayer(str(scene), "scene")
    assert layer.isValid() and layer.crs() == raster.crs() and layer.crs().authid() == "EPSG:32633"
    assert result["FEATURE_COUNT"] == layer.featureCount() == cli_result["feature_count"] == 1
    cli = QgsVectorLayer(f"{cli_result['output']}|layername=cli", "cli", "ogr")
    same_features(features(layer), features(cli))
    # Where the tank is on the ground: the sample's truth centre, (455624.5, 4989520.5) in UTM 33N.
    centre = next(layer.getFeatures()).geometry().centroid().asPoint()
    assert abs(centre.x() - 455624.5) < 3 and abs(centre.y() - 4989520.5) < 3
    assert progress == sorted(progress) and progress[-1] == 100 and 92 in progress  # phase by phase, tiles included
    probability = QgsRasterLayer(result["PROB"], "prob")
    assert probability.isValid() and probability.width() == 512 and probability.crs().authid() == "EPSG:32633"
    stats = probability.dataProvider().bandStatistics(1)
    assert stats.minimumValue >= 0.0 and stats.maximumValue <= 1.0 and stats.maximumValue > 0.5


def test_an_extent_in_another_crs_is_mapped_where_it_lies(scene, engine_path, tmp_path):
    """The extent comes in Web Mercator and is reprojected to UTM; the engine, told the same Web
    Mercator box on its command line, reprojects it with pyproj: both must map the same part."""
    utm, mercator = QgsCoordinateReferenceSystem("EPSG:32633"), QgsCoordinateReferenceSystem("EPSG:3857")
    to_mercator = QgsCoordinateTransform(utm, mercator, QgsProject.instance())
    # Around the tank and some of its surroundings, well inside the scene (UTM metres).
    box = to_mercator.transformBoundingBox(QgsRectangle(455560, 4989440, 455760, 4989620))
    extent = f"{box.xMinimum()},{box.xMaximum()},{box.yMinimum()},{box.yMaximum()} [EPSG:3857]"
    result = processing.run("georefseg:segment", {"INPUT": str(scene), "EXPRESSION": "the storage tanks",
                                                  "EXTENT": extent, "CANDIDATES": True, "THRESHOLD": 0.6,
                                                  "MIN_AREA": 150, "OUTPUT": "TEMPORARY_OUTPUT"})  # a temporary gpkg
    layer = QgsVectorLayer(result["OUTPUT"], "clipped", "ogr")
    assert layer.isValid() and layer.featureCount() >= 1
    in_utm = QgsCoordinateTransform(mercator, utm, QgsProject.instance()).transformBoundingBox(box)
    for feature in layer.getFeatures():  # nothing outside the box, to the pixel
        bounds = feature.geometry().boundingBox()
        assert bounds.xMinimum() >= in_utm.xMinimum() - 1 and bounds.xMaximum() <= in_utm.xMaximum() + 1
        assert bounds.yMinimum() >= in_utm.yMinimum() - 1 and bounds.yMaximum() <= in_utm.yMaximum() + 1
    cli_out = tmp_path / "cli.gpkg"
    assert all(f["area_m2"] >= 150 for f in layer.getFeatures())  # MIN_AREA reached the engine
    subprocess.run([engine_path, "segment", str(scene), "the storage tanks", "-o", str(cli_out), "--candidates",
                    "--threshold", "0.6", "--min-area", "150",
                    "--bbox", f"{box.xMinimum()},{box.yMinimum()},{box.xMaximum()},{box.yMaximum()}",
                    "--bbox-crs", "EPSG:3857", "--progress", "none", "--quiet"], check=True)
    same_features(features(layer), features(QgsVectorLayer(f"{cli_out}|layername=cli", "cli", "ogr")))


def test_cancelling_through_the_feedback_stops_the_engine(full_scene, tmp_path):
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda p: p > 10 and feedback.cancel())  # once tiles are under way
    with pytest.raises(QgsProcessingException, match="cancelled: the engine was stopped and wrote nothing"):
        processing.run("georefseg:segment", {"INPUT": str(full_scene), "EXPRESSION": TANK,
                                             "OUTPUT": str(tmp_path / "never.gpkg")}, feedback=feedback)
    assert list(tmp_path.iterdir()) == []


def test_engine_errors_arrive_as_the_engines_one_line(engine_path, tmp_path):
    from osgeo import gdal

    unplaced = tmp_path / "no_crs.tif"
    gdal.GetDriverByName("GTiff").Create(str(unplaced), 64, 64, 3)  # a raster QGIS opens, with no CRS
    out = tmp_path / "never.gpkg"
    with pytest.raises(QgsProcessingException) as caught:
        processing.run("georefseg:segment", {"INPUT": str(unplaced), "EXPRESSION": "the tank", "OUTPUT": str(out)})
    cli = subprocess.run([engine_path, "segment", str(unplaced), "the tank", "-o", str(out)], capture_output=True,
                         text=True)
    assert cli.returncode == 2 and str(caught.value) == cli.stderr.strip()
    assert "coordinate reference system" in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_crs.tif"]  # nothing written


def test_an_empty_expression_is_refused_before_the_engine_runs(scene, tmp_path):
    with pytest.raises(QgsProcessingException, match="EXPRESSION"):
        processing.run("georefseg:segment", {"INPUT": str(scene), "EXPRESSION": "  ",
                                             "OUTPUT": str(tmp_path / "x.gpkg")})
    assert list(tmp_path.iterdir()) == []


def test_split_destination_reads_processing_geopackage_uris():
    assert split_destination("ogr:dbname='/data/it''s.gpkg' table=\"tanks\" (geom)") == ("/data/it's.gpkg", "tanks")
    assert split_destination("/data/out.gpkg|layername=tanks") == ("/data/out.gpkg", "tanks")
    assert split_destination("/data/out.geojson") == ("/data/out.geojson", None)


def test_in_a_graphical_model_its_polygons_feed_the_next_algorithm(scene, cli_result, tmp_path):
    """A model (what the Model Designer saves): the scene in, georefseg:segment, then a 10 m buffer."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("tank_zone", "georefseg tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("scene", "Scene"), QgsProcessingModelParameter("scene"))
    segment = QgsProcessingModelChildAlgorithm("georefseg:segment")
    segment.setChildId("segment")
    segment.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("scene")])
    segment.addParameterSources("EXPRESSION", [QgsProcessingModelChildParameterSource.fromStaticValue(TANK)])
    segment.addParameterSources("MODEL", [QgsProcessingModelChildParameterSource.fromStaticValue("tiny")])
    segment.addParameterSources("THRESHOLD", [QgsProcessingModelChildParameterSource.fromStaticValue(0.5)])
    segment.addParameterSources("DEVICE", [QgsProcessingModelChildParameterSource.fromStaticValue(0)])
    segment.addParameterSources("CANDIDATES", [QgsProcessingModelChildParameterSource.fromStaticValue(False)])
    model.addChildAlgorithm(segment)
    buffer = QgsProcessingModelChildAlgorithm("native:buffer")
    buffer.setChildId("buffer")
    buffer.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromChildOutput("segment", "OUTPUT")])
    for name, value in {"DISTANCE": 10, "SEGMENTS": 5, "END_CAP_STYLE": 0, "JOIN_STYLE": 0, "MITER_LIMIT": 2,
                        "DISSOLVE": False}.items():
        buffer.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
    zone = QgsProcessingModelOutput("zone", "Zone")
    zone.setChildId("buffer")
    zone.setChildOutputName("OUTPUT")
    buffer.setModelOutputs({"zone": zone})
    model.addChildAlgorithm(buffer)
    ok, why = model.validate()
    assert ok, why
    result = processing.run(model, {"scene": str(scene), "buffer:zone": str(tmp_path / "zone.gpkg")})
    layer = QgsVectorLayer(result["buffer:zone"], "zone", "ogr")
    [zone_feature] = list(layer.getFeatures())
    tank = QgsVectorLayer(f"{cli_result['output']}|layername=cli", "cli", "ogr")
    tank_geometry = next(tank.getFeatures()).geometry()
    assert zone_feature.geometry().contains(tank_geometry) and layer.crs().authid() == "EPSG:32633"
    assert zone_feature.geometry().area() == pytest.approx(tank_geometry.buffer(10, 5).area(), rel=0.02)
