"""One run's request, checked once: the expression, the scene's header, the part to map, the outputs.

:func:`check_request` refuses, before any model loads, every mistake a run's arguments can
hold, and returns a frozen :class:`Request` that the CLI, :func:`georefseg.segment`, batch
mapping and (through the CLI) the QGIS plugin hand to :meth:`Segmenter.execute
<georefseg.segmenter.Segmenter.execute>`. Nothing downstream derives any of it again: the
expression is parsed here, the scene's header is opened here, the region is turned into a
pixel window of the scene here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from georefseg.atomic import remove_stale
from georefseg.errors import InputError, InputNotFoundError, OutputError
from georefseg.expression import Query, parse_expression
from georefseg.formats import file_parts, format_of
from georefseg.outputs import check_raster_writable, check_vector_writable, default_layer
from georefseg.raster import Scene
from georefseg.words import count

MAX_EXPRESSION_CHARS = 300
# Files GDAL keeps beside a raster: writing over one would change how the scene reads.
SIDECARS = (".aux.xml", ".ovr", ".msk", ".aux")
WORLD_FILES = (".tfw", ".tifw", ".wld")


@dataclass(frozen=True)
class Request:
    """A checked run: what to read, what to find, where to write.

    Attributes
    ----------
    scene : str
        The raster (any GDAL path), as given.
    scene_id : str
        What the layer's ``scene`` field says: the caller's id (a STAC item's), else the
        file's stem.
    expression : str
        The expression with its white space folded.
    query : Query
        How the expression reads (subject, number, order, region, relations, unused words).
    bands : tuple of int or None
        The bands the scene was checked with (``None``: from the colour interpretation).
    window : tuple of int or None
        (col_off, row_off, width, height) in pixels of the part to map (the ``bbox`` or ``aoi``
        in the scene's grid); ``None``: all of it.
    output, prob : Path or None
        The polygon layer and the probability raster to write.
    overwrite, append : bool
        Replace the run's outputs (in a GeoPackage, its layer only) / add to its layer.
    layer : str or None
        The layer in a multi-layer output (default: the file's stem).
    inputs : frozenset of Path
        The files the run reads (scene, its sidecars, weights), which it never writes.
    notes : tuple of str
        What a person should know before the run (bands guessed, a layer replaced), as message
        templates naming parameters as ``{name}`` (:func:`georefseg.errors.render`).
    """

    scene: str
    scene_id: str
    expression: str
    query: Query
    bands: tuple[int, ...] | None = None
    window: tuple[int, int, int, int] | None = None
    output: Path | None = None
    prob: Path | None = None
    overwrite: bool = False
    append: bool = False
    layer: str | None = None
    inputs: frozenset[Path] = frozenset()
    notes: tuple[str, ...] = ()

    @property
    def written_layer(self) -> str | None:
        """The layer the polygons go to in a multi-layer output (default: the file's stem); None
        for single-layer formats and runs without an output."""
        if self.output is None or not format_of(self.output).multi_layer:
            return None
        return self.layer or default_layer(self.output)

    @property
    def outputs(self) -> list[Path]:
        """The files the run writes (the polygon layer first)."""
        return [p for p in (self.output, self.prob) if p is not None]

    def guard_weights(self, weights: Path | None) -> None:
        """Refuse outputs that would write over ``weights`` (the run's model file, known only once
        the model is chosen): path comparison alone, no I/O beyond resolving the path."""
        if weights is None or weights.resolve() in self.inputs:
            return
        _refuse_inputs(self.output, self.prob, {weights.resolve()})


def validate_expression(expression: str) -> str:
    """The expression with its white space folded; an InputError naming ``expression`` when it is
    empty or too long."""
    text = " ".join(str(expression).split())
    if not text:
        raise InputError("the {param} is empty: describe the object, e.g. \"the large storage tank\"",
                         param="expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise InputError(f"the {{param}} is {len(text)} characters long; keep it under "
                         f"{MAX_EXPRESSION_CHARS} (the model reads only the first 20 words)", param="expression")
    return text


def inputs_of(scene: str | Path, weights: Path | None = None) -> frozenset[Path]:
    """The files a run reads, which it must never write: the scene, its sidecars, the weights."""
    path = Path(scene)
    found = {path, *(path.with_name(path.name + ext) for ext in SIDECARS),
             *(path.with_suffix(ext) for ext in WORLD_FILES)}
    if weights is not None:
        found.add(weights)
    return frozenset(p.resolve() for p in found if p.exists())


def _refuse_inputs(output, prob, inputs: frozenset[Path] | set[Path]) -> None:
    for name, p in (("output", output), ("prob", prob)):
        if p is None:
            continue
        hit = next((part for part in file_parts(p) if part.resolve() in inputs), None)
        if hit is not None:
            raise OutputError(f"{{param}} {p} would write over {hit}, which this run reads: georefseg never "
                              "writes over its inputs; choose another name", param=name)


def _region(bbox, bbox_crs, aoi) -> tuple[tuple[float, ...], str | None, str] | None:
    """(bounds, crs, the parameter they came from) of the part of a scene to map; None: all."""
    if bbox is not None and aoi is not None:
        raise InputError("{param} and aoi both say which part to map: give one", param="bbox")
    if aoi is not None:
        import pyogrio

        if not Path(aoi).exists():
            raise InputNotFoundError(f"{{param}} {aoi} does not exist", param="aoi")
        try:
            info = pyogrio.read_info(aoi)
        except (pyogrio.errors.DataSourceError, OSError) as exc:
            raise InputError(f"{{param}} {aoi} is not a vector file GDAL can read ({exc})", param="aoi") from exc
        if not info.get("features") or info.get("total_bounds") is None:
            raise InputError(f"{{param}} {aoi} has no features to take an extent from", param="aoi")
        return tuple(float(v) for v in info["total_bounds"]), info["crs"], "aoi"
    if bbox is None:
        return None
    if len(bbox) != 4:
        raise InputError(f"{{param}} takes four numbers, west,south,east,north (got {len(bbox)})", param="bbox")
    if bbox_crs is not None:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(bbox_crs)
        except CRSError as exc:
            raise InputError(f"{{param}} {bbox_crs!r} is not a CRS: give e.g. EPSG:4326", param="bbox_crs") from exc
    return tuple(float(v) for v in bbox), bbox_crs, "bbox"


def check_request(scene: str | Path, expression: str, output: str | Path | None = None, *,
                  prob: str | Path | None = None, overwrite: bool = False, append: bool = False,
                  layer: str | None = None, bands: tuple[int, ...] | None = None,
                  bbox: tuple[float, float, float, float] | None = None, bbox_crs=None,
                  aoi: str | Path | None = None, weights: Path | None = None,
                  scene_id: str | None = None) -> Request:
    """Check a run's arguments once, before any model loads, and return them as a :class:`Request`.

    Parameters
    ----------
    scene, expression, output, prob, overwrite, append, layer, bbox, bbox_crs, aoi
        As for :meth:`Segmenter.run <georefseg.segmenter.Segmenter.run>`.
    bands
        The bands the model will see (1-based); ``None``: from the colour interpretation.
    weights
        The model's weights file, when known: protected like the scene.
    scene_id
        What the layer's ``scene`` field says (default: the file's stem).

    Raises
    ------
    InputError, OutputError
        Naming the parameter at fault: the expression, the scene's header and bands, the part
        to map, the outputs. Reads headers only.
    """
    text = validate_expression(expression)
    with Scene(scene, list(bands) if bands else None) as sc:
        pass  # the header is all a check needs; it stays readable after the file is closed
    for folder in {Path(p).absolute().parent for p in (output, prob) if p is not None}:
        remove_stale(folder)  # a killed run's outputs completed, or its leftovers removed, before they are judged
    inputs = inputs_of(scene, weights)
    _refuse_inputs(output, prob, inputs)
    if output is not None:
        check_vector_writable(output, overwrite, append, layer)
    if prob is not None:
        check_raster_writable(prob, overwrite)
    notes = [n for n in (sc.band_note, _replaced(output, layer, overwrite)) if n]
    region = _region(bbox, bbox_crs, aoi)
    win = None if region is None else sc.window(region[0], region[1], param=region[2])
    return Request(
        scene=str(scene), scene_id=scene_id or Path(str(scene)).stem, expression=text, query=parse_expression(text),
        bands=None if not bands else tuple(int(b) for b in bands),
        window=None if win is None else (int(win.col_off), int(win.row_off), int(win.width), int(win.height)),
        output=None if output is None else Path(output), prob=None if prob is None else Path(prob),
        overwrite=overwrite, append=append, layer=layer, inputs=inputs, notes=tuple(notes))


def _replaced(output, layer: str | None, overwrite: bool) -> str | None:
    """What ``overwrite`` will replace in an existing polygon output: its layer's geometry type and
    feature count (a note template); None when nothing is there to replace."""
    if not overwrite or output is None or not Path(output).exists():
        return None
    import pyogrio

    fmt = format_of(output)
    name = (layer or default_layer(output)) if fmt.multi_layer else None
    try:
        info = pyogrio.read_info(output, layer=name)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError):
        return None  # a new layer, or not a file GDAL reads: nothing of the user's is replaced
    what = f"layer {name!r} of {output}" if name else str(output)
    return (f"{{overwrite}} replaces {what} ({info.get('geometry_type') or 'no geometry'}, "
            f"{count(int(info.get('features') or 0), 'feature')})")
