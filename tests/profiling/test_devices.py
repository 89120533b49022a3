"""Device profiles: the shipped ones load and are consistent; user files; errors."""
import ast
import shutil
from pathlib import Path

import pytest

from sci_edge.errors import ConfigError, DataError
from sci_edge.profiling import devices as D
from sci_edge.profiling.devices import list_devices, load_budget, load_device

SHIPPED = {"orin-nano-4gb", "orin-nano-8gb", "orin-nx-8gb", "orin-nx-16gb", "agx-orin-32gb",
           "agx-orin-64gb", "xavier-nx", "jetson-nano"}


def test_every_module_is_shipped():
    assert SHIPPED <= set(list_devices())
    assert "budget" not in list_devices()


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_profiles_load_and_are_consistent(name):
    d = load_device(name)
    assert d.name == name and d.title and Path(d.path).is_file()
    assert d.modes and all(m.watts > 0 and m.gpu_mhz > 0 for m in d.modes)
    assert all(m.gpu_mhz <= d.peak_gpu_mhz.value for m in d.modes)
    assert d.int8_tops_dense.value <= d.int8_tops_sparse.value
    assert d.fp16_tflops.value >= d.fp32_tflops.value > 0
    for key, number in d.numbers().items():
        assert number.source in d.sources and d.sources[number.source].strip(), key
    assert all(m.source in d.sources for m in d.modes)
    assert d.software.source in d.sources
    # nothing was checked against a primary source: the files must say so
    assert all(not n.confirmed for n in d.numbers().values())
    assert "UNCONFIRMED" in Path(d.path).read_text()
    assert isinstance(d.to_dict()["modes"], list)


def test_headline_orin_tops_are_sparse_and_estimates_use_half():
    d = load_device("orin-nano-8gb")
    assert d.int8_tops_sparse.value == pytest.approx(67)
    assert d.int8_tops_dense.value == pytest.approx(d.int8_tops_sparse.value / 2)
    assert {m.name for m in d.modes} >= {"7W", "15W", "25W", "MAXN_SUPER"}


def test_gridsample_follows_the_tensorrt_version():
    assert not load_device("jetson-nano").software.gridsample         # TensorRT 8.2
    assert load_device("xavier-nx").software.gridsample               # TensorRT 8.5
    assert load_device("orin-nano-8gb").software.gridsample


def test_budget():
    b = load_budget()
    assert b.gflops_per_feature_frame == 10 and b.watts == 10 and b.feature_rate == 210


def test_modes_by_name_any_case():
    d = load_device("orin-nano-8gb")
    assert d.mode("15w").name == "15W"
    assert d.mode("maxn super").name == d.mode("MAXN-SUPER").name == "MAXN_SUPER"
    assert load_device("jetson-nano").mode("maxn").name == "10W"      # an alias
    with pytest.raises(DataError, match=r"no power mode '20W'.*known: 15W, 25W, MAXN_SUPER, 7W"):
        d.mode("20W")


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(DataError, match=r"did you mean 'orin-nano-8gb'.*known: .*xavier-nx"):
        load_device("orin-nano-9gb")


def _user_file(tmp_path, edit=None, name="my.toml"):
    text = (D.profiles_dir() / "orin-nano-8gb.toml").read_text()
    if edit:
        old, new = edit
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_user_device_file_loads_by_path(tmp_path):
    path = _user_file(tmp_path, ('title = "NVIDIA Jetson Orin Nano 8GB"',
                                 'name = "my-board"\ntitle = "my board"'))
    d = load_device(path)
    assert d.name == "my-board" and d.title == "my board"
    assert load_device(str(_user_file(tmp_path, name="other.toml"))).name == "other"


@pytest.mark.parametrize("edit, message", [
    (("watts = 15\n", "watts = -1\n"), "modes[0].watts: must be > 0.0, got -1"),
    (("watts = 15\n", "wats = 15\n"), "modes[0].wats: unknown key (did you mean 'watts'?)"),
    (('memory_gb            = { value = 8, source = "ds"',
      'memory_gb            = { value = 8, source = "dss"'),
     "memory_gb.source: unknown source 'dss'"),
    (("int8_tops_dense      = { value = 33.5", "int8_tops_dense      = { value = 80"),
     "int8_tops_dense: must be <= int8_tops_sparse (67)"),
    (("cuda_cores           = { value = 1024, source = \"ds\", confirmed = false }\n", ""),
     "cuda_cores: missing (required)"),
    (("tensorrt = \"10.3\"", "tensorrt = \"8.2\""), "software.gridsample: TensorRT 8.2 has no"),
    (("gpu_mhz = 612\n", "gpu_mhz = 2000\n"), "modes[0].gpu_mhz: must be <= peak_gpu_mhz"),
    (("[[modes]]\nname = \"25W\"", "[[modes]]\nname = \"15w\""), "modes[1].name: '15w' already"),
    (("cuda_cores           = { value = 1024,", "cuda_cores           = { value = \"a lot\","),
     "cuda_cores.value: must be a number"),
])
def test_a_broken_device_file_is_one_line_naming_file_and_key(tmp_path, edit, message):
    path = _user_file(tmp_path, edit)
    with pytest.raises(ConfigError) as info:
        load_device(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: "), text
    assert message in text, text


def test_malformed_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("title = \n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_device(bad)
    with pytest.raises(ConfigError, match="nope.toml: config not found"):
        load_device(tmp_path / "nope.toml")


def test_a_broken_budget(tmp_path):
    p = tmp_path / "b.toml"
    p.write_text("watts = 0\n")
    with pytest.raises(ConfigError, match=r"b.toml: watts: must be > 0.0, got 0"):
        load_budget(p)


def test_the_package_folder_is_looked_in_first(tmp_path, monkeypatch):
    pkg = tmp_path / "profiles"
    pkg.mkdir()
    shutil.copy(D.CHECKOUT_PROFILES / "xavier-nx.toml", pkg / "xavier-nx.toml")
    monkeypatch.setattr(D, "PACKAGE_PROFILES", pkg)
    assert D.profiles_dir() == pkg and list_devices() == ["xavier-nx"]
    monkeypatch.setattr(D, "PACKAGE_PROFILES", tmp_path / "absent")
    assert D.profiles_dir() == D.CHECKOUT_PROFILES


@pytest.mark.parametrize("module", ["devices.py", "estimate.py"])
def test_torch_free(module):
    tree = ast.parse((Path(D.__file__).parent / module).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert not names & {"torch", "fvcore", "numpy"}
