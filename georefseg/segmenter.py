"""The Segmenter, and `segment()` on top of it: what the CLI, batch mapping and the QGIS plugin use.

A :class:`Segmenter` loads its model once and owns how tiles run (local threads, or one
``dask.distributed`` Client for its whole life); each :meth:`Segmenter.execute` maps one
checked :class:`~georefseg.request.Request`: read → tile → infer → blend → select →
vectorise → ground → write, in that order and no other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from georefseg import protocol, words
from georefseg.atomic import Transaction
from georefseg.calibration import Calibration
from georefseg.cluster import connect_scheduler
from georefseg.errors import InputError, Interrupted, render
from georefseg.expression import Query
from georefseg.grounding import Grounded, Grounding, ground
from georefseg.models.base import ReferringSegmenter
from georefseg.models.card import ModelCard
from georefseg.models.device import compile_for_inference, place, resolve_device
from georefseg.models.registry import resolve
from georefseg.options import SegmentOptions
from georefseg.outputs import make_folders, remove_folders, write_cog, write_vector
from georefseg.raster import Scene
from georefseg.request import Request, check_request
from georefseg.result import SegmentResult
from georefseg.runner import BatchTimer, DistributedRunner, LocalRunner, ModelSpec
from georefseg.schema import scene_layer
from georefseg.stitch import Stitcher
from georefseg.tiling import TileGrid, check_tiling
from georefseg.vectorize import Candidate, extract_candidates, instance_candidates, refine

log = logging.getLogger(__name__)

# GDAL's block cache, in bytes (rasterio reads a plain integer as bytes, so "256" would turn it
# off): sized per run by gdal_cache_bytes, between these bounds (GDAL's default is 5 % of RAM).
GDAL_CACHE_MIN, GDAL_CACHE_MAX = 16 * 2**20, 256 * 2**20


def gdal_cache_bytes(width: int, pixel_bytes: int, span_rows: int, phrases: int, block: int = 512) -> int:
    """GDAL's block cache for one run, in bytes: what the tiling needs and no more — two rows
    of tiles across the scene (``span_rows`` = tile + both overlaps, pixels; the row being read
    and the next; ``pixel_bytes`` all bands of one pixel) so that overlapping windows decode each
    block once, and two ``block``-row float32 strips per phrase being written; within
    16–256 MiB."""
    need = 2 * span_rows * width * pixel_bytes + 2 * block * width * 4 * phrases
    return int(min(GDAL_CACHE_MAX, max(GDAL_CACHE_MIN, need)))

ProgressCallback = Callable[[dict], None]


def _ignore(event: dict) -> None:
    """The progress callback of a run nobody watches."""


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
        Tiling, thresholds and vectorising (:class:`~georefseg.options.SegmentOptions`).
    scheduler
        A ``dask.distributed`` scheduler address, or a ``Client``: tiles then run as tasks on
        that cluster, through one client for this Segmenter's life. Workers build the model
        once from its name and weights path (which they must be able to read); a model object
        is sent to every worker once.
    compile_model
        Compile the model with TorchInductor (see
        :func:`georefseg.models.device.compile_for_inference`): 1.3–1.6× faster per tile on
        a CPU after compiling (about 90 s the first time, about 13 s once georefseg's cache
        holds the kernels), so worth it for large scenes or many of them.
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
            card, device_type = model.card, model.device.type
            self.model_name = model.name
            spec: ModelSpec | ReferringSegmenter = model
        else:
            backend, weights = resolve(model, checkpoint)  # header checks only: cheap, and before any client
            self.weights = None if weights is None else weights.resolve()
            card = backend.card(weights)
            self._set_tiling(card)  # before the model is built: a wrong --overlap costs nothing
            spec = ModelSpec(backend.name, None if self.weights is None else str(self.weights), device)
            # On a cluster the workers build the model; here it is only described.
            self.model = None if scheduler else place(backend.build(card), resolve_device(device))
            self.model_name = backend.name if self.model is None else self.model.name
            device_type = device.split(":")[0] if self.model is None else self.model.device.type
        self.card: ModelCard = card if calibration is None else card.with_calibration(calibration)
        self._set_tiling(self.card)
        self.threshold = self.card.threshold if self.options.threshold is None else self.options.threshold
        self.batch_size = self.options.batch_size or (8 if device_type == "cuda" else 1)
        if scheduler is None:
            if compile_model:
                self.model = compile_for_inference(self.model)
            self._runner: LocalRunner | DistributedRunner = LocalRunner(self.model)
        else:
            self._client = self._connect(scheduler)
            self._runner = DistributedRunner(self._client, spec, compile_model)
        log.info("%s ready: %d px tiles, %d px overlap, threshold %s", self.model_name, self.tile_px,
                 self.overlap_px, self.threshold)

    def reading(self, query: Query) -> dict:
        """How the expression was read (:meth:`Query.to_dict`), with an object word this model
        cannot know among the words it could not use."""
        reading = query.to_dict()
        word = self.card.unknown_word(query.subject)
        if word is not None:
            reading["unused"].append(word)
            reading["text"] += f", not known to {self.model_name}: {word!r}"
        return reading

    def vocabulary_note(self, query: Query) -> str | None:
        """What to tell a person before the run when this model cannot know the expression's object
        word (a note template); None when it can."""
        word = self.card.unknown_word(query.subject)
        if word is None:
            return None
        known = sorted(self.card.vocabulary)
        listed = ", ".join(known[:12]) + (", …" if len(known) > 12 else "")
        return (f"{self.model_name} does not know {word!r}: it knows {listed}; nothing is selected "
                "({candidates} writes what it scores anyway)")

    def _set_tiling(self, card: ModelCard) -> None:
        """Tile and overlap (pixels): the options', else the card's; checked together, so that an
        error quotes half of the tile actually used."""
        self.tile_px = self.options.tile_px or card.tile_size
        self.overlap_px = card.min_overlap if self.options.overlap_px is None else self.options.overlap_px
        check_tiling(self.tile_px, self.overlap_px)

    @property
    def calibration(self) -> Calibration:
        return self.card.calibration

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

    def check(self, scene: str | Path, expression: str, output: str | Path | None = None, *,
              prob: str | Path | None = None, overwrite: bool = False, append: bool = False,
              layer: str | None = None, bbox: tuple[float, float, float, float] | None = None,
              bbox_crs=None, aoi: str | Path | None = None, scene_id: str | None = None) -> Request:
        """:func:`~georefseg.request.check_request` with this Segmenter's bands and weights."""
        return check_request(scene, expression, output, prob=prob, overwrite=overwrite, append=append, layer=layer,
                             bands=self.options.bands, bbox=bbox, bbox_crs=bbox_crs, aoi=aoi, weights=self.weights,
                             scene_id=scene_id)

    def run(self, scene: str | Path, expression: str, output: str | Path | None = None, *,
            prob: str | Path | None = None, overwrite: bool = False, append: bool = False,
            layer: str | None = None, bbox: tuple[float, float, float, float] | None = None,
            bbox_crs=None, aoi: str | Path | None = None, scene_id: str | None = None,
            progress: ProgressCallback | None = None) -> SegmentResult:
        """Find the object(s) an expression refers to in one georeferenced scene: :meth:`check`,
        then :meth:`execute`.

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
            Polygon layer to write (format from the extension: see ``georefseg formats``);
            ``None`` writes nothing and returns the features.
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
        scene_id
            What the layer's ``scene`` field says (default: the file's stem).
        progress
            Called with the events of :mod:`georefseg.protocol` (``phase``, ``tiles``).
        """
        return self.execute(self.check(scene, expression, output, prob=prob, overwrite=overwrite, append=append,
                                       layer=layer, bbox=bbox, bbox_crs=bbox_crs, aoi=aoi, scene_id=scene_id),
                            progress)

    def execute(self, request: Request, progress: ProgressCallback | None = None) -> SegmentResult:
        """Map a checked request (:func:`~georefseg.request.check_request`); nothing in it is
        derived again. ``progress`` is called with :mod:`georefseg.protocol` events."""
        t_start = time.perf_counter()
        if request.bands != self.options.bands:
            raise InputError(f"the request was checked with {{param}} {request.bands}, but this Segmenter reads "
                             f"{self.options.bands}: check it with Segmenter.check", param="bands")
        request.guard_weights(self.weights)
        created = [folder for p in request.outputs for folder in make_folders(p)]
        run_notes = [f"created the folder {folder} for {{{name}}}" for name, p in (("output", request.output),
                                                                                   ("prob", request.prob))
                     if p is not None for folder in created if folder == Path(p).absolute().parent]
        try:
            return self._run(request, progress or _ignore, t_start, run_notes)
        except BaseException:
            remove_folders(created)  # a failed run leaves no folder it made
            raise

    def _run(self, req: Request, emit: ProgressCallback, t_start: float, run_notes: list[str]) -> SegmentResult:
        timings: dict[str, float] = {}
        emit(protocol.phase("open"))
        with rasterio.open(req.scene) as head:  # the header only: how much cache the tiling needs
            width = req.window[2] if req.window else head.width
            pixel_bytes = head.count * np.dtype(head.dtypes[0]).itemsize
        cache = gdal_cache_bytes(width, pixel_bytes, self.tile_px + 2 * self.overlap_px, len(req.query.phrases()))
        with rasterio.Env(GDAL_CACHEMAX=cache), \
                Scene(req.scene, list(req.bands) if req.bands else None) as whole, \
                (whole.crop(Window(*req.window)) if req.window else whole) as sc:
            sc.stats  # noqa: B018 - scene statistics once, here, before tiles are read in parallel
            t_open = time.perf_counter()
            timings["open_s"] = t_open - t_start
            self._check_size(sc, run_notes)
            grid = TileGrid(sc.width, sc.height, self.tile_px, self.overlap_px)
            query = req.query
            phrases = query.phrases()  # the subject first, then each anchor once
            # The run's outputs are one transaction: nothing the user sees changes before its commit.
            with Transaction(req.outputs) as txn:
                emit(protocol.phase("infer", phrases=phrases))
                scratch = txn.workdir / "blended"
                scratch.mkdir()
                raw = [scratch / f"probability_{i}.tif" for i in range(len(phrases))]
                timer = BatchTimer()
                skipped, objects = self._blend(sc, grid, phrases, raw, timer, emit)
                if skipped == len(grid):
                    what = "the part mapped" if req.window else "it"
                    raise InputError(f"{req.scene} has no valid pixels: every pixel of {what} is nodata"
                                     + (" or NaN" if np.dtype(sc.dtype).kind == "f" else "")
                                     + ", so there is nothing to segment: check the file, or map another part")
                t_infer = time.perf_counter()
                timings.update(model_s=timer.model_s, infer_s=t_infer - t_open)
                emit(protocol.phase("vectorize"))
                # The COG is encoded (GDAL, outside the GIL) while the candidates are vectorised.
                with ThreadPoolExecutor(1, thread_name_prefix="georefseg-cog") as pool:
                    cog = None if req.prob is None else pool.submit(write_cog, raw[0], req.prob, txn)
                    found: dict[str, list[Candidate]] = objects if objects is not None else {
                        phrase: extract_candidates(str(path), self.threshold)
                        for phrase, path in zip(phrases, raw, strict=True)}
                    t_vec = time.perf_counter()
                    emit(protocol.phase("ground"))
                    unknown = self.card.unknown_word(query.subject)
                    chosen = ground(found[phrases[0]], query, found, to_pixels=~sc.transform,
                                    size=(sc.width, sc.height), min_object_px=self.card.min_object_px,
                                    calibration=self.calibration, pixel_size_m=float(np.mean(sc.pixel_size_m())),
                                    unknown_word=unknown)
                    rows, min_area, written_notes = self._written(chosen, sc)
                    message = "; ".join(filter(None, [chosen.message, *written_notes])) or None
                    features = scene_layer(rows, req.expression, req.scene_id, self.model_name, sc.crs)
                    t_ground = time.perf_counter()
                    emit(protocol.phase("write"))
                    if req.output is not None:
                        write_vector(features, req.output, req.layer, req.append, txn)
                    if cog is not None:
                        cog.result()
                _commit(txn, req.outputs)
            t_end = time.perf_counter()
            timings.update(vectorize_s=t_vec - t_infer, ground_s=t_ground - t_vec, write_s=t_end - t_ground,
                           total_s=t_end - t_start)
            info, reads = sc.describe(), sc.windows_read
        return SegmentResult(
            features=features, output=req.output, probability=req.prob, layer=req.written_layer, scene=info,
            model=self.model_name,
            tiles=len(grid), tiles_skipped=skipped, windows_read=reads, options=self.options,
            grounding={"reading": self.reading(query), "passes": phrases,
                       "found": {p: len(c) for p, c in found.items()}, "anchors_found": chosen.anchors,
                       "number": query.number, "candidates": len(chosen.ranked),
                       "selected": int(sum(chosen.selected)), "written": len(features),
                       "min_area_m2": round(min_area, 3),
                       "message": None if message is None else render(message),
                       "threshold": self.threshold, "calibration": self.calibration.source,
                       "cutoffs": {"one": self.calibration.select_one, "all": self.calibration.select_all}},
            notes=[*req.notes, *filter(None, [self.vocabulary_note(query)]), *run_notes, *filter(None, [message])],
            message_template=message,
            timings={k: round(v, 3) for k, v in timings.items()})

    def _check_size(self, sc: Scene, notes: list[str]) -> None:
        """Refuse a scene too small to hold the model's smallest object; note one smaller than a tile."""
        if sc.width * sc.height < self.card.min_object_px:
            raise InputError(f"{sc.path} is only {sc.width} × {sc.height} px (the part mapped), smaller than the "
                             f"smallest object {self.model_name} can draw ({self.card.min_object_px} px): nothing "
                             "could be found in it; map a larger scene or area")
        if sc.width < self.tile_px or sc.height < self.tile_px:
            notes.append(f"the scene is {sc.width} × {sc.height} px, smaller than one {self.tile_px} px tile: "
                         "it was read as one padded tile")

    def _written(self, chosen: Grounding, sc: Scene) -> tuple[list[tuple[int, Grounded, bool]], float, list[str]]:
        """What is written, as (rank, candidate, selected) rows: min_area_m2 and simplify_m shape
        it after ranking (never the order), then only the selected are kept (all with
        ``candidates``), at most ``max_features``. Also the smallest area kept (m²) and notes
        (templates) on what was left out and why."""
        opts = self.options
        pixel = sc.pixel_size_m()
        min_area = opts.min_area_m2 if opts.min_area_m2 is not None else \
            self.card.min_object_px * pixel[0] * pixel[1]
        kept = refine([g.candidate for g in chosen.ranked], sc.crs, sc.transform, min_area, opts.simplify_m, pixel)
        rows = [(i + 1, Grounded(c, chosen.ranked[i].score, chosen.ranked[i].raw, chosen.ranked[i].parts),
                 chosen.selected[i]) for i, c in kept]
        too_small = f"smaller than {words.area(min_area)} ({{min_area_m2}})"
        notes = []
        if opts.candidates:
            small, capped = len(chosen.ranked) - len(rows), max(0, len(rows) - (opts.max_features or len(rows)))
            why = [f"{small} {too_small}" if small else "", f"{capped} past {{max_features}} {opts.max_features}"
                   if capped else ""]
            notes.append(f"{len(rows) - capped} of {words.count(len(chosen.ranked), 'candidate')} written"
                         + (f" ({'; '.join(filter(None, why))} not written)" if small or capped else ""))
        else:
            rows = [r for r in rows if r[2]]
            dropped = sum(chosen.selected) - len(rows)
            if dropped:
                notes.append(f"{words.count(dropped, 'selected object')} {too_small} not written")
            if opts.max_features is not None and len(rows) > opts.max_features:
                notes.append(f"{len(rows) - opts.max_features} selected past {{max_features}} {opts.max_features} "
                             "not written")
        return rows[:opts.max_features], min_area, notes

    def _blend(self, sc: Scene, grid: TileGrid, phrases: list[str], raw: list[Path], timer: BatchTimer,
               emit: ProgressCallback) -> tuple[int, dict[str, list[Candidate]] | None]:
        """Run the model over every tile for all phrases and blend into ``raw`` (one raster per
        phrase). Returns the number of tiles skipped as nodata and, for a model whose card says
        it separates objects, each phrase's candidates from its instances (made polygons tile
        by tile, so that no mask outlives its tile); None for dense models, whose candidates
        come from the blended rasters."""
        stitcher = Stitcher(grid, [str(p) for p in raw], sc.crs, sc.transform)
        objects: dict[str, list[Candidate]] | None = {p: [] for p in phrases} if self.card.instances else None
        skipped, complete = 0, False
        try:
            for done, res in enumerate(self._runner.run(sc, grid, phrases, self.batch_size, timer, self.threshold),
                                       1):
                stitcher.add(res.tile, res.logits, res.valid)
                skipped += res.logits is None
                if objects is not None and res.instances is not None:
                    for phrase, inst in zip(phrases, res.instances, strict=True):
                        objects[phrase] += instance_candidates([(res.tile, inst)], grid, sc.transform, sc.crs)
                emit(protocol.tiles(done, len(grid)))
            complete = True
        finally:
            stitcher.close(complete)
        return skipped, objects


def _commit(txn: Transaction, outputs: list[Path]) -> None:
    """Commit the run's outputs; an interrupt that waited for the commit says they are complete."""
    try:
        txn.commit()
    except KeyboardInterrupt:
        if not txn.committed:
            raise
        raise Interrupted("interrupted just after the outputs were written: " + ", ".join(map(str, outputs))
                          + " are complete") from None


def segment(scene: str | Path, expression: str, output: str | Path | None = None, *,
            prob: str | Path | None = None, model: str | Path | ReferringSegmenter = "tiny",
            checkpoint: str | Path | None = None, device: str = "auto", scheduler=None, compile_model: bool = False,
            overwrite: bool = False, append: bool = False, layer: str | None = None,
            bbox: tuple[float, float, float, float] | None = None, bbox_crs=None, aoi: str | Path | None = None,
            progress: ProgressCallback | None = None, **options) -> SegmentResult:
    """One scene, one expression, in one call: a :class:`Segmenter` used once.

    ``options`` are the fields of :class:`~georefseg.options.SegmentOptions` (``bands``,
    ``tile_px``, ``overlap_px``, ``batch_size``, ``threshold``, ``min_area_m2``,
    ``simplify_m``, …); the other parameters are those of :class:`Segmenter` and
    :meth:`Segmenter.run`. The request is checked before the model loads. To map several
    scenes or expressions, hold one Segmenter instead: the model then loads once.
    """
    opts = SegmentOptions.from_dict(options)
    request = check_request(scene, expression, output, prob=prob, overwrite=overwrite, append=append, layer=layer,
                            bands=opts.bands, bbox=bbox, bbox_crs=bbox_crs, aoi=aoi)
    with Segmenter(model, checkpoint, device=device, options=opts, scheduler=scheduler,
                   compile_model=compile_model) as seg:
        return seg.execute(request, progress)
