"""`segment()`: the one entry point the CLI, batch mapping and the QGIS plugin use.

read → tile → infer → blend → select → vectorise → ground → write, in that order and no other.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import rasterio

from georefseg.errors import InputError, OutputError
from georefseg.grounding import Grounded, parse_expression, rank_candidates
from georefseg.models.base import ReferringSegmenter
from georefseg.models.registry import load_model
from georefseg.outputs import check_writable, vector_format, write_cog, write_vector
from georefseg.raster import Scene
from georefseg.runner import BatchTimer, DistributedRunner, LocalRunner, ModelSpec
from georefseg.stitch import Stitcher
from georefseg.tiling import TileGrid
from georefseg.vectorize import Candidate, extract_candidates

MAX_EXPRESSION_CHARS = 300
GDAL_CACHE_MB = 256


@dataclass
class SegmentResult:
    """What a run produced, with the numbers a user or a benchmark wants to see."""

    features: gpd.GeoDataFrame
    output: Path | None
    probability: Path | None
    scene: dict
    model: str
    tiles: int
    tiles_skipped: int
    timings: dict[str, float] = field(default_factory=dict)
    grounding: dict = field(default_factory=dict)  # how the expression was split; anchors found

    @property
    def efficiency(self) -> float:
        """Model time ÷ end-to-end time: how well reading, blending and writing hide."""
        total = self.timings.get("total_s", 0.0)
        return self.timings.get("model_s", 0.0) / total if total else 0.0


def validate_expression(expression: str) -> str:
    text = " ".join(str(expression).split())
    if not text:
        raise InputError("the expression is empty: describe the object, e.g. \"the large storage tank\"")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise InputError(f"the expression is {len(text)} characters long; keep it under "
                         f"{MAX_EXPRESSION_CHARS} (the model reads only the first 20 words)")
    return text


def _check_arguments(expression: str, output, prob, threshold: float, batch_size: int | None,
                     min_area: float, simplify: float, overwrite: bool) -> str:
    """Everything that can be refused before any work; returns the cleaned expression."""
    text = validate_expression(expression)
    if not 0.0 < threshold < 1.0:
        raise InputError(f"--threshold {threshold} must lie between 0 and 1")
    if batch_size is not None and batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    if min_area < 0 or simplify < 0:
        raise InputError("--min-area and --simplify take ground sizes of 0 or more")
    if output is not None:
        vector_format(output)
    if prob is not None and Path(prob).suffix.lower() not in (".tif", ".tiff"):
        raise OutputError(f"--prob {prob}: the probability raster is a GeoTIFF, name it *.tif")
    for p in (output, prob):
        if p is not None:
            check_writable(p, overwrite)
    return text


def _blend_tiles(sc: Scene, grid: TileGrid, net: ReferringSegmenter, spec: ModelSpec | None, text: str,
                 batch_size: int, scheduler: str | None, raw_prob: Path, timer: BatchTimer,
                 progress: Callable[[int, int], None] | None) -> int:
    """Run the model over every tile and blend into ``raw_prob``; returns tiles skipped."""
    stitcher = Stitcher(grid, str(raw_prob), sc.crs, sc.transform)
    runner = None
    if scheduler:
        if spec is None:
            raise InputError("a --scheduler run needs the model by name or path, so that workers can build it")
        runner = DistributedRunner(scheduler, spec)
        results = runner.run(sc, grid, text, batch_size, timer)
    else:
        threads = max(1, min(4, (os.cpu_count() or 2) // 2))
        results = LocalRunner(read_threads=threads).run(sc, grid, net, net.encode_text([text]), batch_size, timer)
    skipped = 0
    try:
        for done, res in enumerate(results, 1):
            stitcher.add(res.tile, res.logits, res.valid)
            skipped += res.logits is None
            if progress:
                progress(done, len(grid))
    finally:
        stitcher.close()
        if runner is not None:
            runner.close()
    return skipped


def _features(ranked: list[Grounded], text: str, scene: str, model: str, crs) -> gpd.GeoDataFrame:
    """The polygon layer: fields expression, score, evidence, rank, area_m2, scene, model."""
    n = len(ranked)
    return gpd.GeoDataFrame(
        {"expression": [text] * n, "score": [round(g.score, 4) for g in ranked],
         "evidence": [round(g.candidate.score, 4) for g in ranked],
         "rank": list(range(1, n + 1)), "area_m2": [round(g.candidate.area_m2, 2) for g in ranked],
         "scene": [scene] * n, "model": [model] * n},
        geometry=[g.candidate.geometry for g in ranked], crs=crs)


def segment(scene: str | Path, expression: str, output: str | Path | None = None, *,
            prob: str | Path | None = None, model: str | ReferringSegmenter = "tiny",
            checkpoint: str | Path | None = None, device: str = "auto",
            bands: list[int] | None = None, tile: int | None = None, overlap: int | None = None,
            batch_size: int | None = None, threshold: float = 0.5, min_area: float = 0.0,
            simplify: float = 0.0, scheduler: str | None = None, overwrite: bool = False,
            progress: Callable[[int, int], None] | None = None) -> SegmentResult:
    """Find the object(s) an expression refers to in a georeferenced scene.

    Writes polygons to ``output`` (format from the extension) and the probability raster to
    ``prob`` (float32 COG) when given; returns the features either way. Words about the whole
    scene (size, position, relations; see :mod:`georefseg.grounding`) are judged over all
    candidates: the tiles are then asked for the subject and for each anchor, one pass each,
    and ``prob`` holds the subject's probability ("the storage tank" for "the large storage
    tank near the river"), while the polygons' rank and score carry the scene-level choice.
    ``progress`` is called with (tile runs done, tile runs in all: tiles × passes).
    ``scheduler`` is a ``dask.distributed`` address.
    ``batch_size`` defaults to 1 on a CPU (larger batches are slower there) and 8 on a GPU.
    """
    t_start = time.perf_counter()
    text = _check_arguments(expression, output, prob, threshold, batch_size, min_area, simplify, overwrite)
    outputs = [Path(p) for p in (output, prob) if p is not None]
    # GDAL's block cache defaults to 5 % of RAM and fills as scenes grow: bound it.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), Scene(scene, bands) as sc:
        if isinstance(model, ReferringSegmenter):
            net, spec = model, None
        else:
            net = load_model(model, checkpoint, device)
            spec = ModelSpec(str(model), None if checkpoint is None else str(Path(checkpoint).resolve()), device)
        if batch_size is None:
            batch_size = 8 if net.device.type == "cuda" else 1
        grid = TileGrid(sc.width, sc.height, tile or net.tile_size, net.min_overlap if overlap is None else overlap)
        timer = BatchTimer()
        workdir = Path(tempfile.mkdtemp(prefix=".georefseg-", dir=(outputs[0].parent if outputs else None)))
        # Scene-level words are judged over the whole scene: the tiles are asked only for the
        # subject and for each relation's anchor, one pass each.
        query = parse_expression(text)
        phrases = query.phrases()
        try:
            found: dict[str, list[Candidate]] = {}
            skipped = 0
            for i, phrase in enumerate(phrases):
                raw_prob = workdir / f"probability_{i}.tif"
                step = None if progress is None else (
                    lambda done, total, i=i: progress(i * total + done, len(phrases) * total))
                skipped = _blend_tiles(sc, grid, net, spec, phrase, batch_size, scheduler, raw_prob, timer, step)
                # --min-area and --simplify shape the output, so they apply to the subject only.
                subject = i == 0
                found[phrase] = extract_candidates(str(raw_prob), threshold, min_area if subject else 0.0,
                                                   simplify if subject else 0.0, sc.pixel_size_m())
            t_infer = time.perf_counter()
            ranked = rank_candidates(found[phrases[0]], query, found, ~sc.transform, (sc.width, sc.height))
            features = _features(ranked, text, Path(sc.path).name, net.name, sc.crs)
            if output is not None:
                write_vector(features, output)
            if prob is not None:
                write_cog(workdir / "probability_0.tif", prob)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        t_end = time.perf_counter()
        info = sc.describe()
    return SegmentResult(
        features=features, output=None if output is None else Path(output),
        probability=None if prob is None else Path(prob), scene=info, model=net.name,
        tiles=len(grid), tiles_skipped=skipped,
        grounding={"query": query.describe() if query.scene_level else None, "passes": phrases,
                   "found": {p: len(c) for p, c in found.items()}},
        timings={"model_s": round(timer.model_s, 3), "infer_s": round(t_infer - t_start, 3),
                 "vectorize_write_s": round(t_end - t_infer, 3), "total_s": round(t_end - t_start, 3)})
