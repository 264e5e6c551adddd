"""The `georefseg` command: a thin layer over the Python API (parse, call, show progress)."""

from __future__ import annotations

import json
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from georefseg import __version__, protocol, words
from georefseg.errors import GeorefsegError, InputError, Interrupted, render
from georefseg.formats import VECTOR_FORMATS, listed
from georefseg.options import THRESHOLD_RANGE
from georefseg.progress import BatchBar, JsonLines, RichBar, Silent, TrainingBar

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Referring segmentation of satellite scenes: an expression in, polygons on the map out.")
dataset_app = typer.Typer(no_args_is_help=True, help="Make datasets: synthetic scenes, or chips from your GIS layers.")
app.add_typer(dataset_app, name="dataset")
out = Console()
err = Console(stderr=True)
_state: dict = {}  # the running command's JSON event stream, so that errors can join it


def _version(value: bool) -> None:
    if value:
        typer.echo(f"georefseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """Referring segmentation of satellite scenes: an expression in, polygons on the map out."""


def _progress(quiet: bool, what: str) -> Progress:
    return Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), console=err, disable=quiet, transient=False)


def _bands(value: str | None) -> list[int] | None:
    if not value:
        return None
    try:
        return [int(b) for b in value.split(",") if b.strip()]
    except ValueError as exc:
        raise InputError(f"{{param}} {value!r}: give band numbers separated by commas, e.g. 3,2,1",
                         param="bands") from exc


def _numbers(value: str | None, param: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError as exc:
        raise InputError(f"{{param}} {value!r}: give numbers separated by commas, e.g. 10.1,50.2,10.3,50.4",
                         param=param) from exc


class ProgressMode(str, Enum):
    auto = "auto"
    json = "json"
    none = "none"


def _reporter(mode: ProgressMode, quiet: bool, bar=RichBar):
    """JSON lines when asked; a bar only where a person watches (stderr is a terminal), so that
    logs and pipes get no bar drawn in them; else nothing."""
    if mode == ProgressMode.json:
        return JsonLines()
    if quiet or mode == ProgressMode.none or not err.is_terminal:
        return Silent()
    return bar(err)


# Options `segment` and `batch` share: one definition each.
ModelOpt = Annotated[str, typer.Option(help="model name (see `georefseg models`), or a weights file or folder")]
CheckpointOpt = Annotated[Path | None, typer.Option(help="weights (file or folder) for --model")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps")]
BandsOpt = Annotated[str | None, typer.Option(help="bands, e.g. 3,2,1 (default: from colour interpretation)")]
TileOpt = Annotated[int | None, typer.Option(help="tile size in pixels (default: the model's)")]
OverlapOpt = Annotated[int | None, typer.Option(help="pixels shared by neighbouring tiles (default: model's)")]
BatchSizeOpt = Annotated[int | None, typer.Option(help="tiles per model call (default: 1 on CPU, 8 on GPU)")]
ThresholdOpt = Annotated[float | None, typer.Option(help=(
    f"probability, {THRESHOLD_RANGE[0]} to {THRESHOLD_RANGE[1]}, that makes a pixel part of an object (for models "
    "that separate objects, SAM 3: that keeps an object); default: the model's (see `georefseg models`)"))]
MinAreaOpt = Annotated[float | None, typer.Option(help=(
    "drop objects smaller than this many m² (default: the model's smallest object at the scene's pixel size)"))]
SimplifyOpt = Annotated[float, typer.Option(help="simplify outlines to this tolerance in metres")]
CandidatesOpt = Annotated[bool, typer.Option(help=(
    "write every candidate, best first, with a 'selected' field (default: only what the expression refers to)"))]
MaxFeaturesOpt = Annotated[int | None, typer.Option(help="write at most this many features")]
SchedulerOpt = Annotated[str | None, typer.Option(help="dask.distributed scheduler, e.g. tcp://head:8786")]
ProgressOpt = Annotated[ProgressMode, typer.Option(
    help="auto: a bar on a terminal; json: one JSON event per line on stderr; none")]
QuietOpt = Annotated[bool, typer.Option(help="no progress bar or summary")]


def _segment_options(bands, tile, overlap, batch_size, threshold, min_area, simplify, candidates, max_features):
    from georefseg.options import SegmentOptions

    return SegmentOptions(bands=_bands(bands), tile_px=tile, overlap_px=overlap, batch_size=batch_size,
                          threshold=threshold, min_area_m2=min_area, simplify_m=simplify, candidates=candidates,
                          max_features=max_features)


@app.command()
def segment(
    scene: Annotated[str, typer.Argument(help="GeoTIFF, COG or VRT")],
    expression: Annotated[str, typer.Argument(help='what to find, e.g. "the large storage tank near the river"')],
    output: Annotated[Path, typer.Option("-o", "--output", help=f"polygons: {listed()} (see `georefseg formats`)")
                      ] = Path("result.gpkg"),
    prob: Annotated[Path | None, typer.Option(help="also write the probability raster (float32 COG)")] = None,
    model: ModelOpt = "tiny",
    checkpoint: CheckpointOpt = None,
    device: DeviceOpt = "auto",
    bands: BandsOpt = None,
    tile: TileOpt = None,
    overlap: OverlapOpt = None,
    batch_size: BatchSizeOpt = None,
    threshold: ThresholdOpt = None,
    min_area: MinAreaOpt = None,
    simplify: SimplifyOpt = 0.0,
    candidates: CandidatesOpt = False,
    max_features: MaxFeaturesOpt = None,
    scheduler: SchedulerOpt = None,
    compile_model: Annotated[bool, typer.Option("--compile", help=(
        "compile the model first (about 90 s on a CPU, 13 s once cached; then ~1.5× faster per tile): "
        "for large scenes"))] = False,
    overwrite: Annotated[bool, typer.Option(help="replace existing outputs (in a GeoPackage, the run's layer only)")
                         ] = False,
    append: Annotated[bool, typer.Option(help="add to an existing GeoPackage layer or Shapefile")] = False,
    layer: Annotated[str | None, typer.Option(help="GeoPackage layer to write (default: the file's name); "
                                                   "other layers are kept")] = None,
    bbox: Annotated[str | None, typer.Option(help="map only this part: west,south,east,north (in --bbox-crs)")
                    ] = None,
    bbox_crs: Annotated[str | None, typer.Option(help="CRS of --bbox, e.g. EPSG:4326 (default: the scene's)")
                        ] = None,
    aoi: Annotated[Path | None, typer.Option(help="map only the extent of this vector file's features")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one JSON document on stdout")] = False,
    progress: ProgressOpt = ProgressMode.auto,
    quiet: QuietOpt = False,
) -> None:
    """Find the object(s) EXPRESSION refers to in SCENE and write them as polygons.

    Exit codes: 0 done (also when nothing matches), 2 a mistake in the input (one line on
    stderr), 130 interrupted, 1 anything else.
    """
    from georefseg.request import check_request
    from georefseg.segmenter import Segmenter

    report = _reporter(progress, quiet)
    _state["events"] = report if isinstance(report, JsonLines) else None
    report(protocol.started(scene, expression, str(output), None if prob is None else str(prob), model))
    options = _segment_options(bands, tile, overlap, batch_size, threshold, min_area, simplify, candidates,
                               max_features)
    request = check_request(scene, expression, output, prob=prob, overwrite=overwrite, append=append, layer=layer,
                            bands=options.bands, bbox=_numbers(bbox, "bbox"), bbox_crs=bbox_crs,
                            aoi=aoi)  # before the model loads: a mistake costs nothing
    reading = request.query
    report(protocol.reading(reading.to_dict()))
    talk = not quiet and not isinstance(report, JsonLines)  # stderr is for people (JSON lines stay JSON)
    if talk and reading.unused:
        err.print("[yellow]warning:[/] not understood, so not used: "
                  + ", ".join(repr(w) for w in reading.unused) + "; rephrase to use them", highlight=False)
    for note in request.notes if talk else ():
        _note(note)
    try:
        with report.loading(model):
            seg = Segmenter(model, checkpoint, device=device, options=options, scheduler=scheduler,
                            compile_model=compile_model)
        with seg:
            if seg.dashboard_link:
                report(protocol.cluster(seg.dashboard_link))
            said = [*request.notes, *filter(None, [seg.vocabulary_note(request.query)])]
            for note in said[len(request.notes):] if talk else ():
                _note(note)  # before the run: the model cannot know the object word
            result = seg.execute(request, progress=report)
    finally:
        report.close()
    summary = result.to_dict()
    summary["notes"] = [render(n, flag) for n in result.notes]  # what the CLI says, it says in its flags
    message = summary["grounding"]["message"] = render(result.message_template, flag) if result.message else None
    report(protocol.finished(summary["feature_count"], summary["output"], summary["probability"], message,
                             result.timings["total_s"]))
    if as_json:
        typer.echo(json.dumps(summary))
    elif not quiet:
        _print_summary(result, expression)
        for note in result.notes[len(said):] if talk else ():
            _note(note)


def _note(template: str) -> None:
    err.print(f"[yellow]note:[/] {render(template, flag)}", highlight=False, soft_wrap=True)



def _print_summary(result, expression: str) -> None:
    feats, grounding = result.features, result.grounding
    passes = len(grounding.get("passes", [])) or 1
    what = "candidate(s), best first" if result.options.candidates else "feature(s)"
    out.print(f"[bold]{len(feats)}[/] {what} for [italic]{expression.strip()}[/] "
              f"({grounding['selected']} selected of {grounding['candidates']} candidates) "
              f"in {result.timings['total_s']:.1f} s ({result.tiles} tiles"
              + (f", {passes} phrases in one pass" if passes > 1 else "")
              + f", {result.tiles_skipped} skipped as nodata, model {result.model})", highlight=False)
    out.print(f"read as: {grounding['reading']['text']}", highlight=False, markup=False)
    scene = result.scene
    names = [scene["colour_interpretation"][b - 1] for b in scene["model_bands"]]
    out.print(f"read bands {','.join(map(str, scene['model_bands']))} ({', '.join(names)}) of {scene['path']}",
              highlight=False)
    if len(feats):
        table = Table("rank", "selected", "score", "area m²", "centroid (scene CRS)")
        digits = 6 if feats.crs.is_geographic else 1
        for _, row in feats.head(5).iterrows():
            c = row.geometry.centroid
            table.add_row(str(row["rank"]), "yes" if row["selected"] else "no", f"{row['score']:.3f}",
                          f"{row['area_m2']:.1f}", f"{c.x:.{digits}f}, {c.y:.{digits}f}")
        out.print(table)
        if grounding["calibration"] == "uncalibrated":
            out.print(f"scores of {result.model} are not calibrated: they order candidates, they are not chances")
    else:
        out.print("Nothing written (an empty layer with the usual fields); --candidates writes every candidate "
                  "with its score" + (f", --min-area below {words.area(grounding['min_area_m2'])} keeps smaller ones"
                                      if grounding["min_area_m2"] else ""))
    out.print(f"polygons: {result.output}" + (f"\nprobability: {result.probability}" if result.probability else ""))


@app.command()
def batch(
    source: Annotated[str, typer.Argument(help="a folder of scenes, a text file of paths, or a STAC JSON file")],
    out_dir: Annotated[Path, typer.Argument(help="the batch folder: per-scene outputs, merged layer, report, "
                                                 "manifest")],
    expr: Annotated[list[str] | None, typer.Option("--expr", help="what to find in every scene (repeatable)")] = None,
    expressions: Annotated[Path | None, typer.Option(help="CSV of scene,expression rows: expressions per scene")
                           ] = None,
    glob: Annotated[str | None, typer.Option(help="in a folder, map the files matching this pattern (in every "
                                                  "subfolder), e.g. '*_rgb.tif'")] = None,
    asset: Annotated[str | None, typer.Option(help="STAC asset to map (default: the item's GeoTIFF)")] = None,
    output_format: Annotated[str, typer.Option("--format", help=(
        f"per-scene outputs and the merged layer: {listed('name')}"))] = "gpkg",
    crs: Annotated[str, typer.Option(help="CRS of the merged layer")] = "EPSG:4326",
    workers: Annotated[int | None, typer.Option(help="start a Dask LocalCluster of N worker processes")] = None,
    threads: Annotated[int | None, typer.Option(
        min=1, help="threads per job's model (default: cores ÷ --workers; all cores without a cluster)")] = None,
    scheduler: SchedulerOpt = None,
    retry_failed: Annotated[bool, typer.Option(help="run again the jobs that failed before")] = False,
    verbose: Annotated[bool, typer.Option(help="also show Dask's own warnings (worker restarts, slow shutdowns)")
                       ] = False,
    model: ModelOpt = "tiny",
    checkpoint: CheckpointOpt = None,
    device: DeviceOpt = "auto",
    bands: BandsOpt = None,
    tile: TileOpt = None,
    overlap: OverlapOpt = None,
    batch_size: BatchSizeOpt = None,
    threshold: ThresholdOpt = None,
    min_area: MinAreaOpt = None,
    simplify: SimplifyOpt = 0.0,
    candidates: CandidatesOpt = False,
    max_features: MaxFeaturesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the run report as one JSON document on stdout")
                       ] = False,
    progress: ProgressOpt = ProgressMode.auto,
    quiet: QuietOpt = False,
) -> None:
    """Map every scene of SOURCE for the expressions into OUT_DIR, resumably.

    A rerun with the same arguments skips finished jobs (see OUT_DIR/manifest.sqlite) and redoes
    the rest. Exit codes: 0 all done, 3 done but some jobs failed (listed in OUT_DIR/report.json;
    --retry-failed runs them again), 2 a mistake in the arguments, 130 interrupted, 1 anything else.
    """
    from georefseg.batch import map_archive

    report = _reporter(progress, quiet, BatchBar)
    _state["events"] = report if isinstance(report, JsonLines) else None
    options = _segment_options(bands, tile, overlap, batch_size, threshold, min_area, simplify, candidates,
                               max_features)
    try:
        result = map_archive(source, out_dir, expr or [], expressions_csv=expressions, glob=glob, asset=asset,
                             model=model, checkpoint=checkpoint, device=device, options=options, fmt=output_format,
                             crs=crs, workers=workers, scheduler=scheduler, retry_failed=retry_failed,
                             verbose=verbose, progress=report, threads=threads)
    finally:
        report.close()
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    elif not quiet and progress != ProgressMode.json:  # JSON lines on stderr stay JSON
        before = result.skipped - result.skipped_failed
        earlier = ", ".join(filter(None, [f"{before} done" if before else "",
                                          f"{result.skipped_failed} failed" if result.skipped_failed else ""]))
        speed = f", {result.scenes_per_minute:.1f} scenes/min" if result.ran else ""
        out.print(f"[bold]{result.done}[/] of {result.jobs} jobs done, {result.failed} failed; "
                  f"{result.ran} run now in {result.seconds:.1f} s{speed}"
                  + (f" ({earlier} before, not run again)" if earlier else ""), highlight=False, soft_wrap=True)
        if not isinstance(report, BatchBar):  # the bar printed each failure as it happened
            for failure in result.failures[:10]:
                err.print(f"failed: {failure['scene']} ({failure['expression']}): {failure['error']}",
                          highlight=False, markup=False, soft_wrap=True)
        features = f"{result.merged_features} {'feature' if result.merged_features == 1 else 'features'}"
        out.print(f"merged: {result.merged} ({features}, {result.crs})\n"
                  f"report: {Path(result.manifest).with_name('report.json')}", highlight=False, soft_wrap=True)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command()
def info(
    scene: Annotated[str, typer.Argument(help="GeoTIFF, COG or VRT")],
    model: Annotated[str, typer.Option(help="model whose tiling to count")] = "tiny",
    checkpoint: Annotated[Path | None, typer.Option(help="weights for --model (their tiling)")] = None,
    tile: Annotated[int | None, typer.Option(help="tile size in pixels")] = None,
    overlap: Annotated[int | None, typer.Option(help="overlap in pixels")] = None,
    bands: Annotated[str | None, typer.Option(help="bands to use, e.g. 3,2,1")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print a scene's CRS, size, bands and resolution, and how many tiles a run takes."""
    from georefseg.models.registry import read_card
    from georefseg.raster import Scene
    from georefseg.tiling import TileGrid

    card = read_card(model, checkpoint)
    with Scene(scene, _bands(bands)) as sc:
        d = sc.describe()
        grid = TileGrid(sc.width, sc.height, tile or card.tile_size, card.min_overlap if overlap is None else overlap)
        d["tiles"] = {"model": model, "tile": grid.tile, "overlap": grid.overlap, "count": len(grid)}
    if as_json:
        typer.echo(json.dumps(d))
        return
    out.print(f"[bold]{d['path']}[/] ({d['driver']})")
    out.print(f"size        {d['width']} × {d['height']} px, {d['bands']} band(s) of {d['dtype']}; "
              f"model reads bands {d['model_bands']}")
    out.print(f"colours     {', '.join(d['colour_interpretation'])}; nodata {d['nodata']}")
    out.print(f"CRS         {d['crs']} ({d['crs_name']})")
    out.print(f"resolution  {d['pixel_size_m'][0]:.3f} × {d['pixel_size_m'][1]:.3f} m per pixel"
              + ("  (rotated grid)" if d["rotated"] else ""))
    out.print(f"bounds      {d['bounds']}")
    t = d["tiles"]
    out.print(f"tiles       {t['count']} of {t['tile']} px with {t['overlap']} px overlap ({t['model']})")


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List the models georefseg can run and what each needs."""
    from georefseg.models import list_models

    if as_json:
        typer.echo(json.dumps(list_models()))
        return
    table = Table("name", "what it is", "needs")
    for m in list_models():
        table.add_row(m["name"], m["summary"], m["needs"])
    out.print(table)


@app.command()
def formats(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List the vector formats georefseg writes (-o, batch --format) and what each can do."""
    if as_json:
        typer.echo(json.dumps([f.to_dict() for f in VECTOR_FORMATS]))
        return
    table = Table("name", "format", "extensions", "append", "layers", "CRS")
    for f in VECTOR_FORMATS:
        table.add_row(f.name, f.label, " ".join(f.extensions), "yes" if f.appendable else "no",
                      "several" if f.multi_layer else "one", f.crs or "the scene's")
    out.print(table)


@dataset_app.command("synth")
def dataset_synth(
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="folder to write")],
    n: Annotated[int, typer.Option("--n", help="number of scenes (each gives a few expressions)")] = 1000,
    seed: Annotated[int, typer.Option(help="generator seed: the same seed gives the same dataset")] = 0,
    size: Annotated[int, typer.Option(help="scene side in pixels")] = 256,
    workers: Annotated[int, typer.Option(help="processes")] = 2,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Generate a synthetic referring dataset (train/val/test splits share no scene)."""
    from georefseg.data.synth import write_synthetic_dataset

    if n < 1:
        raise InputError("--n must be at least 1")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InputError(f"{out_dir} is not empty: choose a new folder")
    with _progress(quiet, "scenes") as bar:
        task = bar.add_task("scenes", total=n, info="")
        meta = write_synthetic_dataset(out_dir, n, seed=seed, size=size, workers=workers,
                                       progress=lambda: bar.advance(task))
    if not quiet:
        out.print(f"wrote {out_dir}: {meta['samples']}")


@dataset_app.command("from-labels")
def dataset_from_labels(
    raster: Annotated[str, typer.Option(help="the image (GeoTIFF, COG, VRT)")],
    labels: Annotated[Path, typer.Option(help="polygon layer (GeoPackage, Shapefile, GeoJSON, …)")],
    class_field: Annotated[str, typer.Option(help="attribute that names each object's class")],
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="folder to write")],
    layer: Annotated[str | None, typer.Option(help="layer name inside the label file")] = None,
    chip: Annotated[int, typer.Option(help="chip side in pixels")] = 256,
    water_classes: Annotated[str, typer.Option(help="classes that are water (context for 'near the river')")] = "",
    road_classes: Annotated[str, typer.Option(help="classes that are roads (context)")] = "",
    max_chips: Annotated[int | None, typer.Option(help="at most this many chips")] = None,
    block: Annotated[int, typer.Option(help=(
        "side of the blocks of ground the train/val/test split is drawn by, in chips"))] = 4,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Turn labelled polygons over a raster into a referring dataset, split by place (blocks of
    ground recorded in dataset.json)."""
    from georefseg.data.labels import build_from_labels

    def classes(text: str) -> tuple[str, ...]:
        return tuple(c.strip().lower() for c in text.split(",") if c.strip())

    with _progress(quiet, "objects") as bar:
        task = bar.add_task("objects", total=None, info="")
        counts = build_from_labels(raster, labels, class_field, out_dir, layer=layer, chip=chip, seed=seed,
                                   water_classes=classes(water_classes), road_classes=classes(road_classes),
                                   max_chips=max_chips, block_chips=block,
                                   progress=lambda d, t: bar.update(task, completed=d, total=t))
    if not quiet:
        out.print(f"wrote {out_dir}: {counts}")


@app.command()
def train(
    data: Annotated[str, typer.Option(help=(
        "dataset folder (georefseg's, e.g. from `dataset from-labels`; RRSIS-D; RefSegRS), or synth:SEED "
        "for endless synthetic scenes"))],
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="folder for checkpoints and weights")],
    model: Annotated[str, typer.Option(help="what to train: tiny, rmsin or clipseg")] = "tiny",
    init: Annotated[Path | None, typer.Option("--init", "--checkpoint", help=(
        "weights to start from: tiny weights, an RMSIN checkpoint in its authors' layout, a CLIPSeg folder "
        "(required for clipseg)"))] = None,
    swin: Annotated[Path | None, typer.Option(help=(
        "rmsin: the Swin ImageNet-22k file its authors start from (swin_base_patch4_window12_384_22k.pth)"))] = None,
    bert: Annotated[Path | None, typer.Option(help="rmsin: a local BERT-base folder (bert-base-uncased)")] = None,
    epochs: Annotated[int | None, typer.Option(help="passes over the train split (default: the recipe's)")] = None,
    max_steps: Annotated[int | None, typer.Option(help=(
        "stop after this many steps (the learning-rate schedule still spans the epochs)"))] = None,
    batch_size: Annotated[int | None, typer.Option(help="samples per step and process (default: the recipe's)")] = None,
    lr: Annotated[float | None, typer.Option(help="base learning rate of AdamW (default: the recipe's)")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay (default: the recipe's)")] = None,
    warmup: Annotated[int | None, typer.Option(help="warm-up steps (default: the recipe's)")] = None,
    size: Annotated[int | None, typer.Option(help="training image side in pixels (default: the model's)")] = None,
    shuffle: Annotated[bool, typer.Option(help="a new sample order each epoch (else the dataset's order)")] = True,
    augment: Annotated[bool, typer.Option(help="the recipe's augmentation")] = True,
    dropout: Annotated[bool, typer.Option(
        help="dropout and drop path as the recipe has them (off: exact comparisons)")] = True,
    train_all: Annotated[bool, typer.Option(
        "--all", help="clipseg: train the whole model, not only its decoder")] = False,
    val_data: Annotated[str | None, typer.Option(help="validation folder (needed with synth:SEED)")] = None,
    val_every: Annotated[int | None, typer.Option(help="validate every N steps (default: every epoch)")] = None,
    calibrate: Annotated[bool, typer.Option(help="fit the score calibration on the val split at the end")] = True,
    checkpoint_every: Annotated[int, typer.Option(help="write the resumable OUT/last.pt every N steps")] = 200,
    resume: Annotated[bool, typer.Option(help="continue from OUT/last.pt")] = False,
    device: DeviceOpt = "auto",
    workers: Annotated[int, typer.Option(help="data loading processes")] = 2,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    progress: ProgressOpt = ProgressMode.auto,
    quiet: QuietOpt = False,
) -> None:
    """Train a model with its recipe (RMSIN: its authors'); best and last weights go to OUT in the
    model's own format. Several GPUs or processes: run it under torchrun."""
    from georefseg.training import TrainConfig
    from georefseg.training import train as run

    cfg = TrainConfig(data=data, out=str(out_dir), model=model, checkpoint=None if init is None else str(init),
                      swin=None if swin is None else str(swin), bert=None if bert is None else str(bert),
                      epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                      warmup_steps=warmup, size=size, shuffle=shuffle, augment=augment, dropout=dropout,
                      train_all=train_all, val_data=val_data, val_every=val_every, calibrate=calibrate,
                      checkpoint_every=checkpoint_every, workers=workers, seed=seed, device=device)
    report = _reporter(progress, quiet, TrainingBar)
    _state["events"] = report if progress == ProgressMode.json else None
    try:
        state = run(cfg, resume=resume, on_step=lambda pace: report(protocol.step(pace)),
                    on_validate=lambda s, m: report(protocol.validated(s, m)))
    finally:
        report.close()
    if not quiet and progress != ProgressMode.json:
        best = f"best val {state.best:.3f}; " if state.best >= 0 else ""
        out.print(f"done at step {state.step}; {best}weights in {out_dir}")


@app.command()
def calibrate(
    data: Annotated[Path, typer.Option(help="dataset folder whose validation samples the calibration is fitted on")],
    model: ModelOpt = "tiny",
    checkpoint: CheckpointOpt = None,
    split: Annotated[str, typer.Option(help="the split to fit on (never a test split)")] = "val",
    limit: Annotated[int | None, typer.Option(help="only the first N samples")] = None,
    batch_size: Annotated[int, typer.Option(help="samples per model call")] = 8,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Fit a model's score calibration on a dataset and store it beside the model's weights,
    where `segment` reads it."""
    from georefseg.calibrate import calibrate as fit
    from georefseg.calibrate import write_beside
    from georefseg.data import open_dataset
    from georefseg.models.registry import BACKENDS, load_model

    if split == "test":
        raise InputError("--split test: a calibration fitted on the test split would make its scores look "
                         "better than they are; fit on val (or train)")
    samples = [s for s in open_dataset(data) if s.split == split][:limit]
    if not samples:
        raise InputError(f"{data} has no samples in its {split} split: choose --split")
    if checkpoint is None and model in BACKENDS:
        raise InputError(f"--model {model} names the default weights, whose calibration georefseg ships: give "
                         "--checkpoint, the weights (file or folder) to calibrate")
    net = load_model(model, checkpoint, device)
    with _progress(quiet, "calibrating") as bar:
        task = bar.add_task("samples", total=len(samples), info="")
        cal = fit(net, samples, batch_size=batch_size, source=f"{data}, {split} split",
                  progress=lambda k: bar.advance(task, k))
    path = write_beside(cal, net.card.weights)
    if not quiet:
        out.print(f"wrote {path}: select_one {cal.select_one}, select_all {cal.select_all}; "
                  f"{cal.reliability['fit']['samples']} samples")


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="dataset folder (georefseg, RRSIS-D or RefSegRS layout)")],
    model: Annotated[str, typer.Option(help="model name or weights file")] = "tiny",
    checkpoint: Annotated[Path | None, typer.Option(help="weights for --model")] = None,
    split: Annotated[str, typer.Option(help="train, val, test, or all (a dataset kept for evaluation only)")] = "test",
    json_out: Annotated[Path | None, typer.Option("--json", help="write the metrics as JSON")] = None,
    limit: Annotated[int | None, typer.Option(help="only the first N samples")] = None,
    batch_size: Annotated[int, typer.Option(help="samples per model call")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps")] = "auto",
    grounding: Annotated[bool, typer.Option(
        help="score what segment chooses: the model plus scene-level grounding of size, position and "
             "relation words (the field's papers score the model alone)")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Score a model with the field's metrics (mIoU, oIoU, Prec@0.5–0.9) on a dataset split."""
    from georefseg.atomic import write_text
    from georefseg.data import open_dataset
    from georefseg.evaluate import evaluate as run
    from georefseg.metrics import markdown_table
    from georefseg.models.registry import load_model

    samples = [s for s in open_dataset(data) if split in (s.split, "all")][:limit]
    if not samples:
        raise InputError(f"{data} has no samples in its {split} split")
    net = load_model(model, checkpoint, device)
    with _progress(quiet, "evaluating") as bar:
        task = bar.add_task("samples", total=len(samples), info="")
        metrics = run(net, samples, batch_size=batch_size, progress=lambda k: bar.advance(task, k),
                      grounding=grounding)
    metrics = {"model": model if checkpoint is None else str(checkpoint), "data": str(data), "split": split,
               "grounding": grounding, **metrics}
    if json_out:
        write_text(json_out, json.dumps(metrics, indent=2))
    how = ", with scene-level grounding" if grounding else ""
    typer.echo(markdown_table(metrics, f"{metrics['model']} on {data} ({split}{how})"))


# How the CLI names the library's parameters, where the flag is not just --name-with-dashes.
FLAGS = {"output": "-o/--output", "compile_model": "--compile", "tile_px": "--tile", "overlap_px": "--overlap",
         "min_area_m2": "--min-area", "simplify_m": "--simplify", "expression": "EXPRESSION", "scene": "SCENE",
         "out_dir": "-o/--out", "expressions": "--expr", "expressions_csv": "--expressions", "fmt": "--format",
         "source": "SOURCE", "outdir": "OUT_DIR"}


def flag(param: str) -> str:
    """The CLI's name for a library parameter."""
    return FLAGS.get(param, "--" + param.replace("_", "-"))


INTERRUPTED = "interrupted: no output was written (any that existed are unchanged)"


def _fail(message: str, code: int) -> int:
    events = _state.get("events")
    if events is not None:  # a program reads stderr: the error is one more JSON line
        events(protocol.error(message, code))
    else:
        err.print(message, highlight=False, soft_wrap=True, markup=False)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit code: 0 done,
    2 a user's mistake (one line on stderr, no traceback), 130 interrupted (Ctrl-C or SIGTERM;
    no output is left), 1 anything else."""
    _state.clear()
    try:
        code = app(args=argv, standalone_mode=False)  # typer returns an Exit's code; Ctrl-C is Exit(130)
    except GeorefsegError as exc:
        message = exc.render(None if exc.param is None else flag(exc.param), flag)
        interrupted = isinstance(exc, Interrupted)
        return _fail(message if interrupted else f"error: {message}", 130 if interrupted else 2)
    except (typer.Abort, KeyboardInterrupt):
        return _fail(INTERRUPTED, 130)
    except typer.TyperException as exc:  # usage errors: the parser's own message, exit 2
        exc.show()
        return getattr(exc, "exit_code", 2)
    except Exception as exc:
        if _state.get("events") is None:
            raise  # a bug: the traceback is what a report needs (exit 1)
        return _fail(f"error: unexpected {type(exc).__name__}: {exc}", 1)
    if code == 130:
        return _fail(INTERRUPTED, 130)
    return code if isinstance(code, int) else 0


def main() -> None:
    """Console entry point; see :func:`run` for the exit codes."""
    signal.signal(signal.SIGTERM, _interrupt)  # a kill unwinds like Ctrl-C: temporary files removed
    sys.exit(run())


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
