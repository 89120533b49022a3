"""Binarized temporal filters: the popcount kernel vs a torch fp32 convolution.

Both compute the FEM's whole first layer (dorsal + ventral banks, 64 filters
over a 13-frame window) at one feature time; the results are checked to be
bit-identical. The kernel reads time-packed words (on the device the camera
stream is kept in that form: one shift-in per pixel and step); the time it
takes to pack them from 0/1 frames is reported too."""
from __future__ import annotations

import platform

import numpy as np

from .._threads import resolve_threads
from ._timing import best_of




def bench_tfilter(height: int = 256, width: int = 256, repeats: int = 20,
                  num_threads: int | None = None, seed: int = 0) -> dict:
    try:
        import torch
        from torch.nn import functional as F
    except ImportError as exc:  # the comparison needs the torch layer
        raise RuntimeError("bench tfilter compares with torch: install the 'train' extra") from exc
    from ..edge.tfilter import kernel_path, kernel_paths, pack_time
    from ..models.end.fem import FEM, WINDOW

    threads = resolve_threads(num_threads)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    fem = FEM().eval()
    bank = fem.export_filter_bank()
    rng = np.random.default_rng(seed)
    spikes = (rng.random((WINDOW, height, width)) < 0.3).astype(np.uint8)
    words = pack_time(spikes, num_threads=threads)
    out = np.empty((bank.channels, height, width), np.float32)

    x = torch.from_numpy(spikes).float()[None]
    with torch.no_grad():
        wd, ad = fem.dorsal.dense_weight()
        wv, av = fem.ventral.dense_weight()
        weight = torch.cat([wd, wv])[:, :, None, None].contiguous()
        alpha = torch.cat([ad, av])[None, :, None, None]
        bias = torch.cat([fem.dorsal.bias, fem.ventral.bias])[None, :, None, None]

        def torch_layer():
            y = F.conv2d(x, weight) * alpha
            return y + bias

        # The same layer as one matrix product into a preallocated output, scaled in
        # place: the kernel writes into a preallocated array too, while the conv
        # allocates 16.8 MB per call (whose page faults make its time vary between
        # processes). The speed-ups are also given against the faster of the two.
        w2d, x2d = weight.view(weight.shape[0], -1), x.view(x.shape[1], -1)
        a1d, b1d = alpha.view(-1, 1), bias.view(-1, 1)
        buf = torch.empty(w2d.shape[0], x2d.shape[1])

        def torch_inplace_layer():
            torch.mm(w2d, x2d, out=buf)
            return buf.mul_(a1d).add_(b1d)

        ref = torch_layer()[0].numpy()
        ref_dots = F.conv2d(x, weight)[0].numpy()
        inplace_exact = bool(np.array_equal(torch_inplace_layer().view(ref.shape).numpy(), ref))
        t_torch = best_of(repeats, torch_layer)
        t_torch_conv = best_of(repeats, lambda: F.conv2d(x, weight))
        t_torch_inplace = best_of(repeats, torch_inplace_layer)
    dots = np.empty((bank.channels, height, width), np.int8)
    bank.apply_words(words, out=out, num_threads=threads)
    bank.dots_words(words, out=dots, num_threads=threads)
    exact = bool(np.array_equal(out, ref)) and bool(np.array_equal(dots, ref_dots))
    for path in kernel_paths()[1:]:
        exact = exact and bool(np.array_equal(bank.apply_words(words, path=path), ref))
    t_kernel_int8 = best_of(repeats, lambda: bank.dots_words(words, out=dots, num_threads=threads))
    t_pack = best_of(repeats, lambda: pack_time(spikes, num_threads=threads))
    # every loop this machine has (the first is the default), e.g. what a CPU
    # without AVX-512 would run
    t_paths = {path: best_of(repeats, lambda p=path: bank.apply_words(
        words, out=out, num_threads=threads, path=p)) for path in kernel_paths()}
    t_kernel = t_paths[kernel_path()]
    return {
        "benchmark": "tfilter", "height": height, "width": width, "window": WINDOW,
        "filters": bank.channels, "threads": threads, "machine": platform.machine(),
        "kernel_path": kernel_path(),
        "torch_layer_s": t_torch, "torch_conv_s": t_torch_conv,
        "kernel_float_s": t_kernel,
        "kernel_float_by_path_s": t_paths,
        "kernel_int8_s": t_kernel_int8, "pack_time_s": t_pack,
        "speedup": t_torch / t_kernel,
        "speedup_int8_vs_conv": t_torch_conv / t_kernel_int8,
        "speedup_including_packing": t_torch / (t_kernel + t_pack),
        "speedup_by_path": {p: t_torch / t for p, t in t_paths.items()},
        "torch_inplace_layer_s": t_torch_inplace,
        "speedup_vs_fastest_torch": min(t_torch, t_torch_inplace) / t_kernel,
        "speedup_vs_fastest_torch_by_path": {p: min(t_torch, t_torch_inplace) / t
                                             for p, t in t_paths.items()},
        "bit_exact_vs_torch": exact and inplace_exact,
    }
