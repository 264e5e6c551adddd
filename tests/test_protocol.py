"""The machine protocol: every event built in one place, with what a reader needs to show it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from georefseg import protocol
from georefseg.options import THRESHOLD_RANGE


def test_phases_and_tiles_carry_their_words_and_one_bar():
    names = [p.name for p in protocol.PHASES]
    starts = [p.start for p in protocol.PHASES]
    assert starts == sorted(starts) and starts[0] > 0 and starts[-1] < 1
    infer, after = names.index(protocol.TILE_PHASE), names.index(protocol.TILE_PHASE) + 1
    first, last = protocol.tiles(1, 4), protocol.tiles(4, 4)
    assert first["progress"] == pytest.approx(starts[infer] + (starts[after] - starts[infer]) / 4)
    assert last["progress"] == pytest.approx(starts[after]) and last["text"] == "segmenting tiles: 4/4"
    assert protocol.phase("ground")["text"] == "choosing the referent"
    with pytest.raises(KeyError):
        protocol.phase("painting")  # only the declared phases exist


def test_events_are_plain_json_and_name_their_protocol():
    started = protocol.started("s.tif", "the tank", "o.gpkg", None, "tiny")
    assert started["protocol"] == protocol.PROTOCOL_VERSION == protocol.batch(1, 1, 0, None, None)["protocol"]
    events = [started, protocol.reading({"subject": "the tank"}), protocol.phase("infer", phrases=["the tank"]),
              protocol.tiles(1, 1), protocol.cluster("http://127.0.0.1:8787/status"),
              protocol.finished(1, "o.gpkg", None, None, 1.5), protocol.error("error: x", 2),
              protocol.scene("a", "the tank", protocol.tiles(1, 2)),
              protocol.job("a", "the tank", 1, 2, {"features": 3, "worker": "w"}, 0),
              protocol.merged(3, "merged.gpkg"), protocol.batch_finished({"jobs": 2})]
    assert [json.loads(json.dumps(e)) for e in events] == events
    relayed = events[7]
    assert relayed["event"] == "scene" and relayed["kind"] == "tiles" and relayed["done"] == 1
    failed = protocol.job("a", "x", 2, 2, {"error": "scene is corrupt"}, 1)
    assert failed["status"] == "failed" and failed["error"] == "scene is corrupt" and failed["worker_losses"] == 1


def test_the_qgis_plugin_reads_this_protocol_and_offers_these_thresholds():
    """The plugin cannot import georefseg (it runs in QGIS's Python), so it states the protocol
    version it reads and the threshold range once, in its protocol module: they must be these."""
    plugin = Path(__file__).resolve().parents[1] / "plugins" / "qgis" / "georefseg_qgis" / "protocol.py"
    stated = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(plugin.read_text()).body
              if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
              and node.targets[0].id in ("PROTOCOL_VERSION", "THRESHOLD_RANGE")}
    assert stated == {"PROTOCOL_VERSION": protocol.PROTOCOL_VERSION, "THRESHOLD_RANGE": THRESHOLD_RANGE}
