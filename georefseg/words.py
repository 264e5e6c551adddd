"""How messages say numbers: areas in units a person reads, counts with their nouns."""

from __future__ import annotations


def area(m2: float) -> str:
    """A ground area for a message: "400 m²", "3.5 ha", "1.44 km²" (three significant digits)."""
    if m2 >= 1e6:
        return f"{m2 / 1e6:.3g} km²"
    if m2 >= 1e4:
        return f"{m2 / 1e4:.3g} ha"
    return f"{m2:.3g} m²"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """"1 feature", "2 features" (``plural`` where adding an s is wrong)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
