"""Errors that describe a caller's mistake: one line that names the problem and the fix.

Each class also derives from the builtin a Python caller would catch (``ValueError``,
``FileNotFoundError``, ``FileExistsError``, ``ConnectionError``), as rasterio's errors do.

A message that is about one parameter writes it as ``{param}`` and names it in ``param``: the
library shows the Python name (``threshold``), and the CLI shows its own flag
(``--threshold``) through :meth:`GeorefsegError.render`, so each caller reads the words it
typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable


def render(template: str, namer: Callable[[str], str] | None = None) -> str:
    """A message that names parameters as ``{name}``, with each named by ``namer`` (default: as
    in Python): notes and errors alike, so that the CLI says ``--min-area`` where Python says
    ``min_area_m2``."""
    return re.sub(r"\{([a-z_][a-z0-9_]*)\}", lambda m: (namer or str)(m[1]), template)


class GeorefsegError(Exception):
    """A problem the caller can fix; the message names it and says how."""

    def __init__(self, message: str, param: str | None = None):
        self.template, self.param = message, param
        super().__init__(self.render())

    def render(self, name: str | None = None, namer: Callable[[str], str] | None = None) -> str:
        """The message with the parameter called ``name`` (default: its Python name); other
        parameters it mentions as ``{append}`` are named by ``namer`` (default: as in Python)."""
        def named(parameter: str) -> str:
            if parameter == "param":
                return name or self.param or "{param}"
            return (namer or str)(parameter)

        return render(self.template, named)

    def __reduce__(self):  # errors raised on Dask workers travel back pickled
        return type(self), (self.template, self.param)


class InputError(GeorefsegError, ValueError):
    """A bad scene, expression, band selection or option."""


class InputNotFoundError(InputError, FileNotFoundError):
    """A scene or other input file that does not exist."""


class SchedulerError(InputError, ConnectionError):
    """A Dask scheduler that cannot be reached."""


class OutputError(GeorefsegError, ValueError):
    """An output that cannot be written (unknown format, unwritable folder)."""


class OutputExistsError(OutputError, FileExistsError):
    """An output that exists and may not be replaced."""


class ModelError(GeorefsegError, ValueError):
    """A model that cannot be built or loaded (unknown name, mismatched weights)."""


class WeightsNotFoundError(ModelError, FileNotFoundError):
    """A weights file or folder that does not exist."""


class DatasetError(GeorefsegError, ValueError):
    """A dataset folder in the wrong layout, or files that do not fit together."""


class Interrupted(GeorefsegError):
    """Work stopped by Ctrl-C (or SIGTERM) with what was finished kept; the message says how to go on."""


class TrainingInterrupted(Interrupted):
    """Training stopped by Ctrl-C after writing a resumable checkpoint."""


class BatchInterrupted(Interrupted):
    """A batch stopped by Ctrl-C: finished jobs are kept, a rerun does the rest."""
