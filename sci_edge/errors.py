"""Exceptions raised by sci_edge. Each names what is wrong and, for files, which file.

Everything a user can cause (a bad file, config, checkpoint, option or path)
raises a ``SciEdgeError``; the CLI prints those as one line and exits with
status 2. Any other exception is a bug and keeps its traceback."""
from __future__ import annotations

from pathlib import Path


class SciEdgeError(Exception):
    """Base class of all sci_edge errors; the CLI prints these as one line."""


class _PathError(SciEdgeError, ValueError):
    """An error about one file: ``path`` and ``problem`` are kept apart."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class SpikeFileError(_PathError):
    """A spike file is missing, truncated, of the wrong shape or not binary."""


class ConfigError(_PathError):
    """A TOML config (training, export, device profile) is missing, malformed, or
    has an unknown key, a value of the wrong type or out of range."""


class CheckpointError(_PathError):
    """A checkpoint or weights file is missing, unreadable or does not fit its model."""


class OutputError(_PathError):
    """An output path cannot be written as asked (exists, wrong kind, no permission)."""


class DataError(SciEdgeError, ValueError):
    """A data set, image or option value cannot be used as asked."""


class MissingDependencyError(SciEdgeError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str | None, purpose: str = ""):
        self.module, self.extra = module, extra
        how = (f"pip install 'sci_edge[{extra}]'" if extra
               else f"install {module}")
        what = f" ({purpose})" if purpose else ""
        super().__init__(f"{module} is not installed{what}: {how}")
        self.name = module


class CodecError(_PathError):
    """A ``.sci`` bitstream cannot be read or written: truncated, wrong magic or
    version, CRC mismatch, unknown model or weights hash, frames out of order.
    ``frame`` is the frame index the problem is in (None for the file header)."""

    def __init__(self, path: str | Path | None, problem: str, frame: int | None = None):
        self.frame = frame
        where = f"frame {frame}: " if frame is not None else ""
        super().__init__(path, where + problem)
