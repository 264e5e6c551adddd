"""What the plugin remembers between sessions, in QGIS's own settings (the user's profile)."""

from __future__ import annotations

from qgis.core import QgsSettings

PREFIX = "georefseg/"
RECENT_MAX = 15


def executable() -> str:
    """The georefseg executable or environment folder the user set; "" means search PATH."""
    return QgsSettings().value(PREFIX + "executable", "", type=str)


def set_executable(path: str) -> None:
    QgsSettings().setValue(PREFIX + "executable", path.strip())


def recent_expressions() -> list[str]:
    """Expressions run before, the latest first."""
    value = QgsSettings().value(PREFIX + "recent_expressions", [])
    if isinstance(value, str):  # QSettings hands a one-item list back as a plain string
        value = [value]
    return [str(v) for v in value or [] if str(v).strip()]


def remember_expression(expression: str) -> list[str]:
    """Put ``expression`` first in the recent list (once, at most :data:`RECENT_MAX` kept)."""
    recent = [expression] + [e for e in recent_expressions() if e != expression]
    QgsSettings().setValue(PREFIX + "recent_expressions", recent[:RECENT_MAX])
    return recent[:RECENT_MAX]
