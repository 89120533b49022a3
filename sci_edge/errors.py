"""Exceptions raised by sci_edge. Each names what is wrong and, for files, which file."""
from __future__ import annotations

from pathlib import Path


class SciEdgeError(Exception):
    """Base class of all sci_edge errors; the CLI prints these as one line."""


class SpikeFileError(SciEdgeError, ValueError):
    """A spike file is missing, truncated, of the wrong shape or not binary."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class DataError(SciEdgeError, ValueError):
    """A data set or image cannot be used as asked."""
