"""Geometries that belong together: connected groups under a pairwise test (union–find).

Vectorising joins the pieces of one object cut by strip seams; batch merging joins the pieces of
one object seen by overlapping scenes. Both are this: candidate pairs from a spatial index, a
test on each pair, and the connected groups that result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import shapely
from shapely.geometry.base import BaseGeometry


def connected_groups(geoms: Sequence[BaseGeometry], joined: Callable[[int, int], bool]) -> list[list[int]]:
    """Positions of ``geoms`` in connected groups: ``i`` and ``j`` are joined when their geometries
    intersect and ``joined(i, j)`` holds (it is asked once per pair, with ``i < j``).

    Returns
    -------
    list of list of int
        Every position exactly once; each group ascending, groups in order of their first member.
    """
    if len(geoms) == 0:
        return []
    parent = list(range(len(geoms)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving: near-constant time per lookup
            i = parent[i]
        return i

    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i < j and find(i) != find(j) and joined(i, j):
            parent[find(i)] = find(j)
    members: dict[int, list[int]] = {}
    for i in range(len(geoms)):
        members.setdefault(find(i), []).append(i)
    return sorted(members.values())
