"""S-MNIST classification accuracy and a per-class report."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np


def evaluate_cls(model, *, root=None, limit: int | None = None, batch: int = 64,
                 seed: int = 0, gain=0.8, speed=(0.05, 0.15), size: int = 32,
                 noise=None, progress=None) -> dict:
    """Accuracy on the S-MNIST test split (2000 digits never used in training).

    The defaults are the reference setting (README's figure); ``gain``, ``speed``
    (px per step, a number or a range), ``size`` (canvas, >= 28) and ``noise``
    (a NoiseModel) probe how far the classifier carries to other cameras.
    ``progress``: called with the number of digits just classified, batch by batch
    (e.g. a tqdm bar's ``update``)."""
    from ..data.mnist import SMNIST

    span = model.config.span
    ds = SMNIST("test", root=root, num_steps=span, size=size, seed=seed, alpha=gain,
                speed=speed, noise=noise)
    n = len(ds) if limit is None else min(limit, len(ds))
    classes = model.config.num_classes
    confusion = np.zeros((classes, classes), np.int64)
    for start in range(0, n, batch):
        items = [ds[i] for i in range(start, min(n, start + batch))]
        spikes = np.stack([s for s, _ in items])
        labels = np.array([y for _, y in items])
        pred = model.classify(spikes).argmax(axis=1)
        np.add.at(confusion, (labels, pred), 1)
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
    return {"data": "smnist", "split": "test", "setting": setting,
            "samples": int(confusion.sum()),
            "accuracy": float(correct.sum() / max(1, confusion.sum())),
            "per_class": per_class, "confusion": confusion.tolist()}
