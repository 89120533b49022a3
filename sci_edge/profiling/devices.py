"""Device profiles: Jetson modules and their power modes, read from TOML files.

One file per module (``profiles/orin-nano-8gb.toml``), its power modes as
``[[modes]]`` entries. Every number carries its provenance: it is written as a
small table ``{ value = 1024, source = "ds", confirmed = false }`` whose
``source`` names an entry of the file's ``[sources]`` table (the document it
comes from), and ``confirmed`` says whether somebody checked it against that
document. Power modes and the ``[software]`` table carry one ``source`` and
``confirmed`` for the whole entry.

Peaks are the GPU's (CUDA + tensor cores, no DLA), at ``peak_gpu_mhz``; INT8
TOPS count 2 ops per MAC, and estimates use the dense figure, never the sparse
one (NVIDIA's headline Orin TOPS are sparse INT8, i.e. twice the dense rate).

Files are found in the package (``sci_edge/profiling/profiles``, where a wheel
build copies them), else in the checkout's top-level ``profiles/`` folder; a
user's own file is given by its path. Torch-free.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import config as _config
from ..config import FieldError
from ..errors import ConfigError, DataError

__all__ = ["Budget", "DeviceProfile", "Number", "PowerMode", "Software", "budget_path",
           "list_devices", "load_budget", "load_device", "profiles_dir"]

PACKAGE_PROFILES = Path(__file__).parent / "profiles"          # a wheel install
CHECKOUT_PROFILES = Path(__file__).resolve().parents[2] / "profiles"   # a source checkout
BUDGET = "budget"


def profiles_dir() -> Path:
    """The folder holding the shipped profiles: the package's, else the checkout's."""
    for folder in (PACKAGE_PROFILES, CHECKOUT_PROFILES):
        if folder.is_dir() and any(folder.glob("*.toml")):
            return folder
    return CHECKOUT_PROFILES


# --- schema -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Number:
    """One figure with its provenance: ``source`` is a key of the file's [sources]."""
    value: float = field(metadata={"min": 0.0})
    source: str
    confirmed: bool = False
    note: str = ""

    def __post_init__(self):
        _config.check_fields(self)
        if not self.source.strip():
            raise FieldError("source", "must name the document this number comes from")


@dataclass(frozen=True)
class PowerMode:
    """An nvpmodel power mode: its name, id, power budget and GPU clock cap."""
    name: str
    nvpmodel: int = field(metadata={"min": 0})
    watts: float = field(metadata={"gt": 0.0})
    gpu_mhz: float = field(metadata={"gt": 0.0})
    source: str
    memory_bandwidth_gbs: float | None = field(default=None, metadata={"gt": 0.0})
    aliases: tuple[str, ...] = ()   # other names it answers to ("MAXN", "40W")
    confirmed: bool = False
    note: str = ""

    def __post_init__(self):
        _config.check_fields(self)
        if not self.name.strip():
            raise FieldError("name", "must not be empty")
        if not self.source.strip():
            raise FieldError("source", "must name the document these numbers come from")


@dataclass(frozen=True)
class Software:
    """The newest JetPack the module runs and its TensorRT."""
    jetpack: str
    tensorrt: str
    gridsample: bool            # TensorRT has IGridSampleLayer (8.5 and later)
    source: str
    confirmed: bool = False
    note: str = ""

    def __post_init__(self):
        _config.check_fields(self)
        major_minor = _version(self.tensorrt)
        if major_minor is None:
            raise FieldError("tensorrt", f"must be a version such as '10.3', got {self.tensorrt!r}")
        if self.gridsample != (major_minor >= (8, 5)):
            raise FieldError("gridsample", f"TensorRT {self.tensorrt} "
                                           f"{'has' if major_minor >= (8, 5) else 'has no'} "
                                           "IGridSampleLayer (added in 8.5): set "
                                           f"gridsample = {str(major_minor >= (8, 5)).lower()}")


def _version(text: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"\s*(\d+)\.(\d+)(\.\d+)*\s*", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


_NUMBERS = ("cuda_cores", "tensor_cores", "peak_gpu_mhz", "int8_tops_dense", "int8_tops_sparse",
            "fp16_tflops", "fp32_tflops", "headline_tops", "memory_bandwidth_gbs", "memory_gb")


@dataclass(frozen=True)
class DeviceProfile:
    """A Jetson module: GPU peaks (at ``peak_gpu_mhz``), memory, software, power modes.

    ``int8_tops_dense`` = 0 means the GPU has no fast INT8 path (Jetson Nano):
    INT8 estimates then use the FP16 peak."""
    name: str
    title: str
    sources: dict               # key -> the document (title, number, version)
    cuda_cores: Number
    tensor_cores: Number
    peak_gpu_mhz: Number        # the clock the peaks below are given at
    int8_tops_dense: Number     # GPU only, 2 ops per MAC
    int8_tops_sparse: Number    # GPU only, 2:4 structured sparsity (= dense where none)
    fp16_tflops: Number
    fp32_tflops: Number
    memory_bandwidth_gbs: Number
    memory_gb: Number
    software: Software
    modes: tuple[PowerMode, ...]
    headline_tops: Number | None = None   # NVIDIA's headline figure (sparse INT8, GPU + DLA)
    architecture: str = ""
    note: str = ""
    path: str = ""              # the file it was read from (set by load_device)

    def __post_init__(self):
        _config.check_fields(self)
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", self.name):
            raise FieldError("name", f"must be lower case letters, digits, '.', '_' or '-', "
                                     f"got {self.name!r}")
        for key, doc in self.sources.items():
            if not isinstance(doc, str) or not doc.strip():
                raise FieldError(f"sources.{key}", "must be a non-empty string naming a document")
        known = sorted(self.sources)
        for key in _NUMBERS:
            number = getattr(self, key)
            if number is not None and number.source not in self.sources:
                raise FieldError(f"{key}.source", _unknown_source(number.source, known))
        for where, src in (("software.source", self.software.source),
                           *((f"modes[{i}].source", m.source) for i, m in enumerate(self.modes))):
            if src not in self.sources:
                raise FieldError(where, _unknown_source(src, known))
        if self.int8_tops_dense.value > self.int8_tops_sparse.value:
            raise FieldError("int8_tops_dense", f"must be <= int8_tops_sparse "
                                                f"({self.int8_tops_sparse.value:g}), got "
                                                f"{self.int8_tops_dense.value:g}")
        for key in ("peak_gpu_mhz", "fp16_tflops", "fp32_tflops", "memory_bandwidth_gbs"):
            if getattr(self, key).value <= 0:
                raise FieldError(f"{key}.value", "must be > 0")
        if not self.modes:
            raise FieldError("modes", "needs at least one [[modes]] entry")
        seen: dict[str, int] = {}
        for i, m in enumerate(self.modes):
            for label in (m.name, *m.aliases):
                k = _mode_key(label)
                if k in seen:
                    raise FieldError(f"modes[{i}].name", f"{label!r} already names "
                                                         f"modes[{seen[k]}]")
                seen[k] = i
            if m.gpu_mhz > self.peak_gpu_mhz.value:
                raise FieldError(f"modes[{i}].gpu_mhz", f"must be <= peak_gpu_mhz "
                                                        f"({self.peak_gpu_mhz.value:g}), got "
                                                        f"{m.gpu_mhz:g}")

    def mode(self, name: str) -> PowerMode:
        """The power mode called ``name`` (case, spaces and '-' vs '_' do not matter)."""
        for m in self.modes:
            if _mode_key(name) in {_mode_key(n) for n in (m.name, *m.aliases)}:
                return m
        names = [m.name for m in self.modes]
        close = difflib.get_close_matches(name.upper(), names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DataError(f"{self.name} has no power mode {name!r} ({hint}known: {', '.join(names)})")

    def numbers(self) -> dict[str, Number]:
        """The figures with their provenance, by field name."""
        return {k: getattr(self, k) for k in _NUMBERS if getattr(self, k) is not None}

    def unconfirmed(self) -> list[str]:
        """Names of the figures, modes and software entries nobody has checked yet."""
        out = [k for k, n in self.numbers().items() if not n.confirmed]
        out += [f"modes.{m.name}" for m in self.modes if not m.confirmed]
        return out + ([] if self.software.confirmed else ["software"])

    def to_dict(self) -> dict:
        return _lists(asdict(self))


def _lists(x):
    """Tuples as lists, all the way down (for JSON)."""
    if isinstance(x, dict):
        return {k: _lists(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_lists(v) for v in x]
    return x


def _unknown_source(src: str, known: list[str]) -> str:
    close = difflib.get_close_matches(src, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown source {src!r}: add it to [sources] ({hint}known: {', '.join(known) or 'none'})"


def _mode_key(name: str) -> str:
    return re.sub(r"[\s_-]+", "_", name.strip()).upper()


@dataclass(frozen=True)
class Budget:
    """What the end side may spend: GFLOPs per feature frame (fvcore: 1 MAC = 1 flop) and
    average power; ``feature_rate`` is the rate checked when no rate option is given."""
    gflops_per_feature_frame: float = field(default=10.0, metadata={"gt": 0.0})
    watts: float = field(default=10.0, metadata={"gt": 0.0})
    feature_rate: float = field(default=210.0, metadata={"gt": 0.0})
    note: str = ""
    path: str = ""

    def __post_init__(self):
        _config.check_fields(self)

    def to_dict(self) -> dict:
        return asdict(self)


# --- loading ------------------------------------------------------------------------------

def list_devices() -> list[str]:
    """Names of the shipped device profiles."""
    return sorted(p.stem for p in profiles_dir().glob("*.toml") if p.stem != BUDGET)


def _is_path(name: str | Path) -> bool:
    text = str(name)
    return isinstance(name, Path) or text.endswith(".toml") or "/" in text or "\\" in text


def load_device(name_or_path: str | Path) -> DeviceProfile:
    """A shipped profile by name (``orin-nano-8gb``), or a TOML file by path. A profile
    without ``name`` takes the file's stem. Errors: DataError for an unknown name,
    ConfigError (``file: dotted.key: problem``) for a bad file."""
    if _is_path(name_or_path):
        path = Path(name_or_path)
    else:
        name = str(name_or_path).strip().lower()
        known = list_devices()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DataError(f"unknown device {str(name_or_path)!r} ({hint}known: "
                            f"{', '.join(known) or 'none found in ' + str(profiles_dir())}; "
                            "or give the path of a .toml file)")
        path = profiles_dir() / f"{name}.toml"
    path, raw = _config.read_toml(path)
    raw.setdefault("name", path.stem.lower())
    if "path" in raw:
        raise ConfigError(path, "path: is set by the loader, not in the file")
    raw["path"] = str(path)
    _require(DeviceProfile, raw, path)
    return _config.build(DeviceProfile, raw, path=path)


def _require(cls, raw: dict, path: Path, prefix: str = "") -> None:
    """A missing required key is one ConfigError naming it (the first, in field order)."""
    import dataclasses

    if set(raw) - {f.name for f in dataclasses.fields(cls)}:
        return          # an unknown key (a misspelt one?): build() names it
    for f in dataclasses.fields(cls):
        if (f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and f.name not in raw):
            raise ConfigError(path, f"{prefix}{f.name}: missing (required)")
    for f in dataclasses.fields(cls):
        value = raw.get(f.name)
        if f.name in ("modes",) and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    _require(PowerMode, item, path, f"{prefix}modes[{i}].")
        elif f.name == "software" and isinstance(value, dict):
            _require(Software, value, path, f"{prefix}software.")
        elif f.name in _NUMBERS and isinstance(value, dict):
            _require(Number, value, path, f"{prefix}{f.name}.")


def budget_path() -> Path:
    return profiles_dir() / f"{BUDGET}.toml"


def load_budget(path: str | Path | None = None) -> Budget:
    """The end-side budget: ``profiles/budget.toml``, or the file at ``path``."""
    path, raw = _config.read_toml(budget_path() if path is None else path)
    if "path" in raw:
        raise ConfigError(path, "path: is set by the loader, not in the file")
    return _config.build(Budget, {**raw, "path": str(path)}, path=path)


def load_devices(names: list[str] | None = None) -> list[DeviceProfile]:
    """The named profiles (names or paths), or all shipped ones."""
    return [load_device(n) for n in (names or list_devices())]
