"""Export a device bundle: everything ``sci-edge-encode`` needs, in one verified folder.

:func:`export_bundle` runs the ONNX export (and INT8 quantisation) of the end
side, stores the popcount filter bank and the codec's integer coding tables,
and writes a manifest of every file's sha256; the device reads it with
:func:`sci_edge.edge.bundle.load_bundle` (torch-free). Layout: see that module.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..edge.bundle import (BUNDLE_FORMAT, BUNDLE_VERSION, CODEC, CONFIG, FILTER_BANK, GRAPHS,
                           MANIFEST, README, file_digest, graph_files)
from ..errors import DataError, OutputError
from .onnx_export import DEFAULT_OPSET, FEM_MODEL_ID, export_edge_onnx, fem_weights_hash
from .onnx_export import GRAPHS as _EXPORT_GRAPHS

assert _EXPORT_GRAPHS == GRAPHS, "sci_edge.edge.bundle.GRAPHS must follow the exporter"


@dataclass(frozen=True)
class BundleManifest:
    """What :func:`export_bundle` wrote: the folder, every file's sha256 and size,
    and the bundle's config.json."""

    path: Path
    files: dict[str, dict]
    config: dict

    @property
    def precisions(self) -> list[str]:
        return list(self.config["precisions"])

    def to_dict(self) -> dict:
        return {"path": str(self.path), "files": self.files, "config": self.config}


def _calibration_feeds(model, calibration, size, seed: int) -> dict[str, list]:
    """graph -> INT8 calibration feeds, from ``calibration``: None (simulated scenes,
    see calibration_spikes), a mapping graph -> feeds, or spike arrays / (spikes,
    gain) pairs."""
    from .quantize import calibration_inputs, calibration_spikes

    if isinstance(calibration, Mapping):
        missing = [g for g in GRAPHS if g not in calibration]
        if missing:
            raise DataError(f"calibration feeds given per graph lack {missing}")
        return {g: list(calibration[g]) for g in GRAPHS}
    if calibration is None:
        crop = (min(int(size[0]), 128), min(int(size[1]), 128))
        calibration = calibration_spikes(size=crop, seed=seed)
    spikes = list(calibration)
    if not spikes:
        raise DataError("the calibration spikes are empty")
    return {g: calibration_inputs(model, spikes, g) for g in GRAPHS}


def _codec_arrays(codec) -> dict[str, np.ndarray]:
    from ..models.codec import MODEL_ID, SPATIAL_MULTIPLE
    from ..models.end.fem import HALF_WINDOW, WINDOW

    with torch.no_grad():
        Q = codec.config.qualities
        # exp in torch, as FeatureCodec.steps does: the device divides by these exact floats
        steps = codec.steps(torch.arange(Q))[:, :, 0, 0].float().numpy()
    out = {k: np.ascontiguousarray(v) for k, v in codec.tables.arrays().items()}
    out.update(steps=np.ascontiguousarray(steps, np.float32),
               weights_hash=np.frombuffer(codec.weights_hash(), np.uint8).copy(),
               model_id=np.array(MODEL_ID), codec_config=np.array(json.dumps(
                   codec.config.to_dict(), sort_keys=True)),
               window=np.int64(WINDOW), half_window=np.int64(HALF_WINDOW),
               spatial_multiple=np.int64(SPATIAL_MULTIPLE))
    return out


def _readme(config: dict) -> str:
    Q = config["qualities"]
    precisions = config["precisions"]
    best = "int8" if "int8" in precisions else "fp32"
    # a stride the weights' cloud side can read (it reads features this far apart)
    stride = config.get("analysis_stride") or 5
    target = config.get("int8_cpu_target")
    int8_line = (f"- `int8`: INT8 QDQ graphs for onnxruntime's CPU kernels (`*.int8.onnx`), "
                 f"quantised for CPU target `{target}` (export with `cpu=\"arm\"` for a "
                 f"Jetson)\n" if "int8" in precisions else "")
    trt_line = ("- `*.trt-int8.onnx`: INT8 QDQ graphs for TensorRT (build engines on the "
                "device with `sci_edge.export.trt.trtexec_commands`)\n"
                if "int8-trt" in precisions else "")
    return f"""# sci_edge device bundle

Codec `{config['model_id']}`, weights `{config['weights_hash']}` (the hash every stream
header carries; the cloud decoder accepts only streams of these weights), quality
indexes 0..{Q - 1}, exported by sci_edge {config['sci_edge_version']}.

Precisions:
- `fp32`: float32 ONNX graphs (`*.onnx`)
{int8_line}{trt_line}
## Install on the device (no torch needed)

From a checkout or source archive of sci_edge, on the device:

    pip install ".[edge]"

Copy this whole folder to the device (e.g. `~/sci_bundle`); every file is checked
against `manifest.json` when the encoder loads it.

## Encode

    sci-edge-encode recording.dat --height 250 --width 400 --bundle ~/sci_bundle \\
        -o clip.sci --quality {Q - 1} --precision {best}
    sci-edge-encode spikes.npz --bundle ~/sci_bundle -o clip.sci \\
        --gain auto --stride {stride} --intra-period 32
    sci-edge-encode spikes.npz --bundle ~/sci_bundle -o - > clip.sci     # the stream on stdout

`sci-edge-encode --help` lists every option (`--json` for a machine-readable report,
`--threads N`). From Python:

    from sci_edge.edge.encoder import EdgeEncoder
    enc = EdgeEncoder("~/sci_bundle", precision="{best}")
    result = enc.encode("spikes.npz", "clip.sci", quality={Q - 1})
    print(result.bits, result.bpsp, result.frames_per_s)

## Decode (cloud side, with torch and the same weights)

    sci-edge decode clip.sci --weights WEIGHTS --reconstruct frames/
"""


def _write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _check_target(out_dir: Path) -> None:
    if not out_dir.parent.is_dir():
        raise OutputError(out_dir, f"no such folder {out_dir.parent}")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputError(out_dir, "exists and is not a folder")
        # replace an earlier bundle, never a folder of someone's other files
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
            raise OutputError(out_dir, "exists and is not a device bundle; refusing to "
                                       "replace it (give a new or empty folder)")


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Put the finished folder ``tmp`` at ``out_dir``, an earlier bundle there moved
    aside first and removed after, so ``out_dir`` is always whole."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old",
                                    dir=out_dir.parent))
        os.rmdir(old)
        os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except OSError:
        if old is not None:
            os.rename(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_bundle(coded_model, out_dir: str | Path, *, int8: bool = True, calibration=None,
                  size: tuple[int, int] = (256, 256), trt: bool = True, cpu: str | None = None,
                  opset: int = DEFAULT_OPSET, seed: int = 0,
                  rounding: str = "learned") -> BundleManifest:
    """Write the device bundle of ``coded_model`` (a CodedSCI with coding tables)
    into the folder ``out_dir``, whole or not at all (built beside it, renamed in;
    an earlier bundle there is replaced).

    ``int8``: also INT8 graphs for onnxruntime's CPU (``cpu``: their target,
    "arm" for a Jetson, default this machine) and, with ``trt``, for TensorRT,
    calibrated on ``calibration`` (None: simulated scenes; spike arrays or
    (spikes, gain) pairs; or graph -> feeds). ``size``: where the export checks
    onnxruntime against torch (the graphs take any size). ``rounding``: the INT8
    weights' (:func:`sci_edge.export.quantize.quantize_edge`)."""
    from ..models.codec import MODEL_ID, SPATIAL_MULTIPLE, CodedSCI
    from ..models.end.fem import HALF_WINDOW, WINDOW

    if not isinstance(coded_model, CodedSCI):
        raise DataError(f"a device bundle needs a CodedSCI (FEM and codec), got "
                        f"{type(coded_model).__name__}")
    codec, fem = coded_model.codec, coded_model.sci.fem
    if codec.tables is None:
        raise DataError("the codec has no integer tables: call codec.update() after "
                        "training (shipped weights have them)")
    out_dir = Path(out_dir).expanduser()
    _check_target(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=out_dir.parent))
    try:
        report = export_edge_onnx(coded_model, tmp, size=size, opset=opset, seed=seed)
        precisions = {"fp32": graph_files("fp32")}
        int8_target = None
        if int8:
            from .quantize import _this_cpu, quantize_edge

            feeds = _calibration_feeds(coded_model, calibration, size, seed)
            flavours = ("cpu", "trt") if trt else ("cpu",)
            # onnxruntime's quantiser prints progress; a library call stays quiet
            with contextlib.redirect_stdout(io.StringIO()):
                quantize_edge(report, feeds, flavours=flavours, cpu=cpu, rounding=rounding)
            int8_target = cpu or _this_cpu()
            precisions["int8"] = graph_files("int8")
            if trt:
                precisions["int8-trt"] = graph_files("int8-trt")
        fem.export_filter_bank().save(tmp / FILTER_BANK)
        with open(tmp / CODEC, "wb") as fh:
            np.savez(fh, **_codec_arrays(codec))
        sci_cfg = coded_model.sci.config
        config = {
            "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "model_id": MODEL_ID,
            "weights_hash": codec.weights_hash().hex(), "codec_config": codec.config.to_dict(),
            "qualities": codec.config.qualities, "channels": codec.config.channels,
            "hyper_channels": codec.config.hyper_channels,
            "fem_model_id": FEM_MODEL_ID, "fem_weights_hash": fem_weights_hash(fem),
            "fem_config": fem.config.to_dict(), "task": sci_cfg.task,
            "analysis_stride": int(sci_cfg.analysis.stride),
            "window": WINDOW, "half_window": HALF_WINDOW, "start": HALF_WINDOW,
            "spatial_multiple": SPATIAL_MULTIPLE,
            "precisions": precisions, "int8_cpu_target": int8_target,
            "export_size": list(report.size), "opset": report.opset,
            "parity": {g: e.parity for g, e in report.graphs.items()},
            "sci_edge_version": __version__,
        }
        _write_json(tmp / CONFIG, config)
        (tmp / README).write_text(_readme(config))
        files = {}
        for f in sorted(tmp.iterdir()):
            if f.is_file():
                digest, nbytes = file_digest(f)
                files[f.name] = {"sha256": digest, "size": nbytes}
        _write_json(tmp / MANIFEST, {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION,
                                     "files": files})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)       # mkdtemp's folder is private
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BundleManifest(path=out_dir, files=files, config=config)
