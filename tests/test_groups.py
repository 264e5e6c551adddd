"""Connected groups of geometries under a pairwise test."""

from __future__ import annotations

from shapely.geometry import box

from georefseg.groups import connected_groups


def test_a_chain_is_one_group_and_the_test_decides_which_pairs_join():
    geoms = [box(0, 0, 2, 1), box(5, 0, 6, 1), box(1, 0, 3, 1), box(2.5, 0, 4, 1), box(10, 0, 11, 1)]
    asked = []

    def always(i: int, j: int) -> bool:
        asked.append((i, j))
        return True

    assert connected_groups(geoms, always) == [[0, 2, 3], [1], [4]]  # 0–2–3 overlap in a chain
    assert all(i < j for i, j in asked)
    assert connected_groups(geoms, lambda i, j: {i, j} != {2, 3}) == [[0, 2], [1], [3], [4]]
    assert connected_groups([], always) == []
