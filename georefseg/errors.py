"""Errors that describe a user's mistake: the CLI prints them as one line, without a traceback."""


class GeorefsegError(Exception):
    """A problem the user can fix; the message names it and says how."""


class InputError(GeorefsegError):
    """A bad scene, expression, band selection or option."""


class OutputError(GeorefsegError):
    """An output that cannot be written (unknown format, unwritable folder, existing file)."""


class ModelError(GeorefsegError):
    """A model that cannot be built or loaded (unknown name, missing or mismatched weights)."""


class DatasetError(GeorefsegError):
    """A dataset folder in the wrong layout, or files that do not fit together."""


class TrainingInterrupted(GeorefsegError):
    """Training stopped by Ctrl-C after writing a resumable checkpoint."""
