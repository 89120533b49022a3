"""Write files whole or not at all: a temp file beside the target, renamed on success.

Errors name the file asked for (an :class:`~sci_edge.errors.OutputError`), never
the hidden temp file."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from ..errors import OutputError

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _problem(exc: OSError, path: Path) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return f"no such folder {path.parent}"
    if isinstance(exc, NotADirectoryError):
        return f"{path.parent} is not a folder"
    if isinstance(exc, IsADirectoryError):
        return "is a folder"
    if exc.errno in _NO_SPACE:
        return "no space left on the device"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return (exc.strerror or str(exc)).lower()


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ""):
    """Yield a temporary path next to ``path``; on success it replaces ``path``,
    on error it is removed and ``path`` is left as it was."""
    path = Path(path)
    if not path.parent.exists():
        raise OutputError(path, f"no such folder {path.parent}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".part",
                                   dir=path.parent)
    except OSError as exc:
        raise OutputError(path, _problem(exc, path)) from exc
    os.close(fd)
    # mkstemp makes the file private (0600); give it the mode a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        try:
            yield Path(tmp)
        except OSError as exc:
            # an error writing the temp file is an error writing the user's file
            if exc.filename is not None and str(exc.filename) == tmp or \
                    exc.filename is None and exc.errno in _NO_SPACE | {errno.EROFS}:
                raise OutputError(path, _problem(exc, path)) from exc
            raise
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(path, _problem(exc, path)) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
