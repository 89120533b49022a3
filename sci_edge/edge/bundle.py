"""The device bundle: one folder with everything the on-device encoder needs (torch-free).

:func:`sci_edge.export.bundle.export_bundle` writes it on a workstation;
:func:`load_bundle` reads it on the device, checking every file against the
manifest first, so a bundle copied with a byte lost or changed is refused
naming the file instead of producing streams the cloud cannot decode::

    manifest.json           {"format", "version", "files": {name: {"sha256", "size"}}}
    config.json             model id, weights hash, codec config, graphs per precision, ...
    codec.npz               integer coding tables, per-quality steps, model id, weights hash
    filter_bank.npz         the FEM's binarized temporal filters (popcount kernel)
    fem_tail.onnx, encoder_analysis.onnx, hyper_intra.onnx, hyper_inter.onnx   (fp32)
    <graph>.int8.onnx       INT8 QDQ for onnxruntime's CPU kernels (when exported)
    <graph>.trt-int8.onnx   INT8 QDQ for TensorRT (when exported)
    README.md               how to install and encode on the device
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..codec.entropy import IndexedTables
from ..codec.intnet import IntHyperSynthesis
from ..errors import CheckpointError
from ..export.formats import export_path
from .tfilter import BinaryFilterBank

BUNDLE_FORMAT = "sci-edge-bundle"
BUNDLE_VERSION = 1
MANIFEST, CONFIG, CODEC, FILTER_BANK, README = (
    "manifest.json", "config.json", "codec.npz", "filter_bank.npz", "README.md")
# the graphs of sci_edge.export.onnx_export (which imports torch), in the order they run
GRAPHS = ("fem_tail", "encoder_analysis", "hyper_intra", "hyper_inter")
# encoder precision -> export format of its graphs
PRECISIONS = {"fp32": "onnx-fp32", "int8": "onnx-int8", "int8-trt": "onnx-int8-trt"}
_HASH_CHUNK = 1 << 20


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of a file, read in chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def graph_files(precision: str) -> dict[str, str]:
    """graph -> file name in a bundle, for one precision."""
    return {g: export_path(".", g, PRECISIONS[precision]).name for g in GRAPHS}


@dataclass(frozen=True)
class EdgeTables:
    """What the entropy coder needs (CodingTables of sci_edge.models.codec, without torch)."""

    gaussian: IndexedTables
    hyper: IndexedTables
    synthesis: tuple[IntHyperSynthesis, IntHyperSynthesis]   # (intra, inter)

    @classmethod
    def from_arrays(cls, a) -> "EdgeTables":
        return cls(gaussian=IndexedTables.from_arrays(a, "gaussian"),
                   hyper=IndexedTables.from_arrays(a, "hyper"),
                   synthesis=(IntHyperSynthesis.from_arrays(a, "hs_intra"),
                              IntHyperSynthesis.from_arrays(a, "hs_inter")))


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified device bundle."""

    path: Path
    config: dict
    files: dict[str, dict]          # the manifest's entries
    model_id: str
    weights_hash: bytes             # 8 bytes: what the stream header carries
    codec_config: dict
    steps: np.ndarray               # float32 (qualities, channels)
    tables: EdgeTables
    filter_bank: BinaryFilterBank
    window: int
    half_window: int
    spatial_multiple: int
    precisions: tuple[str, ...] = field(default=())

    @property
    def qualities(self) -> int:
        return int(self.steps.shape[0])

    @property
    def channels(self) -> int:
        return int(self.steps.shape[1])

    @property
    def hyper_channels(self) -> int:
        return int(self.codec_config["hyper_channels"])

    def graph_path(self, graph: str, precision: str = "fp32") -> Path:
        if precision not in self.precisions:
            raise CheckpointError(self.path, f"no {precision} graphs in this bundle (it holds "
                                             f"{', '.join(self.precisions)})")
        return self.path / graph_files(precision)[graph]


def _fail(path: Path, problem: str):
    raise CheckpointError(path, problem)


def _json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(path, f"unreadable ({exc})")
    if not isinstance(doc, dict):
        _fail(path, "not a JSON object")
    return doc


def verify_bundle(path: str | Path) -> dict[str, dict]:
    """Check every file the manifest lists (present, size, sha256); returns its entries."""
    root = Path(path)
    if not root.exists():
        _fail(root, "bundle not found (a folder made by sci_edge.export.export_bundle)")
    if not root.is_dir():
        _fail(root, "not a folder: a device bundle is a folder")
    mpath = root / MANIFEST
    if not mpath.is_file():
        _fail(mpath, "missing: not a sci_edge device bundle, or an incomplete copy")
    manifest = _json(mpath)
    if manifest.get("format") != BUNDLE_FORMAT:
        _fail(mpath, f"format {manifest.get('format')!r}, not {BUNDLE_FORMAT!r}")
    if manifest.get("version") != BUNDLE_VERSION:
        _fail(mpath, f"bundle version {manifest.get('version')!r}; this sci_edge reads "
                     f"version {BUNDLE_VERSION}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        _fail(mpath, "lists no files")
    for name, entry in files.items():
        # names are plain file names: a manifest must not point outside the folder
        if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
            _fail(mpath, f"bad file name {name!r}")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not isinstance(entry.get("size"), int):
            _fail(mpath, f"bad entry for {name!r}")
    for name, entry in files.items():
        f = root / name
        if not f.is_file():
            _fail(f, "missing (the bundle's manifest lists it): copy the whole bundle again")
        digest, size = file_digest(f)
        if size != entry["size"]:
            _fail(f, f"altered: {size} B, the manifest says {entry['size']} B")
        if digest != entry["sha256"]:
            _fail(f, f"altered: sha256 {digest[:16]}... does not match the manifest's "
                     f"{entry['sha256'][:16]}...")
    for need in (CONFIG, CODEC, FILTER_BANK, *graph_files("fp32").values()):
        if need not in files:
            _fail(mpath, f"does not list {need}, which every bundle holds")
    return files


def load_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """The bundle in folder ``path``, every file checked against its manifest
    (``verify=False`` skips the sha256 pass, for a trusted folder)."""
    root = Path(path)
    if verify:
        files = verify_bundle(root)
    else:
        if not (root / MANIFEST).is_file():
            _fail(root / MANIFEST, "missing: not a sci_edge device bundle")
        files = _json(root / MANIFEST).get("files", {})
    config = _json(root / CONFIG)
    cpath = root / CODEC
    try:
        with np.load(cpath, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        tables = EdgeTables.from_arrays(a)
        model_id = str(a["model_id"])
        weights_hash = bytes(np.asarray(a["weights_hash"], np.uint8))
        codec_config = json.loads(str(a["codec_config"]))
        steps = np.ascontiguousarray(a["steps"], np.float32)
        window, half, multiple = (int(a[k]) for k in ("window", "half_window",
                                                      "spatial_multiple"))
    except (OSError, KeyError, ValueError, TypeError) as exc:
        _fail(cpath, f"not a bundle's codec tables ({exc})")
    if len(weights_hash) != 8 or steps.ndim != 2 or not np.all(steps > 0):
        _fail(cpath, "bad weights hash or quantisation steps")
    if config.get("weights_hash") != weights_hash.hex() or config.get("model_id") != model_id:
        _fail(root / CONFIG, f"names model {config.get('model_id')!r} weights "
                             f"{config.get('weights_hash')!r}, {CODEC} holds {model_id!r} "
                             f"{weights_hash.hex()!r}: files from two exports")
    if window != 2 * half + 1 or multiple < 1:
        _fail(cpath, f"bad window {window} / half window {half}")
    bank = BinaryFilterBank.load(root / FILTER_BANK)
    if bank.window != window:
        _fail(root / FILTER_BANK, f"a {bank.window}-frame filter bank, the codec's window "
                                  f"is {window}")
    precisions = tuple(p for p in PRECISIONS
                       if all(n in files for n in graph_files(p).values()))
    return Bundle(path=root, config=config, files=files, model_id=model_id,
                  weights_hash=weights_hash, codec_config=codec_config, steps=steps,
                  tables=tables, filter_bank=bank, window=window, half_window=half,
                  spatial_multiple=multiple, precisions=precisions)
