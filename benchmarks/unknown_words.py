"""How often a model selects something for an expression whose object word it cannot know.

    python benchmarks/unknown_words.py [--model tiny] [--checkpoint W]

64 wordings whose object word is unknown to ``tiny`` (never in its training data), made up, not
English, or not a word at all, each run on two 512 px crops of the sample scene (one holding the
large tank and the river, one the ships' side). Prints the share of runs that select a polygon (the
target is 0: there is nothing they can refer to), the highest score given, and the reading of the
worst offenders. The wordings were written before the model was run on them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import rasterio
from rasterio.windows import Window

from georefseg.segmenter import Segmenter

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "scene.tif"
CROPS = {"tanks": Window(384, 256, 512, 512), "north": Window(0, 0, 512, 512)}
WORDINGS = [
    # English nouns tiny never saw
    "the purple elephant", "the giraffe near the river", "the volcano", "the windmill", "the tennis court",
    "the swimming pool", "the stadium", "the lighthouse", "the helicopter", "the train", "the tractor",
    "the greenhouse", "the solar panel", "the wind turbine", "the football pitch", "the cemetery",
    "the vineyard", "the golf course", "the bridge", "the dam", "the mosque", "the pagoda", "the castle",
    "the helipad", "the runway", "the parking lot", "the crane", "the silo", "the quarry", "the orchard",
    "the largest elephant", "the two zebras", "all the camels", "the penguin near the lake",
    # made-up words
    "the florp", "the zindle near the river", "the largest quibbet", "the brantooth", "all glimmerwocks",
    "the snarf in the upper left", "the vorpal blade", "the frumious bandersnatch",
    # other languages
    "der Öltank", "das Schiff", "le réservoir", "le navire", "el barco", "la nave", "il serbatoio",
    "o navio", "het schip", "statek", "säiliö", "油罐", "船",
    # not words, or command-line fragments
    "the --help", "--overwrite", "the -o", "asdfgh", "xyzzy", "the 12345", "the ###", "lorem ipsum dolor",
    "the null",
]


def crops(folder: Path) -> dict[str, Path]:
    out = {}
    with rasterio.open(SAMPLE) as src:
        for name, window in CROPS.items():
            profile = {**src.profile, "width": window.width, "height": window.height,
                       "transform": src.window_transform(window)}
            out[name] = folder / f"{name}.tif"
            with rasterio.open(out[name], "w", **profile) as dst:
                dst.write(src.read(window=window))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    runs, selected, worst = 0, 0, []
    with tempfile.TemporaryDirectory() as tmp, Segmenter(args.model, args.checkpoint, device="cpu") as seg:
        scenes = crops(Path(tmp))
        for text in WORDINGS:
            for name, path in scenes.items():
                result = seg.run(path, text)
                runs += 1
                chose = bool(len(result.features))
                selected += chose
                top = float(result.features["score"].max()) if chose else 0.0
                worst.append((top, text, name, result.grounding["reading"]["text"]))
    worst.sort(reverse=True)
    print(json.dumps({"wordings": len(WORDINGS), "runs": runs, "selected": selected,
                      "selected_rate": round(selected / runs, 3), "highest_score": round(worst[0][0], 3),
                      "worst": [{"score": round(s, 3), "expression": t, "scene": n, "read as": r}
                                for s, t, n, r in worst[:8]]}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
