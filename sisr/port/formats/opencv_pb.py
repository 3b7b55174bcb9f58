"""OpenCV dnn_superres's frozen TensorFlow graphs: `ESPCN_x{2,3,4}.pb`
(fannymonori/TF-ESPCN), `FSRCNN_x{2,3,4}.pb` and `FSRCNN-small_x{2,3,4}.pb`
(Saafke/FSRCNN_Tensorflow), `LapSRN_x{2,4,8}.pb` (fannymonori/TF-LapSRN), into
`sisr.model.opencv_sr`'s models.

Read as data: the file is parsed as a `GraphDef` and its `Const` tensors are read with
`tf.make_ndarray`; nothing in it is imported or run. The network is told from the graph's
wiring, walked back from its output (the input of the `NCHW_output` transpose) to the
`Placeholder`: ESPCN ends in `Tanh(DepthToSpace(conv + b))` after convs with ReLU, FSRCNN
in `BiasAdd(DepthToSpace(conv))` after convs with PReLU written as
`relu(x) + alpha * (x - |x|) * 0.5`, LapSRN in levels of `DepthToSpace(2)` branches with
the leaky ReLU `relu(x) - slope * relu(-1 * x)`. The scale is the `DepthToSpace` block size
(LapSRN: 2 per level). Every node of the graph must be part of the walk (an extra node is
refused, naming it), and every `Const` fills a sisr weight or is a checked constant
(0.5, -1, the slope, the transposes' permutation).
"""

import dataclasses

import numpy as np

from sisr.port.plan import ArrayFill, Plan, PortError

NAME = "opencv-pb"
ALIASES = {"opencv": None, "dnn-superres": None}
OUTPUT = "NCHW_output"
NCHW = [0, 3, 1, 2]
# Bigger than any conv of these networks (LapSRN's are 3x3x64x64): a Const declaring more
# elements is refused before it is expanded.
MAX_ELEMENTS = 1 << 24
GRAPH_FIELD = b"\x0a"  # GraphDef field 1 (node), length-delimited: a serialised graph's start


class OpenCVGraphError(PortError):
    """A `.pb` file that is not one of the OpenCV dnn_superres networks."""


@dataclasses.dataclass
class FrozenGraph:
    """The nodes of a frozen GraphDef, by name, and where it was read from."""

    path: str
    nodes: dict

    def keys(self):
        return tuple(self.nodes)


def _parse(path):
    with open(path, "rb") as f:
        if f.read(len(GRAPH_FIELD)) != GRAPH_FIELD:  # other formats: one byte read
            return None
        data = GRAPH_FIELD + f.read()
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    graph = tf.compat.v1.GraphDef()
    try:
        graph.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError):
        return None
    if not graph.node or not any(n.op == "Placeholder" for n in graph.node):
        return None
    return graph


def sniff(path):
    """True for a serialised TensorFlow GraphDef with a Placeholder."""
    try:
        return _parse(path) is not None
    except OSError:
        return False


def read(path, **options):
    """The `FrozenGraph` of a `.pb` file."""
    graph = _parse(path)
    if graph is None:
        raise OpenCVGraphError(f"{path} is not a frozen TensorFlow graph (GraphDef)")
    nodes = {}
    for node in graph.node:
        if node.name in nodes:
            raise OpenCVGraphError(f"{path}: the graph has two nodes named {node.name!r}")
        nodes[node.name] = node
    return FrozenGraph(path, nodes)


class _Walk:
    """The nodes of a graph as it is matched, recording every node it visits."""

    def __init__(self, graph):
        self.graph = graph
        self.seen = set()
        self.arrays = {}
        self.checked = []  # Consts checked rather than loaded (0.5, -1, slopes)

    def node(self, name, *ops):
        node = self.graph.nodes.get(name)
        if node is None:
            raise OpenCVGraphError(f"the graph has no node {name!r}")
        if ops and node.op not in ops:
            raise OpenCVGraphError(f"node {name!r} is a {node.op}, expected "
                                   f"{' or '.join(ops)}")
        self.seen.add(name)
        return node

    def inputs(self, node, count):
        names = []
        for name in node.input:
            if name.startswith("^") or (":" in name and not name.endswith(":0")):
                raise OpenCVGraphError(f"node {node.name!r} reads {name!r}: control "
                                       "inputs and second outputs are not part of these "
                                       "networks")
            names.append(name[:-2] if name.endswith(":0") else name)
        if len(names) != count:
            raise OpenCVGraphError(f"node {node.name!r} ({node.op}) has {len(names)} "
                                   f"input(s), expected {count}")
        return names

    def const(self, name):
        import tensorflow as tf

        node = self.node(name, "Const")
        if name not in self.arrays:
            tensor = node.attr["value"].tensor
            count = 1
            for dim in tensor.tensor_shape.dim:
                count *= max(int(dim.size), 0)
            if count > MAX_ELEMENTS:
                raise OpenCVGraphError(f"Const {name!r} declares {count:,} elements")
            try:
                array = tf.make_ndarray(tensor)
            except (TypeError, ValueError) as err:
                raise OpenCVGraphError(f"Const {name!r} cannot be read: {err}") from None
            self.arrays[name] = np.asarray(array)
        return self.arrays[name]

    def weight(self, name, rank):
        array = self.const(name)
        if array.dtype != np.float32 or array.ndim != rank:
            raise OpenCVGraphError(f"Const {name!r} is {array.dtype} {array.shape}, "
                                   f"expected float32 of rank {rank}")
        return array

    def scalar(self, name, expected=None):
        array = self.const(name)
        if array.shape != () or array.dtype != np.float32 or (
                expected is not None and float(array) != expected):
            want = "a float32 scalar" if expected is None else f"{expected}"
            raise OpenCVGraphError(f"Const {name!r} is {array.dtype} {array.shape} "
                                   f"{array.ravel()[:4]}, expected {want}")
        return float(array)

    def conv(self, name):
        """(input, kernel Const name, kernel) of a stride-1 "SAME" NHWC Conv2D."""
        node = self.node(name, "Conv2D")
        source, kernel = self.inputs(node, 2)
        attr = node.attr
        strides = list(attr["strides"].list.i)
        dilations = list(attr["dilations"].list.i) or [1, 1, 1, 1]
        padding = attr["padding"].s.decode()
        layout = attr["data_format"].s.decode() or "NHWC"
        if strides != [1, 1, 1, 1] or dilations != [1, 1, 1, 1] or padding != "SAME" \
                or layout != "NHWC":
            raise OpenCVGraphError(f"Conv2D {name!r} has strides {strides}, dilations "
                                   f"{dilations}, padding {padding}, {layout}: expected a "
                                   "stride-1 SAME NHWC convolution")
        return source, kernel, self.weight(kernel, 4)

    def conv_bias(self, name):
        """(input, [kernel name, bias name], kernel, bias) of Add(Conv2D(x, f), b)."""
        conv, bias = self.inputs(self.node(name, "Add", "BiasAdd"), 2)
        source, kernel_name, kernel = self.conv(conv)
        return source, [kernel_name, bias], kernel, self.weight(bias, 1)

    def depth_to_space(self, name):
        """(input, block size) of an NHWC DepthToSpace."""
        node = self.node(name, "DepthToSpace")
        (source,) = self.inputs(node, 1)
        layout = node.attr["data_format"].s.decode() or "NHWC"
        if layout != "NHWC":
            raise OpenCVGraphError(f"DepthToSpace {name!r} is {layout}, expected NHWC")
        return source, int(node.attr["block_size"].i)

    def prelu(self, name):
        """(input, alpha name, alpha, [the 0.5 Const]) of
        Add(Relu(a), Mul(Mul(alpha, Sub(a, Abs(a))), 0.5))."""
        relu, half_mul = self.inputs(self.node(name, "Add"), 2)
        (a,) = self.inputs(self.node(relu, "Relu"), 1)
        mul, half = self.inputs(self.node(half_mul, "Mul"), 2)
        self.scalar(half, 0.5)
        alpha, sub = self.inputs(self.node(mul, "Mul"), 2)
        x, abs_ = self.inputs(self.node(sub, "Sub"), 2)
        (y,) = self.inputs(self.node(abs_, "Abs"), 1)
        if not a == x == y:
            raise OpenCVGraphError(f"PReLU {name!r} reads {a!r}, {x!r} and {y!r}, expected "
                                   "one tensor")
        return a, alpha, self.weight(alpha, 1), [half]

    def leaky(self, name):
        """(input, slope, [the slope and -1 Consts]) of Sub(Relu(a), Mul(slope,
        Relu(Mul(-1, a))))."""
        relu, mul = self.inputs(self.node(name, "Sub"), 2)
        (a,) = self.inputs(self.node(relu, "Relu"), 1)
        slope_name, negative = self.inputs(self.node(mul, "Mul"), 2)
        (flip,) = self.inputs(self.node(negative, "Relu"), 1)
        minus, x = self.inputs(self.node(flip, "Mul"), 2)
        self.scalar(minus, -1.0)
        if a != x:
            raise OpenCVGraphError(f"leaky ReLU {name!r} reads {a!r} and {x!r}, expected "
                                   "one tensor")
        # The shortest decimal of the float32 (0.2, not 0.20000000298...).
        return a, float(str(np.float32(self.scalar(slope_name)))), [slope_name, minus]

    def is_input(self, name):
        node = self.graph.nodes.get(name)
        if node is not None and node.op == "Placeholder":
            self.seen.add(name)
            return True
        return False


def _output(walk):
    """The network's output node: the input of the `NCHW_output` transpose, or the one node
    that nothing reads. Every transpose that nothing reads is checked (NHWC -> NCHW)."""
    graph = walk.graph
    read_by = {name for node in graph.nodes.values() for name in node.input}
    read_by = {n.lstrip("^").split(":")[0] for n in read_by}
    sinks = [name for name in graph.nodes if name not in read_by]
    transposes = {}
    for name in sinks:
        node = graph.nodes[name]
        if node.op != "Transpose":
            continue
        source, perm = walk.inputs(walk.node(name), 2)
        if walk.const(perm).tolist() != NCHW:
            raise OpenCVGraphError(f"Transpose {name!r} has perm {walk.const(perm).tolist()}, "
                                   f"expected {NCHW}")
        transposes[name] = source
    if OUTPUT in transposes:
        return transposes[OUTPUT], transposes
    outputs = sorted(set(transposes.values()) | {s for s in sinks if s not in transposes})
    if len(outputs) != 1:
        raise OpenCVGraphError(f"the graph has no {OUTPUT!r} transpose and {len(outputs)} "
                               f"outputs ({', '.join(outputs[:4])})")
    return outputs[0], transposes


def _espcn(walk, output):
    shuffled = walk.inputs(walk.node(output, "Tanh"), 1)[0]
    head, scale = walk.depth_to_space(shuffled)
    layers = []
    x, keys, kernel, bias = walk.conv_bias(head)
    layers.append((keys, kernel, bias))
    while not walk.is_input(x):
        (inner,) = walk.inputs(walk.node(x, "Relu"), 1)
        x, keys, kernel, bias = walk.conv_bias(inner)
        layers.append((keys, kernel, bias))
    layers.reverse()
    kernels = [kernel for _, kernel, _ in layers]
    _chain(kernels, scale * scale)
    num_filters = [int(k.shape[3]) for k in kernels[:-1]]
    sizes = [int(k.shape[0]) for k in kernels]
    names = [f"conv{i}" for i in range(1, len(layers))] + [f"output_x{scale}_conv"]
    fills = [ArrayFill(name, tuple(keys), f"{keys[0]} + {keys[1]}", values=[kernel, bias])
             for name, (keys, kernel, bias) in zip(names, layers)]
    args = {"scale": scale, "num_filters": num_filters, "kernel_sizes": sizes}
    evidence = {"num_filters": f"the graph has {num_filters} (its hidden convs' outputs)",
                "kernel_sizes": f"the graph has {sizes} (its convs' kernels)"}
    return "espcn_opencv", args, fills, evidence, scale


def _chain(kernels, last):
    """Checks that the kernels chain from 1 channel to `last` channels."""
    channels = 1
    for kernel in kernels:
        if kernel.shape[0] != kernel.shape[1] or kernel.shape[2] != channels:
            raise OpenCVGraphError(f"a kernel of shape {kernel.shape} follows {channels} "
                                   "channel(s): expected a square kernel reading them")
        channels = kernel.shape[3]
    if channels != last:
        raise OpenCVGraphError(f"the last conv has {channels} outputs, expected {last} "
                               "(the DepthToSpace block size squared)")


def _fsrcnn(walk, output):
    shuffled, bias_name = walk.inputs(walk.node(output, "BiasAdd"), 2)
    bias = walk.weight(bias_name, 1)
    if bias.shape != (1,):
        raise OpenCVGraphError(f"Const {bias_name!r} has shape {bias.shape}, expected (1,)")
    head, scale = walk.depth_to_space(shuffled)
    x, last_name, last = walk.conv(head)
    layers, checked = [], []
    while not walk.is_input(x):
        inner, alpha_name, alpha, consts = walk.prelu(x)
        x, keys, kernel, conv_bias = walk.conv_bias(inner)
        layers.append((keys, kernel, conv_bias, alpha_name, alpha))
        checked += consts
    layers.reverse()
    if len(layers) < 3:
        raise OpenCVGraphError(f"the graph has {len(layers)} conv(s) with PReLU before the "
                               "upsampling conv, expected at least 3 (FSRCNN)")
    kernels = [kernel for _, kernel, _, _, _ in layers] + [last]
    _chain(kernels, scale * scale)
    d, s, m = int(kernels[0].shape[3]), int(kernels[1].shape[3]), len(layers) - 3
    sizes = [int(k.shape[0]) for k in kernels]
    if sizes != [5, 1] + [3] * m + [1, 1] or kernels[-2].shape[3] != d:
        raise OpenCVGraphError(f"the convs have kernels {sizes} and {kernels[-2].shape[3]} "
                               f"expanded features: expected FSRCNN's 5, 1, 3 x m, 1, 1 "
                               f"and {d}")
    names = ["feature", "shrink"] + [f"map{i}" for i in range(1, m + 1)] + ["expand"]
    fills = []
    for name, (keys, kernel, conv_bias, alpha_name, alpha) in zip(names, layers):
        fills.append(ArrayFill(f"{name}_conv", tuple(keys), f"{keys[0]} + {keys[1]}",
                               values=[kernel, conv_bias]))
        fills.append(ArrayFill(f"{name}_prelu", (alpha_name,), alpha_name,
                               values=[alpha.reshape(1, 1, -1)]))
    # One bias after the shuffle = the same bias on each of the scale^2 sub-pixels.
    fills.append(ArrayFill(f"upsample_x{scale}_conv", (last_name, bias_name),
                           f"{last_name} + {bias_name}",
                           values=[last, np.full(scale * scale, bias[0], np.float32)]))
    args = {"scale": scale, "d": d, "s": s, "m": m}
    evidence = {"d": f"the graph has {d} (its first conv's outputs)",
                "s": f"the graph has {s} (its second conv's outputs)",
                "m": f"the graph has {m} (3x3 convs between the 1x1 ones)"}
    walk.checked += checked
    return "fsrcnn_opencv", args, fills, evidence, scale


def _lapsrn_level(walk, image, slopes):
    """The levels ending in `image` (the level's output), earliest first: each a dict of
    its features' output node, its convs, and its two 4x4 kernels."""
    if walk.is_input(image):
        return []
    total, slope, consts = walk.leaky(image)
    slopes.append(slope)
    walk.checked += consts
    image_shuffled, features = walk.inputs(walk.node(total, "Add"), 2)
    previous_image, image_block = walk.depth_to_space(image_shuffled)
    previous_image, image_kernel_name, image_kernel = walk.conv(previous_image)
    feature_shuffled, slope, consts = walk.leaky(features)
    slopes.append(slope)
    walk.checked += consts
    x, feature_block = walk.depth_to_space(feature_shuffled)
    x, feature_kernel_name, feature_kernel = walk.conv(x)
    if image_block != 2 or feature_block != 2:
        raise OpenCVGraphError(f"LapSRN's DepthToSpace {image_shuffled!r} / "
                               f"{feature_shuffled!r} have block sizes {image_block} / "
                               f"{feature_block}, expected 2")
    convs = []
    while True:
        inner, slope, consts = walk.leaky(x)
        slopes.append(slope)
        walk.checked += consts
        x, keys, kernel, bias = walk.conv_bias(inner)
        convs.append((keys, kernel, bias))
        if walk.is_input(x) or _reads_shuffle(walk, x):
            break
    convs.reverse()
    levels = _lapsrn_level(walk, previous_image, slopes)
    start = levels[-1]["features"] if levels else None
    if (start is None and not walk.is_input(x)) or (start is not None and x != start):
        raise OpenCVGraphError(f"LapSRN level {len(levels) + 1}'s features start from {x!r}, "
                               f"expected {start or 'the input'!r}")
    levels.append({"features": features, "convs": convs,
                   "feature_kernel": (feature_kernel_name, feature_kernel),
                   "image_kernel": (image_kernel_name, image_kernel)})
    return levels


def _reads_shuffle(walk, name):
    """True if node `name` is a leaky ReLU's Sub(Relu(DepthToSpace ...), ...): the
    features of the level before."""
    chain = [name]
    for op in ("Sub", "Relu", "DepthToSpace"):
        node = walk.graph.nodes.get(chain[-1])
        if node is None or node.op != op or not node.input:
            return False
        chain.append(node.input[0].split(":")[0])
    return True


def _lapsrn(walk, output):
    slopes = []
    levels = _lapsrn_level(walk, output, slopes)
    if not levels:
        raise OpenCVGraphError("the output is the input")
    if len(set(slopes)) != 1:
        raise OpenCVGraphError(f"the leaky ReLUs have slopes {sorted(set(slopes))}, "
                               "expected one")
    depth = len(levels[0]["convs"])
    num_filters = int(levels[0]["convs"][0][1].shape[3])
    fills = []
    for number, level in enumerate(levels, start=1):
        if len(level["convs"]) != depth:
            raise OpenCVGraphError(f"LapSRN level {number} has {len(level['convs'])} convs, "
                                   f"level 1 has {depth}")
        kernels = [kernel for _, kernel, _ in level["convs"]]
        _chain(kernels + [level["feature_kernel"][1]], 4)
        _chain([level["image_kernel"][1]], 4)
        if any(k.shape[3] != num_filters for k in kernels) or \
                any(k.shape[0] != 3 for k in kernels) or \
                level["feature_kernel"][1].shape[0] != 4 or level["image_kernel"][1].shape[0] != 4:
            raise OpenCVGraphError(f"LapSRN level {number}'s kernels are "
                                   f"{[k.shape for k in kernels]}: expected 3x3 convs of "
                                   f"{num_filters} filters and 4x4 upsampling convs")
        for i, (keys, kernel, bias) in enumerate(level["convs"], start=1):
            if bias.shape not in ((1,), (num_filters,)):
                raise OpenCVGraphError(f"Const {keys[1]!r} has shape {bias.shape}, expected "
                                       f"(1,) or ({num_filters},)")
            # The first conv's single bias is added to every channel.
            values = [kernel, np.broadcast_to(bias, (num_filters,)).astype(np.float32)]
            fills.append(ArrayFill(f"level{number}_conv{i}", tuple(keys),
                                   f"{keys[0]} + {keys[1]}", values=values))
        for branch in ("feature", "image"):
            key, kernel = level[f"{branch}_kernel"]
            target = "features_conv" if branch == "feature" else "image_conv"
            fills.append(ArrayFill(f"level{number}_{target}", (key,), key, values=[kernel]))
    scale = 2 ** len(levels)
    args = {"scale": scale, "num_filters": num_filters, "depth": depth,
            "negative_slope": slopes[0]}
    evidence = {"num_filters": f"the graph has {num_filters} (its first conv's outputs)",
                "depth": f"the graph has {depth} (convs before each level's upsampling)",
                "negative_slope": f"the graph has {slopes[0]} (its leaky ReLUs)"}
    return "lapsrn_opencv", args, fills, evidence, scale


# The last op of each network's output -> its matcher.
NETWORKS = {"Tanh": _espcn, "BiasAdd": _fsrcnn, "Sub": _lapsrn}
NETWORK_NAMES = "ESPCN ends in Tanh, FSRCNN in BiasAdd, LapSRN in a leaky ReLU (Sub)"


def _plan(graph):
    cached = getattr(graph, "_plan", None)
    if cached is not None:
        return cached
    walk = _Walk(graph)
    output, transposes = _output(walk)
    node = walk.node(output)
    if node.op not in NETWORKS:
        raise OpenCVGraphError(f"not an OpenCV dnn_superres network: its output {output!r} "
                               f"is a {node.op} ({NETWORK_NAMES})")
    model, args, fills, evidence, scale = NETWORKS[node.op](walk, output)
    for name, source in transposes.items():
        if source not in walk.seen:
            raise OpenCVGraphError(f"Transpose {name!r} reads {source!r}, which is not part "
                                   "of the network")
    unused = sorted(set(graph.nodes) - walk.seen)
    if unused:
        raise OpenCVGraphError(f"the graph has {len(unused)} node(s) that are not part of "
                               f"{model}: {', '.join(unused[:4])}"
                               + (", ..." if len(unused) > 4 else ""))
    filled = {key for fill in fills for key in fill.keys}
    checked = tuple(name for name in graph.nodes if name not in filled)
    evidence["model"] = f"the graph holds {model}"
    evidence["scale"] = f"the graph has {scale} (its DepthToSpace block sizes)"
    plan = Plan(NAME, model, args, fills, keys=graph.keys(), evidence=evidence,
                checked_keys=checked, kind="frozen graph", holder="graph", origin=graph.path,
                error=OpenCVGraphError)
    graph._plan = plan
    return plan


def detect(graph):
    """True for a frozen super-resolution graph (a Placeholder and a DepthToSpace): the
    only kind of file this format reads, so that `describe` says what differs from
    ESPCN, FSRCNN or LapSRN rather than the port's generic refusal."""
    ops = {node.op for node in getattr(graph, "nodes", {}).values()}
    return isinstance(graph, FrozenGraph) and {"Placeholder", "DepthToSpace"} <= ops


def describe(graph, **options):
    """The `Plan` of a frozen dnn_superres graph: its network, builder arguments and the
    weights of every layer."""
    if not isinstance(graph, FrozenGraph):
        raise OpenCVGraphError("the opencv-pb format reads a .pb file: pass its path")
    return _plan(graph)
