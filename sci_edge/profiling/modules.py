"""Per-module profile of the SCI models: end side (FEM) vs cloud side.

:func:`profile_modules` gives one :class:`ModuleRow` per part:

- end side, per feature frame (one 13-frame window): ``fem.popcount`` (the two
  BinaryTemporalBanks, the layer the edge kernel runs as popcounts) and
  ``fem.rest`` (token attention, embeddings, readout, PFU, output conv);
- cloud side, per output (2K+1 features), for the reconstruction model:
  ``cloud.encoder`` (the per-feature encoder, on all 2K+1 features),
  ``cloud.flow`` (flow estimation), ``cloud.afr`` (both AFR branches: warps,
  offset convs, deformable convs), ``cloud.merge_fusion`` (branch merges and the
  fusion U-Net, with the ops outside any submodule: padding, concatenations),
  ``cloud.recon_head``, and ``cloud.propagation`` when the model has its
  long-reach propagation (one feature's share: a gate step each way and the
  merge), ``cloud.rate`` when it has the rate integration (one count interval's
  share, each way, and the blend); and the same rows for the classifier, with
  ``cls.classification_head`` (``model`` = "cls").

Measures (the README's profiling paragraph says the same):

- ``macs``: fvcore's convention (1 MAC = 1 flop), with the handles of
  :mod:`sci_edge.profiling.flops` (binary filters counted per +-1 tap);
  ``flops`` = 2 x macs. ``other_ops`` and ``popcount_ops`` as there.
- ``params``: parameters of the row's modules (``fem.rest`` and
  ``cloud.merge_fusion``: the container's minus the other rows').
- ``peak_activation_bytes``: measured, not estimated: a TorchDispatchMode sees
  every tensor an op returns during the module's forward (torch fp32, CPU,
  batch 1); a storage counts from the op that creates it until its last tensor is
  freed. The row's peak is the largest sum of such live storages, minus those
  live when the module was entered: so intermediates and the output, not the
  inputs or the weights. For the "rest" rows it is taken while no other row's
  module runs (the banks' outputs, which the rest reads, are included).
- ``bytes_moved``: an estimate, each tensor read or written once: weights
  (fp32) + inputs + outputs + 2 x intermediate activations (every storage the
  forward allocates, except the output: written once, read once). For the
  "rest" rows, the container's minus the other rows'.
- ``latency_s``: {"torch_fp32": median seconds over ``repeats`` timed runs,
  after the memory pass and, with repeats > 1, one warm-up run}, forward hooks timing each module's calls (summed over
  calls, e.g. the K calls of each AFR branch) with ``time.perf_counter``, at
  torch's default thread count; "rest" rows are the container's time minus the
  other rows'. The cloud side runs ``SCIModel.analyse`` (the plain path that
  :func:`sci_flops` counts: every feature encoded for this output; the streaming
  path shares encodings between outputs and batches the AFR sampling).
"""
from __future__ import annotations

import statistics
import time
import weakref
from dataclasses import asdict, dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .flops import OpCount, _Analyse, cloud_input, fem_input

# The paper's figures (Feng et al. 2025, Tables IX and X), GFLOPs by fvcore's
# convention (1 MAC = 1 flop), for reference in reports.
PAPER_GFLOPS = {
    "source": "Feng et al. 2025, Tables IX and X",
    "unit": "GFLOPs (fvcore convention: 1 MAC = 1 flop)",
    "FEM": 74.79,
    "P-encoder": 96.13,
    "I-encoder": 79.76,
    "SpikeCodec I-encoder": 679.4,
}

SIDES = ("end", "cloud")
PER = {"end": "feature frame", "cloud": "output"}


@dataclass(frozen=True)
class ModuleRow:
    name: str
    side: str                    # "end" | "cloud"
    macs: int                    # fvcore convention, 1 MAC = 1 flop
    flops: int                   # 2 x macs
    params: int
    peak_activation_bytes: int
    latency_s: dict              # backend -> median seconds
    bytes_moved: int
    per: str                     # "feature frame" | "output"
    model: str = "recon"         # which shipped model the row is from
    other_ops: int = 0           # elementwise, softmax, sampling weights (1 op each)
    popcount_ops: int = 0        # the edge kernel's integer ops (binary layer only)
    modules: tuple = ()          # the torch submodules it covers

    def to_dict(self) -> dict:
        d = asdict(self)
        d["modules"] = list(self.modules)
        return d


def total_row(name: str, side: str, rows, model: str = "recon") -> ModuleRow:
    """A ModuleRow-like sum of ``rows`` (peak activation: the largest row's, as the
    rows run one after another)."""
    rows = list(rows)
    backends = sorted({b for r in rows for b in r.latency_s})
    lat = {b: sum(r.latency_s.get(b, 0.0) for r in rows) for b in backends
           if all(b in r.latency_s for r in rows)}
    return ModuleRow(name=name, side=side, macs=sum(r.macs for r in rows),
                     flops=sum(r.flops for r in rows), params=sum(r.params for r in rows),
                     peak_activation_bytes=max((r.peak_activation_bytes for r in rows), default=0),
                     latency_s=lat, bytes_moved=sum(r.bytes_moved for r in rows),
                     per=PER[side], model=model, other_ops=sum(r.other_ops for r in rows),
                     popcount_ops=sum(r.popcount_ops for r in rows),
                     modules=tuple(m for r in rows for m in r.modules))


@dataclass
class ModelProfile:
    height: int
    width: int
    rows: list = field(default_factory=list)
    repeats: int = 0
    threads: int = 0
    features_per_output: int = 0

    def side_rows(self, side: str, model: str | None = None) -> list:
        return [r for r in self.rows if r.side == side and (model is None or r.model == model)]

    @property
    def end_side(self) -> ModuleRow:
        """Sum of the rows with side == "end" (per feature frame)."""
        return total_row("end_side", "end", self.side_rows("end"))

    @property
    def cloud_side(self) -> ModuleRow:
        """Sum of the reconstruction model's cloud rows and the codec's decoding rows
        (per output)."""
        return total_row("cloud_side", "cloud",
                         self.side_rows("cloud", "recon") + self.side_rows("cloud", "codec"))

    @property
    def cls_cloud_side(self) -> ModuleRow:
        """Sum of the classifier's cloud rows and the codec's decoding rows (per output)."""
        return total_row("cls_cloud_side", "cloud",
                         self.side_rows("cloud", "cls") + self.side_rows("cloud", "codec"),
                         "cls")

    def to_dict(self) -> dict:
        return {"height": self.height, "width": self.width, "repeats": self.repeats,
                "threads": self.threads, "features_per_output": self.features_per_output,
                "units": {"macs": "MAC (fvcore convention: 1 MAC = 1 flop)",
                          "flops": "FLOP (2 per MAC)", "peak_activation_bytes": "bytes",
                          "bytes_moved": "bytes", "latency_s": "seconds"},
                "rows": [r.to_dict() for r in self.rows],
                "end_side": self.end_side.to_dict(),
                "cloud_side": self.cloud_side.to_dict(),
                "cls_cloud_side": self.cls_cloud_side.to_dict(),
                "paper": dict(PAPER_GFLOPS)}


# --- dynamic measurements ------------------------------------------------------------------
class _Region:
    def __init__(self, name: str, rest: bool = False):
        self.name, self.rest = name, rest
        self.peak = 0               # bytes, max over calls
        self.alloc = 0              # bytes allocated in all calls
        self.io = 0                 # bytes of inputs + outputs, all calls
        self.out = 0                # bytes of outputs, all calls
        self.time = 0.0
        self._start_live = 0
        self._t0 = 0.0


class _Tracker(TorchDispatchMode):
    """Live tensor storage (bytes) created under the mode, and the regions
    (modules) being run."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.refs: dict[int, list] = {}
        self.stack: list[_Region] = []

    def _release(self, key: int) -> None:
        entry = self.refs.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            st = t.untyped_storage()
            key = st.data_ptr()
            if key == 0:
                continue
            if key in self.refs:
                self.refs[key][0] += 1
            else:
                nbytes = st.nbytes()
                self.refs[key] = [1, nbytes]
                self.live += nbytes
                for r in self.stack:
                    r.alloc += nbytes
            weakref.finalize(t, self._release, key)
        top = self.stack[-1] if self.stack else None
        for r in self.stack:
            if r.rest and r is not top:
                continue
            r.peak = max(r.peak, self.live - r._start_live)
        return out


def _nbytes(x) -> int:
    return sum(t.numel() * t.element_size() for t in tree_leaves(x) if isinstance(t, torch.Tensor))


def _attach(modules: dict, regions: dict, tracker: _Tracker | None):
    """Hooks on ``modules`` (region name -> list of modules)."""
    handles = []
    for name, mods in modules.items():
        reg = regions[name]
        for m in mods:
            def pre(mod, args, reg=reg):
                reg.io += _nbytes(args)
                if tracker is not None:
                    reg._start_live = tracker.live
                    tracker.stack.append(reg)
                reg._t0 = time.perf_counter()

            def post(mod, args, out, reg=reg):
                reg.time += time.perf_counter() - reg._t0
                n = _nbytes(out)
                reg.io += n
                reg.out += n
                if tracker is not None and tracker.stack and tracker.stack[-1] is reg:
                    tracker.stack.pop()
            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    return handles


def _measure(root: torch.nn.Module, inputs: tuple, parts: dict, rest: str, container,
             repeats: int, latency: bool) -> dict:
    """name -> {"peak", "bytes", "latency"} for ``parts`` (name -> modules) and the
    ``rest`` region (``container`` minus the parts)."""
    modules = dict(parts)
    modules[rest] = [container]

    def fresh():
        return {n: _Region(n, rest=(n == rest)) for n in modules}

    # memory (and bytes) pass
    regions = fresh()
    tracker = _Tracker()
    hs = _attach(modules, regions, tracker)
    try:
        with torch.no_grad(), tracker:
            root(*inputs)
    finally:
        for h in hs:
            h.remove()
    mem = regions
    times: dict[str, list] = {n: [] for n in modules}
    if latency:
        if repeats > 1:
            with torch.no_grad():
                root(*inputs)                # warm-up (the memory pass warmed it once)
        for _ in range(max(1, repeats)):
            regions = fresh()
            hs = _attach(modules, regions, None)
            try:
                with torch.no_grad():
                    root(*inputs)
            finally:
                for h in hs:
                    h.remove()
            for n, r in regions.items():
                times[n].append(r.time)
    out = {}
    for n, r in mem.items():
        moved = r.io + 2 * max(r.alloc - r.out, 0)
        out[n] = {"peak": r.peak, "moved": moved,
                  "times": times[n]}
    # the rest: the container's minus the parts'
    part_names = [n for n in modules if n != rest]
    out[rest]["moved"] = max(out[rest]["moved"] - sum(out[n]["moved"] for n in part_names), 0)
    if latency:
        out[rest]["times"] = [max(t - sum(out[n]["times"][i] for n in part_names), 0.0)
                              for i, t in enumerate(out[rest]["times"])]
    return out


def _params(mods) -> int:
    seen, n = set(), 0
    for m in mods:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
    return n


def _rows(side: str, model_name: str, root, inputs, oc: OpCount, prefix: str, parts: dict,
          rest: str, container, rest_scope: str, repeats: int, latency: bool,
          param_bytes: int = 4, param_modules=None) -> list:
    """Rows for ``parts`` (name -> [(fvcore scope, module)]) and ``rest``
    (``rest_scope`` minus the parts)."""
    mods = {n: [m for _, m in v] for n, v in parts.items()}
    dyn = _measure(root, inputs, mods, rest, container, repeats, latency)
    rows = []
    part_sums = {}
    for n, v in parts.items():
        s = {"macs": 0, "other_ops": 0, "popcount_ops": 0}
        for scope, _ in v:
            sm = oc.summary(prefix + scope)
            for k in s:
                s[k] += sm[k]
        part_sums[n] = s
    whole = oc.summary(rest_scope)
    rest_sum = {k: whole[k] - sum(p[k] for p in part_sums.values())
                for k in ("macs", "other_ops", "popcount_ops")}
    all_params = _params(param_modules or [container])
    counts = dict(part_sums)
    counts[rest] = rest_sum
    for n in list(parts) + [rest]:
        p = _params(mods[n]) if n != rest else all_params - sum(_params(mods[k]) for k in mods)
        d = dyn[n]
        lat = {"torch_fp32": statistics.median(d["times"])} if latency and d["times"] else {}
        moved = d["moved"] + param_bytes * p
        mod_names = tuple(s for s, _ in parts[n]) if n != rest else (rest_scope or "<root>",)
        rows.append(ModuleRow(name=n, side=side, macs=int(counts[n]["macs"]),
                              flops=2 * int(counts[n]["macs"]), params=int(p),
                              peak_activation_bytes=int(d["peak"]), latency_s=lat,
                              bytes_moved=int(moved), per=PER[side], model=model_name,
                              other_ops=int(counts[n]["other_ops"]),
                              popcount_ops=int(counts[n]["popcount_ops"]), modules=mod_names))
    order = list(parts) + [rest]
    return sorted(rows, key=lambda r: order.index(r.name))


def fem_rows(model, height: int, width: int, *, repeats: int = 3, latency: bool = True,
             model_name: str = "recon") -> list:
    """End-side rows of ``model`` (an SCIModel) per feature frame."""
    fem = model.fem.eval()
    x = fem_input(height, width)
    oc = OpCount(fem, x)
    parts = {"fem.popcount": [("dorsal", fem.dorsal), ("ventral", fem.ventral)]}
    return _rows("end", model_name, fem, (x,), oc, "", parts, "fem.rest", fem, "",
                 repeats, latency)


def cloud_rows(model, height: int, width: int, *, repeats: int = 3, latency: bool = True,
               model_name: str = "recon") -> list:
    """Cloud-side rows of ``model`` per output (2K+1 features in)."""
    root = _Analyse(model).eval()
    x = cloud_input(model, height, width)
    oc = OpCount(root, x)
    a = model.analysis
    tag = "cloud" if model_name == "recon" else model_name
    head = f"{tag}.recon_head" if model.config.task == "recon" else f"{tag}.classification_head"
    parts = {f"{tag}.encoder": [("model.analysis.encode", a.encode)],
             f"{tag}.flow": [("model.analysis.flow", a.flow)],
             f"{tag}.afr": [("model.analysis.afr_prev", a.afr_prev),
                            ("model.analysis.afr_next", a.afr_next)],
             head: [("model.head", model.head)]}
    rows = _rows("cloud", model_name, root, (x,), oc, "", parts, f"{tag}.merge_fusion", root,
                 "", repeats, latency, param_modules=[model.analysis, model.head])
    order = [f"{tag}.propagation", f"{tag}.rate", f"{tag}.encoder", f"{tag}.flow",
             f"{tag}.afr", f"{tag}.merge_fusion", head]
    if getattr(model, "propagation", None) is not None:
        step = _PropagationStep(model.propagation).eval()
        px = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(2))
        rows += _rows("cloud", model_name, step, (px,), OpCount(step, px), "", {},
                      f"{tag}.propagation", step, "", repeats, latency)
    if getattr(model, "rate", None) is not None:
        step = _RateStep(model.rate).eval()
        px = torch.rand(1, 2, height, width, generator=torch.Generator().manual_seed(3))
        rows += _rows("cloud", model_name, step, (px,), OpCount(step, px), "", {},
                      f"{tag}.rate", step, "", repeats, latency)
    return sorted(rows, key=lambda r: order.index(r.name))


class _PropagationStep(torch.nn.Module):
    """One feature's share of the long-reach propagation (each feature passes the
    gate once per direction, then the merge): the cost per output at the feature
    rate, whatever the stream's length. Input (1, 3, H, W): the states carried
    from the previous and the next feature, and the feature."""

    def __init__(self, propagation):
        super().__init__()
        self.propagation = propagation

    def forward(self, x):
        from ..models.cloud.propagate import merge

        before, f, after = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        count = torch.full_like(f, 4.0)
        return merge(f, *self.propagation.step(f, before, count, float("inf")),
                     *self.propagation.step(f, after, count, float("inf")))


class _RateStep(torch.nn.Module):
    """One output's share of the long-reach rate integration at one interval per
    output (each interval's counts pass the gate once per direction), plus the
    blend. Input (1, 2, H, W): the interval's counts and the windowed output."""

    def __init__(self, rate):
        super().__init__()
        self.rate = rate

    def forward(self, x):
        from ..models.cloud.rate import RECENT, RateState

        counts, base = x[:, 0:1], x[:, 1:2]
        k = len(RECENT)
        carried = RateState(base, torch.full_like(base, 4.0), counts.expand(-1, k, -1, -1),
                            torch.full_like(counts, 2.0).expand(-1, k, -1, -1))
        s = 5.0
        fwd = self.rate.step(counts, carried, s, float("inf"))
        bwd = self.rate.step(counts, carried, s, float("inf"))
        return self.rate.blend(base, (fwd.mean + bwd.mean) / 2, fwd.count + bwd.count, s)


def profile_modules(height: int, width: int, *, repeats: int = 3, latency: bool = True,
                    recon=None, cls=None, codec=None) -> ModelProfile:
    """Per-module profile at ``height`` x ``width`` (multiples of 4 avoid padding)
    of the reconstruction model ``recon`` and the classifier ``cls`` (SCIModels;
    default: the shipped ones; ``False`` leaves one out) and the feature codec
    ``codec`` (a CodedSCI; default the shipped one; ``False`` leaves it out: see
    :mod:`~sci_edge.profiling.codec_rows`). End-side rows come from ``recon`` (the
    classifier's FEM has the same architecture: same counts) unless it is left out."""
    from ..models.pretrained import load_pretrained, load_pretrained_codec

    if recon is None:
        recon = load_pretrained("recon")
    if cls is None:
        cls = load_pretrained("cls")
    if codec is None:
        codec = load_pretrained_codec()
    models = [(n, m) for n, m in (("recon", recon), ("cls", cls)) if m is not False]
    if not models:
        raise ValueError("nothing to profile: both models left out")
    rows = fem_rows(models[0][1], height, width, repeats=repeats, latency=latency,
                    model_name=models[0][0])
    for n, m in models:
        rows += cloud_rows(m, height, width, repeats=repeats, latency=latency, model_name=n)
    if codec is not False:
        from .codec_rows import codec_rows

        coded = codec_rows(codec, height, width, features_per_output=models[0][1].num_features,
                           repeats=repeats, latency=latency)
        # in pipeline order: FEM, encoder, entropy coding | decoding, analysis, heads
        end = [r for r in rows if r.side == "end"]
        rows = end + [r for r in coded if r.side == "end"] + \
            [r for r in coded if r.side == "cloud"] + [r for r in rows if r.side == "cloud"]
    return ModelProfile(height=height, width=width, rows=rows, repeats=repeats,
                        threads=torch.get_num_threads(),
                        features_per_output=models[0][1].num_features)


def format_table(profile: ModelProfile) -> str:
    """A plain-text table of the rows and the side totals."""
    head = (f"{'row':28s} {'side':5s} {'GMAC':>9s} {'params':>9s} {'peak MB':>8s} "
            f"{'moved MB':>9s} {'ms fp32':>9s}  per")
    lines = [head]
    rows = list(profile.rows) + [profile.end_side, profile.cloud_side]
    if profile.side_rows("cloud", "cls"):
        rows.append(profile.cls_cloud_side)
    for r in rows:
        ms = r.latency_s.get("torch_fp32")
        lines.append(f"{r.name:28s} {r.side:5s} {r.macs / 1e9:9.4f} {r.params:9d} "
                     f"{r.peak_activation_bytes / 2**20:8.2f} {r.bytes_moved / 2**20:9.2f} "
                     f"{'' if ms is None else f'{ms * 1e3:9.2f}':>9s}  {r.per}")
    return "\n".join(lines)


__all__ = ["ModuleRow", "ModelProfile", "PAPER_GFLOPS", "profile_modules", "fem_rows",
           "cloud_rows", "format_table", "total_row"]
