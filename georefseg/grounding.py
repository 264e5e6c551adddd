"""Scene-level choice among candidate objects.

Each tile's model only sees its tile; the candidates it leaves behind are compared here,
over the whole scene. For now the choice is by evidence: candidates are ranked by their mean
probability (ties: the larger first), and all candidates above the threshold are kept, so
an expression that refers to several objects ("ships in the harbour") keeps them all.
"""

from __future__ import annotations

from georefseg.vectorize import Candidate


def rank_candidates(candidates: list[Candidate], top: int | None = None) -> list[Candidate]:
    """Candidates best first; at most ``top`` of them when given."""
    ranked = sorted(candidates, key=lambda c: (-round(c.score, 6), -c.area_m2))
    return ranked[:top] if top else ranked
