"""Makes tests/data/opencv_pb/: frozen TensorFlow graphs of the structure of OpenCV
dnn_superres's `.pb` files, with seeded weights, and what TensorFlow and OpenCV compute
with them.

The official files (fannymonori/TF-ESPCN `export/ESPCN_x*.pb`, Saafke/FSRCNN_Tensorflow
`models/FSRCNN*_x*.pb`, fannymonori/TF-LapSRN `export/LapSRN_x*.pb`) are Apache-2.0 and
are not shipped here. This script writes graphs with their node names, op types and
wiring (as read from those files; no upstream code is run or copied), built node by node
with `tf.raw_ops` in a `tf.compat.v1` graph, smaller where noted, with weights drawn
from a seeded generator (no zero bias, no default slope), then:

- runs each graph in TensorFlow (`tf.import_graph_def` in `wrap_function`) on the luma
  of a test image, the output OpenCV's dnn_superres reads (`NHWC_output`; LapSRN: the
  input of `NCHW_output`, and of `NCHW_output_2x`);
- with OpenCV (a Python with cv2, `--opencv-python`; the TensorFlow steps run here),
  the pre- and post-processing of `DnnSuperResImpl::upsample` in float32 without its
  uint8 rounding: `cvtColor(rgb / 255, COLOR_RGB2YCrCb)`, the network on Y,
  `cv::resize(Cr or Cb, scale)` at its default (bilinear) interpolation, and
  `cvtColor(merge(Y', Cr', Cb'), COLOR_YCrCb2RGB) * 255`.

    python tests/data/make_opencv_pb_fixtures.py --opencv-python /path/to/python-with-cv2

`reference.npz`: `rgb` the (1, H, W, 3) test image (integers 0..255 as float32),
`ycrcb` OpenCV's YCrCb of it on [0, 1]; per graph `<stem>__y` the network's output on
the luma (NHWC, [0, 1] scale), `<stem>__rgb` OpenCV's reconstruction (0..255, unclipped),
and for LapSRN `<stem>__y_x2` the first level's output; `resize_input` a (9, 7, 2) float32
image and `resize_{linear,cubic}_x{2,3,4,8}` its `cv2.resize` by each factor with
INTER_LINEAR and INTER_CUBIC.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

SEED = 22
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "opencv_pb")
SIZE = (11, 13)
RESIZE_SCALES = (2, 3, 4, 8)
# stem: (network, scale, sizes)
GRAPHS = {
    "espcn_32-16_x3": ("espcn", 3, {"num_filters": (32, 16)}),
    "fsrcnn_56-12-4_x2": ("fsrcnn", 2, {"d": 56, "s": 12, "m": 4}),
    "fsrcnn-small_32-5-1_x4": ("fsrcnn", 4, {"d": 32, "s": 5, "m": 1}),
    "lapsrn_16-3_x4": ("lapsrn", 4, {"num_filters": 16, "depth": 3}),
}
UPSTREAM = {
    "espcn": "fannymonori/TF-ESPCN 5c628eca82028161a53e1265cc3a5b571ab8625f export/ESPCN_x3.pb",
    "fsrcnn": "Saafke/FSRCNN_Tensorflow 6a4812c4ef1c4f5947d79beafa32a05a6eb4a94d "
              "models/FSRCNN_x2.pb, models/FSRCNN-small_x4.pb",
    "lapsrn": "fannymonori/TF-LapSRN fc51c90af1b5801a357abc919160d7ff4f24b997 "
              "export/LapSRN_x4.pb",
}


class Builder:
    """Nodes of a tf.compat.v1 graph, each named explicitly, with seeded weights."""

    def __init__(self, tf, rng):
        self.tf, self.rng = tf, rng
        self.counts = {}

    def auto(self, base):
        """TensorFlow's default name of the next op of kind `base`: base, base_1, ..."""
        count = self.counts.get(base, 0)
        self.counts[base] = count + 1
        return base if count == 0 else f"{base}_{count}"

    def const(self, value, name):
        return self.tf.constant(np.asarray(value, np.float32), name=name)

    def kernel(self, shape, name):
        fan_in = shape[0] * shape[1] * shape[2]
        value = self.rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)
        return self.const(value, name)

    def bias(self, size, name, spread=0.1):
        return self.const(self.rng.uniform(-spread, spread, size), name)

    def conv(self, x, kernel, name):
        return self.tf.raw_ops.Conv2D(input=x, filter=kernel, strides=[1, 1, 1, 1],
                                      padding="SAME", data_format="NHWC", name=name)

    def add(self, x, y, name=None):
        return self.tf.raw_ops.Add(x=x, y=y, name=name or self.auto("add"))

    def mul(self, x, y):
        return self.tf.raw_ops.Mul(x=x, y=y, name=self.auto("mul"))

    def relu(self, x):
        return self.tf.raw_ops.Relu(features=x, name=self.auto("Relu"))

    def shuffle(self, x, scale):
        return self.tf.raw_ops.DepthToSpace(input=x, block_size=scale, data_format="NHWC",
                                            name=self.auto("DepthToSpace"))

    def nchw(self, x, name):
        perm = self.tf.constant(np.array([0, 3, 1, 2], np.int32), name=f"{name}/perm")
        return self.tf.raw_ops.Transpose(x=x, perm=perm, name=name)


def espcn(b, x, scale, num_filters):
    """fannymonori/TF-ESPCN: conv{i} + b{i} (Add), Relu; conv3 + b3, DepthToSpace, Tanh."""
    tf = b.tf
    sizes = (5, 3, 3)
    channels = [1, *num_filters, scale * scale]
    for i in range(3):
        shape = (sizes[i], sizes[i], channels[i], channels[i + 1])
        x = b.add(b.conv(x, b.kernel(shape, f"f{i + 1}"), f"conv{i + 1}"),
                  b.bias(channels[i + 1], f"b{i + 1}"))
        if i < 2:
            x = b.relu(x)
    x = tf.raw_ops.Tanh(x=b.shuffle(x, scale), name="NHWC_output")
    b.nchw(x, "NCHW_output")


def fsrcnn(b, x, scale, d, s, m):
    """Saafke/FSRCNN_Tensorflow: conv{i} + b{i} (Add) and PReLU relu(x) + alpha{i} *
    (x - |x|) * 0.5, for 5x5 d, 1x1 s, m 3x3 s, 1x1 d; conv 1x1 to scale^2 without bias,
    DepthToSpace, BiasAdd of one value (NHWC_output)."""
    tf = b.tf
    layers = [(5, 1, d), (1, d, s)] + [(3, s, s)] * m + [(1, s, d)]
    for i, (size, cin, cout) in enumerate(layers, start=1):
        x = b.add(b.conv(x, b.kernel((size, size, cin, cout), f"f{i}"), f"conv{i}"),
                  b.bias(cout, f"b{i}"))
        alpha = b.const(b.rng.uniform(-0.1, 0.5, cout), f"alpha{i}")
        difference = tf.raw_ops.Sub(x=x, y=tf.raw_ops.Abs(x=x, name=b.auto("Abs")),
                                    name=b.auto("sub"))
        scaled = b.mul(alpha, difference)
        name = b.auto("mul")
        half = tf.raw_ops.Mul(x=scaled, y=b.const(0.5, f"{name}/y"), name=name)
        x = b.add(b.relu(x), half)
    last = len(layers) + 1
    x = b.conv(x, b.kernel((1, 1, d, scale * scale), f"f{last}"), f"conv{last}")
    x = tf.raw_ops.BiasAdd(value=b.shuffle(x, scale), bias=b.bias(1, f"b{last}", 0.3),
                           data_format="NHWC", name="NHWC_output")
    b.nchw(x, "NCHW_output")


def lapsrn(b, x, scale, num_filters, depth):
    """fannymonori/TF-LapSRN: per level n, features: conv 3x3 1 -> F with one bias
    `0_{n}bias`, depth - 1 convs F -> F (`Variable*`, `{i}_{n}bias`), a 4x4 conv to 4
    (`reconstruction_2_deconv_f*`), DepthToSpace(2); image: a 4x4 conv 1 -> 4,
    DepthToSpace(2), added to the features; leaky ReLU relu(x) - 0.2 relu(-1 x) after
    every conv + bias, the features' shuffle and the sum."""
    tf = b.tf
    variables = iter(["Variable"] + [f"Variable_{i}" for i in range(1, 100)])
    deconvs = iter(["reconstruction_2_deconv_f"] +
                   [f"reconstruction_2_deconv_f_{i}" for i in range(1, 100)])

    def leaky(v):
        positive = b.relu(v)
        name = b.auto("mul")
        flipped = tf.raw_ops.Mul(x=b.const(-1.0, f"{name}/x"), y=v, name=name)
        name = b.auto("mul")
        negative = tf.raw_ops.Mul(x=b.const(0.2, f"{name}/x"), y=b.relu(flipped), name=name)
        return tf.raw_ops.Sub(x=positive, y=negative, name=b.auto("sub"))

    def conv(v, shape, name):
        return b.conv(v, b.kernel(shape, name), b.auto("Conv2D"))

    features = image = x
    for n in range(scale.bit_length() - 1):
        # The official graph makes the feature branch's 4x4 kernel before the image's.
        feature_kernel, image_kernel = next(deconvs), next(deconvs)
        v = features
        for i in range(depth):
            shape = (3, 3, 1 if i == 0 else num_filters, num_filters)
            name = f"0_{n}f" if i == 0 else next(variables)
            bias = b.bias(1 if i == 0 else num_filters, f"{i}_{n}bias")
            v = leaky(b.add(conv(v, shape, name), bias))
        v = b.shuffle(conv(v, (4, 4, num_filters, 4), feature_kernel), 2)
        features = leaky(v)
        up = b.shuffle(conv(image, (4, 4, 1, 4), image_kernel), 2)
        image = leaky(tf.raw_ops.Add(x=up, y=features, name=f"Add_{b.counts['add']}"))
        b.counts["add"] += 1
        b.nchw(image, f"NCHW_output_{2 ** (n + 1)}x")
    b.nchw(image, "NCHW_output")


NETWORKS = {"espcn": espcn, "fsrcnn": fsrcnn, "lapsrn": lapsrn}


def make_graph(network, scale, sizes, rng):
    """The serialised GraphDef of one network."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, None, None, 1], name="IteratorGetNext")
        NETWORKS[network](Builder(tf, rng), x, scale, **sizes)
    return graph.as_graph_def().SerializeToString(deterministic=True)


def run_graph(data, y, outputs):
    """The graph's tensors `outputs` for the luma `y` (1, H, W, 1) on [0, 1]."""
    import tensorflow as tf

    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(data)

    def forward(x):
        return tf.import_graph_def(graph, input_map={"IteratorGetNext:0": x},
                                   return_elements=[f"{o}:0" for o in outputs])

    fn = tf.compat.v1.wrap_function(forward, [tf.TensorSpec([1, None, None, 1], tf.float32)])
    return [np.asarray(t) for t in fn(tf.constant(y))]


def output_names(data):
    """The node OpenCV reads (the input of NCHW_output) and LapSRN's x2 output."""
    import tensorflow as tf

    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(data)
    nodes = {n.name: n for n in graph.node}
    names = [nodes["NCHW_output"].input[0]]
    if "NCHW_output_2x" in nodes:
        names.append(nodes["NCHW_output_2x"].input[0])
    return names


# The official files and their sizes, for --compare.
OFFICIAL = {
    "ESPCN_x3.pb": ("espcn", 3, {"num_filters": (64, 32)}),
    "FSRCNN_x2.pb": ("fsrcnn", 2, {"d": 56, "s": 12, "m": 4}),
    "FSRCNN-small_x4.pb": ("fsrcnn", 4, {"d": 32, "s": 5, "m": 1}),
    "LapSRN_x4.pb": ("lapsrn", 4, {"num_filters": 64, "depth": 10}),
    "LapSRN_x8.pb": ("lapsrn", 8, {"num_filters": 64, "depth": 10}),
}


def nodes(data):
    """{name: (op, inputs, shape of a float Const)} of a serialised GraphDef."""
    import tensorflow as tf

    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(data)
    return {n.name: (n.op, tuple(n.input), tuple(d.size for d in
                                                  n.attr["value"].tensor.tensor_shape.dim))
            for n in graph.node}


def compare(folder):
    """0 if every official file in `folder` has the nodes of the graph built here."""
    status = 0
    for name, (network, scale, sizes) in OFFICIAL.items():
        with open(os.path.join(folder, name), "rb") as f:
            official = nodes(f.read())
        ours = nodes(make_graph(network, scale, sizes, np.random.default_rng(0)))
        same = official == ours
        status |= not same
        print(name, "same nodes" if same else
              f"differs: {sorted(set(official.items()) ^ set(ours.items()))[:6]}")
    return status


# The OpenCV steps, run in a Python with cv2 (`--opencv-step IN OUT`).
def opencv_step(source, target):
    import cv2

    data = dict(np.load(source))
    result = {"opencv": np.array(cv2.__version__)}
    if "rgb" in data:
        result["ycrcb"] = cv2.cvtColor(data["rgb"][0] / np.float32(255), cv2.COLOR_RGB2YCrCb)
    if "resize_input" in data:
        for scale in RESIZE_SCALES:
            for name, flag in (("linear", cv2.INTER_LINEAR), ("cubic", cv2.INTER_CUBIC)):
                result[f"resize_{name}_x{scale}"] = cv2.resize(
                    data["resize_input"], None, fx=scale, fy=scale, interpolation=flag)
    for key in [k for k in data if k.endswith("__y")]:
        ycrcb, y = data["ycrcb"], data[key][0, ..., 0]
        scale = y.shape[0] // ycrcb.shape[0]
        chroma = [cv2.resize(np.ascontiguousarray(ycrcb[..., c]), None, fx=scale, fy=scale)
                  for c in (1, 2)]
        merged = cv2.merge([y.astype(np.float32), *chroma])
        result[key[:-3] + "__rgb"] = cv2.cvtColor(merged, cv2.COLOR_YCrCb2RGB)[None] * 255
    np.savez(target, **result)


def opencv(python, arrays, workdir):
    source, target = os.path.join(workdir, "cv_in.npz"), os.path.join(workdir, "cv_out.npz")
    np.savez(source, **arrays)
    subprocess.run([python, os.path.abspath(__file__), "--opencv-step", source, target],
                   check=True)
    with np.load(target) as result:
        return {k: result[k] for k in result.files}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opencv-python", default=sys.executable,
                        help="a Python interpreter with cv2 (opencv-python)")
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--compare", metavar="DIR",
                        help="only check that graphs built here at the official sizes have "
                             "the nodes (name, op, inputs) of the official files in DIR")
    parser.add_argument("--opencv-step", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.opencv_step:
        opencv_step(*args.opencv_step)
        return 0
    if args.compare:
        return compare(args.compare)
    import tensorflow as tf
    from fixture_tools import sha256, write_json

    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    rgb = rng.integers(0, 256, (1, *SIZE, 3)).astype(np.float32)
    resize_input = rng.uniform(0, 255, (9, 7, 2)).astype(np.float32)
    first = opencv(args.opencv_python, {"rgb": rgb, "resize_input": resize_input}, args.out)
    arrays = {"rgb": rgb, "ycrcb": first["ycrcb"].astype(np.float32),
              "resize_input": resize_input}
    arrays.update({k: v for k, v in first.items() if k.startswith("resize_")})
    y = arrays["ycrcb"][None, ..., :1]
    files = {}
    for stem, (network, scale, sizes) in GRAPHS.items():
        data = make_graph(network, scale, sizes, rng)
        path = os.path.join(args.out, f"{stem}.pb")
        with open(path, "wb") as f:
            f.write(data)
        names = output_names(data)
        results = run_graph(data, y, names)
        arrays[f"{stem}__y"] = results[0]
        if len(results) > 1:
            arrays[f"{stem}__y_x2"] = results[1]
        files[f"{stem}.pb"] = {"network": network, "scale": scale, "sizes": sizes,
                               "outputs": names, "upstream": UPSTREAM[network],
                               "sha256": sha256(path)}
    second = opencv(args.opencv_python, {k: v for k, v in arrays.items()
                                         if k == "ycrcb" or k.endswith("__y")}, args.out)
    for key in [k for k in second if k.endswith("__rgb")]:
        arrays[key] = second[key].astype(np.float32)
    for name in ("cv_in.npz", "cv_out.npz"):
        os.remove(os.path.join(args.out, name))
    reference = os.path.join(args.out, "reference.npz")
    np.savez_compressed(reference, **arrays)
    files["reference.npz"] = {"sha256": sha256(reference)}
    manifest = {"generator": "tests/data/make_opencv_pb_fixtures.py", "seed": SEED,
                "tensorflow": tf.__version__, "numpy": np.__version__,
                "opencv": str(second["opencv"]),
                "upstream": "graph structure (node names, op types, wiring) of the "
                            "official OpenCV dnn_superres files, read as data: "
                            + "; ".join(UPSTREAM.values()),
                "opencv_steps": "opencv/opencv_contrib modules/dnn_superres/src/"
                                "dnn_superres.cpp DnnSuperResImpl::upsample, "
                                "preprocess_YCrCb, reconstruct_YCrCb (in float32)",
                "files": files}
    write_json(os.path.join(args.out, "manifest.json"), manifest)
    print(json.dumps({k: v["sha256"] for k, v in files.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
