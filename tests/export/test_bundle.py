"""The device bundle: export, manifest, verification on load."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx is not installed (pip install 'sci_edge[export]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
torch = pytest.importorskip("torch")

from sci_edge.edge.bundle import (CODEC, CONFIG, FILTER_BANK, GRAPHS, MANIFEST,  # noqa: E402
                                  README, file_digest, load_bundle)
from sci_edge.errors import CheckpointError, DataError, OutputError  # noqa: E402
from sci_edge.export.bundle import export_bundle  # noqa: E402
from tests.models.codec_fixtures import small_coded  # noqa: E402

from . import scene_spikes  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return small_coded()


@pytest.fixture(scope="module")
def bundle(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "bundle"
    cal = scene_spikes(2, size=(64, 64), num_steps=20, seed=3)
    return export_bundle(model, out, calibration=cal, size=(64, 64))


def _copy(bundle, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(bundle.path, dst)
    return dst


def test_bundle_holds_every_file_and_the_manifest_lists_them(bundle, model):
    root = bundle.path
    names = {f.name for f in root.iterdir()}
    for g in GRAPHS:
        assert {f"{g}.onnx", f"{g}.int8.onnx", f"{g}.trt-int8.onnx"} <= names
    assert {CODEC, FILTER_BANK, CONFIG, README, MANIFEST} <= names
    manifest = json.loads((root / MANIFEST).read_text())
    assert set(manifest["files"]) == names - {MANIFEST}
    for name, entry in manifest["files"].items():
        assert file_digest(root / name) == (entry["sha256"], entry["size"])
    assert bundle.files == manifest["files"]
    # built beside the target and renamed in: nothing left over
    assert [p.name for p in root.parent.iterdir()] == ["bundle"]
    config = json.loads((root / CONFIG).read_text())
    assert config["weights_hash"] == model.codec.weights_hash().hex()
    assert config["precisions"].keys() == {"fp32", "int8", "int8-trt"}
    readme = (root / README).read_text()
    assert 'pip install ".[edge]"' in readme and "sci-edge-encode" in readme
    assert config["weights_hash"] in readme


def test_load_bundle_gives_the_codec_exactly(bundle, model):
    b = load_bundle(bundle.path)
    codec = model.codec
    assert b.model_id == "sci-codec-1" and b.weights_hash == codec.weights_hash()
    assert b.precisions == ("fp32", "int8", "int8-trt")
    with torch.no_grad():
        steps = codec.steps(torch.arange(codec.config.qualities))[:, :, 0, 0].numpy()
    assert b.steps.dtype == np.float32 and np.array_equal(b.steps, steps)
    want = codec.tables.arrays()
    got = {}
    got.update(b.tables.gaussian.arrays("gaussian"))
    got.update(b.tables.hyper.arrays("hyper"))
    got.update(b.tables.synthesis[0].arrays("hs_intra"))
    got.update(b.tables.synthesis[1].arrays("hs_inter"))
    assert want.keys() == got.keys()
    assert all(np.array_equal(want[k], got[k]) for k in want)
    bank = model.sci.fem.export_filter_bank()
    assert np.array_equal(b.filter_bank.pos, bank.pos) and b.window == 13 == 2 * b.half_window + 1
    assert b.graph_path("hyper_inter", "int8").name == "hyper_inter.int8.onnx"


@pytest.mark.parametrize("name", ["encoder_analysis.int8.onnx", CODEC, CONFIG])
def test_an_altered_byte_is_refused_naming_the_file(bundle, tmp_path, name):
    root = _copy(bundle, tmp_path)
    data = bytearray((root / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (root / name).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="altered") as err:
        load_bundle(root)
    assert err.value.path.name == name and name in str(err.value)


def test_a_missing_file_is_refused_naming_it(bundle, tmp_path):
    root = _copy(bundle, tmp_path)
    (root / "fem_tail.onnx").unlink()
    with pytest.raises(CheckpointError, match="fem_tail.onnx: missing"):
        load_bundle(root)
    (root / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="manifest.json: missing"):
        load_bundle(root)
    with pytest.raises(CheckpointError, match="bundle not found"):
        load_bundle(tmp_path / "nowhere")


def test_a_truncated_file_and_a_bad_manifest(bundle, tmp_path):
    root = _copy(bundle, tmp_path)
    (root / FILTER_BANK).write_bytes((root / FILTER_BANK).read_bytes()[:-3])
    with pytest.raises(CheckpointError, match=f"{FILTER_BANK}: altered: .* B, the manifest"):
        load_bundle(root)
    doc = json.loads((root / MANIFEST).read_text())
    doc["files"]["../evil"] = {"sha256": "0" * 64, "size": 1}
    (root / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="bad file name"):
        load_bundle(root)


def test_export_replaces_a_bundle_but_not_other_folders(model, tmp_path):
    out = tmp_path / "b"
    first = export_bundle(model, out, int8=False, size=(32, 32))
    assert first.precisions == ["fp32"] and load_bundle(out).precisions == ("fp32",)
    assert not (out / "fem_tail.int8.onnx").exists()
    export_bundle(model, out, int8=False, size=(32, 32))        # over a bundle: fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a device bundle"):
        export_bundle(model, other, int8=False, size=(32, 32))
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "photos"]


def test_export_needs_a_coded_model_with_tables(model, tmp_path):
    with pytest.raises(DataError, match="CodedSCI"):
        export_bundle(model.codec, tmp_path / "x")
    bare = small_coded()
    bare.codec.tables = None
    with pytest.raises(DataError, match="integer tables"):
        export_bundle(bare, tmp_path / "y")
    assert list(tmp_path.iterdir()) == []
