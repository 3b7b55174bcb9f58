"""OpenCV dnn_superres's frozen graphs (ESPCN, FSRCNN, LapSRN `.pb`): the opencv-pb port
format and the luma models of `sisr.model.opencv_sr`, against graphs of the official
structure made here and run in TensorFlow, and OpenCV's pre- and post-processing
(tests/data/opencv_pb/, tests/data/make_opencv_pb_fixtures.py).

The official files are Apache-2.0 and not shipped: with `SISR_OPENCV_PB` set to a folder
holding them (`ESPCN_x2.pb`, ..., `LapSRN_x8.pb`), `test_official_file` checks each too.
"""

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from reference_data import DATA
from sisr.layers import ColorMatrix, OpenCVUpsample
from sisr.model import get_spec, model_info
from sisr.model.sizing import count_parameters
from sisr.port import port_checkpoint
from sisr.port.cli import main as port_main
from sisr.port.formats import opencv_pb
from sisr.port.plan import PortError

FIXTURES = os.path.join(DATA, "opencv_pb")
MODELS = {"espcn": "espcn_opencv", "fsrcnn": "fsrcnn_opencv", "lapsrn": "lapsrn_opencv"}
# The luma network equals the graph's to float32 rounding (measured <= 1e-6 on [0, 1]).
LUMA_ATOL = 1e-5
# RGB on 0..255 against OpenCV's float pipeline: the colour matrices composed in another
# order and TensorFlow's bilinear weights against OpenCV's (measured <= 2.5e-4).
RGB_ATOL = 2e-3


def manifest():
    with open(os.path.join(FIXTURES, "manifest.json")) as f:
        return json.load(f)


def reference():
    with np.load(os.path.join(FIXTURES, "reference.npz")) as z:
        return {k: z[k] for k in z.files}


GRAPHS = sorted(n for n in manifest()["files"] if n.endswith(".pb"))


def path_of(name):
    return os.path.join(FIXTURES, name)


def run_graph(path, y):
    """The graph's output (the input of NCHW_output) for the luma `y`, run by TensorFlow."""
    graph = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        graph.ParseFromString(f.read())
    output = next(n for n in graph.node if n.name == "NCHW_output").input[0]

    def forward(x):
        return tf.import_graph_def(graph, input_map={"IteratorGetNext:0": x},
                                   return_elements=[f"{output}:0"])[0]

    fn = tf.compat.v1.wrap_function(forward, [tf.TensorSpec([1, None, None, 1], tf.float32)])
    return np.asarray(fn(tf.constant(y)))


def luma_network(model, output=None):
    """The model's network on the luma, on [0, 1]: from `normalize` to the input of
    `denormalize`, or to the output of layer `output`."""
    end = model.get_layer("denormalize").input if output is None else \
        model.get_layer(output).output
    return keras.Model(model.get_layer("normalize").output, end)


@pytest.fixture(scope="module")
def ported():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = port_checkpoint(path_of(name))
        return cache[name]

    yield get
    cache.clear()
    keras.backend.clear_session()


@pytest.mark.parametrize("name", GRAPHS)
def test_reader_detects_the_network_and_its_sizes(ported, name):
    entry = manifest()["files"][name]
    plan = ported(name).plan
    assert opencv_pb.sniff(path_of(name))
    assert plan.source == "opencv-pb" and plan.model == MODELS[entry["network"]]
    sizes = {k: list(v) if isinstance(v, list) else v for k, v in entry["sizes"].items()}
    assert plan.args == {"scale": entry["scale"], **sizes,
                         **({"kernel_sizes": [5, 3, 3]} if entry["network"] == "espcn"
                            else {}),
                         **({"negative_slope": 0.2} if entry["network"] == "lapsrn" else {})}
    # Every node is a weight or a checked constant / op, once.
    filled = [key for fill in plan.fills for key in fill.keys]
    assert len(filled) == len(set(filled))
    assert set(filled) | set(plan.checked_keys) == set(plan.keys)
    assert model_info(ported(name).model)["builder"] == plan.model


@pytest.mark.parametrize("name", GRAPHS)
def test_luma_network_equals_the_graph_run_in_tensorflow(ported, name):
    model = ported(name).model
    stem, scale = name[:-3], manifest()["files"][name]["scale"]
    ref = reference()
    y = ref["ycrcb"][None, ..., :1]
    np.testing.assert_allclose(np.asarray(luma_network(model)(y)), ref[f"{stem}__y"],
                               atol=LUMA_ATOL, rtol=0)
    # And the graph run here, on another image of another size.
    y = np.random.default_rng(5).uniform(0, 1, (1, 9, 14, 1)).astype(np.float32)
    expected = run_graph(path_of(name), y)
    assert expected.shape == (1, 9 * scale, 14 * scale, 1)
    np.testing.assert_allclose(np.asarray(luma_network(model)(y)), expected,
                               atol=LUMA_ATOL, rtol=0)
    if f"{stem}__y_x2" in ref:  # LapSRN's first level: the graph's NCHW_output_2x
        level = luma_network(model, "level1_act")(ref["ycrcb"][None, ..., :1])
        np.testing.assert_allclose(np.asarray(level), ref[f"{stem}__y_x2"], atol=LUMA_ATOL,
                                   rtol=0)


@pytest.mark.parametrize("name", GRAPHS)
def test_rgb_model_equals_opencv_dnn_superres_in_float(ported, name):
    model = ported(name).model
    stem = name[:-3]
    ref = reference()
    out = np.asarray(model(ref["rgb"]))
    # OpenCV's cvtColor / resize / cvtColor around the graph's output (reference.npz).
    np.testing.assert_allclose(out, ref[f"{stem}__rgb"], atol=RGB_ATOL, rtol=0)
    # Its luma is the network's: OpenCV's inverse coefficients (1.403, ...) are rounded,
    # so Y of the output differs from it by < 6e-4 of the chroma (measured <= 0.05 here).
    luma = out @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(luma, 255 * ref[f"{stem}__y"][..., 0], atol=0.1, rtol=0)


# Weights of the official graphs (float Consts but the scalars), and sisr's counts: the
# FSRCNN graphs' one output bias is one per sub-pixel here (+ s^2 - 1), the LapSRN graphs'
# single bias of each level's first conv one per channel (+ 63 per level).
COUNTS = [  # (model, arguments, official graph weights, sisr parameters)
    ("espcn_opencv", {"scale": 2}, 21_284, 21_284),
    ("espcn_opencv", {"scale": 3}, 22_729, 22_729),
    ("espcn_opencv", {"scale": 4}, 24_752, 24_752),
    ("fsrcnn_opencv", {"scale": 2}, 8_497, 8_500),
    ("fsrcnn_opencv", {"scale": 3}, 8_777, 8_785),
    ("fsrcnn_opencv", {"scale": 4}, 9_169, 9_184),
    ("fsrcnn_opencv", {"scale": 2, "d": 32, "s": 5, "m": 1}, 1_622, 1_625),
    ("fsrcnn_opencv", {"scale": 3, "d": 32, "s": 5, "m": 1}, 1_782, 1_790),
    ("fsrcnn_opencv", {"scale": 4, "d": 32, "s": 5, "m": 1}, 2_006, 2_021),
    ("lapsrn_opencv", {"scale": 2}, 337_089, 337_152),
    ("lapsrn_opencv", {"scale": 4}, 674_178, 674_304),
    ("lapsrn_opencv", {"scale": 8}, 1_011_267, 1_011_456),
]


@pytest.mark.parametrize("model,arguments,official,expected", COUNTS)
def test_parameter_counts(model, arguments, official, expected):
    scale = arguments["scale"]
    extra = scale * scale - 1 if model == "fsrcnn_opencv" else \
        63 * (scale.bit_length() - 1) if model == "lapsrn_opencv" else 0
    assert official + extra == expected
    assert count_parameters(get_spec(model), arguments) == expected


def test_colour_layers_equal_opencv_cvtcolor(ported):
    model = ported(GRAPHS[0]).model
    ref = reference()
    rgb = ref["rgb"]
    y = np.asarray(model.get_layer("luma")(rgb)) / 255
    crcb = np.asarray(model.get_layer("chroma")(rgb)) / 255 + 0.5
    np.testing.assert_allclose(np.concatenate([y, crcb], -1)[0], ref["ycrcb"], atol=1e-6)


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_opencv_upsample_equals_cv2_resize(interpolation, scale):
    ref = reference()
    layer = OpenCVUpsample(scale, interpolation)
    out = np.asarray(layer(ref["resize_input"][None]))[0]
    # float32 weights computed in another order than OpenCV's (0..255 scale)
    np.testing.assert_allclose(out, ref[f"resize_{interpolation}_x{scale}"], atol=1e-3,
                               rtol=0)
    clone = OpenCVUpsample.from_config(layer.get_config())
    assert (clone.scale, clone.interpolation) == (scale, interpolation)


def test_layer_arguments_are_checked():
    with pytest.raises(ValueError, match="`interpolation` must be one of"):
        OpenCVUpsample(2, "area")
    with pytest.raises(ValueError, match="`scale` must be a positive int"):
        OpenCVUpsample(0)
    with pytest.raises(ValueError, match="rows of equal length"):
        ColorMatrix([[1.0, 0.0], [1.0]])
    with pytest.raises(ValueError, match="lapsrn_opencv: `scale` must be one of \\[2, 4, 8\\]"):
        get_spec("lapsrn_opencv").builder(3)


def test_port_cli_writes_a_model_that_loads_in_safe_mode(tmp_path, capsys):
    name = next(n for n in GRAPHS if n.startswith("fsrcnn-small"))
    out = str(tmp_path / "fsrcnn.keras")
    assert port_main([path_of(name), "-o", out]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{path_of(name)} -> {out}: fsrcnn_opencv")
    loaded = keras.saving.load_model(out, safe_mode=True)
    ref = reference()
    np.testing.assert_allclose(np.asarray(loaded(ref["rgb"])), ref[name[:-3] + "__rgb"],
                               atol=RGB_ATOL, rtol=0)
    assert model_info(loaded)["arguments"] == {"scale": 4, "d": 32, "s": 5, "m": 1}


def read_graph(name):
    graph = tf.compat.v1.GraphDef()
    with open(path_of(name), "rb") as f:
        graph.ParseFromString(f.read())
    return graph


def write(graph, path):
    with open(path, "wb") as f:
        f.write(graph.SerializeToString())
    return str(path)


def espcn_name():
    return next(n for n in GRAPHS if n.startswith("espcn"))


def extra_node(graph):
    node = graph.node.add()
    node.CopyFrom(next(n for n in graph.node if n.name == "b1"))
    node.name = "unused_const"


def other_activation(graph):
    next(n for n in graph.node if n.name == "NHWC_output").op = "Sigmoid"


def half_changed(graph):
    node = next(n for n in graph.node if n.name == "mul_1/y")
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.float32(0.4)))


def strided(graph):
    node = next(n for n in graph.node if n.name == "conv2")
    node.attr["strides"].list.i[:] = [1, 2, 2, 1]


BROKEN = [  # (fixture, change, what the one-line error says)
    (espcn_name, extra_node, r"1 node\(s\) that are not part of espcn_opencv: unused_const"),
    (espcn_name, other_activation, "output 'NHWC_output' is a Sigmoid"),
    (lambda: next(n for n in GRAPHS if n.startswith("fsrcnn_")), half_changed,
     "Const 'mul_1/y' .* expected 0.5"),
    (espcn_name, strided, "Conv2D 'conv2' has strides \\[1, 2, 2, 1\\]"),
]


@pytest.mark.parametrize("fixture,change,message", BROKEN,
                         ids=[change.__name__ for _, change, _ in BROKEN])
def test_other_graphs_are_refused_in_one_line_naming_the_file(tmp_path, capsys, fixture,
                                                              change, message):
    graph = read_graph(fixture())
    change(graph)
    path = write(graph, tmp_path / "graph.pb")
    with pytest.raises(PortError, match=message) as err:
        port_checkpoint(path)
    assert str(err.value).startswith(path) and "\n" not in str(err.value)
    out = str(tmp_path / "model.keras")
    assert port_main([path, "-o", out, "--from", "opencv-pb"]) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and path in lines[0], lines
    assert not os.path.exists(out)


def test_a_file_that_is_no_graph_is_refused_naming_it(tmp_path, capsys):
    path = tmp_path / "model.pb"
    path.write_bytes(b"\x0a\xff\xff not a graph")
    assert not opencv_pb.sniff(str(path))
    assert port_main([str(path), "-o", str(tmp_path / "m.keras"), "--from", "opencv"]) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], lines


def test_requested_architecture_is_checked(ported):
    with pytest.raises(PortError, match="scale: requested 2, the graph has 3"):
        port_checkpoint(path_of(espcn_name()), scale=2)
    with pytest.raises(PortError, match="model: requested 'fsrcnn_opencv'"):
        port_checkpoint(path_of(espcn_name()), model="fsrcnn_opencv")


OFFICIAL = sorted(glob.glob(os.path.join(os.environ.get("SISR_OPENCV_PB", ""), "*.pb"))) \
    if os.environ.get("SISR_OPENCV_PB") else []
OFFICIAL_ARGS = {"ESPCN": ("espcn_opencv", {}), "FSRCNN": ("fsrcnn_opencv", {"d": 56}),
                 "FSRCNN-small": ("fsrcnn_opencv", {"d": 32, "s": 5, "m": 1}),
                 "LapSRN": ("lapsrn_opencv", {"num_filters": 64, "depth": 10})}

if OFFICIAL:  # defined only with the files at hand: no skip without them (tests/skips.py)
    @pytest.mark.parametrize("path", OFFICIAL, ids=os.path.basename)
    def test_official_file(path):
        stem, scale = os.path.basename(path)[:-3].rsplit("_x", 1)
        ported = port_checkpoint(path)
        model, args = OFFICIAL_ARGS[stem]
        assert ported.plan.model == model
        assert ported.plan.args == {**ported.plan.args, "scale": int(scale), **args}
        y = np.random.default_rng(0).uniform(0, 1, (1, 10, 13, 1)).astype(np.float32)
        np.testing.assert_allclose(np.asarray(luma_network(ported.model)(y)),
                                   run_graph(path, y), atol=LUMA_ATOL, rtol=0)


# -- fine-tuning OpenCV's networks from their profiles ----------------------------------
# (graph, profile, overrides that give the graph's sizes)
FINE_TUNED = [
    ("fsrcnn_56-12-4_x2.pb", "fsrcnn-opencv", {}),
    ("espcn_32-16_x3.pb", "espcn-opencv", {"num_filters": [32, 16]}),
    ("lapsrn_16-3_x4.pb", "lapsrn-opencv", {"num_filters": 16, "depth": 3}),
]


@pytest.mark.parametrize("name,profile,overrides", FINE_TUNED)
def test_a_ported_graph_seeds_every_layer_of_its_profile(tmp_path, name, profile, overrides):
    from sisr.saving import save_model
    from sisr.training import config as cfg
    from sisr.training import trainer

    path = str(tmp_path / "ported.keras")
    ported = port_checkpoint(path_of(name)).model
    save_model(ported, path)
    config = cfg.resolve(profile, {**overrides, "scale": model_info(ported)["scale"],
                                   "pretrained_model": path})
    model = trainer.build_model(config)
    copied = trainer.copy_pretrained(model, keras.saving.load_model(path, safe_mode=True),
                                     config["scale"])
    assert sorted(copied) == sorted(layer.name for layer in ported.layers if layer.weights)
    for a, b in zip(model.weights, ported.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_fsrcnn_profile_fine_tunes_a_ported_graph(tmp_path, caplog):
    from sisr import train

    path = str(tmp_path / "fsrcnn_x2.keras")
    assert port_main([path_of("fsrcnn_56-12-4_x2.pb"), "-o", path]) == 0
    with caplog.at_level("INFO"):
        code = train.main(["--profile", "fsrcnn-opencv", "--pretrained-model", path,
                           "--dataset", "demo", "--epochs", "1", "--steps-per-epoch", "2",
                           "--outdir", str(tmp_path / "runs"), "--seed", "0",
                           "--verbose", "0"])
    assert code == 0
    assert f"copied 15 layers from {path}" in caplog.text
    best = glob.glob(str(tmp_path / "runs" / "*" / "best.keras"))
    assert len(best) == 1
    assert model_info(keras.saving.load_model(best[0], safe_mode=True))["builder"] == \
        "fsrcnn_opencv"
