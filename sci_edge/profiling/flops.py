"""FLOPs by fvcore's convention: one multiply-accumulate counts as one flop.

The FEM's binarized temporal filters are counted as the dense convolution the
torch layer runs (13 x 64 MACs per pixel); on the device they are popcounts.
"""
from __future__ import annotations

import torch


def count_flops(module: torch.nn.Module, *inputs) -> dict:
    """Total and per-submodule flops of ``module(*inputs)``."""
    from fvcore.nn import FlopCountAnalysis

    module = module.eval()
    with torch.no_grad():
        analysis = FlopCountAnalysis(module, inputs)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        total = analysis.total()
        by_module = {k: v for k, v in analysis.by_module().items() if k and "." not in k}
    return {"flops": int(total), "by_module": {k: int(v) for k, v in by_module.items()}}


class _Analyse(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features):
        return self.model.analyse(features)


def sci_flops(model=None, height: int = 256, width: int = 256) -> dict:
    """FLOPs per feature frame of the end side (FEM) and per output of the
    cloud side (long-term analysis + head) at ``height`` x ``width``."""
    from ..models.end.fem import WINDOW
    from ..models.sci import SCIModel

    model = model or SCIModel()
    window = (torch.rand(1, WINDOW, height, width) < 0.3).float()
    fem = count_flops(model.fem, window)
    features = torch.rand(1, model.num_features, height, width)
    cloud = count_flops(_Analyse(model), features)
    return {"height": height, "width": width, "task": model.config.task,
            "end_side_fem_flops_per_feature_frame": fem["flops"],
            "end_side_fem_gflops": fem["flops"] / 1e9,
            "end_side_by_module": fem["by_module"],
            "cloud_side_flops_per_output": cloud["flops"],
            "cloud_side_gflops": cloud["flops"] / 1e9,
            "features_per_output": model.num_features,
            "fem_parameters": sum(p.numel() for p in model.fem.parameters()),
            "cloud_parameters": sum(p.numel() for n, p in model.named_parameters()
                                    if not n.startswith("fem."))}
