"""Where the shared sample data lives.

Looked up in order: the SCI_EDGE_SHARED environment variable, then a
``shared/`` folder beside the current directory or any of its parents, then
one beside this source checkout. It holds ``data/mnist`` and
``data/real_spikes`` (see their READMEs)."""
from __future__ import annotations

import os
from pathlib import Path


def _candidates():
    env = os.environ.get("SCI_EDGE_SHARED")
    if env:
        yield Path(env)
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        yield d / "shared"
    src = Path(__file__).resolve().parent.parent
    for d in (src, *src.parents):
        yield d / "shared"


def shared_root() -> Path | None:
    """The shared folder (the one holding ``data/``), or None when absent."""
    for cand in _candidates():
        if (cand / "data").is_dir():
            return cand
    return None


def shared_data(*parts: str) -> Path | None:
    """``shared/data/<parts>`` if it exists, else None."""
    root = shared_root()
    if root is None:
        return None
    path = root.joinpath("data", *parts)
    return path if path.exists() else None
