"""Reading a referring expression: what the tiles are asked, what the scene decides, how many.

A tile's model sees only its tile, so words about the scene — sizes and orders ("the largest",
"the second from the left", "the tank closest to the river"), places in the image ("at the
top", "in the north-east corner"), relations to things that may lie in another tile ("near
the river", "between the road and the lake") — and how many objects are meant ("the tank",
"the tanks", "every ship", "the two largest tanks") cannot be judged there.
:func:`parse_expression` takes them out of the expression into a :class:`Query`; the model is
asked only for the *subject* ("the white storage tank", colour and category words kept, in the
singular) and each *anchor* ("the river"), and :mod:`georefseg.grounding` judges the rest over
the whole scene. Words the reader recognises but cannot use ("not", an ordinal with nothing to
count along, "near" without an anchor, commands such as "find") are kept in
:attr:`Query.unused`, so that the user is told, never silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

# Land cover: a subject or anchor made of it means all of it ("near the river"), not one object.
STUFF = {"river", "stream", "canal", "lake", "pond", "water", "sea", "ocean", "coast", "shore", "harbour",
         "harbor", "bay", "road", "street", "highway", "railway", "forest", "woodland", "coastline",
         "beach", "grass", "grassland", "farmland", "vegetation", "fields", "water body"}

_SIZE = {w: "largest" for w in ("largest", "biggest", "large", "big", "huge", "giant", "enormous", "massive",
                                 "larger", "bigger", "greatest", "longest", "longer", "widest", "wider")}
_SIZE |= {w: "smallest" for w in ("smallest", "small", "tiniest", "tiny", "little", "littlest", "smaller",
                                   "shortest", "shorter", "narrowest", "minute")}
# Sides: (axis, side) with axis 0 = x (side 0 = west/left), axis 1 = y (side 0 = north/top).
_SIDE_WORDS = {"left": (0, 0), "west": (0, 0), "western": (0, 0), "westerly": (0, 0), "right": (0, 1),
               "east": (0, 1), "eastern": (0, 1), "easterly": (0, 1), "top": (1, 0), "upper": (1, 0),
               "up": (1, 0), "north": (1, 0), "northern": (1, 0), "northerly": (1, 0), "bottom": (1, 1),
               "lower": (1, 1), "down": (1, 1), "south": (1, 1), "southern": (1, 1), "southerly": (1, 1)}
_EXTREMES = {"leftmost": (0, 0), "westernmost": (0, 0), "westmost": (0, 0), "rightmost": (0, 1),
             "easternmost": (0, 1), "eastmost": (0, 1), "topmost": (1, 0), "uppermost": (1, 0),
             "highest": (1, 0), "northernmost": (1, 0), "northmost": (1, 0), "bottommost": (1, 1),
             "lowermost": (1, 1), "lowest": (1, 1), "southernmost": (1, 1), "southmost": (1, 1)}
_SIDE_NAMES = {(0, 0): "left", (0, 1): "right", (1, 0): "top", (1, 1): "bottom"}
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
             "eighth": 8, "ninth": 9, "tenth": 10}
_COUNTS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
           "ten": 10, "both": 2}
_EVERY = {"all", "every", "each", "any"}
_COMMANDS = {"find", "show", "me", "select", "segment", "highlight", "locate", "detect", "mark", "outline",
             "map", "extract", "get", "give", "please", "where", "identify", "us"}
_POLITE = {"me", "us", "please"}
_NEGATIONS = {"not", "no", "without", "except", "excluding", "non", "never"}
# Words that only join others; dropped from the ends of a phrase, never reported.
_GLUE = {"the", "a", "an", "that", "which", "who", "is", "are", "and", "of", "located", "situated", "lying",
         "placed", "positioned", "standing", "sitting", "found", "seen", "one", "ones", "only", "single",
         "there", "to", "from", "most", "than", "other", "others", "object", "objects", "docked", "parked",
         "moored", "anchored", "built", "stationed", "waiting"}
_NOT_PLURAL = ("ss", "us", "is", "ous", "ics")
_PLURAL_EXCEPTIONS = {"gas", "bus", "lens", "canvas", "chassis", "series", "species", "glass", "grass",
                      "terrace", "news", "works", "barracks", "headquarters"}
_IRREGULAR = {"people": "person", "men": "man", "women": "woman", "children": "child", "geese": "goose",
              "leaves": "leaf", "shelves": "shelf", "wharves": "wharf", "sheep": "sheep", "aircraft": "aircraft"}

_A = r"(?:(?:the|a|an)\s+)"
_V = "|".join(w for w in sorted(_SIDE_WORDS, key=len, reverse=True) if _SIDE_WORDS[w][0] == 1)
_H = "|".join(w for w in sorted(_SIDE_WORDS, key=len, reverse=True) if _SIDE_WORDS[w][0] == 0)
_PART = r"(?:side|part|half|corner|edge|area|portion|end|section|quarter|region|border)"
_FRAME = r"(?:image|scene|map|picture|photo|tile|view|frame|area)"
_PLACE = rf"(?:(?P<v>{_V})(?:[\s-]?(?P<h>{_H}))?|(?P<h2>{_H})|(?P<c>cent(?:er|re)|middle))"
# "in the upper left", "at the top of the image", "near the bottom edge", "in the middle"
_REGION_RE = re.compile(
    rf"\b(?P<p>in|on|at|to(?:wards?)?|along|across|near|by|close\s+to|next\s+to)\s+the\s+{_PLACE}"
    rf"(?P<part>\s+{_PART})?(?P<frame>\s+of\s+the\s+{_FRAME})?\b(?!(?:\s+(?:{_V}|{_H}|{_PART}))*\s+of\b)")
_NEAR_PREPOSITIONS = {"near", "by", "close to", "next to"}  # "near the top" must say of what: "edge", "of the image"
# "in the image", "of this scene": words about the frame that say nothing.
_FRAME_RE = re.compile(rf"\b(?:in|on|of|within|across|from)\s+(?:the|this)\s+{_FRAME}\b")
# "the tank closest to the top of the image" is the topmost tank
_CLOSEST_SIDE_RE = re.compile(
    rf"\b(?:closest|nearest)\s+(?:to\s+)?the\s+(?P<s>{_V}|{_H})(?:\s+{_PART})?(?:\s+of\s+the\s+{_FRAME})?\b")
# "the largest of the three tanks" is one tank: the partitive names the set, not the number
_SUPERLATIVES = "|".join(sorted([w for w in _SIZE if w.endswith("est")] + list(_EXTREMES), key=len, reverse=True))
_PARTITIVE_RE = re.compile(
    rf"\b(?P<w>{_SUPERLATIVES})\s+(?:of|among)\s+(?:all\s+)?(?:the\s+)?(?:(?:two|three|four|five|six|seven|"
    r"eight|nine|ten|\d+)\s+)?(?=[a-z])")
# "the closest tank to the river" reads as "the tank closest to the river"
_SPLIT_SUPERLATIVE_RE = re.compile(
    r"\b(closest|nearest|furthest|farthest)\s+(?!away\b)((?:[a-z]+\s+){1,3}?)(to|from)\s+(?=the\b|a\b|an\b)")
_CORNER_RE = re.compile(rf"\b(?P<v>{_V})[\s-]?(?P<h>{_H})(?=\s+[a-z])")  # "the upper-left tank"
_CENTRAL_RE = re.compile(r"\b(?:central|middle|centre|center)(?=\s+[a-z])(?!\s+of\b)")  # "the central tank"
_FROM_SIDE_RE = re.compile(
    rf"\b(?:counting\s+)?from\s+the\s+(?P<s>{_V}|{_H})(?:\s+{_PART})?(?:\s+of\s+the\s+{_FRAME})?\b")
_MOST_SIDE_RE = re.compile(rf"\b(?:most|furthest|farthest)\s+(?:to\s+the\s+)?(?P<s>{_V}|{_H})\b(?!\s+(?:of|from)\b)")
# Distances in metres or kilometres: "within 100 m of", "less than 50 metres from", "more than 2 km
# from", "30 m from" (about that far: up to 1.5 times it).
_UNIT = r"(?P<u>m|metres?|meters?|km|kilometres?|kilometers?)"
_DISTANCE_RE = re.compile(
    rf"\b(?:(?P<within>within|less\s+than|under|closer\s+than|nearer\s+than|no\s+more\s+than|at\s+most)\s+"
    rf"|(?P<beyond>more\s+than|over|further\s+than|farther\s+than|at\s+least)\s+)?(?P<d>\d+(?:\.\d+)?)\s*{_UNIT}"
    rf"\s+(?:away\s+)?(?:of|from|to)\s+(?P<anchor>{_A}[a-z].*?)(?=\s*,|\s+(?:and|that|which|while|but)\s+|$)")
_KM = ("km", "kilometre", "kilometres", "kilometer", "kilometers")
# Water bodies and the words for their edges, written as one ("riverbank", "lakeshore") or two
# ("river bank", "lake side") words: read as "the bank of the river".
_WATER = r"(?:river|lake|canal|stream|sea|pond|harbour|harbor|bay|creek|reservoir)"
_EDGE = r"(?:bank|banks|shore|shores|side|front|edge|coast)"
_COMPOUND_EDGE_RE = re.compile(rf"\b(?:the\s+)?(?P<w>{_WATER})\s?(?P<e>{_EDGE})\b")
_WATERFRONT_RE = re.compile(r"\b(?:the\s+)?(?:waterfront|waterside|seafront|seashore|seaside|coastline)\b")
_RELATIONS = {
    "far": r"(?:far|distant|a\s+long\s+way)(?:\s+away)?\s+from|away\s+from|"
           r"not\s+(?:near|close\s+to|next\s+to|by|beside|adjacent\s+to)",
    "nearest": r"(?:closest|nearest)\s+to|(?:closest|nearest)(?=\s+(?:the|a|an)\b)",
    "farthest": r"(?:furthest|farthest|most\s+distant)(?:\s+away)?\s+from",
    "northeast": r"(?:to\s+the\s+)?(?:north[\s-]?east|upper[\s-]right|top[\s-]right)\s+of",
    "northwest": r"(?:to\s+the\s+)?(?:north[\s-]?west|upper[\s-]left|top[\s-]left)\s+of",
    "southeast": r"(?:to\s+the\s+)?(?:south[\s-]?east|lower[\s-]right|bottom[\s-]right)\s+of",
    "southwest": r"(?:to\s+the\s+)?(?:south[\s-]?west|lower[\s-]left|bottom[\s-]left)\s+of",
    "west": r"(?:to\s+the\s+|on\s+the\s+)?(?:left|west)\s+(?:side\s+)?of|westwards?\s+of",
    "east": r"(?:to\s+the\s+|on\s+the\s+)?(?:right|east)\s+(?:side\s+)?of|eastwards?\s+of",
    "north": r"above|(?:to\s+the\s+)?north\s+of|up\s+from",
    "south": r"below|beneath|under(?:neath)?|(?:to\s+the\s+)?south\s+of|down\s+from",
    # Being beside something, in all the ways English says it: adjacency, facing, the edges and
    # ends of things, the banks and shores of water.
    "near": r"(?:on|along|at)\s+(?:both|either|each|one|the\s+\w+)\s+sides?\s+of|"
            r"(?:at|on|by|along)\s+the\s+(?:edge|edges|end|ends|side|sides|foot|mouth|entrance|bank|banks|shore|"
            r"shores|fringe|fringes|outskirts|rim|perimeter|coast)\s+of|"
            r"near(?:\s+to)?|nearby|next\s+to|close\s+to|beside|by|adjacent\s+to|adjoining|abutting|"
            r"alongside|along|around|neighbou?ring|bordering|touching|flanking|facing|overlooking|opposite(?:\s+to)?|"
            r"across\s+(?:the\s+[a-z]+\s+)?from",
    # Being in something: containment in all its words.
    "within": r"in\s+the\s+(?:middle|centre|center|midst)\s+of|on\s+top\s+of|enclosed\s+(?:by|in|within)|"
              r"contained\s+(?:in|within)|surrounded\s+by|encircled\s+by|ringed\s+by|embedded\s+in|"
              r"amid(?:st)?|among(?:st)?|inside(?:\s+of)?|within|on|in|at|over|upon|across",
    # Holding something: the reverse of within ("the compound containing the tanks").
    "contains": r"(?:that|which)\s+(?:contains?|encloses?|surrounds?)|containing|enclosing|encircling|"
                r"surrounding|holding",
}
_REL_WORDS = "|".join(f"(?:{v})" for v in _RELATIONS.values())
_ANCHOR_END = rf"(?=\s*,|\s+(?:and|that|which|while|but)\s+|\s+(?:{_REL_WORDS})\s|$)"
_RELATION_RE = re.compile(
    r"(?:\b(?:that|which)\s+(?:is|are)\s+(?:the\s+)?)?\b(?P<rel>"
    + "|".join(f"(?P<{k}>{v})" for k, v in _RELATIONS.items())
    + rf")\s+(?P<anchor>{_A}?[a-z0-9].*?){_ANCHOR_END}")
_BETWEEN_RE = re.compile(
    rf"(?:\b(?:that|which)\s+(?:is|are)\s+)?\b(?:in\s+)?between\s+(?P<a>{_A}?[a-z].*?)\s+and\s+(?P<b>{_A}?[a-z].*?)"
    rf"{_ANCHOR_END}")
_LONE_BETWEEN_RE = re.compile(rf"\b(?:in\s+)?between\s+.*?{_ANCHOR_END}")
_ORDINAL_RE = re.compile(r"^(?P<n>\d+)(?:st|nd|rd|th)$")
_UNITS = {"m", "metre", "metres", "meter", "meters", "km", "kilometre", "kilometres", "kilometer", "kilometers"}
# What is left after every relation the reader knows: a verb or preposition that links the subject to
# another thing ("the boat carrying the containers", "the house with a red roof") is a relation it
# cannot judge. It is reported, and kept out of what the tiles are asked.
_UNKNOWN_LINK_RE = re.compile(
    r"\b(?P<link>(?:[a-z]{3,}(?:ing|ed))|with|behind|beyond|past|toward|towards|via|through|against|versus|"
    r"like|unlike|opposite|across|beneath|under|over)\s+(?P<rest>(?:the|a|an)\s+[a-z].*)$")
# Relations named by a compass direction ("north-east of the lake"), and those that order
# candidates (a superlative of distance) rather than score each alone.
DIRECTIONAL = ("west", "east", "north", "south", "northeast", "northwest", "southeast", "southwest")
# Relations that order candidates (a superlative of distance) rather than score each alone.
ORDERING_RELATIONS = ("nearest", "farthest")


@dataclass(frozen=True)
class Order:
    """An ordering the referent takes a place in: ``by`` is largest, smallest, left, right,
    top, bottom (the scene's sides) or a relation kind in :data:`ORDERING_RELATIONS`;
    ``rank`` 1 is the first ("the largest"), 2 the second ("the second largest")."""

    by: str
    rank: int = 1

    def describe(self) -> str:
        prefix = "" if self.rank == 1 else f"{self.rank}{_suffix(self.rank)} "
        if self.by in _SIDE_NAMES.values():
            return f"{prefix}from the {self.by}" if self.rank > 1 else f"{self.by}most"
        return prefix + self.by


@dataclass(frozen=True)
class Relation:
    """A relation to one anchor (two for ``between``): kind is near, far, within, contains, west,
    east, north, south, northeast, northwest, southeast, southwest, between, nearest, farthest,
    within_m or beyond_m (``metres`` says how far, on the ground)."""

    kind: str
    anchors: tuple[Query, ...]
    rank: int = 1  # for nearest and farthest: "the second closest"
    metres: float | None = None  # for within_m and beyond_m

    @property
    def anchor(self) -> Query:
        return self.anchors[0]

    def describe(self) -> str:
        names = " and ".join(repr(a.subject) + (f" ({a.order.describe()})" if a.order else "") for a in self.anchors)
        words = {"nearest": "closest to", "farthest": "furthest from", "far": "far from", "within": "in",
                 "contains": "containing", "within_m": f"within {self.metres:g} m of" if self.metres else "",
                 "beyond_m": f"more than {self.metres:g} m from" if self.metres else "",
                 **{d: f"{d} of" for d in DIRECTIONAL}}
        prefix = "" if self.rank == 1 else f"{self.rank}{_suffix(self.rank)} "
        return f"{prefix}{words.get(self.kind, self.kind)} {names}"


@dataclass(frozen=True)
class Query:
    """An expression split into what a tile model is asked for and what the scene decides.

    ``number`` is how many objects are meant: 1 for "the tank", N for "the two largest
    tanks", None for "the tanks" / "all tanks" / land cover ("the river" is all of it).
    """

    text: str
    subject: str
    number: int | None = 1
    order: Order | None = None
    region: tuple[tuple[int, int], ...] = ()  # half-planes (axis, side); ((-1, -1),) is the centre
    relations: tuple[Relation, ...] = field(default=())
    unused: tuple[str, ...] = ()

    @property
    def is_stuff(self) -> bool:
        """Whether the subject is land cover (its head noun, "the river bank" is not)."""
        words = re.findall(r"[a-z]+", self.subject)
        return bool(words) and words[-1] in STUFF

    def phrases(self) -> list[str]:
        """What the tiles are asked for, one pass each: the subject, then each anchor once."""
        out = [self.subject]
        for r in self.relations:
            out += [a.subject for a in r.anchors if a.subject not in out]
        return out

    def describe(self) -> str:
        """How the expression was read, in one line (what ``segment`` prints)."""
        count = {1: "one", None: "all"}.get(self.number, str(self.number))
        parts = [repr(self.subject), "all (land cover)" if self.is_stuff and self.number == 1 else count]
        if self.order:
            parts.append(self.order.describe())
        if self.region:
            parts.append("in the " + ("centre" if self.region == ((-1, -1),) else
                                      " ".join(_SIDE_NAMES[r] for r in self.region)))
        parts += [r.describe() for r in self.relations]
        if self.unused:
            parts.append("not understood: " + ", ".join(repr(w) for w in self.unused))
        return ", ".join(parts)

    def to_dict(self) -> dict:
        """The reading as plain JSON types (``segment --json``'s ``grounding.reading``)."""
        return {"subject": self.subject, "number": self.number,
                "order": None if self.order is None else {"by": self.order.by, "rank": self.order.rank},
                "region": [_SIDE_NAMES.get(r, "centre") for r in self.region],
                "relations": [{"kind": r.kind, "rank": r.rank, "anchors": [a.subject for a in r.anchors],
                               **({"metres": r.metres} if r.metres is not None else {})}
                              for r in self.relations],
                "unused": list(self.unused), "text": self.describe()}


def _suffix(n: int) -> str:
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _normalise(text: str) -> str:
    low = text.lower().replace("’", "'").replace("'s ", " ")
    low = re.sub(r"(?<=\d)\.(?=\d)", "zzdotzz", low)  # a decimal point survives the clean-up: "1.5 km"
    low = re.sub(r"[^a-z0-9,\s-]", " ", low).replace("zzdotzz", ".")
    low = re.sub(r"\b(left|right|top|bottom|upper|lower|far|west|east|north|south)-(most|hand)\b", r"\1\2", low)
    low = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", low)  # "north-east" and "north east" read alike
    low = re.sub(r"\b(left|right)hand\b", r"\1", low)
    low = re.sub(r"(?<=\d)(?=(?:m|km|metres?|meters?)\b)", " ", low)  # "100m" is "100 m"
    low = _COMPOUND_EDGE_RE.sub(lambda m: f"the {m['e']} of the {m['w']}", low)  # "the riverbank"
    low = _WATERFRONT_RE.sub("the shore of the water", low)
    return " ".join(low.replace(",", " , ").split())


def _cut(low: str, m: re.Match) -> str:
    return low[:m.start()] + " " + low[m.end():]


def _is_plural(word: str) -> bool:
    if word in _IRREGULAR:
        return _IRREGULAR[word] != word
    return (len(word) > 3 and word.endswith("s") and not word.endswith(_NOT_PLURAL)
            and word not in _PLURAL_EXCEPTIONS)


def _singular(word: str) -> str:
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if not _is_plural(word):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if re.search(r"(?:ch|sh|x|z|ss)es$", word) or word[:-2] in _PLURAL_EXCEPTIONS:  # buses, gases, lenses
        return word[:-2]
    return word[:-1]


def _trim(words: list[str]) -> list[str]:
    while words and words[-1] in _GLUE:
        words = words[:-1]
    while words and words[0] in _GLUE - {"the", "a", "an"}:
        words = words[1:]
    return words


def parse_expression(text: str, with_relations: bool = True) -> Query:
    """Read an expression into a :class:`Query` (see the module docstring for what is read)."""
    low = _SPLIT_SUPERLATIVE_RE.sub(r"\2\1 \3 ", _normalise(text))
    low = _CLOSEST_SIDE_RE.sub(lambda m: f" {_SIDE_NAMES[_SIDE_WORDS[m['s']]]}most ", low)
    low, partitive = _PARTITIVE_RE.subn(r"\g<w> ", low)
    unused: list[str] = []
    relations: list[Relation] = []
    region: tuple[tuple[int, int], ...] = ()
    side_order: str | None = None

    m = next((m for m in _REGION_RE.finditer(low)
              if m["p"] not in _NEAR_PREPOSITIONS or m["part"] or m["frame"]), None)
    if m is not None:
        if m["c"]:
            region = ((-1, -1),)
        else:
            halves = [_SIDE_WORDS[m["v"]]] if m["v"] else []
            halves += [_SIDE_WORDS[h]] if (h := m["h"] or m["h2"]) else []
            region = tuple(halves)
        low = _cut(low, m)
    low = _FRAME_RE.sub(" ", low)
    if with_relations:
        while (m := _DISTANCE_RE.search(low)) is not None:
            metres = float(m["d"]) * (1000.0 if m["u"] in _KM else 1.0)
            kind = "beyond_m" if m["beyond"] else "within_m"
            if not (m["within"] or m["beyond"]):
                metres *= 1.5  # "30 m from the road": about that far
            relations.append(Relation(kind, (parse_expression(m["anchor"], with_relations=False),), metres=metres))
            low = _cut(low, m)
        while (m := _BETWEEN_RE.search(low)) is not None:
            anchors = tuple(parse_expression(m[k], with_relations=False) for k in ("a", "b"))
            relations.append(Relation("between", anchors))
            low = _cut(low, m)
        if (m := _LONE_BETWEEN_RE.search(low)) is not None:  # "between the two roads": which two?
            unused.append(m[0].strip())
            low = _cut(low, m)
        while (m := _RELATION_RE.search(low)) is not None:
            kind = next(k for k in _RELATIONS if m[k])
            if (neg := re.search(r"\b(?:not|never|isn t|aren t)\s*$", low[:m.start()])) is not None:
                # "not in the lake": read as written it would mean the opposite; say so instead.
                unused.append(f"not {m['rel']} {m['anchor']}")
                low = low[:neg.start()] + " " + low[m.end():]
                continue
            relations.append(Relation(kind, (parse_expression(m["anchor"], with_relations=False),)))
            low = _cut(low, m)
    if (m := _FROM_SIDE_RE.search(low)) or (m := _MOST_SIDE_RE.search(low)):
        side_order = _SIDE_NAMES[_SIDE_WORDS[m["s"]]]
        low = _cut(low, m)
    if not region and (m := _CORNER_RE.search(low)):
        region = (_SIDE_WORDS[m["v"]], _SIDE_WORDS[m["h"]])
        low = _cut(low, m)
    if not region and (m := _CENTRAL_RE.search(low)):
        region = ((-1, -1),)
        low = _cut(low, m)

    if (m := _UNKNOWN_LINK_RE.search(low)) is not None and m["link"] not in _GLUE:
        unused.append(f"{m['link']} {m['rest'].strip()}")
        low = low[:m.start()]

    words, order, number, ordinal, forced_one = [], None, 1, None, bool(partitive)
    tokens = low.split()
    skip = False
    for i, w in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if skip or w == ",":
            skip = False
            continue
        if re.fullmatch(r"\d+(?:\.\d+)?", w) and nxt in _UNITS:
            unused.append(f"{w} {nxt}")  # a distance with nothing the reader can measure it from
            skip = True
            continue
        if w in _ORDINALS or _ORDINAL_RE.match(w):
            ordinal = _ORDINALS.get(w) or int(_ORDINAL_RE.match(w)["n"])
        elif w in _SIZE and order is None:
            order = Order(_SIZE[w], ordinal or 1)
            ordinal = None
        elif w in _EXTREMES and order is None:
            order = Order(_SIDE_NAMES[_EXTREMES[w]], ordinal or 1)
            ordinal = None
        elif w == "one" and nxt == "of":
            forced_one = True  # "one of the tanks"
        elif w in _COUNTS or w.isdigit():
            number = _COUNTS.get(w) or int(w)
        elif w in _EVERY:
            number = None
        elif w in _NEGATIONS:
            unused.append(w)
        elif w in _COMMANDS and not words:
            unused += [] if w in _POLITE else [w]  # "show me", "please": nothing to report
        elif w in _SIDE_WORDS and not region and nxt and nxt not in _GLUE and nxt not in _SIDE_WORDS:
            region = (_SIDE_WORDS[w],)  # "the western tank"
        elif w in _SIDE_WORDS or w in ("near", "between", "closest", "nearest", "furthest", "farthest"):
            unused.append(w)  # a scene word with nothing to apply to ("the tank near")
        else:
            words.append(w)
    if side_order and order is None:
        order = Order(side_order, ordinal or 1)
        ordinal = None
    if ordinal is not None:
        ranked = next((j for j, r in enumerate(relations) if r.kind in ORDERING_RELATIONS), None)
        if ranked is not None:
            relations[ranked] = replace(relations[ranked], rank=ordinal)
        elif order is not None:
            order = replace(order, rank=ordinal)
        else:
            unused.append(next(t for t in tokens if t in _ORDINALS or _ORDINAL_RE.match(t)))
    words = _trim(words)
    if words and words[0] in ("a", "an") and number is None:
        words = ["the", *words[1:]]
    head = next((j for j in range(len(words) - 1, -1, -1) if words[j] not in _GLUE), None)
    if head is not None and _is_plural(words[head]):
        if number == 1 and not forced_one:
            number = None
        words[head] = _singular(words[head])
    if head is not None and words[0] not in ("the", "a", "an"):
        words = ["the", *words]  # "every ship" asks the model for "the ship"
    subject = " ".join(words)
    if head is None:
        # Nothing but scene-level words ("the largest one"): ask the model for all of it.
        subject = " ".join(_trim(text.lower().split())) or text
    unused += [w for r in relations for a in r.anchors for w in a.unused]  # an anchor's are the expression's
    return Query(text, subject, number, order, region, tuple(relations), tuple(dict.fromkeys(unused)))
