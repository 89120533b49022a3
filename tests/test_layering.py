"""Layering: torch-free parts import without torch; inference never imports training."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "sci_edge"

# What the edge device runs: importable where torch is not installed.
TORCH_FREE = ["sci_edge", "sci_edge.io", "sci_edge.sim", "sci_edge.recon", "sci_edge.edge",
              "sci_edge.stream", "sci_edge.errors", "sci_edge._deps", "sci_edge.io.source",
              "sci_edge.io.stats", "sci_edge.config", "sci_edge.profiling",
              "sci_edge.profiling.devices", "sci_edge.profiling.estimate",
              "sci_edge.profiling.onnx_count", "sci_edge.profiling.power",
              "sci_edge.profiling.runtimes", "sci_edge.codec", "sci_edge.codec.bitstream",
              "sci_edge.codec.rans", "sci_edge.codec.entropy", "sci_edge.codec.intnet",
              "sci_edge.codec.skip", "sci_edge.codec.quant",
              "sci_edge.eval.baselines", "sci_edge.eval.bdrate", "sci_edge.edge.backends",
              "sci_edge.export", "sci_edge.export.formats", "sci_edge.export.trt",
              "sci_edge.export.quantize", "sci_edge.edge.bundle", "sci_edge.edge.encoder",
              "sci_edge.edge.cli_encode"]

_BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'fvcore', 'torchvision'):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
sys.meta_path.insert(0, Block())
"""


@pytest.mark.parametrize("module", TORCH_FREE)
def test_imports_with_torch_absent(module):
    if module == "sci_edge.config" and not (PKG / "config.py").exists():
        pytest.skip("no sci_edge.config")
    code = _BLOCK_TORCH + f"""
import {module}
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fvcore'))
assert not bad, bad
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


def test_blocked_torch_really_fails():
    res = subprocess.run([sys.executable, "-c", _BLOCK_TORCH + "import torch"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "blocked" in res.stderr


def test_a_missing_torch_names_the_train_extra():
    code = _BLOCK_TORCH + """
from sci_edge._deps import require
from sci_edge.errors import MissingDependencyError
try:
    require("torch", "the learned models")
except MissingDependencyError as exc:
    print(exc)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "sci_edge[train]" in res.stdout and "torch" in res.stdout


def _imports(path: Path) -> list[str]:
    """Absolute names of the sci_edge modules a file imports (relative ones resolved)."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append(name)
            out += [f"{name}.{a.name}" for a in node.names]
    return out


# Inference parts (end side, cloud side, I/O, the stream) never import training.
@pytest.mark.parametrize("part", ["models", "io", "sim", "recon", "edge", "codec", "export",
                                  "stream.py"])
def test_inference_never_imports_training(part):
    files = [PKG / part] if part.endswith(".py") else sorted((PKG / part).rglob("*.py"))
    bad = [(f.relative_to(PKG), name) for f in files for name in _imports(f)
           if name == "sci_edge.train" or name.startswith("sci_edge.train.")]
    assert not bad, bad


def test_codec_is_torch_free_source():
    """sci_edge.codec is what the device runs: no file in it imports torch or models."""
    bad = [(f.relative_to(PKG), name) for f in sorted((PKG / "codec").rglob("*.py"))
           for name in _imports(f)
           if name.split(".")[0] == "torch" or name.startswith("sci_edge.models")]
    assert not bad, bad
