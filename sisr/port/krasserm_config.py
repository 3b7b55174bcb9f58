"""Checks of a full-model file's JSON `model_config` (Keras-2 era, or tf.keras saves).

The JSON is read as data: layers are matched by name to the stored weights, and each
`Lambda` gets its role from its place in the graph (normalisation after the input, pixel
shuffle after an upsampling conv, WDSR's input padding, residual scaling). No function in
it is decoded or run; a residual scaling factor is read from the closure values Keras
stores next to the bytecode.
"""

import math
import re

from sisr.port.io import CheckpointError
from sisr.port.krasserm_layouts import KrassermError

BN_EPSILON = 1e-3

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
    # the structure was checked by sisr.port.krasserm_schema when the file was read
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


def _ints(value):
    """An int or a list of ints (as the schema allows) as a list."""
    return [value] if isinstance(value, int) else list(value)


def _pair(value):
    """Keras' (h, w) of an int or a list of ints."""
    values = _ints(value)
    return tuple(values * 2 if len(values) == 1 else values)


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
            layer.config = (layer.config.get("layer") or {}).get("config") or {}


def _activation(layer, table):
    """The activation applied to a conv: its own, or that of a lone Activation after it."""
    own = layer.config.get("activation", "linear")
    after = table[layer.name]["consumers"]
    if own == "linear" and len(after) == 1 and table[after[0]]["class_name"] == "Activation":
        return table[after[0]]["config"].get("activation"), after[0]
    return own, None


def check_full_model(walk, layers, config, path):
    """Checks what the weights cannot show (activations, padding, strides, Lambda roles)
    against the JSON config; sets `walk.tanh_output` for the 2018 EDSR generator."""
    table, output = _config_layers(config, path)
    _check_classes(layers, table, path)
    targets = {layer.name: target for target, layer in walk.assign}
    expected_act = ACTIVATIONS.get(walk.model, {})
    valid_padding = []
    seen_activations = set()
    previous = None
    for target, layer in walk.assign:
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
        if layer.kind == "prelu" and _ints(cfg.get("shared_axes") or []) != [1, 2]:
            raise KrassermError(f"{path}: PReLU {layer.name!r} shares its slopes over axes "
                                f"{cfg.get('shared_axes')}; sisr's {target} over [1, 2]")
        if layer.kind != "conv":
            continue
        if _pair(cfg.get("dilation_rate", 1)) != (1, 1) or \
                cfg.get("data_format", "channels_last") != "channels_last":
            raise KrassermError(f"{path}: conv {layer.name!r} is dilated or channels-first")
        strides = _pair(cfg.get("strides", 1))
        want_strides = (2, 2) if walk.model == "discriminator" and target[5:6].isdigit() \
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
        if walk.model == "edsr" and target == "output_conv" and act == "tanh":
            walk.tanh_output = True  # edsr_generator (edsr-gen profile) of 2018
            want = "tanh"
        if act != want:
            raise KrassermError(f"{path}: conv {layer.name!r} ({target}) is followed by "
                                f"{act!r}, sisr's by {want!r}")
    for name, entry in table.items():
        if entry["class_name"] == "Activation" and name not in seen_activations:
            raise KrassermError(f"{path}: Activation layer {name!r} "
                                f"({entry['config'].get('activation')}) has no place in "
                                f"sisr's {walk.model}")
    pad = _check_lambdas(walk, table, output, targets, path)
    if walk.model in ("wdsr_a", "wdsr_b"):
        want_valid = ["head_conv", f"main_x{walk.args['scale']}_conv",
                      f"skip_x{walk.args['scale']}_conv"] if pad else []
        if sorted(valid_padding) != sorted(want_valid):
            raise KrassermError(f"{path}: convs with 'valid' padding {valid_padding}, expected "
                                f"{want_valid or 'none'} for a WDSR model "
                                f"{'with' if pad else 'without'} the 2018 input padding")
        if pad:
            walk.notes.append(
                "the 2018 WDSR pads its normalised input symmetrically by 2 pixels at "
                "inference (Lambda layer) before 'valid' head, main and skip convs; sisr pads "
                "each conv with zeros, so outputs agree except near the image border")
    elif valid_padding:
        raise KrassermError(f"{path}: convs {valid_padding} use 'valid' padding; sisr's "
                            f"{walk.model} pads every conv ('same')")


def _check_lambdas(walk, table, output, targets, path):
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
        if source in normalize and walk.model in ("wdsr_a", "wdsr_b"):
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
                            f"role in a krasserm {walk.model}; its code is not run")
    if len(normalize) != 1:
        raise KrassermError(f"{path}: expected one normalisation Lambda after the input, "
                            f"found {normalize or 'none'}")
    if table[output]["class_name"] != "Lambda":
        raise KrassermError(f"{path}: the output layer {output!r} is a "
                            f"{table[output]['class_name']}, not the denormalisation Lambda")
    if scalings:
        if len(scalings) != walk.args["num_res_blocks"] or len(set(scalings)) != 1:
            raise KrassermError(f"{path}: residual scaling Lambdas with factors {scalings} "
                                f"for {walk.args['num_res_blocks']} blocks; sisr scales "
                                "every block by one factor")
        walk.scaling = scalings[0]
    return pad


def _closure_number(name, entry, path):
    """The factor of a `lambda t: t * scaling` Lambda, from the closure values that Keras
    stores as JSON next to the function's (never decoded) bytecode."""
    function = entry["config"].get("function")
    closure = function[2] if isinstance(function, list) and len(function) == 3 else None
    if not (isinstance(closure, list) and len(closure) == 1
            and isinstance(closure[0], (int, float)) and not isinstance(closure[0], bool)
            and math.isfinite(closure[0])):
        raise KrassermError(f"{path}: Lambda layer {name!r} scales a residual branch, but its "
                            "factor is not stored as a single closure value; pass "
                            "res_block_scaling")
    return float(closure[0])
