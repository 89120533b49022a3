"""Runtimes for the exported end-side graphs, with no torch.

:func:`load_backend` picks the class from the file's suffix through the export
formats table (:mod:`sci_edge.export.formats`): ``.onnx``, ``.int8.onnx`` and
``.trt-int8.onnx`` run in onnxruntime on the CPU (:class:`OrtBackend`),
``.engine`` in TensorRT (:class:`TrtBackend`). Both take and give numpy arrays
by tensor name::

    fem = load_backend("out/fem_tail.int8.onnx")
    feature = fem.run(popcount_feed(bank.dots_words(pack_time(window))))["feature"]
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._deps import require
from .._threads import resolve_threads
from ..errors import DataError, MissingDependencyError
from ..export.formats import ExportFormat, format_for_path


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple            # ints, or str for a dynamic axis
    dtype: str              # numpy name, e.g. "float32"


def popcount_feed(dots: np.ndarray, name: str = "dots") -> dict[str, np.ndarray]:
    """The popcount kernel's integer responses (C, H, W) (or (B, C, H, W)) as the
    ``fem_tail`` graph's input: float32, batch axis first. No scaling: the graph
    applies the bank's alpha and bias."""
    dots = np.asarray(dots)
    if dots.ndim == 3:
        dots = dots[None]
    if dots.ndim != 4:
        raise DataError(f"popcount responses must be (C, H, W) or (B, C, H, W), got {dots.shape}")
    return {name: np.ascontiguousarray(dots, np.float32)}


class Backend(ABC):
    """What every runtime offers: ``run``, ``metadata``, ``inputs``, ``outputs``."""

    format: ExportFormat
    path: Path
    metadata: dict[str, str]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named input arrays -> named output arrays."""

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run(inputs)

    def _feeds(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = {t.name: t for t in self.inputs}
        unknown = sorted(set(inputs) - set(names))
        missing = sorted(set(names) - set(inputs))
        if unknown or missing:
            raise DataError(f"{self.path}: inputs {sorted(names)} expected"
                            + (f"; missing {missing}" if missing else "")
                            + (f"; unknown {unknown}" if unknown else ""))
        feeds = {}
        for name, arr in inputs.items():
            want = names[name]
            arr = np.ascontiguousarray(arr, dtype=want.dtype)
            if arr.ndim != len(want.shape) or any(
                    isinstance(d, int) and d > 0 and d != n for d, n in zip(want.shape, arr.shape)):
                raise DataError(f"{self.path}: input {name!r} must be {list(want.shape)}, "
                                f"got {list(arr.shape)}")
            feeds[name] = arr
        return feeds

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16",
              "tensor(double)": "float64", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
              "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool"}


class OrtBackend(Backend):
    """An ONNX model (FP32 or QDQ INT8) in onnxruntime's CPU provider.

    ``threads``: intra-op threads (default: SCI_EDGE_NUM_THREADS, OMP_NUM_THREADS,
    else the usable CPUs). ``optimize=False`` turns onnxruntime's graph
    optimisations off, so a QDQ model runs as written (dequantise, float op,
    quantise): the reference arithmetic of an INT8 model, free of the CPU
    kernels' shortcuts (x86 without VNNI saturates full-range int8 weights,
    which the "trt" flavour has). ``spin``: let the worker threads busy-wait
    between ops (onnxruntime's default). Off here: the encoder runs three
    sessions and the popcount kernel back to back, and a session's spinning
    workers take the cores the next one needs (2 threads on 2 busy cores: the
    fem_tail INT8 graph 102 -> 60 ms, fp32 177 -> 120 ms, one session alone)."""

    def __init__(self, path: str | Path, *, threads: int | None = None, optimize: bool = True,
                 spin: bool = False):
        ort = require("onnxruntime", "running exported ONNX models")
        self.path = Path(path)
        self.format = format_for_path(self.path)
        if self.format.backend != "OrtBackend":
            raise DataError(f"{self.path}: a {self.format.name} file, not an ONNX model")
        if not self.path.is_file():
            raise DataError(f"{self.path}: model not found")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = resolve_threads(threads)
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        if not optimize:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:    # onnxruntime raises its own untyped errors
            raise DataError(f"{self.path}: onnxruntime cannot load it "
                            f"({str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r})"
                            ) from exc
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.inputs = [self._info(v) for v in self.session.get_inputs()]
        self.outputs = [self._info(v) for v in self.session.get_outputs()]

    @staticmethod
    def _info(v) -> TensorInfo:
        shape = tuple(d if isinstance(d, int) else str(d) for d in v.shape)
        return TensorInfo(v.name, shape, _ORT_TYPES.get(v.type, "float32"))

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = self._feeds(inputs)
        names = [t.name for t in self.outputs]
        return dict(zip(names, self.session.run(names, feeds)))


class _CudaRuntime:
    """The few CUDA runtime calls a TensorRT engine needs, through cuda-python
    (``cuda.bindings.runtime`` or the older ``cuda.cudart``)."""

    def __init__(self):
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            try:
                from cuda import cudart as rt
            except ImportError as exc:
                raise MissingDependencyError("cuda-python", None,
                                             "device buffers for TensorRT engines") from exc
        self.rt = rt
        self.stream = self._ok(rt.cudaStreamCreate())

    def _ok(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else (rest or None)

    def malloc(self, nbytes: int) -> int:
        return int(self._ok(self.rt.cudaMalloc(max(1, nbytes))))

    def free(self, ptr: int) -> None:
        self.rt.cudaFree(ptr)

    def to_device(self, ptr: int, arr: np.ndarray) -> None:
        self._ok(self.rt.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                         self.stream))

    def to_host(self, arr: np.ndarray, ptr: int) -> None:
        self._ok(self.rt.cudaMemcpyAsync(arr.ctypes.data, ptr, arr.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                         self.stream))

    def sync(self) -> None:
        self._ok(self.rt.cudaStreamSynchronize(self.stream))


class TrtBackend(Backend):
    """A serialized TensorRT engine (``.engine``), built on this GPU with this
    TensorRT version (:func:`sci_edge.export.trt.onnx2engine`). Uses the
    tensor-name API of TensorRT >= 8.5 and cuda-python for buffers. Metadata
    comes from the ``<engine>.json`` written beside it at build time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.format = format_for_path(self.path)
        if self.format.backend != "TrtBackend":
            raise DataError(f"{self.path}: a {self.format.name} file, not a TensorRT engine")
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise MissingDependencyError(
                "tensorrt", None, "running TensorRT engines: it ships with JetPack; on a "
                                  "CPU use the .onnx / .int8.onnx files with OrtBackend") from exc
        if not self.path.is_file():
            raise DataError(f"{self.path}: engine not found")
        self.trt = trt
        side = self.path.with_name(self.path.name + ".json")
        self.metadata = json.loads(side.read_text()) if side.is_file() else {}
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise DataError(f"{self.path}: TensorRT {trt.__version__} cannot load this engine "
                            "(built by another TensorRT version or for another GPU?)")
        self.context = self.engine.create_execution_context()
        self.cuda = _CudaRuntime()
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dims = self.engine.get_tensor_shape(name)
            shape = tuple(int(d) if d >= 0 else "dynamic" for d in dims)
            info = TensorInfo(name, shape,
                              np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))).name)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(info)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = self._feeds(inputs)
        buffers = []
        try:
            for name, arr in feeds.items():
                self.context.set_input_shape(name, arr.shape)
                ptr = self.cuda.malloc(arr.nbytes)
                buffers.append(ptr)
                self.cuda.to_device(ptr, arr)
                self.context.set_tensor_address(name, ptr)
            outs = {}
            for t in self.outputs:
                arr = np.empty(tuple(self.context.get_tensor_shape(t.name)), t.dtype)
                ptr = self.cuda.malloc(arr.nbytes)
                buffers.append(ptr)
                self.context.set_tensor_address(t.name, ptr)
                outs[t.name] = (arr, ptr)
            if not self.context.execute_async_v3(int(self.cuda.stream)):
                raise RuntimeError(f"{self.path}: TensorRT execution failed")
            for arr, ptr in outs.values():
                self.cuda.to_host(arr, ptr)
            self.cuda.sync()
            return {k: arr for k, (arr, _) in outs.items()}
        finally:
            for ptr in buffers:
                self.cuda.free(ptr)


_BACKENDS = {"OrtBackend": OrtBackend, "TrtBackend": TrtBackend}


def load_backend(path: str | Path, *, threads: int | None = None, **options) -> Backend:
    """The runtime for ``path``, chosen by its suffix (the export formats table);
    ``threads`` and ``options`` go to an OrtBackend (a TrtBackend takes none)."""
    fmt = format_for_path(path)
    cls = _BACKENDS[fmt.backend]
    return cls(path, threads=threads, **options) if cls is OrtBackend else cls(path)
