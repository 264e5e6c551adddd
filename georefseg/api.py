"""The Segmenter, and `segment()` on top of it: what the CLI, batch mapping and the QGIS plugin use.

A :class:`Segmenter` loads its model once and owns how tiles run (local threads, or one
``dask.distributed`` Client for its whole life); each :meth:`Segmenter.run` maps one scene
and expression: read → tile → infer → blend → select → vectorise → ground → write, in that
order and no other. Options live in one frozen :class:`SegmentOptions`.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import rasterio
from pyproj import CRS
from pyproj.exceptions import CRSError

from georefseg.calibration import Calibration
from georefseg.errors import InputError, InputNotFoundError, OutputError, SchedulerError
from georefseg.expression import parse_expression
from georefseg.grounding import Grounded, Grounding, ground
from georefseg.models.base import ReferringSegmenter, min_object_px
from georefseg.models.device import compile_for_inference
from georefseg.models.registry import load_model, resolve
from georefseg.outputs import (
    check_raster_writable,
    check_vector_writable,
    file_parts,
    make_folders,
    remove_folders,
    working_folder,
    write_cog,
    write_vector,
)
from georefseg.raster import Scene
from georefseg.runner import BatchTimer, DistributedRunner, LocalRunner, ModelSpec
from georefseg.stitch import Stitcher
from georefseg.tiling import MAX_TILE, TileGrid, check_tiling
from georefseg.vectorize import Candidate, extract_candidates, instance_candidates, refine

MAX_EXPRESSION_CHARS = 300
# GDAL's block cache, in bytes (rasterio reads a plain integer as bytes, so "256" would turn it
# off): big enough that decimated and windowed reads decode each block once, small enough to
# stay bounded as scenes grow (GDAL's default is 5 % of RAM).
GDAL_CACHE_BYTES = 256 * 2**20

ProgressCallback = Callable[[dict], None]


def _ignore(event: dict) -> None:
    """The progress callback of a run nobody watches."""


@dataclass(frozen=True)
class SegmentOptions:
    """How scenes are tiled, thresholded and vectorised: one value serves many runs.

    Frozen, hashable and JSON-serialisable (:meth:`to_dict` / :meth:`from_dict`), so that
    batch mapping can key finished jobs on it.

    Parameters
    ----------
    bands
        1-based band numbers the model sees (1 or 3); ``None`` chooses from the colour
        interpretation.
    tile_px
        Tile side in pixels; ``None`` uses the model's.
    overlap_px
        Pixels neighbouring tiles share; ``None`` uses the model's.
    batch_size
        Tiles per model call; ``None`` is 1 on a CPU (larger batches are slower there) and 8
        on a GPU.
    threshold
        Probability (0–1, exclusive) from which a pixel belongs to an object.
    min_area_m2
        Objects smaller than this ground area in m² are not written; ``None``: the model's
        smallest object (two output cells across, see
        :func:`~georefseg.models.base.min_object_px`) at the scene's pixel size.
    simplify_m
        Outlines are simplified to this tolerance in metres on the ground (0: exact pixel edges).
    candidates
        Write every candidate, best first, with a ``selected`` field saying which the
        expression refers to; by default only those are written.
    max_features
        Write at most this many features (``None``: no cap).
    """

    bands: tuple[int, ...] | None = None
    tile_px: int | None = None
    overlap_px: int | None = None
    batch_size: int | None = None
    threshold: float = 0.5
    min_area_m2: float | None = None
    simplify_m: float = 0.0
    candidates: bool = False
    max_features: int | None = None

    def __post_init__(self) -> None:
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(int(b) for b in self.bands) or None)
        if self.tile_px is not None or self.overlap_px is not None:  # the pair is checked again per model
            check_tiling(MAX_TILE if self.tile_px is None else self.tile_px,
                         0 if self.overlap_px is None else self.overlap_px)
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"{{param}} {self.threshold} must lie between 0 and 1", param="threshold")
        for name in ("batch_size", "max_features"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"{{param}} {getattr(self, name)} must be at least 1", param=name)
        for name in ("min_area_m2", "simplify_m"):
            if (getattr(self, name) or 0) < 0:
                raise InputError(f"{{param}} {getattr(self, name)} must be 0 or more (a ground size)", param=name)

    def to_dict(self) -> dict:
        """Plain JSON types (bands as a list)."""
        d = asdict(self)
        d["bands"] = None if self.bands is None else list(self.bands)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> SegmentOptions:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(sorted(unknown))}: known are "
                             f"{', '.join(f.name for f in fields(cls))}")
        return cls(**data)


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
    windows_read: int  # tile windows read from the scene: once per tile, whatever the phrases
    options: SegmentOptions
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage; model_s inside the model
    grounding: dict = field(default_factory=dict)  # how the expression was split; anchors found

    @property
    def efficiency(self) -> float:
        """Model time ÷ end-to-end time: how well reading, blending and writing hide."""
        total = self.timings.get("total_s", 0.0)
        return self.timings.get("model_s", 0.0) / total if total else 0.0

    @property
    def message(self) -> str | None:
        """Why nothing (or fewer than asked) was written, or which words could not be judged."""
        return self.grounding.get("message")

    def to_dict(self, listed: int = 100) -> dict:
        """The result as plain JSON types: what ``segment --json`` prints.

        ``features`` lists the best ``listed`` with rank, selected, scores, area (m²), centroid
        and bounds in the scene's CRS; ``feature_count`` counts them all.
        """
        feats = []
        for _, row in self.features.head(listed).iterrows():
            c = row.geometry.centroid
            feats.append({"rank": int(row["rank"]), "selected": bool(row["selected"]), "score": float(row["score"]),
                          "evidence": float(row["evidence"]), "area_m2": float(row["area_m2"]),
                          "centroid": [c.x, c.y], "bounds": list(row.geometry.bounds)})
        return {"output": None if self.output is None else str(self.output),
                "probability": None if self.probability is None else str(self.probability),
                "crs": self.scene.get("crs"), "feature_count": len(self.features), "features": feats,
                "grounding": self.grounding, "model": self.model, "tiles": self.tiles,
                "tiles_skipped": self.tiles_skipped, "windows_read": self.windows_read,
                "options": self.options.to_dict(), "scene": self.scene, "timings": self.timings,
                "efficiency": round(self.efficiency, 3)}


def validate_expression(expression: str) -> str:
    text = " ".join(str(expression).split())
    if not text:
        raise InputError("the {param} is empty: describe the object, e.g. \"the large storage tank\"",
                         param="expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise InputError(f"the {{param}} is {len(text)} characters long; keep it under "
                         f"{MAX_EXPRESSION_CHARS} (the model reads only the first 20 words)", param="expression")
    return text


# Files GDAL keeps beside a raster: writing over one would change how the scene reads.
_SIDECARS = (".aux.xml", ".ovr", ".msk", ".aux")
_WORLD_FILES = (".tfw", ".tifw", ".wld")


def _inputs_of(scene: str | Path, weights: Path | None) -> set[Path]:
    """The files a run reads, which it must never write: the scene, its sidecars, the weights."""
    path = Path(scene)
    found = {path, *(path.with_name(path.name + ext) for ext in _SIDECARS),
             *(path.with_suffix(ext) for ext in _WORLD_FILES)}
    if weights is not None:
        found.add(weights)
    return {p.resolve() for p in found if p.exists()}


def _region(bbox, bbox_crs, aoi) -> tuple | None:
    """(bounds, crs) of the part of a scene to map, from ``bbox`` or an ``aoi`` file; None: all."""
    if bbox is not None and aoi is not None:
        raise InputError("{param} and aoi both say which part to map: give one", param="bbox")
    if aoi is not None:
        if not Path(aoi).exists():
            raise InputNotFoundError(f"{{param}} {aoi} does not exist", param="aoi")
        try:
            info = pyogrio.read_info(aoi)
        except (pyogrio.errors.DataSourceError, OSError) as exc:
            raise InputError(f"{{param}} {aoi} is not a vector file GDAL can read ({exc})", param="aoi") from exc
        if not info.get("features") or info.get("total_bounds") is None:
            raise InputError(f"{{param}} {aoi} has no features to take an extent from", param="aoi")
        return tuple(info["total_bounds"]), info["crs"]
    if bbox is None:
        return None
    if len(bbox) != 4:
        raise InputError(f"{{param}} takes four numbers, west,south,east,north (got {len(bbox)})", param="bbox")
    if bbox_crs is not None:
        try:
            CRS.from_user_input(bbox_crs)
        except CRSError as exc:
            raise InputError(f"{{param}} {bbox_crs!r} is not a CRS: give e.g. EPSG:4326", param="bbox_crs") from exc
    return tuple(bbox), bbox_crs


def _check_outputs(scene: str | Path, output, prob, *, overwrite: bool, append: bool = False,
                   layer: str | None = None, weights: Path | None = None) -> None:
    """Everything about the outputs that can be refused before any work."""
    inputs = _inputs_of(scene, weights)
    for name, p in (("output", output), ("prob", prob)):
        if p is None:
            continue
        hit = next((part for part in file_parts(p) if part.resolve() in inputs), None)
        if hit is not None:
            raise OutputError(f"{{param}} {p} would write over {hit}, which this run reads: georefseg never "
                              "writes over its inputs; choose another name", param=name)
    if output is not None:
        check_vector_writable(output, overwrite, append, layer)
    if prob is not None:
        check_raster_writable(prob, overwrite)


def check_request(scene: str | Path, expression: str, output: str | Path | None = None, *,
                  prob: str | Path | None = None, overwrite: bool = False, append: bool = False,
                  layer: str | None = None, bands: tuple[int, ...] | None = None,
                  bbox: tuple[float, float, float, float] | None = None, bbox_crs=None,
                  aoi: str | Path | None = None, weights: Path | None = None) -> str:
    """Refuse, before any model loads, every mistake a run's arguments can hold (the same
    parameters as :meth:`Segmenter.run`; ``weights``, a file the run reads, is protected like
    the scene): the expression, the scene's header and bands, the outputs, the part to map.
    Returns the cleaned expression. Reads headers only."""
    text = validate_expression(expression)
    with Scene(scene, list(bands) if bands else None):
        pass
    _check_outputs(scene, output, prob, overwrite=overwrite, append=append, layer=layer, weights=weights)
    _region(bbox, bbox_crs, aoi)
    return text


def _features(rows: list[tuple[int, Grounded, bool]], text: str, scene: str, model: str,
              crs) -> gpd.GeoDataFrame:
    """The polygon layer, from (rank, candidate, selected) rows: fields expression, rank,
    selected, score, evidence, area_m2, scene, model, with their types fixed, so that an empty
    result has the same schema as a full one."""
    n = len(rows)
    columns = {"expression": ([text] * n, "str"), "rank": ([r for r, _, _ in rows], "int64"),
               "selected": ([s for _, _, s in rows], "bool"),
               "score": ([round(g.score, 4) for _, g, _ in rows], "float64"),
               "evidence": ([round(g.parts["evidence"], 4) for _, g, _ in rows], "float64"),
               "area_m2": ([round(g.candidate.area_m2, 2) for _, g, _ in rows], "float64"),
               "scene": ([scene] * n, "str"), "model": ([model] * n, "str")}
    return gpd.GeoDataFrame({k: pd.Series(v, dtype=t) for k, (v, t) in columns.items()},
                            geometry=gpd.GeoSeries([g.candidate.geometry for _, g, _ in rows], crs=crs))


def connect_scheduler(address: str):
    """A ``dask.distributed`` Client of the scheduler at ``address`` (``tcp://HOST:PORT``).

    Raises
    ------
    SchedulerError
        Not an address, or nothing answers there within 10 s.
    """
    from distributed import Client

    if "://" not in address and ":" not in address:
        raise SchedulerError(f"{{param}} {address!r} is not a scheduler address: write it as tcp://HOST:PORT",
                             param="scheduler")
    try:
        return Client(address, timeout="10s", set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler at {{param}} {address} "
                             f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}): "
                             "start one with `dask scheduler`, or check the address", param="scheduler") from exc


class Segmenter:
    """A model loaded once, and the way its tiles run, serving many scenes and expressions.

    Parameters
    ----------
    model
        A registered model name (``tiny``, ``rmsin``; see ``georefseg.models.list_models``),
        a weights file or folder, or a model object.
    checkpoint
        Weights (file or folder) for a named model.
    device
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; on a cluster, what workers use.
    options
        Tiling, thresholds and vectorising (:class:`SegmentOptions`).
    scheduler
        A ``dask.distributed`` scheduler address, or a ``Client``: tiles then run as tasks on
        that cluster, through one client for this Segmenter's life. Workers build the model
        once from its name and weights path (which they must be able to read); a model object
        is sent to every worker once.
    compile_model
        Compile the model with TorchInductor (see
        :func:`georefseg.models.device.compile_for_inference`): about 1.5× faster per tile on
        a CPU after some 40 s of compiling, so worth it for large scenes or many of them.
    calibration
        How raw scores map to calibrated ones, and the selection cut-offs
        (:class:`~georefseg.calibration.Calibration`); ``None``: the one stored with the
        weights (``NAME.calibration.json`` beside them), else uncalibrated.

    Use it as a context manager, or call :meth:`close` (it closes the client it opened).
    """

    def __init__(self, model: str | Path | ReferringSegmenter = "tiny", checkpoint: str | Path | None = None, *,
                 device: str = "auto", options: SegmentOptions | None = None, scheduler=None,
                 compile_model: bool = False, calibration: Calibration | None = None):
        self.options = options or SegmentOptions()
        self._client, self._own_client = None, False
        if isinstance(model, ReferringSegmenter):
            if checkpoint is not None:
                raise InputError("{param} goes with a model name or weights path, not with a model object",
                                 param="checkpoint")
            self.model: ReferringSegmenter | None = model
            self.weights: Path | None = None
            self.model_name, tiling = model.name, (model.tile_size, model.min_overlap)
            self.calibration, self.min_object_px = model.calibration, model.min_object_px
            device_type = model.device.type
            spec: ModelSpec | ReferringSegmenter = model
        else:
            backend, weights = resolve(model, checkpoint)  # header checks only: cheap, and before any client
            self.weights = None if weights is None else weights.resolve()
            tiling = backend.tiling(weights)
            self.calibration, self.min_object_px = backend.calibration(weights), min_object_px(backend.output_stride)
            spec = ModelSpec(backend.name, None if self.weights is None else str(self.weights), device)
            # On a cluster the workers build the model; here it is only described.
            self.model = None if scheduler else load_model(backend.name, weights, device)
            self.model_name = backend.name if self.model is None else self.model.name
            device_type = device.split(":")[0] if self.model is None else self.model.device.type
        self.calibration = calibration or self.calibration
        self.tile_px = self.options.tile_px or tiling[0]
        self.overlap_px = tiling[1] if self.options.overlap_px is None else self.options.overlap_px
        check_tiling(self.tile_px, self.overlap_px)
        self.batch_size = self.options.batch_size or (8 if device_type == "cuda" else 1)
        if scheduler is None:
            if compile_model:
                self.model = compile_for_inference(self.model)
            threads = max(1, min(4, (os.cpu_count() or 2) // 2))
            self._runner: LocalRunner | DistributedRunner = LocalRunner(self.model, read_threads=threads)
        else:
            self._client = self._connect(scheduler)
            self._runner = DistributedRunner(self._client, spec, compile_model)

    def _connect(self, scheduler):
        if not isinstance(scheduler, str):
            return scheduler  # a Client the caller owns
        self._own_client = True
        return connect_scheduler(scheduler)

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard of the cluster this Segmenter uses, if any."""
        return None if self._client is None else self._client.dashboard_link

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
        self._client = None

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, scene: str | Path, expression: str, output: str | Path | None = None, *,
            prob: str | Path | None = None, overwrite: bool = False, append: bool = False,
            layer: str | None = None, bbox: tuple[float, float, float, float] | None = None,
            bbox_crs=None, aoi: str | Path | None = None,
            progress: ProgressCallback | None = None) -> SegmentResult:
        """Find the object(s) an expression refers to in one georeferenced scene.

        Parameters
        ----------
        scene
            A GeoTIFF, COG or VRT (any GDAL path) with a CRS.
        expression
            What to find, e.g. "the large storage tank near the river". Words about the whole
            scene (size, position, relations; see :mod:`georefseg.grounding`) are judged over
            all candidates; the tiles are read once and asked for the subject and every anchor
            together.
        output
            Polygon layer to write (format from the extension: .gpkg, .geojson, .shp,
            .parquet); ``None`` writes nothing and returns the features.
        prob
            Probability raster to write (float32 COG on the scene's grid, NaN where the scene
            has no data): the subject's probability ("the storage tank" for "the large
            storage tank near the river"); rank and score carry the scene-level choice.
        overwrite
            Replace existing outputs; in a GeoPackage only the run's layer (never an input:
            the scene, its sidecars or the weights).
        append
            Add the features to an existing GeoPackage layer or Shapefile.
        layer
            The GeoPackage layer to write (default: the file's stem); other layers are kept.
        bbox, bbox_crs
            Map only this part of the scene: (west, south, east, north) in ``bbox_crs`` (any
            pyproj CRS; default the scene's). The probability raster then covers that window;
            words such as "in the upper left" refer to it.
        aoi
            A vector file (any OGR format) whose features' bounds are the part to map, in the
            file's own CRS.
        progress
            Called with event dicts: ``{"event": "phase", "phase": NAME}`` as each stage
            starts (open, infer — with the ``phrases`` asked —, vectorize, ground, write) and
            ``{"event": "tiles", "done": N, "total": M}`` as tiles finish.
        """
        t_start = time.perf_counter()
        text = check_request(scene, expression, output, prob=prob, overwrite=overwrite, append=append, layer=layer,
                             bands=self.options.bands, bbox=bbox, bbox_crs=bbox_crs, aoi=aoi, weights=self.weights)
        region = _region(bbox, bbox_crs, aoi)
        created = [folder for p in (output, prob) if p is not None for folder in make_folders(p)]
        try:
            return self._run(scene, text, output, prob, layer, append, region, progress or _ignore, t_start)
        except BaseException:
            remove_folders(created)  # a failed run leaves no folder it made
            raise

    def _run(self, scene: str | Path, text: str, output: str | Path | None, prob: str | Path | None,
             layer: str | None, append: bool, region: tuple | None, emit: ProgressCallback,
             t_start: float) -> SegmentResult:
        outputs = [Path(p) for p in (output, prob) if p is not None]
        opts = self.options
        timings: dict[str, float] = {}
        emit({"event": "phase", "phase": "open"})
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), \
                Scene(scene, list(opts.bands) if opts.bands else None) as whole, \
                (whole.crop(*region) if region else whole) as sc:
            sc.stats  # noqa: B018 - scene statistics once, here, before tiles are read in parallel
            t_open = time.perf_counter()
            timings["open_s"] = t_open - t_start
            grid = TileGrid(sc.width, sc.height, self.tile_px, self.overlap_px)
            query = parse_expression(text)
            phrases = query.phrases()  # the subject first, then each anchor once
            workdir = working_folder(outputs[0].parent if outputs else None)
            try:
                emit({"event": "phase", "phase": "infer", "phrases": phrases})
                raw = [workdir / f"probability_{i}.tif" for i in range(len(phrases))]
                timer = BatchTimer()
                skipped, objects = self._blend(sc, grid, phrases, raw, timer, emit)
                t_infer = time.perf_counter()
                timings.update(model_s=timer.model_s, infer_s=t_infer - t_open)
                emit({"event": "phase", "phase": "vectorize"})
                # The COG is encoded (GDAL, outside the GIL) while the candidates are vectorised.
                with ThreadPoolExecutor(1, thread_name_prefix="georefseg-cog") as pool:
                    cog = None if prob is None else pool.submit(write_cog, raw[0], prob)
                    # The model's own objects where it separates them; else regions of the blended map.
                    found: dict[str, list[Candidate]] = objects or {
                        phrase: extract_candidates(str(path), opts.threshold) for phrase, path in zip(phrases, raw,
                                                                                                      strict=True)}
                    t_vec = time.perf_counter()
                    emit({"event": "phase", "phase": "ground"})
                    chosen = ground(found[phrases[0]], query, found, to_pixels=~sc.transform,
                                    size=(sc.width, sc.height), min_object_px=self.min_object_px,
                                    calibration=self.calibration)
                    rows, notes = self._written(chosen, sc)
                    features = _features(rows, text, Path(sc.path).name, self.model_name, sc.crs)
                    t_ground = time.perf_counter()
                    emit({"event": "phase", "phase": "write"})
                    if output is not None:
                        write_vector(features, output, layer, append)
                    if cog is not None:
                        cog.result()
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            t_end = time.perf_counter()
            timings.update(vectorize_s=t_vec - t_infer, ground_s=t_ground - t_vec, write_s=t_end - t_ground,
                           total_s=t_end - t_start)
            info, reads = sc.describe(), sc.windows_read
        return SegmentResult(
            features=features, output=None if output is None else Path(output),
            probability=None if prob is None else Path(prob), scene=info, model=self.model_name,
            tiles=len(grid), tiles_skipped=skipped, windows_read=reads, options=opts,
            grounding={"reading": query.to_dict(), "passes": phrases,
                       "found": {p: len(c) for p, c in found.items()}, "anchors_found": chosen.anchors,
                       "number": query.number, "candidates": len(chosen.ranked),
                       "selected": int(sum(chosen.selected)), "written": len(features),
                       "min_area_m2": notes["min_area_m2"], "message": notes["message"],
                       "calibration": self.calibration.source,
                       "cutoffs": {"one": self.calibration.select_one, "all": self.calibration.select_all}},
            timings={k: round(v, 3) for k, v in timings.items()})

    def _written(self, chosen: Grounding, sc: Scene) -> tuple[list[tuple[int, Grounded, bool]], dict]:
        """What is written, as (rank, candidate, selected) rows: min_area_m2 and simplify_m shape
        it after ranking (never the order), then only the selected are kept (all with
        ``candidates``), at most ``max_features``."""
        opts = self.options
        pixel = sc.pixel_size_m()
        min_area = opts.min_area_m2 if opts.min_area_m2 is not None else self.min_object_px * pixel[0] * pixel[1]
        kept = refine([g.candidate for g in chosen.ranked], sc.crs, sc.transform, min_area, opts.simplify_m, pixel)
        rows = [(i + 1, Grounded(c, chosen.ranked[i].score, chosen.ranked[i].raw, chosen.ranked[i].parts),
                 chosen.selected[i]) for i, c in kept]
        message = chosen.message
        if not opts.candidates:
            rows = [r for r in rows if r[2]]
            dropped = sum(chosen.selected) - len(rows)
            if dropped:
                message = "; ".join(filter(None, [message, f"{dropped} selected smaller than {min_area:g} m² "
                                                           "(min_area_m2) not written"]))
        return rows[:opts.max_features], {"min_area_m2": round(min_area, 3), "message": message}

    def _blend(self, sc: Scene, grid: TileGrid, phrases: list[str], raw: list[Path], timer: BatchTimer,
               emit: ProgressCallback) -> tuple[int, dict[str, list[Candidate]] | None]:
        """Run the model over every tile for all phrases and blend into ``raw`` (one raster per
        phrase). Returns the number of tiles skipped as nodata and, for a model that separates
        objects, each phrase's candidates from its instances (made polygons tile by tile, so
        that no mask outlives its tile)."""
        stitcher = Stitcher(grid, [str(p) for p in raw], sc.crs, sc.transform)
        skipped, complete, objects = 0, False, None
        try:
            for done, res in enumerate(self._runner.run(sc, grid, phrases, self.batch_size, timer), 1):
                stitcher.add(res.tile, res.logits, res.valid)
                skipped += res.logits is None
                if res.instances is not None:
                    objects = objects or {p: [] for p in phrases}
                    for phrase, inst in zip(phrases, res.instances, strict=True):
                        objects[phrase] += instance_candidates([(res.tile, inst)], grid, sc.transform, sc.crs)
                emit({"event": "tiles", "done": done, "total": len(grid)})
            complete = True
        finally:
            stitcher.close(complete)
        return skipped, objects


def segment(scene: str | Path, expression: str, output: str | Path | None = None, *,
            prob: str | Path | None = None, model: str | Path | ReferringSegmenter = "tiny",
            checkpoint: str | Path | None = None, device: str = "auto", scheduler=None, compile_model: bool = False,
            overwrite: bool = False, append: bool = False, layer: str | None = None,
            bbox: tuple[float, float, float, float] | None = None, bbox_crs=None, aoi: str | Path | None = None,
            progress: ProgressCallback | None = None, **options) -> SegmentResult:
    """One scene, one expression, in one call: a :class:`Segmenter` used once.

    ``options`` are the fields of :class:`SegmentOptions` (``bands``, ``tile_px``,
    ``overlap_px``, ``batch_size``, ``threshold``, ``min_area_m2``, ``simplify_m``); the other
    parameters are those of :class:`Segmenter` and :meth:`Segmenter.run`. To map several
    scenes or expressions, hold one Segmenter instead: the model then loads once.
    """
    opts = SegmentOptions.from_dict(options)
    text = check_request(scene, expression, output, prob=prob, overwrite=overwrite, append=append, layer=layer,
                         bands=opts.bands, bbox=bbox, bbox_crs=bbox_crs, aoi=aoi)
    with Segmenter(model, checkpoint, device=device, options=opts, scheduler=scheduler,
                   compile_model=compile_model) as seg:
        return seg.run(scene, text, output, prob=prob, overwrite=overwrite, append=append, layer=layer, bbox=bbox,
                       bbox_crs=bbox_crs, aoi=aoi, progress=progress)
