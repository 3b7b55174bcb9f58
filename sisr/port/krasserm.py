"""Model files of the original Keras project (krasserm/super-resolution, Apache-2.0).

    from sisr.port.krasserm import load_krasserm
    model = load_krasserm("weights/srgan/pre_generator.h5")    # a sisr SRResNet x4

    python -m sisr.port --from krasserm weights.h5 [--profile edsr-16 --scale 4] -o out.keras

Two generations of files are read, both HDF5:

- TF2 era (2019-): `model.save_weights(...)` files of EDSR, WDSR-A/B (every conv wrapped
  in tensorflow-addons' `WeightNormalization`), the SRResNet/SRGAN generator and the SRGAN
  discriminator. They hold weights only, in the order of the model's layers; the
  architecture is read from the weight shapes, the residual scaling (not stored) from the
  arguments or profile. `tf.keras` full-model saves of the same code are read too.
- Keras-2 era (2018): `model.save(...)` files with a JSON `model_config` and
  `model_weights` (EDSR, the tanh EDSR generator `edsr-16-x4-gen`, WDSR-A/B, SRResNet).
  The JSON is parsed as data: its `Lambda` layers (normalisation, pixel shuffle, padding)
  are recognised by their position and never deserialised or run.

Conversion: Keras kernels are already HWIO and both code bases use channels-last
`depth_to_space`, so kernels are copied; weight normalisation is folded
(`kernel = g * v / ||v||`, the norm over all axes but the output one, as tfa's
`l2_normalize`); normalisation is the same as sisr's (DIV2K mean / 127.5 for EDSR/WDSR,
[0, 1] in / tanh [-1, 1] out for SRResNet, [-1, 1] for the discriminator), so no bias
changes. Every stored weight is used and every sisr weight is filled, or a `PortError`
names the layer that does not fit.
"""

import dataclasses
import json
import logging
import math
import os
import re

import numpy as np

from sisr.port.io import CheckpointError
from sisr.port.rules import PortError

__all__ = ["KrassermError", "describe_krasserm", "load_krasserm"]

log = logging.getLogger(__name__)

BUILDER_ARGS = ("num_filters", "num_res_blocks", "res_block_expansion",
                "res_block_scaling", "hr_size")
# Upsampling stages of sisr's sub-pixel upsamplers (sisr.model.common.subpixel_upsample).
STAGES = {(2,): 2, (3,): 3, (2, 2): 4, (2, 2, 2): 8}
# tf.nn.l2_normalize's epsilon on the squared norm.
L2_EPSILON = 1e-12
BN_EPSILON = 1e-3
WDSR_B_LINEAR = 0.8


class KrassermError(PortError):
    """A krasserm model file that does not fit a sisr model (names the layer)."""


@dataclasses.dataclass
class FileLayer:
    """One layer with weights, as stored: its name, kind and arrays by short name."""

    name: str
    kind: str                      # conv, bn, prelu, dense
    arrays: dict
    class_name: str = None         # from the JSON config (Keras-2 era files)
    config: dict = None
    weight_norm: bool = False

    def describe(self):
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in self.arrays.items())
        return f"layer {self.name!r} ({self.kind}: {shapes})"

    @property
    def kernel(self):
        return self.arrays["kernel"]

    @property
    def ksize(self):
        return self.kernel.shape[0] if self.kind == "conv" else None

    @property
    def cin(self):
        return self.kernel.shape[-2]

    @property
    def cout(self):
        return self.kernel.shape[-1]


@dataclasses.dataclass
class Plan:
    """What a file holds: the sisr model, its builder arguments, and the layer mapping."""

    model: str
    args: dict
    assign: list = dataclasses.field(default_factory=list)   # (sisr layer, FileLayer)
    kind: str = "weights"          # a save_weights file, or a "full model" file
    notes: list = dataclasses.field(default_factory=list)
    tanh_output: bool = False      # Keras-2 era EDSR generator (edsr-16-x4-gen)
    scaling: float = None          # residual scaling stored in a model_config
    config_layers: list = None


# ----------------------------------------------------------------------------- reading


def _decode(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _short(weight_name):
    """`conv2d_3/kernel:0` -> `kernel`."""
    return _decode(weight_name).rsplit("/", 1)[-1].split(":", 1)[0]


def _read_group(group, path):
    """The layers with weights of a Keras HDF5 weights group, in the stored order."""
    if "layer_names" not in group.attrs:
        raise CheckpointError(f"{path}: not a Keras weights file (no layer_names)")
    layers = []
    for raw in group.attrs["layer_names"]:
        name = _decode(raw)
        if name not in group:
            raise CheckpointError(f"{path}: layer {name!r} is listed but has no group")
        sub = group[name]
        names = [_decode(w) for w in sub.attrs.get("weight_names", [])]
        if not names:
            continue
        arrays = {}
        for weight in names:
            if weight not in sub:
                raise CheckpointError(f"{path}: weight {weight!r} of layer {name!r} is missing")
            key = _short(weight)
            if key in arrays:
                raise KrassermError(f"{path}: layer {name!r} has two weights called {key!r}")
            arrays[key] = np.asarray(sub[weight][()])
        layers.append((name, arrays))
    return layers


def _classify(name, arrays, path):
    """A FileLayer from stored arrays; weight normalisation folded into the kernel."""
    keys = set(arrays)
    if keys == {"kernel", "bias"}:
        ndim = arrays["kernel"].ndim
        if ndim not in (2, 4):
            raise KrassermError(f"{path}: layer {name!r} has a kernel of rank {ndim}")
        kind = "conv" if ndim == 4 else "dense"
        return FileLayer(name, kind, {k: arrays[k].astype(np.float32) for k in ("kernel", "bias")})
    if keys == {"gamma", "beta", "moving_mean", "moving_variance"}:
        order = ("gamma", "beta", "moving_mean", "moving_variance")
        return FileLayer(name, "bn", {k: arrays[k].astype(np.float32) for k in order})
    if keys == {"alpha"}:
        return FileLayer(name, "prelu", {"alpha": arrays["alpha"].astype(np.float32)})
    if keys == {"g", "kernel", "bias", "initialized"}:
        kernel = _fold_weight_norm(name, arrays, path)
        return FileLayer(name, "conv", {"kernel": kernel, "bias": arrays["bias"].astype(np.float32)},
                         weight_norm=True)
    raise KrassermError(f"{path}: layer {name!r} has weights {sorted(keys)}, which are not "
                        "those of a Conv2D, Dense, BatchNormalization, PReLU or tfa "
                        "WeightNormalization(Conv2D) layer")


def _fold_weight_norm(name, arrays, path):
    """tfa WeightNormalization: kernel = l2_normalize(v, all axes but the last) * g.

    A wrapper that never ran (`initialized` False) sets g = ||v|| on its first call
    (data_init=False, as krasserm's code), so its kernel is v itself.
    """
    v = arrays["kernel"].astype(np.float64)
    g = arrays["g"].astype(np.float64)
    if v.ndim != 4 or g.shape != (v.shape[-1],):
        raise KrassermError(f"{path}: weight-normalised layer {name!r} has g {g.shape} and "
                            f"kernel {v.shape}; expected g of shape ({v.shape[-1]},) and a "
                            "4-d conv kernel")
    if not bool(np.asarray(arrays["initialized"])):
        return v.astype(np.float32)
    norm = np.sqrt(np.maximum(np.sum(v * v, axis=(0, 1, 2)), L2_EPSILON))
    return (v / norm * g).astype(np.float32)


def read_krasserm(path):
    """Reads a krasserm .h5 file: (layers with weights, parsed JSON config or None)."""
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if not h5py.is_hdf5(path):
        raise CheckpointError(f"{path}: not an HDF5 file (expected a Keras .h5 model or "
                              "weights file)")
    with h5py.File(path, "r") as f:
        config = None
        group = f
        if "model_config" in f.attrs:
            try:
                config = json.loads(_decode(f.attrs["model_config"]))
            except json.JSONDecodeError as err:
                raise CheckpointError(f"{path}: model_config is not valid JSON: {err}") from None
            if "model_weights" not in f:
                raise CheckpointError(f"{path}: a full-model file without model_weights")
            group = f["model_weights"]
        raw = _read_group(group, path)
        extra = [k for k in group if k == "top_level_model_weights"
                 and group[k].attrs.get("weight_names") is not None
                 and len(group[k].attrs["weight_names"])]
        if extra:
            raise KrassermError(f"{path}: the model has weights of its own "
                                "(top_level_model_weights), not those of a krasserm model")
    if not raw:
        raise CheckpointError(f"{path}: the file holds no weights")
    return [_classify(name, arrays, path) for name, arrays in raw], config


# ----------------------------------------------------------------------------- layouts


class _Cursor:
    """Walks the stored layers in order, checking each one against the expected layout."""

    def __init__(self, layers, model):
        self.layers = layers
        self.model = model
        self.i = 0

    def peek(self, offset=0):
        j = self.i + offset
        return self.layers[j] if j < len(self.layers) else None

    def kinds(self, *kinds):
        return all(self.peek(k) is not None and self.peek(k).kind == kind
                   for k, kind in enumerate(kinds))

    def take(self, kind, what, ksize=None, cin=None, cout=None, channels=None):
        layer = self.peek()
        if layer is None:
            raise KrassermError(f"{self.model}: the file ends where {what} ({kind}) was "
                                "expected")
        problems = []
        if layer.kind != kind:
            problems.append(f"a {kind} layer was expected")
        elif kind == "conv":
            if ksize is not None and layer.kernel.shape[:2] != (ksize, ksize):
                problems.append(f"a {ksize}x{ksize} kernel was expected")
            if cin is not None and layer.cin != cin:
                problems.append(f"{cin} input channels were expected")
            if cout is not None and layer.cout != cout:
                problems.append(f"{cout} output channels were expected")
        elif kind in ("bn", "prelu") and channels is not None:
            size = next(iter(layer.arrays.values())).size
            if size != channels:
                problems.append(f"{channels} channels were expected")
        if problems:
            raise KrassermError(f"{self.model}: {layer.describe()} does not fit as {what}: "
                                + "; ".join(problems))
        self.i += 1
        return layer

    def done(self):
        if self.i < len(self.layers):
            rest = ", ".join(repr(layer.name) for layer in self.layers[self.i:])
            raise KrassermError(f"{self.model}: unexpected layer(s) after the output layer, "
                                f"not part of the model: {rest}")


def _stages_scale(model, stages, layers):
    key = tuple(stages)
    if key not in STAGES:
        names = ", ".join(repr(layer.name) for layer in layers)
        raise KrassermError(f"{model}: upsampling stages x{' x'.join(map(str, key)) or '?'} "
                            f"({names}) are none of sisr's x2, x3, x4 (2x2), x8 (2x2x2)")
    return STAGES[key]


def _upsample(cur, plan, model, num_filters, with_prelu):
    """Sub-pixel stages conv(F*r*r) [+ PReLU] until the output conv (F -> 3)."""
    stages, taken = [], []
    while cur.peek() is not None and cur.peek().kind == "conv" and cur.peek().cout != 3:
        layer = cur.peek()
        ratio = layer.cout / num_filters
        r = int(round(math.sqrt(ratio)))
        if r < 2 or r * r * num_filters != layer.cout:
            raise KrassermError(f"{model}: {layer.describe()} does not fit as an upsampling "
                                f"conv ({num_filters} * r * r output channels expected)")
        conv = cur.take("conv", "an upsampling conv", ksize=3, cin=num_filters)
        prelu = cur.take("prelu", "an upsampling PReLU", channels=num_filters) \
            if with_prelu else None
        stages.append(r)
        taken.append((conv, prelu))
    scale = _stages_scale(model, stages, [c for c, _ in taken])
    for i, (conv, prelu) in enumerate(taken, start=1):
        plan.assign.append((f"upsample_x{scale}_conv{i}", conv))
        if prelu is not None:
            plan.assign.append((f"upsample_x{scale}_act{i}", prelu))
    return scale


def _srresnet(layers):
    cur = _Cursor(layers, "srresnet")
    plan = Plan("srresnet", {})
    head = cur.take("conv", "the head conv", ksize=9, cin=3)
    f = head.cout
    plan.assign += [("head_conv", head),
                    ("head_prelu", cur.take("prelu", "the head PReLU", channels=f))]
    n = 0
    while cur.kinds("conv", "bn", "prelu"):
        n += 1
        name = f"block{n}"
        plan.assign += [
            (f"{name}_conv1", cur.take("conv", f"{name} conv1", ksize=3, cin=f, cout=f)),
            (f"{name}_bn1", cur.take("bn", f"{name} BN1", channels=f)),
            (f"{name}_prelu", cur.take("prelu", f"{name} PReLU", channels=f)),
            (f"{name}_conv2", cur.take("conv", f"{name} conv2", ksize=3, cin=f, cout=f)),
            (f"{name}_bn2", cur.take("bn", f"{name} BN2", channels=f)),
        ]
    plan.assign += [("body_conv", cur.take("conv", "the body conv", ksize=3, cin=f, cout=f)),
                    ("body_bn", cur.take("bn", "the body BN", channels=f))]
    scale = _upsample(cur, plan, "srresnet", f, with_prelu=True)
    plan.assign.append(("output_conv", cur.take("conv", "the output conv", ksize=9, cin=f,
                                                cout=3)))
    cur.done()
    plan.args = {"scale": scale, "num_filters": int(f), "num_res_blocks": n}
    return plan


def _edsr(layers):
    cur = _Cursor(layers, "edsr")
    plan = Plan("edsr", {})
    head = cur.take("conv", "the head conv", ksize=3, cin=3)
    f = head.cout
    plan.assign.append(("head_conv", head))
    # 2 convs per block, then the body conv: all 3x3, F -> F
    same = 0
    while cur.peek(same) is not None and cur.peek(same).kind == "conv" and \
            cur.peek(same).cout == f and cur.peek(same).cin == f:
        same += 1
    if same % 2 != 1:
        raise KrassermError(f"edsr: {same} convs of {f} -> {f} channels follow the head "
                            "conv; expected 2 per residual block and the body conv")
    n = same // 2
    for i in range(1, n + 1):
        plan.assign += [(f"block{i}_conv{j}", cur.take("conv", f"block{i} conv{j}", ksize=3))
                        for j in (1, 2)]
    plan.assign.append(("body_conv", cur.take("conv", "the body conv", ksize=3)))
    scale = _upsample(cur, plan, "edsr", f, with_prelu=False)
    plan.assign.append(("output_conv", cur.take("conv", "the output conv", ksize=3, cin=f,
                                                cout=3)))
    cur.done()
    plan.args = {"scale": scale, "num_filters": int(f), "num_res_blocks": n}
    return plan


def _wdsr(layers):
    b_variant = len(layers) > 1 and layers[1].kind == "conv" and layers[1].ksize == 1
    model = "wdsr_b" if b_variant else "wdsr_a"
    cur = _Cursor(layers, model)
    plan = Plan(model, {})
    head = cur.take("conv", "the head conv", ksize=3, cin=3)
    f = head.cout
    plan.assign.append(("head_conv", head))
    # the residual blocks lie between the head conv and the two tail convs
    per = 3 if b_variant else 2
    body = len(layers) - 3
    if body < 0 or body % per:
        raise KrassermError(f"{model}: {len(layers)} convs are not the head conv, blocks of "
                            f"{per} convs, and the main and skip convs")
    n, wide = body // per, None
    for i in range(1, n + 1):
        name = f"block{i}"
        if b_variant:
            c1 = cur.take("conv", f"{name} conv1", ksize=1, cin=f, cout=wide)
            wide = c1.cout
            c2 = cur.take("conv", f"{name} conv2", ksize=1, cin=wide,
                          cout=int(f * WDSR_B_LINEAR))
            c3 = cur.take("conv", f"{name} conv3", ksize=3, cin=c2.cout, cout=f)
            plan.assign += [(f"{name}_conv1", c1), (f"{name}_conv2", c2), (f"{name}_conv3", c3)]
        else:
            c1 = cur.take("conv", f"{name} conv1", ksize=3, cin=f, cout=wide)
            wide = c1.cout
            c2 = cur.take("conv", f"{name} conv2", ksize=3, cin=wide, cout=f)
            plan.assign += [(f"{name}_conv1", c1), (f"{name}_conv2", c2)]
    # main (3x3, F -> 3r^2) and skip (5x5, 3 -> 3r^2), in either order (layer depth)
    tail = [cur.peek(0), cur.peek(1)]
    if None in tail or {t.kind for t in tail} != {"conv"} or \
            sorted(t.cin for t in tail) != sorted([3, f]):
        what = ", ".join(t.describe() for t in tail if t is not None) or "nothing"
        raise KrassermError(f"{model}: expected the main (3x3, {f} -> 3*r*r) and skip "
                            f"(5x5, 3 -> 3*r*r) convs after {n} blocks, found {what}")
    main_first = tail[0].cin == f
    outs = tail[0].cout
    r = int(round(math.sqrt(outs / 3)))
    if 3 * r * r != outs or r not in (2, 3, 4, 8):
        raise KrassermError(f"{model}: {tail[0].describe()}: {outs} output channels are not "
                            "3 * r * r for a scale r of 2, 3, 4 or 8")
    convs = {}
    for is_main in ((True, False) if main_first else (False, True)):
        convs[is_main] = cur.take("conv", "the main conv" if is_main else "the skip conv",
                                  ksize=3 if is_main else 5, cin=f if is_main else 3,
                                  cout=outs)
    cur.done()
    plan.assign += [(f"main_x{r}_conv", convs[True]), (f"skip_x{r}_conv", convs[False])]
    plan.args = {"scale": r, "num_filters": int(f), "num_res_blocks": n}
    if n:
        plan.args["res_block_expansion"] = int(wide // f)
        if wide % f:
            raise KrassermError(f"{model}: block1 widens {f} to {wide} channels, not a "
                                "whole expansion factor")
    return plan


def _discriminator(layers):
    cur = _Cursor(layers, "discriminator")
    plan = Plan("discriminator", {})
    first = cur.take("conv", "block1 conv", ksize=3, cin=3)
    f = first.cout
    plan.assign.append(("block1_conv", first))
    cin = f
    for i, mult in enumerate((1, 2, 2, 4, 4, 8, 8), start=2):
        plan.assign += [
            (f"block{i}_conv", cur.take("conv", f"block{i} conv", ksize=3, cin=cin,
                                        cout=f * mult)),
            (f"block{i}_bn", cur.take("bn", f"block{i} BN", channels=f * mult)),
        ]
        cin = f * mult
    fc1 = cur.take("dense", "the first dense layer")
    side = math.isqrt(fc1.kernel.shape[0] // (8 * f)) if fc1.kernel.shape[0] % (8 * f) == 0 else 0
    if side < 1 or side * side * 8 * f != fc1.kernel.shape[0] or fc1.kernel.shape[1] != 1024:
        raise KrassermError(f"discriminator: {fc1.describe()} does not fit as the first dense "
                            f"layer (h*w*{8 * f} -> 1024 of a square input)")
    out = cur.take("dense", "the output dense layer")
    if out.kernel.shape != (1024, 1):
        raise KrassermError(f"discriminator: {out.describe()} does not fit as the output "
                            "(1024 -> 1)")
    cur.done()
    plan.assign += [("fc1", fc1), ("output", out)]
    plan.args = {"hr_size": side * 16, "num_filters": int(f)}
    return plan


LAYOUTS = {"srresnet": _srresnet, "edsr": _edsr, "wdsr": _wdsr,
           "discriminator": _discriminator}


def _detect(layers):
    kinds = {layer.kind for layer in layers}
    first = layers[0]
    if "prelu" in kinds:
        return "srresnet"
    if "dense" in kinds:
        return "discriminator"
    if kinds == {"conv"}:
        if any(layer.weight_norm for layer in layers) or any(
                layer.ksize == 5 and layer.cin == 3 for layer in layers):
            return "wdsr"
        return "edsr"
    raise KrassermError(
        f"cannot tell which krasserm model the file holds (first {first.describe()}); "
        "expected EDSR, WDSR-A/B, the SRResNet/SRGAN generator or the SRGAN discriminator")


# ----------------------------------------------------------------------------- Keras-2 config

WEIGHT_NORM_CLASSES = ("WeightNormalization", "Addons>WeightNormalization")  # tfa
KIND_CLASSES = {"conv": ("Conv2D",) + WEIGHT_NORM_CLASSES, "bn": ("BatchNormalization",),
                "prelu": ("PReLU",), "dense": ("Dense",)}
# sisr layers with an activation inside or right after their conv
ACTIVATIONS = {"edsr": {r"block\d+_conv1": "relu"}, "wdsr_a": {r"block\d+_conv1": "relu"},
               "wdsr_b": {r"block\d+_conv1": "relu"}, "srresnet": {"output_conv": "tanh"}}
# convs followed by a depth_to_space Lambda
SHUFFLED = ("upsample_x", "main_x", "skip_x")
# the last conv of an EDSR/WDSR residual branch
RESIDUAL_OUT = r"block\d+_conv[23]"


def _config_layers(config, path):
    """name -> {class_name, config, inbound names} of a Keras-2 `model_config`, and the
    name of the output layer. Read as data: nothing is deserialised."""
    body = config.get("config") if isinstance(config, dict) else None
    layers = body.get("layers") if isinstance(body, dict) else None
    if not isinstance(layers, list) or not body.get("output_layers"):
        raise CheckpointError(f"{path}: model_config is not a functional Keras model")
    table = {}
    for layer in layers:
        inbound = [node[0] for call in layer.get("inbound_nodes") or [] for node in call]
        table[layer["name"]] = {"class_name": layer["class_name"],
                                "config": layer.get("config") or {}, "inbound": inbound}
    consumers = {name: [] for name in table}
    for name, layer in table.items():
        for source in layer["inbound"]:
            consumers.setdefault(source, []).append(name)
    for name, layer in table.items():
        layer["consumers"] = consumers.get(name, [])
    outputs = body["output_layers"]
    if len(outputs) != 1:
        raise KrassermError(f"{path}: a model with {len(outputs)} outputs is no krasserm "
                            "super-resolution model")
    return table, outputs[0][0]


def _check_classes(layers, table, path):
    for layer in layers:
        entry = table.get(layer.name)
        if entry is None:
            raise KrassermError(f"{path}: weights of layer {layer.name!r}, which is not in "
                                "the model_config")
        if entry["class_name"] not in KIND_CLASSES[layer.kind]:
            raise KrassermError(f"{path}: {layer.describe()} is a {entry['class_name']} in "
                                "the model_config")
        layer.class_name, layer.config = entry["class_name"], entry["config"]
        if layer.class_name in WEIGHT_NORM_CLASSES:
            layer.config = (layer.config.get("layer") or {}).get("config", {})


def _activation(layer, table):
    """The activation applied to a conv: its own, or that of a lone Activation after it."""
    own = layer.config.get("activation", "linear")
    after = table[layer.name]["consumers"]
    if own == "linear" and len(after) == 1 and table[after[0]]["class_name"] == "Activation":
        return table[after[0]]["config"].get("activation"), after[0]
    return own, None


def _check_keras2(plan, layers, config, path):
    """Checks what the weights cannot show (activations, padding, strides, Lambda roles)
    against the JSON config; sets `plan.tanh_output` for the 2018 EDSR generator."""
    table, output = _config_layers(config, path)
    _check_classes(layers, table, path)
    targets = {layer.name: target for target, layer in plan.assign}
    expected_act = ACTIVATIONS.get(plan.model, {})
    valid_padding = []
    seen_activations = set()
    previous = None
    for target, layer in plan.assign:
        cfg = layer.config
        if layer.kind == "bn" and table[layer.name]["inbound"] != [previous]:
            # e.g. the 2018 discriminator: conv -> LeakyReLU -> BN
            raise KrassermError(f"{path}: BatchNormalization {layer.name!r} follows "
                                f"{table[layer.name]['inbound']}, not the conv {previous!r} "
                                f"as sisr's {target} does")
        previous = layer.name
        if layer.kind == "bn":
            if abs(cfg.get("epsilon", BN_EPSILON) - BN_EPSILON) > 1e-12 or \
                    cfg.get("axis", -1) not in (-1, 3, [-1], [3]):
                raise KrassermError(f"{path}: BatchNormalization {layer.name!r} has epsilon "
                                    f"{cfg.get('epsilon')} / axis {cfg.get('axis')}; sisr's "
                                    f"{target} has {BN_EPSILON} over the channels")
        if layer.kind == "prelu" and list(cfg.get("shared_axes") or []) != [1, 2]:
            raise KrassermError(f"{path}: PReLU {layer.name!r} shares its slopes over axes "
                                f"{cfg.get('shared_axes')}; sisr's {target} over [1, 2]")
        if layer.kind != "conv":
            continue
        if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1) or \
                cfg.get("data_format", "channels_last") != "channels_last":
            raise KrassermError(f"{path}: conv {layer.name!r} is dilated or channels-first")
        strides = tuple(cfg.get("strides", (1, 1)))
        want_strides = (2, 2) if plan.model == "discriminator" and target[5:6].isdigit() \
            and int(target[5:].split("_")[0]) % 2 == 0 else (1, 1)
        if strides != want_strides:
            raise KrassermError(f"{path}: conv {layer.name!r} has strides {strides}; sisr's "
                                f"{target} has {want_strides}")
        if cfg.get("padding", "same") != "same":
            valid_padding.append(target)
        act, act_layer = _activation(layer, table)
        if act_layer:
            seen_activations.add(act_layer)
        want = next((a for pattern, a in expected_act.items()
                     if re.fullmatch(pattern, target)), "linear")
        if plan.model == "edsr" and target == "output_conv" and act == "tanh":
            plan.tanh_output = True  # edsr_generator (edsr-gen profile) of 2018
            want = "tanh"
        if act != want:
            raise KrassermError(f"{path}: conv {layer.name!r} ({target}) is followed by "
                                f"{act!r}, sisr's by {want!r}")
    for name, entry in table.items():
        if entry["class_name"] == "Activation" and name not in seen_activations:
            raise KrassermError(f"{path}: Activation layer {name!r} "
                                f"({entry['config'].get('activation')}) has no place in "
                                f"sisr's {plan.model}")
    pad = _check_lambdas(plan, table, output, targets, path)
    if plan.model in ("wdsr_a", "wdsr_b"):
        want_valid = ["head_conv", f"main_x{plan.args['scale']}_conv",
                      f"skip_x{plan.args['scale']}_conv"] if pad else []
        if sorted(valid_padding) != sorted(want_valid):
            raise KrassermError(f"{path}: convs with 'valid' padding {valid_padding}, expected "
                                f"{want_valid or 'none'} for a WDSR model "
                                f"{'with' if pad else 'without'} the 2018 input padding")
        if pad:
            plan.notes.append(
                "the 2018 WDSR pads its normalised input symmetrically by 2 pixels at "
                "inference (Lambda layer) before 'valid' head, main and skip convs; sisr pads "
                "each conv with zeros, so outputs agree except near the image border")
    elif valid_padding:
        raise KrassermError(f"{path}: convs {valid_padding} use 'valid' padding; sisr's "
                            f"{plan.model} pads every conv ('same')")


def _check_lambdas(plan, table, output, targets, path):
    """Gives every Lambda a role by its place in the graph; returns whether WDSR's input
    padding is present. The Lambdas' code is never read or run."""
    inputs = {n for n, e in table.items() if e["class_name"] == "InputLayer"}
    normalize = [n for n, e in table.items() if e["class_name"] == "Lambda"
                 and e["inbound"] and set(e["inbound"]) <= inputs]
    pad = False
    scalings = []
    for name, entry in table.items():
        if entry["class_name"] != "Lambda":
            continue
        source = entry["inbound"][0] if len(entry["inbound"]) == 1 else None
        source_class = table.get(source, {}).get("class_name")
        if name in normalize or name == output:
            continue  # input normalisation / output denormalisation
        if source in targets and targets[source].startswith(SHUFFLED):
            continue  # pixel shuffle after an upsampling conv
        if source in normalize and plan.model in ("wdsr_a", "wdsr_b"):
            pad = True
            continue
        if source in targets and re.fullmatch(RESIDUAL_OUT, targets[source]) and \
                [table[c]["class_name"] for c in entry["consumers"]] == ["Add"]:
            scalings.append(_closure_number(name, entry, path))
            continue  # residual scaling before the sum (TF2 code), as sisr's
        if source_class == "Add":
            raise KrassermError(
                f"{path}: Lambda layer {name!r} after {source!r} (Add) is a residual scaling "
                "applied after the sum, as the 2018 code did; sisr scales the residual "
                "branch before the sum, so this model has no sisr equivalent")
        raise KrassermError(f"{path}: Lambda layer {name!r} (after {source!r}) has no known "
                            f"role in a krasserm {plan.model}; its code is not run")
    if len(normalize) != 1:
        raise KrassermError(f"{path}: expected one normalisation Lambda after the input, "
                            f"found {normalize or 'none'}")
    if table[output]["class_name"] != "Lambda":
        raise KrassermError(f"{path}: the output layer {output!r} is a "
                            f"{table[output]['class_name']}, not the denormalisation Lambda")
    if scalings:
        if len(scalings) != plan.args["num_res_blocks"] or len(set(scalings)) != 1:
            raise KrassermError(f"{path}: residual scaling Lambdas with factors {scalings} "
                                f"for {plan.args['num_res_blocks']} blocks; sisr scales "
                                "every block by one factor")
        plan.scaling = scalings[0]
    return pad


def _closure_number(name, entry, path):
    """The factor of a `lambda t: t * scaling` Lambda, from the closure values that Keras
    stores as JSON next to the function's (never decoded) bytecode."""
    function = entry["config"].get("function")
    closure = function[2] if isinstance(function, list) and len(function) == 3 else None
    if not (isinstance(closure, list) and len(closure) == 1
            and isinstance(closure[0], (int, float)) and not isinstance(closure[0], bool)):
        raise KrassermError(f"{path}: Lambda layer {name!r} scales a residual branch, but its "
                            "factor is not stored as a single closure value; pass "
                            "res_block_scaling")
    return float(closure[0])


# ----------------------------------------------------------------------------- checks


def _model_name(name):
    if name is None:
        return None
    key = str(name).replace("-", "_").lower()
    return {"sr_resnet": "srresnet", "srgan": "srresnet"}.get(key, key)


def _profile_values(profile):
    from sisr.training.config import ConfigError, load_profile

    try:
        return load_profile(profile)[1]
    except ConfigError as err:
        raise KrassermError(str(err)) from None


def _check_requested(plan, path, model, scale, profile, builder_args):
    """Raises KrassermError naming every requested value the file contradicts."""
    requested = {k: v for k, v in builder_args.items() if v is not None}
    scales = None
    if profile is not None:
        prof = _profile_values(profile)
        prof_model = prof.get("model")
        if model is not None and prof_model is not None and \
                _model_name(model) != _model_name(prof_model):
            raise KrassermError(f"model {model!r} contradicts profile {profile!r} "
                                f"(model {prof_model!r})")
        model = model if model is not None else prof_model
        for key in BUILDER_ARGS:
            if requested.get(key) is None and prof.get(key) is not None:
                requested[key] = prof[key]
        # A profile's scale is a default for training; any scale it lists fits.
        scales = prof.get("scales") or ([prof["scale"]] if "scale" in prof else None)
    problems = []
    if model is not None and _model_name(model) != plan.model:
        problems.append(f"model: requested {model!r}, the file holds {plan.model}")
    if scale is not None and scale != plan.args.get("scale"):
        problems.append(f"scale: requested {scale}, the file's upsampler is "
                        f"x{plan.args.get('scale')}")
    if scale is None and scales is not None and "scale" in plan.args and \
            plan.args["scale"] not in scales:
        problems.append(f"scale: profile {profile!r} has scales {scales}, the file's "
                        f"upsampler is x{plan.args['scale']}")
    for key, value in requested.items():
        if key == "res_block_scaling":
            continue
        if key not in plan.args:
            if key == "res_block_expansion" and plan.model == "edsr":
                continue  # profiles share keys; EDSR has no expansion
            problems.append(f"{key}: {plan.model} has no such argument")
        elif value != plan.args[key]:
            problems.append(f"{key}: requested {value!r}, the file has {plan.args[key]!r}")
    scaling = requested.get("res_block_scaling")
    if plan.scaling is not None:
        if scaling is not None and abs(scaling - plan.scaling) > 1e-12:
            problems.append(f"res_block_scaling: requested {scaling!r}, the file's Lambda "
                            f"layers scale by {plan.scaling!r}")
        scaling = plan.scaling
    if problems:
        raise KrassermError(f"{path}: the krasserm {plan.model} file does not match the "
                            "requested architecture: " + "; ".join(problems))
    return scaling


# ----------------------------------------------------------------------------- building


def describe_krasserm(path):
    """The `Plan` of a krasserm file: sisr model, builder arguments, layer mapping."""
    layers, config = read_krasserm(path)
    name = _detect(layers)
    plan = LAYOUTS[name](layers)
    if config is not None:
        plan.kind = "full model"
        _check_keras2(plan, layers, config, path)
    return plan


def _weights_of(layer):
    if layer.kind in ("conv", "dense"):
        return [layer.kernel, layer.arrays["bias"]]
    if layer.kind == "bn":
        return [layer.arrays[k] for k in ("gamma", "beta", "moving_mean", "moving_variance")]
    return [layer.arrays["alpha"]]


def _build(plan, scaling):
    from sisr.model import build

    args = dict(plan.args)
    if scaling is not None:
        if plan.model not in ("edsr", "wdsr_a", "wdsr_b"):
            raise KrassermError(f"res_block_scaling: {plan.model} has no residual scaling")
        args["res_block_scaling"] = scaling
    model = build(plan.model, **args)
    if plan.tanh_output:
        model = _tanh_output(model)
    return model


def _tanh_output(edsr_model):
    """The 2018 EDSR generator: EDSR with tanh and (x + 1) * 127.5 instead of the mean."""
    import keras

    x = edsr_model.get_layer("output_conv").output
    x = keras.layers.Activation("tanh", name="output_tanh", dtype="float32")(x)
    x = keras.layers.Rescaling(127.5, offset=127.5, name="denormalize", dtype="float32")(x)
    return keras.Model(edsr_model.input, x, name="edsr_gen")


def _fill(model, plan, path):
    filled = set()
    for target, layer in plan.assign:
        try:
            dest = model.get_layer(target)
        except ValueError as err:
            raise KrassermError(f"{path}: {layer.describe()}: the sisr {plan.model} model "
                                f"has no layer {target!r}") from err
        values = _weights_of(layer)
        expected = [tuple(w.shape) for w in dest.weights]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise KrassermError(f"{path}: {layer.describe()} does not fit sisr's {target} "
                                f"(weights {expected})")
        dest.set_weights(values)
        filled.add(target)
    unfilled = [layer.name for layer in model.layers if layer.weights and layer.name not in filled]
    if unfilled:
        raise KrassermError(f"{path}: no weights in the file for sisr layer(s) "
                            f"{', '.join(unfilled)}")


def load_krasserm(path, profile=None, scale=None, model=None, **builder_args):
    """Builds the sisr model of a krasserm/super-resolution .h5 file and loads its weights.

    Args:
        path: a TF2-era `save_weights` .h5 file or a Keras-2-era full-model .h5 file.
        profile: a training profile name or JSON path (see `load_profile`) whose model
            and builder arguments are checked against the file, and whose
            `res_block_scaling` is used (weights files do not store it).
        scale: if given, must be the scale of the file's upsampler.
        model: if given ("edsr", "wdsr_a", "wdsr_b", "srresnet", "discriminator"), must
            be the file's model.
        **builder_args: `num_filters`, `num_res_blocks`, `res_block_expansion`,
            `hr_size` to check, and `res_block_scaling` (EDSR/WDSR; default none).

    Returns:
        A sisr `keras.Model` with the original model's outputs, RGB on [0, 255].

    Raises:
        FileNotFoundError: `path` does not exist.
        CheckpointError: the file is not a Keras HDF5 model or weights file.
        KrassermError (a PortError): a layer that fits no sisr model, a missing or extra
            layer, or a mismatch with the requested architecture.
    """
    unknown = sorted(set(builder_args) - set(BUILDER_ARGS))
    if unknown:
        raise TypeError(f"load_krasserm: unknown argument(s) {', '.join(unknown)}")
    path = os.fspath(path)
    plan = describe_krasserm(path)
    scaling = _check_requested(plan, path, model, scale, profile, builder_args)
    keras_model = _build(plan, scaling)
    _fill(keras_model, plan, path)
    for note in plan.notes:
        log.warning("%s: %s", path, note)
    log.info("read %d layers of the krasserm %s file %s into %s %s", len(plan.assign),
             plan.kind, path, plan.model, plan.args)
    return keras_model
