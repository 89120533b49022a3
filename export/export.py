#!/usr/bin/env python3
"""Export the codec's end side for one device, from an export config, as a device bundle.

A thin script over the library (``sci-edge export bundle`` calls the same
functions): load the weights, calibrate INT8 on real spike windows, write the
bundle (ONNX fp32, INT8 for the device's CPU and for TensorRT, filter bank,
coding tables, manifest), check the TensorRT graphs without a GPU and print
the ``trtexec`` lines that build the engines on the device::

    python export/export.py                                   # jetson_orin_nano -> export/out/
    python export/export.py --config export/configs/jetson_orin_nano.toml \\
        --weights runs/stage3/final.pt --out /tmp/orin_bundle --calib 8

Options given here win over the config's values. Exit status 2 with one line
on anything the user can fix.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("sci_edge") is None:    # run from a checkout without an install
    sys.path.insert(0, str(HERE.parent))

from sci_edge.cli import args as A  # noqa: E402
from sci_edge.errors import SciEdgeError  # noqa: E402

parser = argparse.ArgumentParser(description="Export sci_edge's end side as a device bundle.")
parser.add_argument("--config", default="jetson_orin_nano",
                    help="export config: a TOML file or a name in export/configs "
                         "(default jetson_orin_nano)")
parser.add_argument("--weights", help="codec weights, a stage-3 checkpoint (default: shipped)")
parser.add_argument("--out", help="bundle folder (default export/out/<config name>)")
parser.add_argument("--size", type=A.size, help="HxW the ONNX graphs are checked at")
parser.add_argument("--opset", type=A.positive_int, help="ONNX opset")
parser.add_argument("--calib", type=A.positive_int, help="calibration spike sequences")
parser.add_argument("--cpu", choices=("arm", "x86", "x86-vnni"), help="INT8 CPU target")
parser.add_argument("--rounding", choices=("learned", "nearest"), help="INT8 weight rounding")
parser.add_argument("--no-int8", action="store_true", help="float32 graphs only")
parser.add_argument("--no-trt-int8", action="store_true", help="no TensorRT INT8 graphs")


def main(argv=None) -> int:
    args = parser.parse_args(argv)
    from sci_edge.export.bundle import export_bundle
    from sci_edge.export.config import load_export_config
    from sci_edge.export.quantize import calibration_spikes
    from sci_edge.export.trt import check_trt_compat, trtexec_commands
    from sci_edge.models.pretrained import load_pretrained_codec

    cfg_path, cfg = load_export_config(args.config)
    size = args.size or cfg.size
    opset = args.opset or cfg.opset
    calib = args.calib or cfg.calib
    cpu = args.cpu or cfg.cpu
    int8 = cfg.int8 and not args.no_int8
    trt = int8 and cfg.trt_int8 and not args.no_trt_int8
    out = Path(args.out) if args.out else HERE / "out" / cfg_path.stem
    out.parent.mkdir(parents=True, exist_ok=True)

    model = load_pretrained_codec(args.weights)
    spikes = calibration_spikes(count=calib, size=(min(size[0], 128), min(size[1], 128))) \
        if int8 else None
    with contextlib.redirect_stdout(io.StringIO()):    # onnxruntime's quantiser prints
        manifest = export_bundle(model, out, int8=int8, trt=trt, calibration=spikes,
                                 size=size, cpu=cpu, opset=opset,
                                 rounding=args.rounding or cfg.rounding)
    c = manifest.config
    target = f"; CPU INT8 for {c['int8_cpu_target']}" if int8 else ""
    print(f"{cfg.device or cfg_path.stem}: bundle {out} ({len(manifest.files)} files; "
          f"precisions {', '.join(c['precisions'])}{target})")
    for graph, p in c["parity"].items():
        print(f"  {graph:<17} onnxruntime vs torch {p:.1e}")
    for graph, name in c["precisions"].get("int8-trt", {}).items():
        problems = check_trt_compat(out / name)
        print(f"  {name}: TensorRT check " + ("ok" if not problems else "; ".join(problems)))
        for key, line in trtexec_commands(out / name, "int8").items():
            # run inside the bundle folder once it is copied to the device
            print(f"    {key}: {line.replace(f'={out}{os.sep}', '=')}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SciEdgeError as exc:
        print(f"export.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
