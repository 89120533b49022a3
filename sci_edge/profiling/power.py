"""Measured power on a Jetson: the INA3221 rails sampled while a piece of work runs.

Where the module is a Jetson, a measurement replaces the estimate of
:mod:`sci_edge.profiling.estimate`: :func:`measure_power` runs ``work()`` (one
unit: encoding one feature frame, say) over and over while the power monitor is
sampled at ``hz`` (>= 10; by a child process for sysfs, see :class:`PowerSampler`),
and reports mean / median / max watts of the board's input rail, every rail's
mean, the achieved sampling rate, energy per unit and the nvpmodel power mode.
Torch-free (stdlib only).

Power sources, tried in this order:

1. INA3221 via sysfs, two layouts (``root`` prefixes every path, so tests build
   a fake tree):

   - hwmon (mainline ``ina3221`` driver: Orin on JetPack 5/6, Xavier NX on
     JetPack 5): ``sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/`` with
     ``in<N>_label`` (``VDD_IN``, ``VDD_CPU_GPU_CV``, ``VDD_SOC`` ...),
     ``in<N>_input`` (bus voltage, mV) and ``curr<N>_input`` (current, mA):
     power = V x I. ``update_interval`` (ms), where present, is how often the
     chip converts.
   - iio (NVIDIA's ``ina3221x`` driver: Nano, TX2, Xavier on JetPack 4):
     ``sys/bus/i2c/drivers/ina3221x/*/iio:device*/`` with ``rail_name_<N>``,
     ``in_power<N>_input`` (mW), ``in_voltage<N>_input`` (mV) and
     ``in_current<N>_input`` (mA).

   The board input rail is ``VDD_IN`` (Orin Nano / NX, Xavier NX) or
   ``POM_5V_IN`` (Nano). AGX Orin and AGX Xavier monitor no single input rail:
   there, name one with ``rail=`` or take ``rail="sum"``.
2. jtop (the ``jetson-stats`` package), only when ``allow_jtop=True`` and it is
   installed. jtop is AGPL-3.0: it is never a dependency of sci_edge, never
   imported unless asked for, and reads the same INA3221 files through its own
   service.
3. none: :func:`power_unavailable_reason` says why (not a Jetson, say).
"""
from __future__ import annotations

import importlib
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import DataError

__all__ = ["DEFAULT_HZ", "INPUT_RAILS", "MIN_HZ", "IdleBaseline", "JtopSource", "NvpMode",
           "PowerError", "PowerMeasurement", "PowerSampler", "PowerSource", "PowerUnavailable",
           "Rail", "Sample", "SourceInfo", "SysfsSource", "check_hz", "find_power_source",
           "measure_power", "nvpmodel_mode", "parse_nvpmodel_conf", "parse_nvpmodel_query",
           "parse_nvpmodel_status", "power_unavailable_reason"]

MIN_HZ = 10.0           # the floor: slower sampling misses the encoder's bursts
DEFAULT_HZ = 20.0
MAX_HZ = 1000.0         # beyond this the sampler would only spin on the same conversions
MIN_SAMPLES = 5         # fewer samples in a window is no mean worth reporting
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")     # the board's input rail, by preference
HWMON_DRIVER = "sys/bus/i2c/drivers/ina3221"
IIO_DRIVER = "sys/bus/i2c/drivers/ina3221x"
STOP_TIMEOUT_S = 5.0
START_TIMEOUT_S = 10.0     # a child process starting on a busy board


class PowerError(DataError):
    """Power cannot be measured as asked: a rail vanished, sampling was too slow, no
    input rail, a bad reading."""


class PowerUnavailable(PowerError):
    """No power monitor here; the message is the reason."""


def check_hz(hz: float) -> float:
    """``hz`` as a float, or a DataError unless MIN_HZ <= hz <= MAX_HZ."""
    try:
        value = float(hz)
    except (TypeError, ValueError):
        raise DataError(f"sampling rate must be a number of Hz, got {hz!r}") from None
    if not (math.isfinite(value) and MIN_HZ <= value <= MAX_HZ):
        raise DataError(f"sampling rate must be between {MIN_HZ:g} and {MAX_HZ:g} Hz "
                        f"(measured power needs >= {MIN_HZ:g} Hz), got {hz!r}")
    return value


# --- sources ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rail:
    """One monitored power rail and the files it is read from (None where not used)."""
    label: str
    layout: str                     # "hwmon", "iio" or "jtop"
    channel: int | None = None
    folder: str = ""
    voltage_file: str | None = None     # mV
    current_file: str | None = None     # mA
    power_file: str | None = None       # mW (iio only)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SourceInfo:
    """Where the readings come from: the layout, the rails, the preferred input rail."""
    kind: str                       # "ina3221 hwmon", "ina3221x iio", "jtop", ...
    rails: tuple[Rail, ...]
    input_rail: str | None          # VDD_IN / POM_5V_IN where monitored, else None
    update_interval_ms: float | None = None     # the sensor's own conversion period
    note: str = ""

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(r.label for r in self.rails)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rails"] = [r.to_dict() for r in self.rails]
        d["labels"] = list(self.labels)
        return d


class PowerSource(ABC):
    """A power monitor: :meth:`read` gives every rail's watts, in ``info.rails`` order."""

    @property
    @abstractmethod
    def info(self) -> SourceInfo: ...

    @abstractmethod
    def read(self) -> tuple[float, ...]: ...

    def close(self) -> None:
        """Release what the source holds (jtop's connection); files need nothing."""


def _read_number(path: str) -> float:
    # os.open / os.read: three syscalls, where Path.read_text makes six (fstat, isatty...)
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.read(fd, 64)
        finally:
            os.close(fd)
    except OSError as exc:
        raise PowerError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        return float(int(data.split()[0]))
    except (IndexError, ValueError):
        text = data.decode(errors="replace").strip()[:40]
        raise PowerError(f"{path}: not a number: {text!r}") from None


def _read_label(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _unconnected(label: str) -> bool:
    # Orin's device trees label unused channels "NC"; they read noise, not a rail
    return not label or label.upper() == "NC" or label.upper().startswith("NC ")


def _channel(name: str, pattern: str) -> int | None:
    m = re.fullmatch(pattern, name)
    return int(m.group(1)) if m else None


def _hwmon_rails(root: Path) -> tuple[list[Rail], float | None]:
    rails, interval = [], None
    for hw in sorted(root.glob(f"{HWMON_DRIVER}/*/hwmon/hwmon*")):
        found = False
        for label_file in sorted(hw.glob("in*_label"), key=lambda p: p.name):
            n = _channel(label_file.name, r"in(\d+)_label")
            label = _read_label(label_file)
            if n is None or _unconnected(label):
                continue
            volt, curr = hw / f"in{n}_input", hw / f"curr{n}_input"
            # in7 ("sum of shunt voltages") has no curr7: skipped by this test
            if not (volt.is_file() and curr.is_file()):
                continue
            enable = hw / f"in{n}_enable"
            if enable.is_file() and _read_label(enable) == "0":
                continue        # a disabled channel reads no data
            rails.append(Rail(label, "hwmon", n, str(hw), str(volt), str(curr)))
            found = True
        update = hw / "update_interval"
        if found and update.is_file():
            try:
                ms = _read_number(str(update))
            except PowerError:
                continue
            interval = ms if interval is None else max(interval, ms)
    return rails, interval


def _iio_rails(root: Path) -> list[Rail]:
    rails = []
    for dev in sorted(root.glob(f"{IIO_DRIVER}/*/iio:device*")):
        for name_file in sorted(dev.glob("rail_name_*"), key=lambda p: p.name):
            n = _channel(name_file.name, r"rail_name_(\d+)")
            label = _read_label(name_file)
            if n is None or _unconnected(label):
                continue
            power = dev / f"in_power{n}_input"
            volt, curr = dev / f"in_voltage{n}_input", dev / f"in_current{n}_input"
            has_vi = volt.is_file() and curr.is_file()
            if not (power.is_file() or has_vi):
                continue
            rails.append(Rail(label, "iio", n, str(dev),
                              str(volt) if has_vi else None, str(curr) if has_vi else None,
                              str(power) if power.is_file() else None))
    return rails


def _unique_labels(rails: list[Rail]) -> list[Rail]:
    """Two monitors with one label (AGX boards have two chips) keep both, by device."""
    seen: dict[str, int] = {}
    for r in rails:
        seen[r.label] = seen.get(r.label, 0) + 1
    out = []
    for r in rails:
        if seen[r.label] > 1:
            # the i2c device (1-0040) is the folder above hwmon/hwmonN or iio:deviceN
            device = Path(r.folder).parts[-3 if r.layout == "hwmon" else -2]
            r = Rail(f"{r.label}@{device}", r.layout, r.channel, r.folder, r.voltage_file,
                     r.current_file, r.power_file)
        out.append(r)
    return out


def _input_rail(labels: Sequence[str]) -> str | None:
    upper = {label.upper(): label for label in labels}
    return next((upper[name] for name in INPUT_RAILS if name in upper), None)


class SysfsSource(PowerSource):
    """The INA3221 rails read from sysfs files (hwmon or iio layout)."""

    def __init__(self, rails: Sequence[Rail], kind: str,
                 update_interval_ms: float | None = None):
        if not rails:
            raise PowerUnavailable("no INA3221 rails to read")
        self._info = SourceInfo(kind=kind, rails=tuple(rails),
                                input_rail=_input_rail([r.label for r in rails]),
                                update_interval_ms=update_interval_ms)

    @classmethod
    def discover(cls, root: str | Path = "/") -> SysfsSource:
        """The rails under ``root``: hwmon layout first, else iio; PowerUnavailable if none."""
        root = Path(root)
        rails, interval = _hwmon_rails(root)
        if rails:
            return cls(_unique_labels(rails), "ina3221 hwmon", interval)
        rails = _iio_rails(root)
        if rails:
            return cls(_unique_labels(rails), "ina3221x iio")
        hw, iio = root / HWMON_DRIVER, root / IIO_DRIVER
        if hw.is_dir() or iio.is_dir():
            where = hw if hw.is_dir() else iio
            raise PowerUnavailable(f"an INA3221 driver is bound ({where}) but no readable rail "
                                   "(label + voltage + current files) was found under it")
        raise PowerUnavailable(f"no INA3221 power monitor under {root / 'sys/bus/i2c/drivers'} "
                               "(neither ina3221 hwmon nor ina3221x iio: not a Jetson)")

    @property
    def info(self) -> SourceInfo:
        return self._info

    def files(self) -> list[str]:
        """The files one reading reads, in order: per rail its power file (mW), else its
        voltage (mV) and current (mA) files."""
        return [f for r in self._info.rails
                for f in ((r.power_file,) if r.power_file else (r.voltage_file, r.current_file))]

    def watts(self, raw: Sequence[float]) -> tuple[float, ...]:
        """Each rail's watts from the numbers read from :meth:`files`."""
        out, i = [], 0
        for r in self._info.rails:
            if r.power_file:
                out.append(raw[i] / 1e3)                    # mW -> W
                i += 1
            else:
                out.append(raw[i] * raw[i + 1] / 1e6)       # mV x mA -> W
                i += 2
        return tuple(out)

    def read(self) -> tuple[float, ...]:
        return self.watts([_read_number(f) for f in self.files()])


def _jtop_rails(power) -> dict[str, float]:
    """jtop's power reading as {rail: mW}. jtop 4 gives {'rail': {...}, 'tot': {...}}
    with the input rail moved into 'tot' (its 'name'); jtop 3 gave (total, rails)
    with 'cur' in mW."""
    if isinstance(power, dict) and "rail" in power:
        rails = {name: float(v["power"]) for name, v in power["rail"].items()
                 if v.get("online", True)}
        tot = power.get("tot") or {}
        if tot.get("name"):
            rails[str(tot["name"])] = float(tot["power"])
        return rails
    if isinstance(power, tuple) and len(power) == 2 and isinstance(power[1], dict):
        return {name: float(v["cur"]) for name, v in power[1].items()}
    raise PowerError(f"jtop gave a power reading of an unknown shape ({type(power).__name__}): "
                     "this jtop version is not supported; use the sysfs source")


class JtopSource(PowerSource):
    """The rails as jtop (jetson-stats, AGPL-3.0) reports them. Each :meth:`read` waits
    for jtop's next update, so the achieved rate is jtop's real one, never repeats."""

    def __init__(self, hz: float = DEFAULT_HZ):
        try:
            module = importlib.import_module("jtop")
        except ModuleNotFoundError as exc:
            if exc.name not in (None, "jtop"):
                raise
            raise PowerUnavailable("jtop is not installed (pip install jetson-stats; it is "
                                   "AGPL-3.0, so sci_edge never depends on it)") from exc
        interval = 1.0 / check_hz(hz)
        try:
            self._jetson = module.jtop(interval=interval)
            self._jetson.start()
        except Exception as exc:    # jtop raises its own types: service down, permissions
            raise PowerUnavailable(f"jtop could not start: {exc}") from exc
        try:
            labels_mw = _jtop_rails(self._jetson.power)
            if not labels_mw:
                raise PowerUnavailable("jtop reports no power rails")
        except BaseException:
            self.close()
            raise
        rails = tuple(Rail(name, "jtop", folder="jtop") for name in labels_mw)
        interval = getattr(self._jetson, "interval", None)
        self._info = SourceInfo(
            kind="jtop", rails=rails, input_rail=_input_rail(list(labels_mw)),
            update_interval_ms=float(interval) * 1e3 if isinstance(interval, (int, float))
            else None, note="read through jtop (jetson-stats, AGPL-3.0)")

    @property
    def info(self) -> SourceInfo:
        return self._info

    def read(self) -> tuple[float, ...]:
        if not self._jetson.ok():
            raise PowerError("jtop stopped sending data (its service closed or timed out)")
        mw = _jtop_rails(self._jetson.power)
        try:
            return tuple(mw[r.label] / 1e3 for r in self._info.rails)
        except KeyError as exc:
            raise PowerError(f"jtop's rail {exc.args[0]!r} disappeared mid-run") from None

    def close(self) -> None:
        self._jetson.close()


def find_power_source(root: str | Path = "/", *, allow_jtop: bool = False,
                      hz: float = DEFAULT_HZ) -> PowerSource:
    """The power monitor: INA3221 sysfs, else jtop (only with ``allow_jtop``); one test
    read is made. PowerUnavailable says why there is none."""
    try:
        source: PowerSource = SysfsSource.discover(root)
    except PowerUnavailable as sysfs_reason:
        if not allow_jtop:
            raise
        try:
            source = JtopSource(hz)
        except PowerUnavailable as jtop_reason:
            raise PowerUnavailable(f"{sysfs_reason}; {jtop_reason}") from None
    try:
        source.read()       # a monitor that is there but unreadable is no monitor
    except PowerError as exc:
        source.close()
        raise PowerUnavailable(f"the power monitor cannot be read: {exc}") from exc
    return source


def power_unavailable_reason(root: str | Path = "/", *, allow_jtop: bool = False) -> str | None:
    """Why power cannot be measured here, or None where it can."""
    try:
        find_power_source(root, allow_jtop=allow_jtop).close()
    except PowerUnavailable as exc:
        return str(exc)
    return None


# --- nvpmodel ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NvpMode:
    """The nvpmodel power mode in force: ``name`` and ``id`` (None where unknown, with
    ``reason``), and ``source``, where they were read."""
    name: str | None
    id: int | None
    source: str
    reason: str | None = None

    @property
    def known(self) -> bool:
        return self.name is not None or self.id is not None

    def to_dict(self) -> dict:
        return {**asdict(self), "known": self.known}


_MODE_LINE = re.compile(r"NV Power Mode\s*:\s*(.+?)\s*$", re.M)


def parse_nvpmodel_query(text: str) -> tuple[str | None, int | None]:
    """(name, id) from ``nvpmodel -q`` output: a line ``NV Power Mode: 15W`` and the
    mode id on the next non-empty line; warnings ("NVPM WARN ...") are ignored."""
    m = _MODE_LINE.search(text)
    if not m:
        return None, None
    after = text[m.end():].splitlines()
    number = next((line.strip() for line in after if line.strip()), "")
    return m.group(1), int(number) if number.isdigit() else None


def parse_nvpmodel_conf(text: str) -> tuple[dict[int, str], int | None]:
    """({id: name}, default id) from an nvpmodel.conf: ``< POWER_MODEL ID=0 NAME=MAXN >``
    entries and ``< PM_CONFIG DEFAULT=2 >``."""
    modes = {int(i): name for i, name in
             re.findall(r"<\s*POWER_MODEL\s+ID\s*=\s*(\d+)\s+NAME\s*=\s*([^\s>]+)", text)}
    default = re.search(r"<\s*PM_CONFIG\s+DEFAULT\s*=\s*(\d+)", text)
    return modes, int(default.group(1)) if default else None


def parse_nvpmodel_status(text: str) -> int | None:
    """The mode id from /var/lib/nvpmodel/status (``pmode:0002 ...``)."""
    m = re.search(r"pmode\s*:\s*(\d+)", text)
    return int(m.group(1)) if m else None


def _nvpmodel_binary(root: Path) -> str | None:
    for rel in ("usr/sbin/nvpmodel", "usr/bin/nvpmodel"):
        path = root / rel
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    # PATH belongs to the real system only, not to a fake tree
    return shutil.which("nvpmodel") if root == Path("/") else None


def nvpmodel_mode(root: str | Path = "/", *, timeout: float = 5.0,
                  binary: str | None = None) -> NvpMode:
    """The power mode in force: ``nvpmodel -q`` where the binary exists (killed after
    ``timeout`` s), else ``/var/lib/nvpmodel/status`` with names from
    ``/etc/nvpmodel.conf``; unknown (name = id = None, with the reason) otherwise."""
    root = Path(root)
    reasons = []
    exe = binary or _nvpmodel_binary(root)
    if exe:
        try:
            res = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=timeout,
                                 stdin=subprocess.DEVNULL)
            name, mode_id = parse_nvpmodel_query(res.stdout + "\n" + res.stderr)
            if name is not None:
                return NvpMode(name, mode_id, f"{exe} -q")
            reasons.append(f"{exe} -q exited {res.returncode} without an 'NV Power Mode' line")
        except subprocess.TimeoutExpired:
            reasons.append(f"{exe} -q did not answer within {timeout:g} s")
        except OSError as exc:
            reasons.append(f"{exe} -q could not run ({exc.strerror or exc})")
    else:
        reasons.append("no nvpmodel binary")
    status, conf = root / "var/lib/nvpmodel/status", root / "etc/nvpmodel.conf"
    modes, default = ({}, None)
    if conf.is_file():
        try:
            modes, default = parse_nvpmodel_conf(conf.read_text(errors="replace"))
        except OSError as exc:
            reasons.append(f"{conf}: cannot read ({exc.strerror})")
    if status.is_file():
        try:
            mode_id = parse_nvpmodel_status(status.read_text(errors="replace"))
        except OSError as exc:
            mode_id = None
            reasons.append(f"{status}: cannot read ({exc.strerror})")
        if mode_id is not None:
            name = modes.get(mode_id)
            why = None if name else f"mode {mode_id} has no name in {conf}"
            return NvpMode(name, mode_id, f"{status} + {conf}", why)
        reasons.append(f"{status}: no 'pmode:' entry")
    else:
        # the conf's DEFAULT is the boot mode, not necessarily the one in force
        reasons.append(f"no {status}" + (f" ({conf} gives the default, mode {default}, "
                                         "which need not be the one in force)"
                                         if default is not None else ""))
    return NvpMode(None, None, "", "; ".join(reasons))


# --- sampling ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One reading: ``t`` (time.monotonic, mid-read) and each rail's watts."""
    t: float
    watts: tuple[float, ...]


class PowerSampler:
    """Reads ``source`` at ``hz`` into timestamped :class:`Sample` s, until :meth:`stop`.

    Where the source is sysfs files (:class:`SysfsSource`) the reads run in a child
    process (``process=None`` or True): a thread of this process would wait for the
    GIL at every file read while ``work`` holds it (a Python loop, a kernel that
    keeps the GIL), and sample far below ``hz``. The child stamps each sample with
    ``time.monotonic`` (CLOCK_MONOTONIC, one clock for all processes), so a late
    reader here changes no timestamp. Other sources (jtop, a test's) use a thread.

    A failed read stops the sampling and is kept: :attr:`failed` tells at once,
    :meth:`stop` raises it (PowerError), so no figure is made from a partial run
    without saying so. :meth:`start` returns once the first sample is in. Use as a
    context manager or call start() / stop()."""

    def __init__(self, source: PowerSource, hz: float = DEFAULT_HZ, *,
                 process: bool | None = None):
        self.source = source
        self.hz = check_hz(hz)
        if process and not isinstance(source, SysfsSource):
            raise DataError("a sampling process reads sysfs files: this source "
                            f"({source.info.kind}) is sampled on a thread (process=None)")
        self.process = isinstance(source, SysfsSource) if process is None else bool(process)
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()     # the first sample, or an error, is in
        self._failed = threading.Event()
        self._error: PowerError | None = None
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen | None = None
        self._stderr = None

    # -- common --
    def _add(self, sample: Sample) -> None:
        with self._lock:
            self._samples.append(sample)
        self._ready.set()

    def _fail(self, what: str, cause: BaseException | None = None) -> None:
        with self._lock:
            n = len(self._samples)
        self._error = PowerError(f"power sampling stopped after {n} samples: {what}")
        self._error.__cause__ = cause
        self._failed.set()
        self._ready.set()

    def start(self) -> PowerSampler:
        if self._thread is not None:
            raise PowerError("this sampler was already started; make a new one")
        if self.process:
            self._start_child()
            target = self._read_child
        else:
            target = self._run_thread
        self._thread = threading.Thread(target=target, name="sci-edge-power", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            self.stop(raise_error=False)
            raise PowerError(f"power sampling gave no sample within {START_TIMEOUT_S:g} s")
        return self

    # -- on a thread --
    def _run_thread(self) -> None:
        for sample in _sampling(self.source, self.hz, self._stop.wait):
            if isinstance(sample, BaseException):
                what = (str(sample) if isinstance(sample, PowerError)
                        else f"{type(sample).__name__}: {sample}")
                self._fail(what, sample)
                return
            self._add(sample)

    # -- in a child process --
    def _start_child(self) -> None:
        import tempfile

        self._stderr = tempfile.TemporaryFile()
        # -I -S: no site, no PYTHONPATH, no cwd on the path: the script needs the stdlib only
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _CHILD, repr(self.hz), *self.source.files()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        except OSError as exc:
            self._stderr.close()
            raise PowerError(f"cannot start the sampling process ({exc.strerror or exc})") from exc

    def _read_child(self) -> None:
        child, source = self._child, self.source
        for line in child.stdout:
            head, _, rest = line.partition(" ")
            if head == "E":
                self._fail(rest.strip())
                break
            try:
                t, *raw = (float(x) for x in line.split())
                self._add(Sample(t, source.watts(raw)))
            except (ValueError, IndexError):
                self._fail(f"the sampling process wrote {line.strip()[:80]!r}")
                break
        if not self._stop.is_set() and not self._failed.is_set():
            child.wait()
            self._stderr.seek(0)
            tail = self._stderr.read().decode(errors="replace").strip().splitlines()[-3:]
            self._fail(f"the sampling process exited (status {child.returncode})"
                       + (f": {' | '.join(tail)}" if tail else ""))

    def _stop_child(self) -> None:
        child = self._child
        try:
            child.stdin.close()             # the child stops at end of input
        except OSError:
            pass
        try:
            child.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    # -- results --
    @property
    def failed(self) -> bool:
        return self._failed.is_set()

    @property
    def error(self) -> PowerError | None:
        return self._error

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` or until a read fails; True if it failed."""
        return self._failed.wait(seconds)

    def stop(self, raise_error: bool = True) -> list[Sample]:
        """Stop sampling, join the thread (and the child); the samples, or the read
        error as PowerError."""
        self._stop.set()
        if self._child is not None:
            self._stop_child()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive():
                raise PowerError(f"the power sampler did not stop within {STOP_TIMEOUT_S:g} s "
                                 "(a read hangs)")
        if self._child is not None:
            self._child.stdout.close()
            self._stderr.close()
        if raise_error and self._error is not None:
            raise self._error
        return self.samples

    def __enter__(self) -> PowerSampler:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop(raise_error=exc_type is None)     # the work's own error comes first


def _sampling(source: PowerSource, hz: float, wait: Callable[[float], bool]):
    """Samples of ``source`` at ``hz`` until ``wait(seconds)`` returns True; a failed
    read is yielded (the exception) and ends it."""
    period = 1.0 / hz
    due = time.monotonic()
    while True:
        t0 = time.monotonic()
        try:
            watts = source.read()
        except Exception as exc:        # any failure must reach the caller, not end silently
            yield exc
            return
        t1 = time.monotonic()
        yield Sample((t0 + t1) / 2, watts)
        due += period
        if due < t1:            # fell behind (a slow read): skip the missed slots, no burst
            due = t1 + period - (t1 - due) % period
        if wait(due - t1):
            return


# The sampling process: argv = hz, then the files; one line per reading on stdout,
# "t n1 n2 ..." (t: time.monotonic mid-read, n: the files' integers), or "E message"
# and exit; it stops when its stdin closes. Messages as _read_number's.
_CHILD = r"""
import os, select, sys, time
hz, files = float(sys.argv[1]), sys.argv[2:]
period, stdin, out = 1.0 / hz, sys.stdin.fileno(), sys.stdout

def number(path):
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.read(fd, 64)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})")
    try:
        return int(data.split()[0])
    except (IndexError, ValueError):
        text = data.decode(errors="replace").strip()[:40]
        raise ValueError(f"{path}: not a number: {text!r}")

due = time.monotonic()
try:
    while True:
        t0 = time.monotonic()
        try:
            values = [number(f) for f in files]
        except ValueError as exc:
            out.write("E " + " ".join(str(exc).split()) + "\n")
            out.flush()
            break
        t1 = time.monotonic()
        out.write(repr((t0 + t1) / 2) + " " + " ".join(map(str, values)) + "\n")
        out.flush()
        due += period
        if due < t1:
            due = t1 + period - (t1 - due) % period
        if select.select([stdin], [], [], max(0.0, due - time.monotonic()))[0]:
            break
except BrokenPipeError:
    pass
"""


# --- measurement -------------------------------------------------------------------------------

@dataclass(frozen=True)
class IdleBaseline:
    """The input rail sampled before the work, nothing of ours running."""
    seconds: float
    samples: int
    rate_hz: float
    mean_w: float
    median_w: float
    max_w: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PowerMeasurement:
    """Measured power while ``work`` ran: the input rail's watts, each rail's mean,
    energy per unit of work; with an idle baseline, the part above idle."""
    source: SourceInfo
    input_rail: str                 # the rail the figures are of ("sum(A+B)" for a sum)
    mean_w: float
    median_w: float
    max_w: float
    min_w: float
    rail_mean_w: dict[str, float]   # every rail's mean over the work window
    samples: int
    rate_hz: float                  # samples / wall time of the work window
    requested_hz: float
    max_interval_s: float           # the longest gap between samples
    units: int                      # how many times work() ran
    wall_s: float
    unit_s: float                   # wall_s / units
    energy_per_unit_j: float        # mean_w x wall_s / units
    nvpmodel: NvpMode
    idle: IdleBaseline | None = None
    above_idle_w: float | None = None
    energy_above_idle_per_unit_j: float | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {**asdict(self), "source": self.source.to_dict(),
                "nvpmodel": self.nvpmodel.to_dict(),
                "idle": None if self.idle is None else self.idle.to_dict(),
                "notes": list(self.notes)}


def _select_rail(info: SourceInfo, rail: str | None) -> tuple[str, tuple[int, ...]]:
    labels = info.labels
    if rail is None:
        if info.input_rail is None:
            raise PowerError(f"no board input rail ({' or '.join(INPUT_RAILS)}) among the "
                             f"monitored rails ({', '.join(labels)}): name one with rail=, or "
                             "rail='sum' for their sum (which misses what no monitor sees)")
        rail = info.input_rail
    if rail.strip().lower() == "sum":
        return f"sum({'+'.join(labels)})", tuple(range(len(labels)))
    for i, label in enumerate(labels):
        if label.upper() == rail.strip().upper():
            return label, (i,)
    raise PowerError(f"no rail {rail!r} (monitored: {', '.join(labels)}, or 'sum')")


def _window(samples: list[Sample], t0: float, t1: float) -> list[Sample]:
    return [s for s in samples if t0 <= s.t <= t1]


def _rate(n: int, seconds: float, what: str, hz: float, longer: str) -> float:
    rate = n / seconds if seconds > 0 else 0.0
    if n < MIN_SAMPLES or rate < MIN_HZ:
        # too short: even a sampler at full speed could not fit MIN_SAMPLES in the window
        short = seconds * hz < MIN_SAMPLES + 1
        hint = (f"the window is too short: make it longer ({longer})" if short else
                "the sampler was starved (the CPUs busy, or a thread sampler whose work holds "
                "the GIL) or its reads are slow")
        raise PowerError(f"{what}: {n} power samples in {seconds:.3f} s ({rate:.1f} Hz, "
                         f"asked {hz:g} Hz); a measurement needs >= {MIN_HZ:g} Hz and >= "
                         f"{MIN_SAMPLES} samples: {hint}")
    return rate


def measure_power(work: Callable[[], object], *, seconds: float | None = None,
                  repeats: int | None = None, hz: float = DEFAULT_HZ,
                  root: str | Path = "/", idle_seconds: float = 0.0, rail: str | None = None,
                  allow_jtop: bool = False, source: PowerSource | None = None,
                  nvpmodel: NvpMode | None = None,
                  process: bool | None = None) -> PowerMeasurement:
    """Run ``work()`` for at least ``seconds`` (default 2) or exactly ``repeats`` times
    while sampling power at ``hz``, after ``idle_seconds`` of sampling with nothing run.

    The figures are of the board's input rail (``rail`` names another, or "sum");
    ``source`` is a monitor already found (else :func:`find_power_source` at ``root``),
    ``nvpmodel`` a mode already read (else :func:`nvpmodel_mode` at ``root``);
    ``process``: see :class:`PowerSampler` (default: a child process for sysfs).
    Errors (PowerError / PowerUnavailable): no monitor, an unknown rail, sampling
    below 10 Hz, a read failing mid-run; an exception of ``work`` passes through."""
    hz = check_hz(hz)
    if seconds is not None and repeats is not None:
        raise DataError("give seconds or repeats, not both")
    if repeats is not None and (int(repeats) != repeats or repeats < 1):
        raise DataError(f"repeats must be an integer >= 1, got {repeats!r}")
    if seconds is None and repeats is None:
        seconds = 2.0
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise DataError(f"seconds must be > 0, got {seconds!r}")
    if not (math.isfinite(idle_seconds) and idle_seconds >= 0):
        raise DataError(f"idle seconds must be >= 0, got {idle_seconds!r}")
    owned = source is None
    if source is None:
        source = find_power_source(root, allow_jtop=allow_jtop, hz=hz)
    try:
        return _measure(work, source, seconds, repeats, hz, idle_seconds, rail,
                        nvpmodel if nvpmodel is not None else nvpmodel_mode(root), process)
    finally:
        if owned:
            source.close()


def _measure(work, source: PowerSource, seconds, repeats, hz, idle_seconds, rail,
             mode: NvpMode, process: bool | None) -> PowerMeasurement:
    info = source.info
    label, idx = _select_rail(info, rail)
    notes = []
    interval = info.update_interval_ms
    if interval is not None and interval > 1e3 / MIN_HZ:
        how = ("restart jtop's service with a shorter interval" if info.kind == "jtop" else
               "lower the hwmon update_interval (as root) or the chip's averaging (samples)")
        raise PowerError(f"the power source ({info.kind}) updates every {interval:g} ms "
                         f"({1e3 / interval:.1f} Hz), below {MIN_HZ:g} Hz: samples would "
                         f"repeat; {how}")
    if interval is not None and interval > 1e3 / hz:
        notes.append(f"the monitor converts every {interval:g} ms, slower than sampling at "
                     f"{hz:g} Hz: consecutive samples can repeat")
    sampler = PowerSampler(source, hz, process=process)
    units = 0
    with sampler:
        t_idle = time.monotonic()
        if idle_seconds > 0:
            sampler.wait(idle_seconds)
        t0 = time.monotonic()
        while not sampler.failed:
            work()
            units += 1
            if (units >= repeats) if repeats is not None else (time.monotonic() - t0 >= seconds):
                break
        t1 = time.monotonic()
    samples = sampler.samples           # the with block raised any read error
    wall = t1 - t0
    run = _window(samples, t0, t1)
    rate = _rate(len(run), wall, "during the work", hz, "seconds= or more repeats")
    per_rail = [[s.watts[i] for s in run] for i in range(len(info.rails))]
    watts = [sum(s.watts[i] for i in idx) for s in run]
    times = [s.t for s in run]
    gaps = [b - a for a, b in zip(times, times[1:])]
    mean = statistics.fmean(watts)
    if gaps and max(gaps) > 2 / MIN_HZ:
        notes.append(f"the longest gap between samples was {max(gaps):.3f} s: a burst that "
                     "short can be missed")
    idle = above = above_j = None
    if idle_seconds > 0:
        base = _window(samples, t_idle, t0)
        idle_w = [sum(s.watts[i] for i in idx) for s in base]
        idle_rate = _rate(len(base), t0 - t_idle, "while idle", hz, "idle_seconds=")
        idle = IdleBaseline(seconds=t0 - t_idle, samples=len(base), rate_hz=idle_rate,
                            mean_w=statistics.fmean(idle_w),
                            median_w=statistics.median(idle_w), max_w=max(idle_w))
        above = mean - idle.mean_w
        above_j = above * wall / units
    else:
        notes.append(f"{label} is the whole board's power, idle included: energy per unit is "
                     "not the work's alone (give an idle baseline for the part above idle)")
    return PowerMeasurement(
        source=info, input_rail=label, mean_w=mean, median_w=statistics.median(watts),
        max_w=max(watts), min_w=min(watts),
        rail_mean_w={r.label: statistics.fmean(v) for r, v in zip(info.rails, per_rail)},
        samples=len(run), rate_hz=rate, requested_hz=hz,
        max_interval_s=max(gaps) if gaps else wall, units=units, wall_s=wall,
        unit_s=wall / units, energy_per_unit_j=mean * wall / units, nvpmodel=mode,
        idle=idle, above_idle_w=above, energy_above_idle_per_unit_j=above_j,
        notes=tuple(notes))
