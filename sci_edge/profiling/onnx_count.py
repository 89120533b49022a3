"""Multiply-accumulates of an exported ONNX graph, from its inferred shapes.

Torch-free: reads a model with the ``onnx`` package only (``pip install onnx``),
runs ``onnx.shape_inference.infer_shapes`` and counts, per op type, the MACs of

- ``Conv``: output elements x (input channels / group) x kernel area;
- ``ConvTranspose``: input elements x (output channels / group) x kernel area;
- ``MatMul``: broadcast batch x M x N x K (numpy matmul semantics, 1-D operands
  promoted and squeezed as numpy does);
- ``Gemm``: M x N x K (after ``transA``/``transB``).

Biases and the ``C`` term of Gemm are not MACs and are not counted (as fvcore and
``torch.utils.flop_counter`` do not count them). It is the third, independent
count the profiling tests check fvcore and ``FlopCounterMode`` against.
"""
from __future__ import annotations

import math
from pathlib import Path

COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def _shapes(model) -> dict:
    """name -> shape (list of ints; None where a dimension is unknown)."""
    import onnx

    out = {}
    graph = model.graph
    values = list(graph.value_info) + list(graph.input) + list(graph.output)
    for v in values:
        t = v.type.tensor_type
        if not t.HasField("shape"):
            continue
        out[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for init in graph.initializer:
        out[init.name] = list(init.dims)
    for node in graph.node:     # Constant nodes carry their tensor
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = list(onnx.helper.get_attribute_value(a).dims)
    return out


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _need(shape, node, which):
    if shape is None or any(d is None for d in shape):
        raise ValueError(f"ONNX node {node.name or node.op_type!r}: the shape of its {which} "
                         f"is unknown after shape inference (export with static shapes)")
    return shape


def _node_macs(node, shapes) -> int:
    op = node.op_type
    if op == "Conv":
        y = _need(shapes.get(node.output[0]), node, "output")
        w = shapes.get(node.input[1])
        if w is None or any(d is None for d in w):
            # a weight computed in the graph (the binarized filters): its shape from
            # the input's channels, ``group`` and ``kernel_shape``
            x = _need(shapes.get(node.input[0]), node, "input")
            at = _attrs(node)
            if "kernel_shape" not in at:
                _need(None, node, "weight")
            w = [y[1], x[1] // int(at.get("group", 1)), *at["kernel_shape"]]
        # weight (M, C/group, k...): each output element reads C/group x k... inputs
        return math.prod(y) * math.prod(w[1:])
    if op == "ConvTranspose":
        x = _need(shapes.get(node.input[0]), node, "input")
        w = _need(shapes.get(node.input[1]), node, "weight")
        # weight (C, M/group, k...): each input element scatters to M/group x k... outputs
        return math.prod(x) * math.prod(w[1:])
    if op == "MatMul":
        a = list(_need(shapes.get(node.input[0]), node, "first operand"))
        b = list(_need(shapes.get(node.input[1]), node, "second operand"))
        if len(a) == 1:
            a = [1] + a
        if len(b) == 1:
            b = b + [1]
        m, k = a[-2], a[-1]
        n = b[-1]
        batch_a, batch_b = a[:-2], b[:-2]
        nd = max(len(batch_a), len(batch_b))
        batch_a = [1] * (nd - len(batch_a)) + batch_a
        batch_b = [1] * (nd - len(batch_b)) + batch_b
        batch = math.prod(max(x, y) for x, y in zip(batch_a, batch_b))
        return batch * m * n * k
    if op == "Gemm":
        a = _need(shapes.get(node.input[0]), node, "A")
        b = _need(shapes.get(node.input[1]), node, "B")
        at = _attrs(node)
        m, k = (a[1], a[0]) if at.get("transA", 0) else (a[0], a[1])
        n = b[0] if at.get("transB", 0) else b[1]
        return m * n * k
    return 0


def fold_constants(model, shapes: dict | None = None):
    """The model with every node that reads only initializers and constants
    evaluated (``onnx.reference``, numpy) and stored as an initializer; with
    ``shapes`` (name -> static shape), ``Shape`` nodes of fully known tensors too.

    Weights computed in the graph (the binarized filters: sign, pad, concat of the
    trained weights) and shape arithmetic that ONNX's data propagation does not
    follow (``Div``, as in an exported ``chunk``) otherwise leave shape inference
    with unknown dimensions."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    shapes = shapes or {}
    known = {i.name for i in graph.initializer}
    const_nodes, rest, direct = [], [], []
    for node in graph.node:
        ins = [i for i in node.input if i]
        shp = shapes.get(node.input[0]) if node.op_type == "Shape" else None
        if shp is not None and all(d is not None for d in shp):
            at = _attrs(node)
            start, end = at.get("start", 0), at.get("end", None)
            direct.append(numpy_helper.from_array(
                np.array(shp[start:end], dtype=np.int64), name=node.output[0]))
            known.add(node.output[0])
            continue
        if all(i in known for i in ins) and not any(a.type in (onnx.AttributeProto.GRAPH,
                                                                onnx.AttributeProto.GRAPHS)
                                                     for a in node.attribute) \
                and not node.op_type.startswith("Random") \
                and node.op_type != "Multinomial":
            const_nodes.append(node)
            known.update(o for o in node.output if o)
        else:
            rest.append(node)
    if not const_nodes and not direct:
        return model
    produced = {o for n in const_nodes for o in n.output if o}
    needed = sorted({i for n in rest for i in n.input if i in produced}
                    | {o.name for o in graph.output if o.name in produced})
    folded = list(direct)
    if needed:
        sub = helper.make_graph(const_nodes, "constants", [],
                                [helper.make_value_info(n, onnx.TypeProto()) for n in needed],
                                initializer=list(graph.initializer) + list(direct))
        submodel = helper.make_model(sub, opset_imports=list(model.opset_import))
        values = ReferenceEvaluator(submodel).run(None, {})
        folded += [numpy_helper.from_array(np.asarray(v), name=n)
                   for n, v in zip(needed, values)]
    new = onnx.ModelProto()
    new.CopyFrom(model)
    del new.graph.node[:]
    del new.graph.value_info[:]     # inferred afresh (stale unknown dimensions would stay)
    new.graph.node.extend(rest)
    new.graph.initializer.extend(folded)
    return new


def static_shapes(model, max_rounds: int = 32):
    """Shape inference (with data propagation) and constant folding, repeated
    until no node is left to fold: the model with every shape it can know."""
    import onnx

    for _ in range(max_rounds):
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        folded = fold_constants(model, _shapes(model))
        if folded is model or len(folded.graph.node) == len(model.graph.node):
            return model
        model = folded
    return onnx.shape_inference.infer_shapes(model, data_prop=True)


def onnx_macs(model_or_path) -> dict[str, int]:
    """MACs per op type (``Conv``, ``ConvTranspose``, ``MatMul``, ``Gemm``; only
    those present) of an ONNX model (a path or a loaded ``onnx.ModelProto``),
    with ``"total"`` their sum. Nodes inside subgraphs (If/Loop bodies) are not
    visited: the exported SCI models have none. Raises ValueError where a shape
    stays unknown."""
    import onnx

    model = model_or_path
    if isinstance(model_or_path, (str, Path)):
        model = onnx.load(str(model_or_path))
    model = static_shapes(model)
    shapes = _shapes(model)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in COUNTED:
            counts[node.op_type] = counts.get(node.op_type, 0) + int(_node_macs(node, shapes))
    counts["total"] = sum(counts.values())
    return counts


def op_histogram(model_or_path) -> dict[str, int]:
    """Number of nodes per op type (to check, e.g., that GridSample was exported)."""
    import onnx

    model = model_or_path
    if isinstance(model_or_path, (str, Path)):
        model = onnx.load(str(model_or_path))
    hist: dict[str, int] = {}
    for node in model.graph.node:
        hist[node.op_type] = hist.get(node.op_type, 0) + 1
    return hist
