"""How often the expression reader reads a fresh wording right the first time.

    python benchmarks/wordings.py [--show]

The wordings below were written (with what each should read as) before the reader they check was
run on them — batch 1 before the reader's relation families were extended, batch 2 after they were
built and before they were run on it — and are never tuned to: a wording read wrong stays in the
list and counts against the reader. Each names the subject the tiles are asked for, how many
objects are meant (1, N, or None for "all"), the order, the region and the relations (kind and
anchors); a reading is right when all of these match and no word is left unused that the wording
meant. Prints the first-try rate and,
with ``--show``, every wording read otherwise.
"""

from __future__ import annotations

import argparse

from georefseg.expression import parse_expression

# (wording, subject, number, order (by, rank) or None, region words, [(relation kind, [anchors])], unused allowed)
WORDINGS = [
    ("the storage tank adjacent to the road", "the storage tank", 1, None, [], [("near", ["the road"])], False),
    ("the ship moored alongside the pier", "the ship", 1, None, [], [("near", ["the pier"])], False),
    ("the building bordering the park", "the building", 1, None, [], [("near", ["the park"])], False),
    ("the house abutting the railway", "the house", 1, None, [], [("near", ["the railway"])], False),
    ("the warehouses flanking the canal", "the warehouse", None, None, [], [("near", ["the canal"])], False),
    ("the boat inside the harbour", "the boat", 1, None, [], [("within", ["the harbour"])], False),
    ("the tank enclosed by the wall", "the tank", 1, None, [], [("within", ["the wall"])], False),
    ("the trees surrounded by the parking lot", "the tree", None, None, [], [("within", ["the parking lot"])],
     False),
    ("the island in the middle of the lake", "the island", 1, None, [], [("within", ["the lake"])], False),
    ("the cars amid the buildings", "the car", None, None, [], [("within", ["the building"])], False),
    ("the house on the bank of the river", "the house", 1, None, [], [("near", ["the river"])], False),
    ("the boats on the shore of the lake", "the boat", None, None, [], [("near", ["the lake"])], False),
    ("the hut on the riverbank", "the hut", 1, None, [], [("near", ["the river"])], False),
    ("the villa on the lakeshore", "the villa", 1, None, [], [("near", ["the lake"])], False),
    ("the factory across from the station", "the factory", 1, None, [], [("near", ["the station"])], False),
    ("the church opposite the school", "the church", 1, None, [], [("near", ["the school"])], False),
    ("the tank within 100 m of the river", "the tank", 1, None, [], [("within_m", ["the river"])], False),
    ("the buildings less than 50 metres from the road", "the building", None, None, [],
     [("within_m", ["the road"])], False),
    ("the ships more than 200 m from the coast", "the ship", None, None, [], [("beyond_m", ["the coast"])], False),
    ("the barn 30 m from the road", "the barn", 1, None, [], [("within_m", ["the road"])], False),
    ("the plane parked next to the hangar", "the plane", 1, None, [], [("near", ["the hangar"])], False),
    ("the largest building beside the river", "the building", 1, ("largest", 1), [],
     [("near", ["the river"])], False),
    ("the second smallest pond in the park", "the pond", 1, ("smallest", 2), [], [("within", ["the park"])],
     False),
    ("the white car in the lower left corner", "the white car", 1, None, ["left", "bottom"], [], False),
    ("all the red roofs on the right side of the image", "the red roof", None, None, ["right"], [], False),
    ("the tank to the east of the lake", "the tank", 1, None, [], [("east", ["the lake"])], False),
    ("the boat south of the bridge", "the boat", 1, None, [], [("south", ["the bridge"])], False),
    ("the building furthest from the road", "the building", 1, None, [], [("farthest", ["the road"])], False),
    ("the two ships closest to the port", "the ship", 2, None, [], [("nearest", ["the port"])], False),
    ("the road between the lake and the forest", "the road", None, None, [],
     [("between", ["the lake", "the forest"])], False),
    ("the tank not near the river", "the tank", 1, None, [], [("far", ["the river"])], False),
    ("the field next to the farmhouse", "the field", 1, None, [], [("near", ["the farmhouse"])], False),
    ("the dock at the edge of the lake", "the dock", 1, None, [], [("near", ["the lake"])], False),
    ("the silo facing the road", "the silo", 1, None, [], [("near", ["the road"])], False),
    ("the hotel overlooking the beach", "the hotel", 1, None, [], [("near", ["the beach"])], False),
    ("the car at the end of the road", "the car", 1, None, [], [("near", ["the road"])], False),
    ("the shed surrounding the well", "the shed", 1, None, [], [("contains", ["the well"])], False),
    ("the compound containing the tanks", "the compound", 1, None, [], [("contains", ["the tank"])], False),
    ("the leftmost of the three boats near the jetty", "the boat", 1, ("left", 1), [],
     [("near", ["the jetty"])], False),
    ("find the biggest ship in the top half", "the ship", 1, ("largest", 1), ["top"], [], True),
    ("the tank among the trees", "the tank", 1, None, [], [("within", ["the tree"])], False),
    ("the houses along both sides of the street", "the house", None, None, [], [("near", ["the street"])], False),
]

# A second batch, written after the reader's families were built and before it was run on these.
WORDINGS_2 = [
    ("the container ship beside the quay", "the container ship", 1, None, [], [("near", ["the quay"])], False),
    ("the sheds adjoining the farmyard", "the shed", None, None, [], [("near", ["the farmyard"])], False),
    ("the pool inside the garden", "the pool", 1, None, [], [("within", ["the garden"])], False),
    ("the grey tank within 250 m of the pipeline", "the grey tank", 1, None, [], [("within_m", ["the pipeline"])],
     False),
    ("every boat on the river bank", "the boat", None, None, [], [("near", ["the river"])], False),
    ("the kiosk at the entrance of the park", "the kiosk", 1, None, [], [("near", ["the park"])], False),
    ("the smallest tank surrounded by trees", "the tank", 1, ("smallest", 1), [], [("within", ["tree"])], False),
    ("the aircraft closest to the terminal", "the aircraft", 1, None, [], [("nearest", ["the terminal"])], False),
    ("the third largest building in the north", "the building", 1, ("largest", 3), ["top"], [], False),
    ("the car parked under the tree", "the car", 1, None, [], [("south", ["the tree"])], False),
    ("the tanker far from the shore", "the tanker", 1, None, [], [("far", ["the shore"])], False),
    ("the buildings more than 1 km from the airport", "the building", None, None, [],
     [("beyond_m", ["the airport"])], False),
    ("the bridge over the river", "the bridge", 1, None, [], [("within", ["the river"])], False),
    ("the lorry next to the warehouse", "the lorry", 1, None, [], [("near", ["the warehouse"])], False),
    ("the greenhouses on the outskirts of the town", "the greenhouse", None, None, [],
     [("near", ["the town"])], False),
    ("the cabin on the lakeside", "the cabin", 1, None, [], [("near", ["the lake"])], False),
    ("the yacht in the marina", "the yacht", 1, None, [], [("within", ["the marina"])], False),
    ("the tower north-west of the stadium", "the tower", 1, None, [], [("northwest", ["the stadium"])], False),
    ("the two white tanks near the refinery", "the white tank", 2, None, [], [("near", ["the refinery"])], False),
    ("the plane at the end of the runway", "the plane", 1, None, [], [("near", ["the runway"])], False),
    ("the houses opposite the church", "the house", None, None, [], [("near", ["the church"])], False),
    ("the ship across from the lighthouse", "the ship", 1, None, [], [("near", ["the lighthouse"])], False),
    ("the hall containing the stage", "the hall", 1, None, [], [("contains", ["the stage"])], False),
    ("the wall enclosing the yard", "the wall", 1, None, [], [("contains", ["the yard"])], False),
    ("the barges amongst the tugs", "the barge", None, None, [], [("within", ["the tug"])], False),
    ("the largest field bordering the forest", "the field", 1, ("largest", 1), [], [("near", ["the forest"])],
     False),
    ("the tank less than 20 m from the fence", "the tank", 1, None, [], [("within_m", ["the fence"])], False),
    ("the barn 500 metres from the farmhouse", "the barn", 1, None, [], [("within_m", ["the farmhouse"])], False),
    ("the parking lot in the south-east corner of the image", "the parking lot", 1, None, ["bottom", "right"], [],
     False),
    ("the hut at the foot of the hill", "the hut", 1, None, [], [("near", ["the hill"])], False),
    ("the ships along the coast", "the ship", None, None, [], [("near", ["the coast"])], False),
    ("the rightmost crane in the port", "the crane", 1, ("right", 1), [], [("within", ["the port"])], False),
    ("the boat nearest the jetty", "the boat", 1, None, [], [("nearest", ["the jetty"])], False),
    ("the silos on either side of the railway", "the silo", None, None, [], [("near", ["the railway"])], False),
    ("the tent among the trees by the lake", "the tent", 1, None, [],
     [("within", ["the tree"]), ("near", ["the lake"])], False),
    ("the house with a blue roof", "the house", 1, None, [], [], True),
    ("the truck towing the trailer", "the truck", 1, None, [], [], True),
    ("the chimney on top of the factory", "the chimney", 1, None, [], [("within", ["the factory"])], False),
    ("the building west of the river and near the road", "the building", 1, None, [],
     [("west", ["the river"]), ("near", ["the road"])], False),
    ("the tank 2 km away from the town", "the tank", 1, None, [], [("within_m", ["the town"])], False),
]


def reads_right(wording: tuple) -> tuple[bool, str]:
    text, subject, number, order, region, relations, unused_ok = wording
    q = parse_expression(text)
    got = (q.subject, q.number, None if q.order is None else (q.order.by, q.order.rank),
           sorted(q.to_dict()["region"]), [(r.kind, [a.subject for a in r.anchors]) for r in q.relations])
    want = (subject, number, order, sorted(region), relations)
    return got == want and (unused_ok or not q.unused), q.describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="print every wording read otherwise")
    args = parser.parse_args()
    for name, batch in (("batch 1", WORDINGS), ("batch 2", WORDINGS_2)):
        right = 0
        for wording in batch:
            ok, reading = reads_right(wording)
            right += ok
            if args.show and not ok:
                print(f"{wording[0]!r}\n    read as: {reading}")
        print(f"{name}: {right} of {len(batch)} wordings read right the first time ({right / len(batch):.0%})")


if __name__ == "__main__":
    main()
