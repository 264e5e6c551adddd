"""The `georefseg` command: a thin layer over the Python API (parse, call, show progress)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from georefseg.errors import GeorefsegError, InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Referring segmentation of satellite scenes: an expression in, polygons on the map out.")
dataset_app = typer.Typer(no_args_is_help=True, help="Make datasets: synthetic scenes, or chips from your GIS layers.")
app.add_typer(dataset_app, name="dataset")
out = Console()
err = Console(stderr=True)


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
        raise InputError(f"--bands {value!r}: give band numbers separated by commas, e.g. 3,2,1") from exc


@app.command()
def segment(
    scene: Annotated[str, typer.Argument(help="GeoTIFF, COG or VRT")],
    expression: Annotated[str, typer.Argument(help='what to find, e.g. "the large storage tank near the river"')],
    output: Annotated[Path, typer.Option("-o", "--output", help=".gpkg, .geojson, .shp or .parquet")] = Path(
        "result.gpkg"),
    prob: Annotated[Path | None, typer.Option(help="also write the probability raster (float32 COG)")] = None,
    model: Annotated[str, typer.Option(help="model name (tiny, rmsin) or weights file")] = "tiny",
    checkpoint: Annotated[Path | None, typer.Option(help="weights for --model")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps")] = "auto",
    bands: Annotated[str | None, typer.Option(help="bands, e.g. 3,2,1 (default: from colour interpretation)")] = None,
    tile: Annotated[int | None, typer.Option(help="tile size in pixels (default: the model's)")] = None,
    overlap: Annotated[int | None, typer.Option(help="pixels shared by neighbouring tiles (default: model's)")] = None,
    batch_size: Annotated[int, typer.Option(help="tiles per model call")] = 4,
    threshold: Annotated[float, typer.Option(help="probability that makes a pixel part of an object")] = 0.5,
    min_area: Annotated[float, typer.Option(help="drop objects smaller than this many m²")] = 0.0,
    simplify: Annotated[float, typer.Option(help="simplify outlines to this tolerance in metres")] = 0.0,
    scheduler: Annotated[str | None, typer.Option(help="dask.distributed scheduler, e.g. tcp://head:8786")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace existing outputs")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar or summary")] = False,
) -> None:
    """Find the object(s) EXPRESSION refers to in SCENE and write them as polygons."""
    from georefseg.api import segment as run

    bar = _progress(quiet, "segmenting")
    task = bar.add_task("tiles", total=None, info="tiles")

    def tick(done: int, total: int) -> None:
        if done == 1:
            bar.start()  # only once work has begun, so early errors print alone
        bar.update(task, completed=done, total=total)

    try:
        result = run(scene, expression, output, prob=prob, model=model, checkpoint=checkpoint,
                     device=device, bands=_bands(bands), tile=tile, overlap=overlap,
                     batch_size=batch_size, threshold=threshold, min_area=min_area,
                     simplify=simplify, scheduler=scheduler, overwrite=overwrite, progress=tick)
    finally:
        bar.stop()
    if quiet:
        return
    feats = result.features
    out.print(f"[bold]{len(feats)}[/] object(s) found for [italic]{expression.strip()}[/] "
              f"in {result.timings['total_s']:.1f} s ({result.tiles} tiles, {result.tiles_skipped} "
              f"skipped as nodata, model {result.model})")
    if len(feats):
        table = Table("rank", "score", "area m²", "centroid (scene CRS)")
        for _, row in feats.head(5).iterrows():
            c = row.geometry.centroid
            table.add_row(str(row["rank"]), f"{row['score']:.3f}", f"{row['area_m2']:.1f}", f"{c.x:.6g}, {c.y:.6g}")
        out.print(table)
    else:
        out.print("No object passed the threshold; try a lower --threshold or another wording.")
    out.print(f"polygons: {result.output}" + (f"\nprobability: {result.probability}" if result.probability else ""))


@app.command()
def info(
    scene: Annotated[str, typer.Argument(help="GeoTIFF, COG or VRT")],
    model: Annotated[str, typer.Option(help="model whose tiling to count")] = "tiny",
    tile: Annotated[int | None, typer.Option(help="tile size in pixels")] = None,
    overlap: Annotated[int | None, typer.Option(help="overlap in pixels")] = None,
    bands: Annotated[str | None, typer.Option(help="bands to use, e.g. 3,2,1")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print a scene's CRS, size, bands and resolution, and how many tiles a run takes."""
    from georefseg.models.registry import tiling_defaults
    from georefseg.raster import Scene
    from georefseg.tiling import TileGrid

    with Scene(scene, _bands(bands)) as sc:
        d = sc.describe()
        default_tile, default_overlap = tiling_defaults(model)
        grid = TileGrid(sc.width, sc.height, tile or default_tile,
                        default_overlap if overlap is None else overlap)
        d["tiles"] = {"model": model, "tile": grid.tile, "overlap": grid.overlap, "count": len(grid)}
    if as_json:
        out.print_json(json.dumps(d))
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
def models() -> None:
    """List the models georefseg can run and what each needs."""
    from georefseg.models.registry import MODELS

    table = Table("name", "what it is", "needs")
    for m in MODELS.values():
        table.add_row(m.name, m.summary, m.needs)
    out.print(table)


def main() -> None:
    """Console entry point: user mistakes become one line on stderr and exit code 2."""
    try:
        app()  # click handles its own usage errors (exit 2 with a usage line)
    except GeorefsegError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted: no output was written")
        sys.exit(130)


if __name__ == "__main__":
    main()
