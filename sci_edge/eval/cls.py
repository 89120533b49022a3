"""S-MNIST classification accuracy and a per-class report, also with the FEM run
as the device runs it (:func:`edge_fems`: popcount kernel + fp32 or INT8 graph)."""
from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import asdict
from typing import Sequence

import numpy as np

from ..edge.encoder import ENCODER_PRECISIONS as EDGE_PRECISIONS
from ..errors import DataError


def edge_fems(model, precisions: Sequence[str], *, calibration=None,
              threads: int | None = None) -> dict:
    """precision -> :class:`~sci_edge.edge.features.EdgeFEM` of ``model``'s FEM:
    its ``fem_tail`` exported to ONNX (checked against torch) and, for "int8",
    quantised as ``sci-edge export int8`` does, calibrated on ``calibration``
    (spike arrays or (spikes, gain) pairs; default
    :func:`~sci_edge.export.quantize.calibration_spikes`: simulated scenes and
    the REDS pairs, nothing of S-MNIST). The files live only until loaded."""
    from ..edge.features import EdgeFEM
    from ..export.onnx_export import export_edge_onnx
    from ..export.quantize import calibration_inputs, calibration_spikes, quantize_edge

    bad = [p for p in precisions if p not in EDGE_PRECISIONS]
    if bad:
        raise DataError(f"edge precisions are {' and '.join(EDGE_PRECISIONS)}, got {bad[0]!r}")
    out = {}
    with tempfile.TemporaryDirectory(prefix="sci_edge_fem_") as tmp, \
            contextlib.redirect_stdout(io.StringIO()):
        report = export_edge_onnx(model, tmp, size=(32, 32), graphs=["fem_tail"])
        paths = {"fp32": report.graphs["fem_tail"].path}
        if "int8" in precisions:
            spikes = calibration_spikes() if calibration is None else list(calibration)
            feeds = {"fem_tail": calibration_inputs(model, spikes, "fem_tail")}
            paths["int8"] = quantize_edge({"fem_tail": paths["fp32"]}, feeds, flavours=("cpu",),
                                          sources=report.int8_sources)["fem_tail"]["cpu"]
        bank = model.fem.export_filter_bank()
        for p in precisions:
            out[p] = EdgeFEM(bank, paths[p], threads=threads)
    return out


def _edge_logits(model, fem, spikes: np.ndarray) -> np.ndarray:
    """Logits of ``model`` on (B, T, H, W) spikes with features from ``fem`` (an
    EdgeFEM), at the middle time as ``model.classify`` takes it."""
    from ..models.end.fem import HALF_WINDOW
    from ..stream import FeatureStream

    T = spikes.shape[1]
    tt = T // 2
    times = sorted(set(model.output_times(tt, T)))
    windows = [s[c - HALF_WINDOW:c + HALF_WINDOW + 1] for s in spikes for c in times]
    feats = fem(windows).reshape(len(spikes), len(times), *spikes.shape[2:])
    streams = [FeatureStream(times=np.array(times), features=f, num_steps=T) for f in feats]
    return model.classify_stream(streams, tt)


def evaluate_cls(model, *, root=None, limit: int | None = None, batch: int = 64,
                 seed: int = 0, gain=0.8, speed=(0.05, 0.15), size: int = 32,
                 noise=None, progress=None, edge: Sequence[str] = (),
                 calibration=None) -> dict:
    """Accuracy on the S-MNIST test split (2000 digits never used in training).

    The defaults are the reference setting (README's figure); ``gain``, ``speed``
    (px per step, a number or a range), ``size`` (canvas, >= 28) and ``noise``
    (a NoiseModel) probe how far the classifier carries to other cameras.
    ``progress``: called with the number of digits just classified, batch by batch
    (e.g. a tqdm bar's ``update``). ``edge``: precisions ("fp32", "int8") of the
    device FEM (:func:`edge_fems`) classified on the same digits by the same cloud
    side (INT8 calibrated on ``calibration``, see :func:`edge_fems`); under
    ``edge`` in the result: their accuracy, the drop from torch's in points, and
    how often their prediction equals torch's."""
    from ..data.mnist import SMNIST

    edge = tuple(edge)
    fems = edge_fems(model, edge, calibration=calibration) if edge else {}
    span = model.config.span
    ds = SMNIST("test", root=root, num_steps=span, size=size, seed=seed, alpha=gain,
                speed=speed, noise=noise)
    n = len(ds) if limit is None else min(limit, len(ds))
    classes = model.config.num_classes
    confusion = np.zeros((classes, classes), np.int64)
    edge_correct = dict.fromkeys(fems, 0)
    edge_same = dict.fromkeys(fems, 0)
    for start in range(0, n, batch):
        items = [ds[i] for i in range(start, min(n, start + batch))]
        spikes = np.stack([s for s, _ in items])
        labels = np.array([y for _, y in items])
        pred = model.classify(spikes).argmax(axis=1)
        np.add.at(confusion, (labels, pred), 1)
        for p, fem in fems.items():
            ep = _edge_logits(model, fem, spikes).argmax(axis=1)
            edge_correct[p] += int((ep == labels).sum())
            edge_same[p] += int((ep == pred).sum())
        if progress is not None:
            progress(len(items))
    correct = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    per_class = {}
    for c in range(classes):
        precision = correct[c] / predicted[c] if predicted[c] else 0.0
        recall = correct[c] / support[c] if support[c] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[str(c)] = {"precision": float(precision), "recall": float(recall),
                             "f1": float(f1), "support": int(support[c])}
    setting = {"gain": ds.alpha_range[0] if ds.alpha is not None else list(ds.alpha_range),
               "speed": list(ds.speed), "size": ds.size, "num_steps": span,
               "noise": None if noise is None else {k: v if v is None or isinstance(v, (int, float))
                                                    else str(v) for k, v in asdict(noise).items()}}
    total = int(confusion.sum())
    accuracy = float(correct.sum() / max(1, total))
    doc = {"data": "smnist", "split": "test", "setting": setting, "samples": total,
           "accuracy": accuracy, "per_class": per_class, "confusion": confusion.tolist()}
    if fems:
        doc["edge"] = {p: {"accuracy": edge_correct[p] / max(1, total),
                           "drop_points": 100.0 * (accuracy - edge_correct[p] / max(1, total)),
                           "same_prediction": edge_same[p] / max(1, total)} for p in fems}
    return doc
