"""The JSON `model_config` of a krasserm full-model file, parsed and checked as data.

`parse_model_config` bounds the nesting depth before parsing, then checks the type of
every field that `sisr.port.krasserm_config` reads (and only those: the rest of a Keras
config is not used): a functional model's `layers` and `output_layers`, each layer's
`name`, `class_name` and `inbound_nodes`, and the config values of the layers whose
weights or roles are checked. Anything else is a `CheckpointError` naming the field.
"""

import json
import math
import re

import numpy as np

from sisr.port.io import CheckpointError

# Keras configs nest about a dozen levels deep; JSON nested deeper is refused unparsed.
MAX_DEPTH = 64

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def _depth(text):
    """The deepest nesting of [ and { in a JSON text, strings left out."""
    bare = np.frombuffer(_STRINGS.sub("", text).encode("utf8", "replace"), dtype=np.uint8)
    steps = np.zeros(bare.shape, dtype=np.int8)
    steps[(bare == ord("[")) | (bare == ord("{"))] = 1
    steps[(bare == ord("]")) | (bare == ord("}"))] = -1
    return int(np.cumsum(steps, dtype=np.int32).max()) if steps.size else 0


def parse_model_config(text, path):
    """The checked `model_config` dict of a full-model file."""
    if _depth(text) > MAX_DEPTH:
        raise CheckpointError(f"{path}: model_config nests deeper than {MAX_DEPTH} levels; "
                              "a Keras model config does not")
    try:
        config = json.loads(text)
    except RecursionError:
        raise CheckpointError(f"{path}: model_config nests too deeply") from None
    except ValueError as err:  # JSONDecodeError, or an integer of too many digits
        message = " ".join(str(err).split())
        raise CheckpointError(f"{path}: model_config is not valid JSON: {message}") from None
    check(config, path)
    return config


class _Fields:
    """Type checks of the fields of one JSON object, errors naming where it is."""

    def __init__(self, obj, where, path):
        if not isinstance(obj, dict):
            raise CheckpointError(f"{path}: model_config: {where} is {_kind(obj)}, not an "
                                  "object")
        self.obj, self.where, self.path = obj, where, path

    def fail(self, key, want):
        value = self.obj[key]
        raise CheckpointError(f"{self.path}: model_config: {self.where}: {key!r} is "
                              f"{_kind(value)}, expected {want}")

    def require(self, key, want, test):
        if key not in self.obj:
            raise CheckpointError(f"{self.path}: model_config: {self.where} has no {key!r}")
        if not test(self.obj[key]):
            self.fail(key, want)
        return self.obj[key]

    def optional(self, key, want, test):
        if key in self.obj and not test(self.obj[key]):
            self.fail(key, want)
        return self.obj.get(key)


def _kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return "a list" if isinstance(value, list) else "an object"


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return (is_int(v) or isinstance(v, float)) and math.isfinite(v)


def is_ints(v):
    """An int, or a list of ints (Keras stores tuples such as strides as lists)."""
    return is_int(v) or (isinstance(v, list) and all(is_int(x) for x in v))


def is_ints_or_null(v):
    return v is None or is_ints(v)


def is_str(v):
    return isinstance(v, str)


def is_obj_or_null(v):
    return v is None or isinstance(v, dict)


def _is_node(node):
    return isinstance(node, list) and bool(node) and isinstance(node[0], str)


def _is_inbound(v):
    """Keras-2 / tf.keras inbound nodes: calls, each a list of [layer name, index, ...]."""
    return v is None or (isinstance(v, list) and all(
        isinstance(call, list) and all(_is_node(n) for n in call) for call in v))


def _is_outputs(v):
    return isinstance(v, list) and bool(v) and all(_is_node(n) for n in v)


_CONV = {"activation": ("a string", is_str), "strides": ("an int or list of ints", is_ints),
         "dilation_rate": ("an int or list of ints", is_ints),
         "kernel_size": ("an int or list of ints", is_ints),
         "padding": ("a string", is_str), "data_format": ("a string", is_str)}
# the config values krasserm_config reads, by class (all optional: Keras' defaults apply)
LAYER_FIELDS = {
    "Conv2D": _CONV,
    "BatchNormalization": {"epsilon": ("a finite number", is_number),
                           "axis": ("an int or list of ints", is_ints)},
    "PReLU": {"shared_axes": ("null, an int or a list of ints", is_ints_or_null)},
    "Activation": {"activation": ("a string", is_str)},
}
WRAPPERS = ("WeightNormalization", "Addons>WeightNormalization")


def check(config, path):
    """Raises CheckpointError unless `config` has the structure the reader uses."""
    top = _Fields(config, "the model", path)
    body = _Fields(top.require("config", "an object", lambda v: isinstance(v, dict)),
                   "config", path)
    layers = body.require("layers", "a list", lambda v: isinstance(v, list))
    body.require("output_layers", "a non-empty list of [layer name, ...] lists", _is_outputs)
    names = set()
    for i, layer in enumerate(layers):
        fields = _Fields(layer, f"layers[{i}]", path)
        name = fields.require("name", "a string", is_str)
        if name in names:
            raise CheckpointError(f"{path}: model_config: two layers are called {name!r}")
        names.add(name)
        fields.where = f"layer {name!r}"
        class_name = fields.require("class_name", "a string", is_str)
        fields.optional("inbound_nodes", "a list of calls, each a list of [layer name, ...] "
                        "lists", _is_inbound)
        cfg = fields.optional("config", "an object", is_obj_or_null) or {}
        _check_layer_config(cfg, class_name, f"layer {name!r} config", path)
    output = body.obj["output_layers"][0][0]
    if output not in names:
        raise CheckpointError(f"{path}: model_config: the output layer {output!r} is not "
                              "one of its layers")


def _check_layer_config(cfg, class_name, where, path):
    fields = _Fields(cfg, where, path)
    if class_name in WRAPPERS:
        inner = fields.optional("layer", "an object", is_obj_or_null) or {}
        inner_fields = _Fields(inner, f"{where}.layer", path)
        inner_cfg = inner_fields.optional("config", "an object", is_obj_or_null) or {}
        _check_layer_config(inner_cfg, "Conv2D", f"{where}.layer.config", path)
        return
    for key, (want, test) in LAYER_FIELDS.get(class_name, {}).items():
        fields.optional(key, want, test)
