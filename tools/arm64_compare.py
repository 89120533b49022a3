#!/usr/bin/env python3
"""Helper of tools/arm64_check.sh: what the arm64 root runs, and what the host checks.

``probe`` (torch-free; runs inside the emulated aarch64 root with the edge install):
    the machine, the CPU features qemu exposes, the Python / numpy / onnxruntime
    versions, where sci_edge and its compiled kernels were imported from, and
    whether torch is importable (it must not be: ``.[edge]`` is torch-free).

``compare`` (on the host, with the torch cloud decoder):
    for each stream, decode it with ``sci_edge.models.coding.decompress`` (every
    header and frame CRC checked, the model and weights hash matched), then decode
    every frame's two rANS parts again with the codec's integer tables and re-code
    the decoded symbols with the same tables. A stream decodes exactly to what its
    encoder coded when the re-coded stream is the file byte for byte (the rANS
    bytes are a function of the symbols alone) and the symbols are those the cloud
    decoder produced. Then the arm64 and x86 streams of the same input are compared
    byte for byte and symbol by symbol. Exit status 0 when every stream decodes
    exactly, 1 otherwise, 2 on a usage or file error.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

# arm64 HWCAP bits (linux/arch/arm64/include/uapi/asm/hwcap.h): the features the
# INT8 kernels of onnxruntime's MLAS choose between (dot product, SVE, int8 matmul)
_AT_HWCAP, _AT_HWCAP2 = 16, 26
_HWCAP = {"asimd": 1, "asimdhp": 10, "asimddp": 20, "sve": 22}
_HWCAP2 = {"sve2": 1, "i8mm": 13, "bf16": 14}


def _hwcaps() -> dict:
    import ctypes

    try:
        getauxval = ctypes.CDLL(None).getauxval
    except (OSError, AttributeError):
        return {}
    getauxval.restype = ctypes.c_ulong
    getauxval.argtypes = [ctypes.c_ulong]
    h1, h2 = getauxval(_AT_HWCAP), getauxval(_AT_HWCAP2)
    feats = {name: bool(h1 >> bit & 1) for name, bit in _HWCAP.items()}
    feats.update({name: bool(h2 >> bit & 1) for name, bit in _HWCAP2.items()})
    return {"hwcap": hex(h1), "hwcap2": hex(h2), "features": feats}


def probe(ns) -> int:
    import importlib
    import importlib.util
    import os

    doc = {"machine": platform.machine(), "uname": " ".join(platform.uname()),
           "python": platform.python_version(), "qemu_cpu": os.environ.get("QEMU_CPU")}
    if platform.machine() == "aarch64":
        doc.update(_hwcaps())
    import numpy as np
    import onnxruntime as ort

    doc["numpy"] = np.__version__
    doc["onnxruntime"] = ort.__version__
    doc["onnxruntime_providers"] = ort.get_available_providers()
    import sci_edge
    doc["sci_edge"] = {"version": getattr(sci_edge, "__version__", None),
                       "path": str(Path(sci_edge.__file__).parent)}
    kernels = {}
    for name in ("if_sim", "bitpack", "isi", "tfilter", "rans"):
        mod = importlib.import_module(f"sci_edge._kernels.{name}")
        kernels[name] = Path(mod.__file__).name
    doc["kernels"] = kernels
    # the device path must not pull torch in, and the edge install must not hold it
    importlib.import_module("sci_edge.edge.encoder")
    importlib.import_module("sci_edge.edge.cli_encode")
    doc["torch_imported_by_edge"] = "torch" in sys.modules
    doc["torch_installed"] = importlib.util.find_spec("torch") is not None
    text = json.dumps(doc, indent=2)
    if ns.json:
        Path(ns.json).write_text(text + "\n")
    print(text)
    return 0


def symbols(ns) -> int:
    """Encode as sci-edge-encode does (its defaults: quality the bundle's highest,
    gain estimated from the spikes) through the API, keeping each frame's q: what
    this encoder coded, to hold the host's decode against."""
    import numpy as np

    from sci_edge.edge.bundle import load_bundle
    from sci_edge.edge.encoder import EdgeEncoder
    from sci_edge.io import open_spikes
    from sci_edge.io.stats import estimate_gain

    bundle = load_bundle(ns.bundle)
    source = open_spikes(ns.input)
    enc = EdgeEncoder(bundle, precision=ns.precision)
    res = enc.encode(source, ns.out_sci, quality=bundle.qualities - 1, stride=ns.stride,
                     intra_period=ns.intra_period, gain=estimate_gain(source),
                     keep_symbols=True)
    np.savez(ns.out_npz, *res.symbols)
    print(json.dumps({"frames": res.frames, "bits": res.bits, "seconds": res.seconds}))
    return 0


# ---- compare (host) ---------------------------------------------------------------------

def _recode(model, path: Path) -> dict:
    """Decode a stream twice (the cloud decoder, and part by part with the integer
    tables), re-code the decoded symbols and compare with the file."""
    from sci_edge.codec.bitstream import Frame, FrameType, encode_sci, read_sci
    from sci_edge.errors import CodecError
    from sci_edge.models.codec import INTER, INTRA, SPATIAL_MULTIPLE, padded_size
    from sci_edge.models.coding import decompress

    data = path.read_bytes()
    out = {"path": str(path), "bytes": len(data)}
    try:
        dec = decompress(model, path, keep_symbols=True)
    except CodecError as exc:
        # the reader checks every CRC and the weights hash: a failure here is the answer
        out.update(decode_ok=False, error=str(exc), decode_exact=False, symbols_exact=False)
        return out, None
    header, frames = read_sci(data)
    codec = model.codec
    tables = codec.tables
    size = (header.height, header.width)
    ph, pw = padded_size(*size)
    zshape = (ph // SPATIAL_MULTIPLE, pw // SPATIAL_MULTIPLE)
    recoded, qs, zs, syms = [], [], [], []
    part_mismatch = []
    prev = None
    for frame in frames:
        kind = INTRA if frame.kind == FrameType.I else INTER
        hidx = codec._hyper_indexes(kind, zshape)
        z = tables.hyper.decode(frame.parts[0], hidx)
        mean, index = tables.synthesis[kind](z)
        sym = tables.gaussian.decode(frame.parts[1], index)
        z_bytes = tables.hyper.encode(z, hidx)
        y_bytes = tables.gaussian.encode(sym, index)
        if (z_bytes, y_bytes) != tuple(frame.parts):
            part_mismatch.append(frame.index)
        recoded.append(Frame(frame.kind, frame.index, (z_bytes, y_bytes)))
        q = sym + mean if kind == INTRA else sym + mean + prev
        prev = q
        qs.append(q)
        zs.append(z)
        syms.append(sym)
    rebuilt = encode_sci(header, recoded)
    agree = [bool((a == b).all()) and a.shape == b.shape for a, b in zip(qs, dec.symbols)]
    out.update(
        decode_ok=True, frames=len(frames), crc_ok=True,
        frame_kinds="".join(f.kind.name for f in frames),
        height=header.height, width=header.width, quality=header.quality,
        intra_period=header.intra_period, gain=header.gain,
        weights_hash=header.weights_hash.hex(), model_id=header.model_id,
        # the re-coded stream equals the file: the decoded symbols are the coded ones
        recoded_identical=rebuilt == data,
        frames_recode_mismatch=part_mismatch,
        # the torch cloud decoder's q equals the table decode's q on every frame
        cloud_symbols_agree=len(agree) == len(qs) and all(agree),
    )
    out["decode_exact"] = out["recoded_identical"] and not part_mismatch
    out["symbols_exact"] = out["decode_exact"] and out["cloud_symbols_agree"]
    return out, {"q": qs, "z": zs, "features": dec.stream.features, "frames": frames,
                 "data": data}


def _pair(arm: dict, x86: dict) -> dict:
    """arm64 vs x86 streams of the same input: bytes, frames, symbols, features."""
    import numpy as np

    same = arm["data"] == x86["data"]
    out = {"byte_identical": same}
    if len(arm["q"]) != len(x86["q"]):
        out["frames_differ"] = f"{len(arm['q'])} vs {len(x86['q'])} frames"
        return out
    n = len(arm["q"])
    frames_bytes = [k for k in range(n) if arm["frames"][k].parts != x86["frames"][k].parts]
    q_diff = [int((a != b).sum()) for a, b in zip(arm["q"], x86["q"])]
    z_diff = [int((a != b).sum()) for a, b in zip(arm["z"], x86["z"])]
    q_total = sum(int(a.size) for a in arm["q"])
    z_total = sum(int(a.size) for a in arm["z"])
    max_dq = max((int(np.abs(a.astype(np.int64) - b).max()) for a, b in zip(arm["q"], x86["q"])),
                 default=0)
    fa, fx = arm["features"], x86["features"]
    out.update(
        frames=n,
        frames_with_different_bytes=len(frames_bytes),
        frames_with_different_latents=sum(1 for d in q_diff if d),
        latents_q_differ=sum(q_diff), latents_q_total=q_total,
        hyper_z_differ=sum(z_diff), hyper_z_total=z_total,
        symbol_agreement=1.0 - (sum(q_diff) + sum(z_diff)) / max(1, q_total + z_total),
        max_abs_q_difference=max_dq,
        q_differ_per_frame=q_diff,
        decoded_feature_max_abs_difference=float(np.abs(fa - fx).max()),
        size_difference_bytes=len(arm["data"]) - len(x86["data"]),
    )
    return out


def _load_json(path: str | None) -> dict | None:
    if not path:
        return None
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"arm64_compare: {p}: unreadable JSON ({exc})")


def _report_figures(report: dict | None) -> dict | None:
    if report is None:
        return None
    keep = ("frames", "bits", "seconds", "feature_frames_per_s", "stage_seconds", "threads",
            "precision", "bpsp")
    return {k: report[k] for k in keep if k in report}


def _host_simd() -> list[str]:
    """The x86 features that pick onnxruntime's INT8 kernels (VNNI or not)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])
    return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]


def _encoder_symbols(npz: Path, decoded: list) -> dict:
    """The arm64 encoder's own q per frame (the ``symbols`` subcommand) against the
    host's decode of its stream."""
    import numpy as np

    with np.load(npz) as z:
        coded = [z[f"arr_{k}"] for k in range(len(z.files))]
    diff = [int((a != b).sum()) if a.shape == b.shape else int(a.size)
            for a, b in zip(coded, decoded)]
    return {"frames": len(coded), "match": len(coded) == len(decoded) and not any(diff),
            "symbols_differ": sum(diff)}


def compare(ns) -> int:
    import numpy as np
    try:
        from sci_edge.models.pretrained import load_pretrained_codec
    except ImportError as exc:
        print(f"arm64_compare: the host decoder needs torch (sci_edge[train]): {exc}",
              file=sys.stderr)
        return 2
    from sci_edge.errors import SciEdgeError

    work = Path(ns.work)
    precs = [p for p in ns.precisions.split(",") if p]
    for prec in precs:
        for name in (f"arm64_{prec}.sci", f"x86_{prec}.sci"):
            if not (work / name).is_file():
                print(f"arm64_compare: {work / name}: stream not found", file=sys.stderr)
                return 2
    try:
        model = load_pretrained_codec(ns.weights)
    except SciEdgeError as exc:
        print(f"arm64_compare: {exc}", file=sys.stderr)
        return 2
    opt = lambda name: work / name if (work / name).is_file() else None  # noqa: E731
    probe_doc = _load_json(opt("probe.json"))
    summary = {"host": {"machine": platform.machine(), "python": platform.python_version(),
                        "numpy": np.__version__, "simd": _host_simd()},
               "arm64": probe_doc, "precisions": {}}
    try:
        import onnxruntime
        import torch
        summary["host"].update(onnxruntime=onnxruntime.__version__, torch=torch.__version__)
    except ImportError:
        pass
    bundle_cfg = _load_json(opt("bundle/config.json"))
    if bundle_cfg is not None:
        summary["bundle"] = {"int8_cpu_target": bundle_cfg.get("int8_cpu_target"),
                             "weights_hash": bundle_cfg.get("weights_hash"),
                             "model_id": bundle_cfg.get("model_id")}
    sim = _load_json(opt("simulate.json"))
    if sim is not None:
        summary["input"] = {k: sim.get(k) for k in ("source", "steps", "height", "width",
                                                    "mean_firing_rate")}
    if ns.install_s is not None:
        summary["arm64_pip_install_emulated_s"] = ns.install_s
    ok = True
    for prec in precs:
        arm_doc, arm = _recode(model, work / f"arm64_{prec}.sci")
        x86_doc, x86 = _recode(model, work / f"x86_{prec}.sci")
        entry = {"arm64": arm_doc, "x86": x86_doc}
        arm_doc["encode_emulated"] = _report_figures(_load_json(opt(f"arm64_{prec}.json")))
        wall = opt(f"arm64_{prec}.wall_s")
        if wall is not None:
            arm_doc["encode_emulated_wall_s"] = float(wall.read_text())
        x86_doc["encode"] = _report_figures(_load_json(opt(f"x86_{prec}.json")))
        npz, api = opt(f"arm64_{prec}_symbols.npz"), opt(f"arm64_{prec}_api.sci")
        if arm is not None and npz is not None:
            # the encoder's own q, and its stream is the CLI's (so the q are the CLI's)
            es = _encoder_symbols(npz, arm["q"])
            es["api_stream_identical_to_cli"] = api is not None and api.read_bytes() == arm["data"]
            arm_doc["encoder_symbols"] = es
            arm_doc["symbols_exact"] = arm_doc["symbols_exact"] and es["match"] \
                and es["api_stream_identical_to_cli"]
        if arm is not None and x86 is not None:
            entry["compare"] = _pair(arm, x86)
        entry["decode_exact"] = arm_doc["decode_exact"] and x86_doc["decode_exact"]
        entry["symbols_exact"] = arm_doc["symbols_exact"] and x86_doc["symbols_exact"]
        ok &= entry["decode_exact"] and entry["symbols_exact"]
        summary["precisions"][prec] = entry
    summary["explanation"] = _explain(summary)
    if probe_doc is not None:
        # the point of the check: an aarch64 install that never had torch
        free = probe_doc.get("machine") == "aarch64" and not probe_doc.get("torch_installed") \
            and not probe_doc.get("torch_imported_by_edge")
        summary["arm64_torch_free"] = free
        ok &= free
    summary["pass"] = bool(ok)
    text = json.dumps(summary, indent=2)
    if ns.json:
        Path(ns.json).write_text(text + "\n")
    print(text)
    return 0 if ok else 1


# sci_edge.export.quantize's INT8 flavour per CPU target
_FLAVOURS = {"arm": ", S8S8", "x86": ", U8S8 with 7-bit weights", "x86-vnni": ", U8S8"}


def _explain(summary: dict) -> list[str]:
    lines = []
    target = (summary.get("bundle") or {}).get("int8_cpu_target")
    simd = summary["host"].get("simd") or []
    x86 = "x86 with VNNI" if {"avx512_vnni", "avx_vnni"} & set(simd) else \
        ("x86 (AVX2, no VNNI)" if "avx2" in simd else "x86")
    precs = summary["precisions"]
    fp32_same = (precs.get("fp32", {}).get("compare") or {}).get("byte_identical")
    for prec, entry in precs.items():
        c = entry.get("compare")
        exact = ("each stream decodes exactly to the symbols its encoder coded"
                 if entry["symbols_exact"] else "NOT every stream decodes exactly")
        if c is None:
            lines.append(f"{prec}: a stream failed to decode, no comparison; {exact}")
            continue
        if c.get("byte_identical"):
            lines.append(f"{prec}: the arm64 and x86 streams are byte-identical; {exact}")
            continue
        if "frames_differ" in c:
            lines.append(f"{prec}: different frame counts ({c['frames_differ']}); {exact}")
            continue
        what = (f"{prec}: the streams differ in {c['frames_with_different_bytes']} of "
                f"{c['frames']} frames ({c['latents_q_differ']} of {c['latents_q_total']} "
                f"latents q, {c['hyper_z_differ']} of {c['hyper_z_total']} hyper-latents z; "
                f"max |dq| {c['max_abs_q_difference']}; decoded features differ by at most "
                f"{c['decoded_feature_max_abs_difference']:.3g})")
        if prec == "int8":
            flavour = _FLAVOURS.get(target, "")
            why = (f"the same INT8 QDQ graphs (quantised for CPU target {target!r}{flavour}) "
                   f"run in different onnxruntime integer kernels on aarch64 and on this "
                   f"{x86}, whose results differ slightly, so "
                   + ("latents near a rounding boundary round to the neighbouring integer"
                      if c["max_abs_q_difference"] <= 1 else
                      f"latents move by up to {c['max_abs_q_difference']} steps"))
            if fp32_same:
                why += ("; the fp32 graphs give byte-identical streams, so the INT8 kernels "
                        "are the only source of the difference")
        else:
            why = ("onnxruntime's fp32 kernels on aarch64 (NEON) and x86 (AVX2) sum in "
                   "different orders, so latents near a rounding boundary round differently")
        lines.append(f"{what}: {why}; {exact}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="arm64_compare.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("probe", help="inside the arm64 root: machine and versions")
    pp.add_argument("--json", help="also write the JSON here")
    ps = sub.add_parser("symbols", help="inside the root: encode through the API and keep "
                                        "the coded symbols q (torch-free)")
    ps.add_argument("--bundle", required=True)
    ps.add_argument("--input", required=True, help="the spike file (.npz)")
    ps.add_argument("--precision", default="int8", choices=("int8", "fp32"))
    ps.add_argument("--intra-period", type=int, default=32)
    ps.add_argument("--stride", type=int, default=5)
    ps.add_argument("--out-sci", required=True)
    ps.add_argument("--out-npz", required=True)
    pc = sub.add_parser("compare", help="on the host: decode, re-code and compare streams")
    pc.add_argument("--work", required=True,
                    help="the folder arm64_check.sh filled: arm64_<p>.sci, x86_<p>.sci, their "
                         "--json reports, arm64_<p>_symbols.npz, arm64_<p>_api.sci, "
                         "arm64_<p>.wall_s, probe.json, simulate.json, bundle/")
    pc.add_argument("--precisions", default="int8", help="comma-separated (default int8)")
    pc.add_argument("--install-s", type=float, help="seconds of the emulated pip install")
    pc.add_argument("--weights", help="codec weights (default: shipped)")
    pc.add_argument("--json", help="write the summary here too")
    ns = p.parse_args(argv)
    return {"probe": probe, "symbols": symbols, "compare": compare}[ns.cmd](ns)


if __name__ == "__main__":
    sys.exit(main())
