"""``sci-edge export``: the end-side networks for the device (ONNX, INT8, TensorRT, bundle).

Each subcommand is a thin layer over :mod:`sci_edge.export`; ``export/export.py``
of a checkout calls the same functions. ``--config FILE`` (an export config,
:mod:`sci_edge.export.config`) supplies the defaults; an option given on the
command line wins. Output folders are checked before the weights load.

Torch, onnx and onnxruntime are imported inside the handlers (``export trt``
needs only onnx: it runs on the device)."""
from __future__ import annotations

import argparse
import contextlib
import io
import os
from pathlib import Path

from ..errors import DataError
from . import args as A
from .common import add_json, check_output_dir, report

SQNR_SHOWN = 3          # worst tensors printed per graph and flavour (JSON keeps more)
SQNR_KEPT = 10
SQNR_FEEDS = 6          # held-out inputs per graph the SQNR is measured on
CALIB_CROP = 128        # calibration crops are at most this big (as export_bundle's)
FLAVOUR_CHOICES = ("cpu", "trt", "both")


# --- options ---------------------------------------------------------------------------------

def _opset(text: str) -> int:
    from ..export.config import MAX_OPSET, MIN_OPSET

    value = A.positive_int(text)
    if not MIN_OPSET <= value <= MAX_OPSET:
        raise argparse.ArgumentTypeError(f"opset must be in {MIN_OPSET}..{MAX_OPSET}, "
                                         f"got {text!r}")
    return value


def _common(p, *, weights: bool = True, size: bool = True) -> None:
    p.add_argument("--config", help="export config TOML (e.g. export/configs/"
                                    "jetson_orin_nano.toml, or its bare name in a checkout): "
                                    "defaults for the options below")
    if weights:
        p.add_argument("--weights", help="codec weights, a stage-3 checkpoint (default: "
                                         "shipped)")
    if size:
        p.add_argument("--size", type=A.size,
                       help="HxW where onnxruntime is checked against torch; the graphs take "
                            "any size (default: the config's, else 256x256)")
        p.add_argument("--opset", type=_opset,
                       help="ONNX opset, 13..20; TensorRT 8.5 (JetPack 5) reads up to 17 "
                            "(default: the config's, else 17)")


def _calib(p) -> None:
    p.add_argument("--calib", type=A.positive_int, metavar="N",
                   help="calibration spike sequences for INT8 (default: the config's, else 16)")


def _rounding(p) -> None:
    p.add_argument("--rounding", choices=("learned", "nearest"),
                   help="INT8 weights: learned rounding on the calibration inputs where "
                        "quantize.LEARNED_ROUNDING lists the graph, or nearest everywhere "
                        "(faster to export) (default: the config's, else learned)")


def _cpu(p) -> None:
    p.add_argument("--cpu", choices=("x86", "x86-vnni", "arm"),
                   help="the CPU the INT8 graphs will run on: arm for a Jetson (default: the "
                        "config's, else this machine)")


def register(sub) -> None:
    p = sub.add_parser("export", help="the end-side networks for the device: ONNX, INT8, "
                                      "TensorRT engines, device bundles")
    esub = p.add_subparsers(dest="export", metavar="WHAT", required=True)

    b = esub.add_parser("onnx", help="the four end-side graphs as float32 ONNX, checked "
                                     "(onnx.checker, onnxruntime vs torch)")
    b.add_argument("--out", required=True, help="output folder (created)")
    _common(b)
    add_json(b)
    b.set_defaults(handler=run_onnx)

    b = esub.add_parser("int8", help="float32 ONNX plus static INT8 (QDQ) graphs, calibrated "
                                     "on real spike windows; prints the worst layers' SQNR")
    b.add_argument("--out", required=True, help="output folder (created)")
    _common(b)
    _calib(b)
    b.add_argument("--flavour", choices=FLAVOUR_CHOICES,
                   help="cpu: onnxruntime's CPU kernels (.int8.onnx); trt: TensorRT's explicit "
                        "quantisation (.trt-int8.onnx); both (default: the config's "
                        "precisions, else both)")
    _cpu(b)
    _rounding(b)
    add_json(b)
    b.set_defaults(handler=run_int8)

    b = esub.add_parser("trt", help="TensorRT engines from exported graphs (where tensorrt "
                                    "imports; else the trtexec lines to run on the device)")
    b.add_argument("--onnx", required=True, metavar="FILE_OR_DIR",
                   help="an exported .onnx file, or a folder of them (an export or a bundle)")
    b.add_argument("--precision", choices=("int8", "fp16", "fp32"),
                   help="int8 builds the .trt-int8.onnx graphs, fp16/fp32 the float ones "
                        "(default: the config's trt_precision, else int8)")
    b.add_argument("--timing-cache", help="TensorRT timing cache file (read if it exists, "
                                          "written after the build)")
    b.add_argument("--out", help="folder for the engines (default: beside the ONNX files)")
    b.add_argument("--check", action="store_true",
                   help="only check the graphs for what TensorRT would refuse (no GPU or "
                        "TensorRT needed); exit 2 if anything is found")
    _common(b, weights=False, size=False)
    add_json(b)
    b.set_defaults(handler=run_trt)

    b = esub.add_parser("bundle", help="a device bundle: graphs, filter bank, coding tables "
                                       "and a checked manifest, for sci-edge-encode")
    b.add_argument("--out", required=True, help="bundle folder (an earlier bundle there is "
                                                "replaced; any other non-empty folder refused)")
    _common(b)
    b.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                   help="INT8 graphs for onnxruntime's CPU (default: the config's precisions, "
                        "else on)")
    b.add_argument("--trt-int8", action=argparse.BooleanOptionalAction, default=None,
                   help="INT8 graphs for TensorRT too (default: the config's precisions, "
                        "else on)")
    _calib(b)
    _cpu(b)
    _rounding(b)
    add_json(b)
    b.set_defaults(handler=run_bundle)


# --- shared steps --------------------------------------------------------------------------


def _config(ns):
    """(config path or None, ExportConfig): the file's, or the built-in defaults."""
    from ..export.config import ExportConfig, load_export_config

    if not ns.config:
        return None, ExportConfig()
    return load_export_config(ns.config)


def _pick(value, default):
    return default if value is None else value


def _needs(*modules: str) -> None:
    from .._deps import require

    for m in modules:
        require(m, "sci-edge export")


def _load(weights):
    from ..models.pretrained import load_pretrained_codec

    return load_pretrained_codec(weights)


def _base_doc(command: str, cfg_path, cfg, model=None, weights=None) -> dict:
    doc = {"command": f"export {command}",
           "config": None if cfg_path is None else str(cfg_path),
           "settings": cfg.to_dict()}
    if model is not None:
        doc.update(weights=str(weights) if weights else "shipped",
                   weights_hash=model.codec.weights_hash().hex())
    return doc


def _macs(n) -> str:
    if n is None:
        return "MACs ?"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}MACs"
    return f"{n} MACs"


def _onnx_lines(rep) -> list[str]:
    lines = []
    for name, g in rep.graphs.items():
        shape = "x".join(map(str, g.checked[0])) if g.checked else "?"
        lines.append(f"  {name:<17} {g.path.name:<24} parity {g.parity:.1e}   "
                     f"{_macs(g.macs)} at {shape}")
    return lines


def _onnx_export(model, out: Path, size, opset):
    from ..export.onnx_export import export_edge_onnx

    return export_edge_onnx(model, out, size=size, opset=opset)


# --- onnx ------------------------------------------------------------------------------------


def run_onnx(ns) -> int:
    cfg_path, cfg = _config(ns)
    size, opset = _pick(ns.size, cfg.size), _pick(ns.opset, cfg.opset)
    out = check_output_dir(ns.out, create=False)
    _needs("torch", "onnx", "onnxruntime")
    model = _load(ns.weights)
    rep = _onnx_export(model, out, size, opset)
    doc = _base_doc("onnx", cfg_path, cfg, model, ns.weights)
    doc.update(rep.to_dict())
    doc["max_parity"] = rep.max_parity
    h, w = rep.size
    report(ns, doc, [f"exported {len(rep)} graphs to {out} (opset {rep.opset}; onnx.checker "
                     f"full check passed; onnxruntime vs torch at {h}x{w} and one other "
                     f"size, max |diff| {rep.max_parity:.1e}):", *_onnx_lines(rep)])
    return 0


# --- int8 ------------------------------------------------------------------------------------


def _flavours(ns, cfg) -> tuple[str, ...]:
    if ns.flavour is None:
        return cfg.flavours
    return ("cpu", "trt") if ns.flavour == "both" else (ns.flavour,)


def _float_groups(float_nodes: dict[str, str]) -> list[tuple[str, list[str]]]:
    """(reason, node names) pairs, in the order the reasons first appear."""
    groups: dict[str, list[str]] = {}
    for node, reason in float_nodes.items():
        groups.setdefault(reason, []).append(node)
    return list(groups.items())


def run_int8(ns) -> int:
    cfg_path, cfg = _config(ns)
    size, opset = _pick(ns.size, cfg.size), _pick(ns.opset, cfg.opset)
    calib, cpu = _pick(ns.calib, cfg.calib), _pick(ns.cpu, cfg.cpu)
    flavours = _flavours(ns, cfg)
    out = check_output_dir(ns.out, create=False)
    _needs("torch", "onnx", "onnxruntime")
    import json

    import onnx

    from ..export.formats import graph_metadata
    from ..export.quantize import (calibration_inputs, calibration_spikes, layer_sqnr,
                                   quant_config, quantize_edge)

    cpu_machine = quant_config("cpu", cpu)["machine"]     # a bad target fails before work
    model = _load(ns.weights)
    rep = _onnx_export(model, out, size, opset)
    crop = (min(size[0], CALIB_CROP), min(size[1], CALIB_CROP))
    spikes = calibration_spikes(count=calib, size=crop)
    feeds = {g: calibration_inputs(model, spikes, g) for g in rep}
    # SQNR on a sequence the calibration did not see
    held = calibration_spikes(count=1, size=crop, seed=1000, reds=False)
    held_feeds = {}
    for g in rep:
        f = calibration_inputs(model, held, g)
        held_feeds[g] = f[::max(1, len(f) // SQNR_FEEDS)][:SQNR_FEEDS]
    with contextlib.redirect_stdout(io.StringIO()):   # onnxruntime's quantiser prints
        paths = quantize_edge(rep, feeds, flavours=flavours, cpu=cpu,
                              rounding=_pick(ns.rounding, cfg.rounding))

    graphs, lines = {}, []
    for g, by_flavour in paths.items():
        entry = {"fp32": str(rep[g]), "calibration_inputs": len(feeds[g]), "flavours": {}}
        float_nodes = {}
        for flavour, path in by_flavour.items():
            meta = json.loads(graph_metadata(onnx.load(str(path)))["quantization"])
            float_nodes = meta.get("float_nodes", {})
            # against the layout the INT8 file was quantised from (fem_tail's own)
            sqnr = layer_sqnr(rep.int8_sources.get(g, rep[g]), path, held_feeds[g])
            entry["flavours"][flavour] = {
                "path": str(path), "quantization": meta.get("machine"),
                "min_sqnr_db": sqnr[0].sqnr_db if sqnr else None,
                "worst_sqnr": [{"tensor": s.name, "sqnr_db": s.sqnr_db}
                               for s in sqnr[:SQNR_KEPT]]}
        entry["float_nodes"] = float_nodes
        graphs[g] = entry
        lines.append(f"  {g} ({len(feeds[g])} calibration inputs):")
        for flavour, e in entry["flavours"].items():
            worst = ", ".join(f"{s['tensor']} {s['sqnr_db']:.1f} dB"
                              for s in e["worst_sqnr"][:SQNR_SHOWN]) or "no tensors compared"
            lines.append(f"    {flavour:<3} {Path(e['path']).name:<28} worst SQNR: {worst}")
        for reason, nodes in _float_groups(float_nodes):
            lines.append(f"    stays float ({', '.join(nodes)}): {reason}")

    doc = _base_doc("int8", cfg_path, cfg, model, ns.weights)
    doc.update(out_dir=str(out), flavours=list(flavours), cpu_target=cpu_machine,
               calibration={"sequences": len(spikes), "size": list(crop),
                            "method": {g: _calib_name(g) for g in graphs}},
               sqnr_inputs={g: len(f) for g, f in held_feeds.items()},
               onnx=rep.to_dict(), graphs=graphs)
    names = [f"cpu ({cpu_machine})" if f == "cpu" else "trt (TensorRT: S8S8, zero-points 0)"
             for f in flavours]
    methods = sorted({_calib_name(g) for g in graphs})
    head = (f"INT8 in {out}: static QDQ, per-channel weights, {' / '.join(methods)} "
            f"ranges ({', '.join(f'{g}: {_calib_name(g)}' for g in graphs)}) over {len(spikes)} "
            f"calibration sequences of {crop[0]}x{crop[1]}; flavours {', '.join(names)}; "
            "SQNR against fp32 on a held-out sequence:")
    report(ns, doc, [head, *lines])
    return 0


def _calib_name(graph: str) -> str:
    """How ``quantize_edge`` calibrates ``graph`` by default (its CALIBRATION table)."""
    from ..export.quantize import CALIBRATION

    method, pct = CALIBRATION.get(graph, ("minmax", None))
    return f"{method} {pct:g}" if pct is not None else method


# --- trt -------------------------------------------------------------------------------------


def _trt_inputs(src: Path, precision: str) -> list[Path]:
    """The ONNX files to build at ``precision``: ``src`` itself, or those in the folder
    ``src`` of the matching format (QDQ for TensorRT for int8, float32 otherwise)."""
    from ..edge.bundle import GRAPHS     # torch-free: export trt runs on the device
    from ..export.formats import format_for_path

    if not src.exists():
        raise DataError(f"{src}: no such file or folder")
    if src.is_file():
        if format_for_path(src).backend != "OrtBackend":     # unknown suffixes raise too
            raise DataError(f"{src}: not an ONNX model (give an exported .onnx file)")
        return [src]
    want = "int8-trt" if precision == "int8" else "fp32"
    files = []
    for f in src.iterdir():
        try:
            if f.is_file() and format_for_path(f).quantization == want:
                files.append(f)
        except DataError:       # not an exported model: README, manifest, ...
            continue
    if not files:
        how = ("sci-edge export int8 --flavour trt" if want == "int8-trt"
               else "sci-edge export onnx")
        raise DataError(f"{src}: no {'.trt-int8.onnx' if want == 'int8-trt' else '.onnx'} "
                        f"graphs to build at {precision} (export them with `{how}`)")
    order = {g: i for i, g in enumerate(GRAPHS)}
    return sorted(files, key=lambda f: (order.get(f.name.split(".")[0], len(order)), f.name))


def _readable(files: list[Path]) -> list[Path]:
    """``files``, each checked to parse as ONNX (the library's readers would raise a
    protobuf error with a traceback)."""
    import onnx

    for f in files:
        try:
            onnx.load(str(f), load_external_data=False)
        except Exception as exc:    # protobuf's DecodeError and friends
            raise DataError(f"{f}: not a readable ONNX model ({type(exc).__name__})") from exc
    return files


def _trtexec_lines(f: Path, precision: str, timing_cache, engine_dir: Path | None) -> dict:
    """trtexec_commands of ``f``, the engines moved into ``engine_dir`` when given."""
    import re

    from ..export.trt import engine_name, trtexec_commands

    lines = trtexec_commands(f, precision, timing_cache=timing_cache)
    if engine_dir is None:
        return lines
    out = {}
    for key, line in lines.items():
        version = re.search(r"TensorRT ([\d.]+)", key).group(1)
        name = engine_name(f, precision, version)
        out[key] = line.replace(f"--saveEngine={f.with_name(name)}",
                                f"--saveEngine={engine_dir / name}")
    return out


def run_trt(ns) -> int:
    cfg_path, cfg = _config(ns)
    precision = _pick(ns.precision, cfg.trt_precision)
    _needs("onnx")
    from ..export.trt import TensorRTMissing, check_trt_compat, onnx2engine

    files = _readable(_trt_inputs(Path(ns.onnx), precision))
    doc = _base_doc("trt", cfg_path, cfg)
    doc.update(precision=precision, files=[str(f) for f in files])
    if ns.check:
        problems = {str(f): check_trt_compat(f) for f in files}
        doc.update(check=problems, ok=not any(problems.values()))
        lines = [f"TensorRT check of {len(files)} graph(s) (opset, Q/DQ, ops; no GPU used):"]
        for f, found in problems.items():
            lines.append(f"  {Path(f).name}: " + ("ok" if not found else f"{len(found)} "
                                                                        "problem(s)"))
            lines += [f"    - {p}" for p in found]
        report(ns, doc, lines)
        bad = sum(1 for found in problems.values() if found)
        if bad:
            raise DataError(f"{bad} of {len(files)} graph(s) not ready for TensorRT (the "
                            "problems are listed above)")
        return 0

    engine_dir = None
    if ns.out:
        engine_dir = check_output_dir(ns.out)
    built, commands = {}, {}
    for f in files:
        # onnx2engine checks the file first (precision, QDQ, TensorRT compatibility) and
        # only then needs tensorrt: a missing one still gets a checked file's trtexec lines
        try:
            built[str(f)] = str(onnx2engine(f, engine_dir, precision=precision,
                                            timing_cache=ns.timing_cache))
        except TensorRTMissing:
            commands[str(f)] = _trtexec_lines(f, precision, ns.timing_cache, engine_dir)
    if commands:
        doc.update(tensorrt=False, trtexec=commands)
        lines = ["tensorrt does not import here: build the engines on the device with "
                 "trtexec (it ships with JetPack):"]
        for f, per in commands.items():
            lines.append(f"  {Path(f).name}:")
            lines += [f"    {key}: {line}" for key, line in per.items()]
        report(ns, doc, lines)
        exc = TensorRTMissing("building TensorRT engines", {})
        # the commands went to stdout; the error stays one line
        exc.msg = (exc.msg.splitlines()[0].rstrip(":") +
                   " (the trtexec command lines are printed above)")
        exc.args = (exc.msg,)
        raise exc
    doc.update(tensorrt=True, engines=built)
    report(ns, doc, [f"built {len(built)} TensorRT {precision} engine(s):",
                     *(f"  {Path(k).name} -> {v}" for k, v in built.items())])
    return 0


# --- bundle ----------------------------------------------------------------------------------


def _bundle_target(path: str) -> Path:
    """The bundle folder, checked as export_bundle will (its parent is created)."""
    from ..export.bundle import _check_target

    out = Path(path).expanduser()
    check_output_dir(out, create=False)
    check_output_dir(out.parent)
    _check_target(out)
    return out


def device_commands(manifest) -> dict:
    """What to run on the device with this bundle: install, encode, and the trtexec
    lines for its TensorRT graphs (run inside the copied bundle folder)."""
    from ..export.trt import trtexec_commands

    cfg, out = manifest.config, Path(manifest.path)
    Q = cfg["qualities"]
    best = "int8" if "int8" in cfg["precisions"] else "fp32"
    doc = {"install": 'pip install ".[edge]"    # in a sci_edge checkout on the device',
           "encode": f"sci-edge-encode spikes.npz --bundle {out.name} -o clip.sci "
                     f"--quality {Q - 1} --precision {best} --gain auto "
                     f"--stride {cfg.get('analysis_stride') or 5}",
           "check": f"sci-edge export trt --onnx {out.name} --check",
           "trtexec": {}}
    for graph, name in cfg["precisions"].get("int8-trt", {}).items():
        lines = trtexec_commands(out / name, "int8")
        # paths relative to the bundle folder: it is copied to the device
        doc["trtexec"][graph] = {k: v.replace(f"={out}{os.sep}", "=") for k, v in lines.items()}
    return doc


def run_bundle(ns) -> int:
    cfg_path, cfg = _config(ns)
    size, opset = _pick(ns.size, cfg.size), _pick(ns.opset, cfg.opset)
    calib, cpu = _pick(ns.calib, cfg.calib), _pick(ns.cpu, cfg.cpu)
    int8 = _pick(ns.int8, cfg.int8)
    trt = _pick(ns.trt_int8, cfg.trt_int8 if int8 else False)
    if trt and not int8:
        raise DataError("--trt-int8 needs --int8: one calibration makes both")
    out = _bundle_target(ns.out)
    _needs("torch", "onnx", "onnxruntime")
    from ..export.bundle import export_bundle
    from ..export.quantize import calibration_spikes, quant_config

    if int8:
        quant_config("cpu", cpu)        # a bad target fails before work
    model = _load(ns.weights)
    calibration = None
    if int8:
        crop = (min(size[0], CALIB_CROP), min(size[1], CALIB_CROP))
        calibration = calibration_spikes(count=calib, size=crop)
    manifest = export_bundle(model, out, int8=int8, trt=trt, calibration=calibration,
                             size=size, cpu=cpu, opset=opset,
                             rounding=_pick(ns.rounding, cfg.rounding))
    c = manifest.config
    total = sum(f["size"] for f in manifest.files.values())
    commands = device_commands(manifest)
    doc = _base_doc("bundle", cfg_path, cfg, model, ns.weights)
    doc.update(path=str(manifest.path), files=manifest.files, bytes=total,
               precisions=list(c["precisions"]), int8_cpu_target=c["int8_cpu_target"],
               calibration_sequences=calib if int8 else 0, parity=c["parity"],
               bundle_config=c, device_commands=commands)
    lines = [f"wrote bundle {manifest.path}: {len(manifest.files)} files, {total / 1e6:.2f} MB "
             f"(sha256 of each in manifest.json); codec {c['model_id']} weights "
             f"{c['weights_hash']}, qualities 0..{c['qualities'] - 1}",
             f"  precisions: {', '.join(c['precisions'])}"
             + (f" (CPU INT8 for {c['int8_cpu_target']}, {calib} calibration sequences)"
                if int8 else ""),
             f"  ONNX vs torch at {c['export_size'][0]}x{c['export_size'][1]}, opset "
             f"{c['opset']}: " + ", ".join(f"{g} {p:.1e}" for g, p in c["parity"].items()),
             "on the device (copy the folder there; no torch needed):",
             f"  {commands['install']}",
             f"  {commands['encode']}"]
    if commands["trtexec"]:
        lines.append(f"  {commands['check']}")
        lines.append(f"TensorRT engines (optional), in the copied {manifest.path.name} folder:")
        for graph, per in commands["trtexec"].items():
            lines += [f"  {key}: {line}" for key, line in per.items()]
    report(ns, doc, lines)
    return 0
