"""sci_edge.config: the generic, torch-free TOML loader."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from sci_edge.config import (FieldError, apply_overrides, build, check_fields, find, load,
                             parse_set, parse_sets, read_toml)
from sci_edge.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    neighbors: int = field(default=2, metadata={"min": 1})
    prob: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    mode: str = field(default="a", metadata={"choices": ("a", "b")})

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    note: str | None = None
    size: tuple[int, int] = field(default=(4, 4), metadata={"min": 1})
    range: tuple[float, float] = (0.0, 1.0)
    tags: tuple[str, ...] = ("t",)
    flag: bool = False
    inner: Inner = field(default_factory=Inner)
    extra: dict = field(default_factory=dict)       # untyped on purpose

    def __post_init__(self):
        if self.range[0] > self.range[1]:
            raise FieldError("range", "low must be <= high")
        if self.name == "boom":
            raise ValueError("name may not be boom")


def _file(tmp_path, text, name="cfg.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_build_types_nested_and_defaults(tmp_path):
    path = _file(tmp_path, """
name = "y"
size = [8, 16]
range = [1, 2.5]
tags = ["a", "b", "c"]
flag = true
[inner]
neighbors = 3
prob = 1
[extra]
anything = [1, "two"]
""")
    cfg = load(Outer, path)
    assert cfg == Outer(name="y", size=(8, 16), range=(1.0, 2.5), tags=("a", "b", "c"),
                        flag=True, inner=Inner(neighbors=3, prob=1.0),
                        extra={"anything": [1, "two"]})
    assert isinstance(cfg.range[0], float) and isinstance(cfg.inner.prob, float)
    assert load(Outer, _file(tmp_path, "")) == Outer()
    assert build(Outer, {"note": None}).note is None


def test_bundled_names_and_overrides(tmp_path):
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    _file(bundled, "name = 'z'\n[inner]\nneighbors = 4\n", "base.toml")
    assert find("base", bundled) == bundled / "base.toml"
    assert find("base.toml", bundled) == bundled / "base.toml"
    assert read_toml("base", bundled)[1]["inner"]["neighbors"] == 4
    cfg = load(Outer, "base", bundled=bundled, overrides={"inner.neighbors": 5, "flag": True})
    assert (cfg.name, cfg.inner.neighbors, cfg.flag) == ("z", 5, True)
    cfg = load(Outer, "base", bundled=bundled,
               overrides=["inner.mode=b", "size=[2, 3]", "name=plain words"])
    assert (cfg.inner.mode, cfg.size, cfg.name) == ("b", (2, 3), "plain words")
    assert parse_set("a.b=1.5") == ("a.b", 1.5)
    assert parse_set("a=abc") == ("a", "abc")          # not TOML: a string
    assert parse_set('a="3"') == ("a", "3")
    assert parse_sets(["a=1", "a=2"]) == {"a": 2}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_set("nothing")
    raw = {"inner": {"neighbors": 1}}
    out = apply_overrides(raw, {"inner.neighbors": 2, "new.table.key": 3})
    assert raw == {"inner": {"neighbors": 1}}           # a copy: the input is kept
    assert out == {"inner": {"neighbors": 2}, "new": {"table": {"key": 3}}}
    with pytest.raises(ConfigError, match="c.toml: size: is a value, not a table"):
        apply_overrides({"size": [1, 2]}, {"size.x": 1}, path="c.toml")
    with pytest.raises(ConfigError, match=r"config not found \(bundled: base\)"):
        load(Outer, "other", bundled=bundled)


@pytest.mark.parametrize("text, message", [
    ("nam = 'x'", r"cfg.toml: nam: unknown key \(did you mean 'name'\?\)"),
    ("[inner]\nneighbours = 2", r"cfg.toml: inner.neighbours: unknown key \(did you mean "
                                r"'neighbors'\?\)"),
    ("zzz = 1", r"cfg.toml: zzz: unknown key \(known: extra, flag, inner, "),
    ("[inner]\nneighbors = 'abc'", r"cfg.toml: inner.neighbors: must be an integer, got 'abc'"),
    ("[inner]\nneighbors = true", r"inner.neighbors: must be an integer, got True"),
    ("[inner]\nneighbors = 2.0", r"inner.neighbors: must be an integer, got 2.0"),
    ("[inner]\nneighbors = 0", r"cfg.toml: inner.neighbors: must be >= 1, got 0"),
    ("[inner]\nprob = 1.5", r"inner.prob: must be in \[0.0, 1.0\], got 1.5"),
    ("[inner]\nprob = 'x'", r"inner.prob: must be a number, got 'x'"),
    ("[inner]\nmode = 'c'", r"inner.mode: must be one of 'a', 'b', got 'c'"),
    ("inner = 3", r"cfg.toml: inner: must be a table, got 3"),
    ("name = 3", r"name: must be a string, got 3"),
    ("note = 3", r"note: must be a string, got 3"),
    ("flag = 1", r"flag: must be true or false, got 1"),
    ("size = [1, 2, 3]", r"size: must be a list of 2 integers, got \[1, 2, 3\]"),
    ("size = [0, 2]", r"size: each item must be >= 1, got \[0, 2\]"),
    ("size = 4", r"size: must be a list of 2 integers, got 4"),
    ("tags = ['a', 1]", r"tags: must be a list of strings"),
    ("range = [2, 1]", r"cfg.toml: range: low must be <= high"),
    ("name = 'boom'", r"cfg.toml: name may not be boom"),
    ("extra = 1", r"extra: must be a table, got 1"),
    ("a = = 1", r"cfg.toml: not valid TOML"),
])
def test_errors_are_one_line_naming_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        load(Outer, _file(tmp_path, text))
    assert "\n" not in str(info.value)
    assert info.value.path == tmp_path / "cfg.toml"


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: config not found"):
        load(Outer, tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="bin.toml: not valid TOML"):
        load(Outer, tmp_path / "bin.toml")


def test_direct_construction_is_checked_too():
    with pytest.raises(FieldError, match="neighbors: must be >= 1"):
        Inner(neighbors=0)
    with pytest.raises(FieldError, match="neighbors: must be an integer"):
        Inner(neighbors="3")
    # without a file the error is a ConfigError (a ValueError) naming the key only
    with pytest.raises(ValueError, match="^inner.prob: must be in"):
        build(Outer, {"inner": {"prob": 2}})


def test_model_configs_are_validated():
    pytest.importorskip("torch")
    from sci_edge.models.cloud.analysis import AnalysisConfig
    from sci_edge.models.end.fem import FEMConfig
    from sci_edge.models.sci import SCIConfig

    with pytest.raises(ValueError, match="width: must be >= 1"):
        FEMConfig(width=0)
    with pytest.raises(ValueError, match="neighbors: must be an integer"):
        AnalysisConfig(neighbors="abc")
    with pytest.raises(ValueError, match="dropout: must be in"):
        SCIConfig(dropout=1.0)
    with pytest.raises(ValueError, match="task: must be one of"):
        SCIConfig(task="seg")
    with pytest.raises(ValueError, match=r"analysis.neighbours: unknown key \(did you mean"):
        SCIConfig.from_dict({"analysis": {"neighbours": 2}})
    with pytest.raises(ValueError, match="fem.width: must be >= 1"):
        SCIConfig.from_dict({"fem": {"width": 0}})
    cfg = SCIConfig(task="cls", analysis=AnalysisConfig(3, 5, 32), dropout=0.3)
    assert SCIConfig.from_dict(cfg.to_dict()) == cfg
    assert SCIConfig.from_dict({}) == SCIConfig()


def test_loader_is_torch_free():
    code = "import sys, sci_edge.config; assert 'torch' not in sys.modules, 'torch'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
