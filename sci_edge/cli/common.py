"""Helpers shared by the command modules: spike-input options, progress bars,
JSON/text output and output-path checks (run before any work)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import OutputError, SpikeFileError
from . import args as A

# --- output ---------------------------------------------------------------------------------


def add_json(p: argparse.ArgumentParser) -> None:
    """``--json``: the same on every command: one JSON document on stdout instead of the
    text report (progress bars stay on stderr)."""
    p.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout instead of the text report")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (bars go to stderr, and only when it is a terminal)")


def print_json(doc: dict) -> None:
    print(json.dumps(doc, indent=2, sort_keys=False))


def report(ns, doc: dict, text: str | list[str]) -> None:
    """Print ``doc`` as JSON with --json, else the text report, both on stdout."""
    if getattr(ns, "json", False):
        print_json(doc)
    else:
        print(text if isinstance(text, str) else "\n".join(text))


def progress(total: int | None, desc: str, quiet: bool = False, unit: str = "step"):
    """A tqdm bar on stderr: off with --quiet, and off when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=True if quiet else None,
                file=sys.stderr, leave=False)


# --- spike input ------------------------------------------------------------------------------


def add_spike_input(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="spike file: .dat (needs --height/--width), .npz or .npy")
    p.add_argument("--height", type=A.positive_int, help="frame height of a .dat file")
    p.add_argument("--width", type=A.positive_int, help="frame width of a .dat file")
    p.add_argument("--no-flip", action="store_true",
                   help=".dat rows are stored upright (default: upside down, as SpikeCV)")
    p.add_argument("--layout", choices=("THW", "HWT"),
                   help="axis order of the array in a foreign .npz/.npy: THW (frames first) "
                        "or HWT (frames last)")
    p.add_argument("--key", help="array name inside a .npz holding several")


def open_input(ns):
    """The command's spike input as a streaming :class:`SpikeSource` (frames are read
    only when asked); errors name the file and use the CLI's option names."""
    from ..io import open_spikes

    path = Path(ns.input)
    if path.suffix.lower() == ".dat" and (ns.height is None or ns.width is None):
        raise SpikeFileError(path, ".dat files carry no resolution: give --height and --width")
    source = open_spikes(path, height=ns.height, width=ns.width, layout=ns.layout,
                         key=ns.key, flipud=not ns.no_flip)
    if source.num_frames == 0:
        raise SpikeFileError(path, "the file holds no frames")
    return source


# --- output paths, checked before any work ---------------------------------------------------


def _writable_folder(folder: Path, target: Path) -> None:
    if not folder.exists():
        raise OutputError(target, f"no such folder {folder}")
    if not folder.is_dir():
        raise OutputError(target, f"{folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(target, f"permission denied: cannot write in {folder}")


def check_output_file(path: str | Path, *, suffixes: tuple[str, ...] | None = None,
                      what: str = "output") -> Path:
    """An output file that can be written: not a folder, in an existing writable folder,
    with one of ``suffixes`` (lower case, with the dot) if given."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputError(path, f"{what} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise OutputError(path, "is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(path, "permission denied: the file is not writable")
    _writable_folder(path.parent if str(path.parent) else Path("."), path)
    return path


def check_output_dir(path: str | Path, *, create: bool = True) -> Path:
    """An output folder: not a file; created now (with its parents) if missing and
    ``create``, else only checked to be creatable (its nearest existing parent is a
    writable folder); must be writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(path, "exists and is not a folder")
    if not create:
        parent = path
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise OutputError(path, f"cannot create the folder: {parent} is not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(path, f"permission denied: cannot write in {parent}")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise OutputError(path, "permission denied: cannot create the folder") from None
    except FileExistsError:
        raise OutputError(path, "exists and is not a folder") from None
    except NotADirectoryError:
        raise OutputError(path, "cannot create the folder: a parent is a file") from None
    except OSError as exc:
        raise OutputError(path, f"cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(path, "permission denied: the folder is not writable")
    return path


def warn_stride(prog: str, analysis_stride: int, stride: int) -> None:
    """Warn (stderr) when coded features every ``stride`` steps cannot feed a cloud
    side that reads them ``analysis_stride`` steps apart."""
    a = analysis_stride
    if a % stride:
        fits = ", ".join(str(d) for d in range(1, a + 1) if a % d == 0)
        print(f"{prog}: warning: the cloud side of these weights reads features {a} spike "
              f"steps apart; a --stride of {stride} does not divide {a}, so `sci-edge "
              f"decode --reconstruct/--classify` cannot use this stream (strides that fit: "
              f"{fits})", file=sys.stderr)


def add_reach(p) -> None:
    """--max-reach / --lookahead: the long-reach bounds of the rate integration or the
    propagation (recon models that have one; others ignore them)."""
    from . import args as A

    p.add_argument("--max-reach", type=A.positive_int, metavar="STEPS",
                   help="spike steps the long-reach state remembers (default: the whole "
                        "recording or stream)")
    p.add_argument("--lookahead", type=A.non_negative_int, metavar="FEATURES",
                   help="later features (count intervals) an output may wait for (default: "
                        "all; 0: causal, for live decoding)")
