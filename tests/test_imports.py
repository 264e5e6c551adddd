"""The package's import graph has no circle, counting imports inside functions too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "georefseg"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` imports the module; `from mod import name`, the module
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert "georefseg.models.registry" in graph and graph["georefseg.models.registry"]
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_model_interface_imports_no_model():
    graph = import_graph()
    # Only the cards: models.backend describes weights and imports no model (nor torch) itself.
    assert {m for m in graph["georefseg.models.base"] if m.startswith("georefseg.models.")} == {
        "georefseg.models.card"}
    assert not {m for m in graph["georefseg.models.card"] if m.startswith("georefseg.models.")}


def test_importing_the_package_loads_no_heavy_library():
    """The public API is on the package, and importing it costs nothing until a name is used."""
    code = ("import sys, georefseg; heavy = {'torch', 'rasterio', 'geopandas', 'distributed', 'transformers'}; "
            "assert not heavy & set(sys.modules), heavy & set(sys.modules); "
            "assert callable(georefseg.segment) and 'torch' in sys.modules; "
            "print(','.join(sorted(georefseg.__all__)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.strip().split(",")) == {"__version__", "segment", "Segmenter", "SegmentOptions",
                                                    "SegmentResult", "Request", "check_request", "map_archive",
                                                    "load_model", "list_models"}


def test_mapping_with_the_shipped_model_imports_only_what_it_needs(tmp_path):
    """A local run with `tiny` loads neither transformers (its MiniLM runs on georefseg's own BERT),
    nor dask.distributed (no cluster asked for), nor sympy (torch's shape checks import it): each
    costs a CLI call half a second or more."""
    scene = Path(__file__).resolve().parents[1] / "sample_data" / "scene.tif"
    code = ("import sys; from georefseg import segment; "
            f"segment({str(scene)!r}, 'the storage tank', {str(tmp_path / 'o.gpkg')!r}, device='cpu'); "
            "print('loaded:', ','.join(sorted({'transformers', 'distributed', 'sympy'} & set(sys.modules))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "loaded:"
