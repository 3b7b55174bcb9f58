"""An exact inference rewrite: the last pixel shuffle moved after the output convolution.

SRResNet (and the SRGAN generator) end in `PixelShuffle(2) -> PReLU -> Conv2D(9x9, 64 -> 3)`
at the output resolution. A convolution to 3 channels uses a fraction of the CPU's vector
lanes, so that conv takes a share of SRResNet's inference time far above its share of the
FLOPs. The same sums computed on the pre-shuffle grid are a 5x5 conv from 4 * 64 to 4 * 3
channels (one output channel per shuffle phase), after which the shuffle runs on 12 channels
instead of 64; the PReLU, being per channel, runs before the shuffle with its slopes repeated
per phase. Faster in float32 and in bfloat16 (measured in benchmarks/README.md,
`python benchmarks/precision.py`), the same result up to float rounding.

In general, `PixelShuffle(r) -> [PReLU | Activation] -> Conv2D(k x k, "same", stride 1)`
becomes `[PReLU | Activation] -> Conv2D(k' x k', r*r*filters) -> PixelShuffle(r)` with
k' = 2 * ceil((k - 1) / 2 / r) + 1. It is applied only for k > 3: for EDSR's 3x3 output
conv it gains nothing.

    fast, copy_weights = shuffle_last(model)   # (model, None) if nothing matches
    copy_weights(fast, model)                  # after `model` has changed
"""

import copy as copy_module
import math

import numpy as np

from sisr.graph import keras_histories

_ELEMENTWISE = ("PReLU", "Activation")


def _retarget(value, old, new):
    """`value` with references to layer `old` pointing at layer `new` (in place)."""
    for history in keras_histories(value):
        if history[0] == old:
            history[0] = new


def _output_refs(config):
    """The `[layer, node, tensor]` entries of `output_layers` (one output or a list)."""
    outputs = config.get("output_layers") or []
    return [outputs] if outputs and isinstance(outputs[0], str) else list(outputs)


def _consumers(config):
    users = {}
    for layer in config["layers"]:
        for history in keras_histories(layer.get("inbound_nodes", [])):
            users.setdefault(history[0], []).append(layer["config"]["name"])
    for output in _output_refs(config):
        users.setdefault(output[0], []).append(None)
    return users


def _match(model, config):
    """(shuffle, elementwise or None, conv) layer names of a rewritable tail, or None."""
    users = _consumers(config)
    by_name = {layer["config"]["name"]: layer for layer in config["layers"]}
    for layer in config["layers"]:
        if layer.get("registered_name") != "sisr>PixelShuffle":
            continue
        shuffle = layer["config"]["name"]
        chain = users.get(shuffle, [])
        middle = None
        if len(chain) == 1 and chain[0] and by_name[chain[0]]["class_name"] in _ELEMENTWISE:
            middle = chain[0]
            chain = users.get(middle, [])
        if len(chain) != 1 or not chain[0] or by_name[chain[0]]["class_name"] != "Conv2D":
            continue
        conv = model.get_layer(chain[0])
        if middle and by_name[middle]["class_name"] == "PReLU" and \
                list(model.get_layer(middle).shared_axes or []) != [1, 2]:
            continue  # slopes per pixel cannot move before the shuffle
        k = conv.kernel_size
        if (k[0] == k[1] and k[0] % 2 == 1 and k[0] > 3 and conv.padding == "same"
                and tuple(conv.strides) == (1, 1) and tuple(conv.dilation_rate) == (1, 1)
                and conv.groups == 1 and conv.data_format == "channels_last"):
            return shuffle, middle, conv.name
    return None


def kernel_index(k, r, channels, filters):
    """Indices into `[kernel.ravel(), 0]` that rearrange a (k, k, channels, filters) kernel
    applied after a pixel shuffle `r` into the (k', k', r*r*channels, r*r*filters) kernel
    applied before it (out-of-range taps read the appended 0)."""
    p = (k - 1) // 2
    q = math.ceil(p / r)
    size = 2 * q + 1
    zero = k * k * channels * filters
    index = np.full((size, size, r * r * channels, r * r * filters), zero, np.int64)
    c = np.arange(channels)[:, None]
    o = np.arange(filters)[None, :]
    for i in range(r):          # output phase (row, column): HR pixel (r*h + i, r*w + j)
        for j in range(r):
            for u in range(-q, q + 1):      # pre-shuffle offset
                for v in range(-q, q + 1):
                    for a in range(r):      # input phase
                        for b in range(r):
                            dy, dx = r * u + a - i, r * v + b - j
                            if abs(dy) > p or abs(dx) > p:
                                continue
                            flat = (((dy + p) * k + (dx + p)) * channels + c) * filters + o
                            index[u + q, v + q, (a * r + b) * channels + c,
                                  (i * r + j) * filters + o] = flat
    return index


def shuffle_last(model):
    """(copy, copy_weights): a copy of the functional `model` with its tail rewritten as the
    module says, and a traceable function assigning `model`'s current weights to the copy;
    `(model, None)` if no tail matches."""
    try:
        config = copy_module.deepcopy(model.get_config())
        config["layers"]
    except (NotImplementedError, KeyError, TypeError):
        return model, None
    found = _match(model, config)
    if found is None:
        return model, None
    shuffle_name, middle_name, conv_name = found
    shuffle = model.get_layer(shuffle_name)
    conv = model.get_layer(conv_name)
    r = shuffle.scale
    channels, filters, k = conv.kernel.shape[2], conv.filters, conv.kernel_size[0]
    layers, by_name = config["layers"], {ly["config"]["name"]: ly for ly in config["layers"]}
    shuffle_layer = by_name[shuffle_name]
    source = next(keras_histories(shuffle_layer["inbound_nodes"]))[0]
    first = middle_name or conv_name
    _retarget(by_name[first]["inbound_nodes"], shuffle_name, source)
    for name in filter(None, (middle_name, conv_name)):
        build = by_name[name].get("build_config") or {}
        if build.get("input_shape"):
            build["input_shape"] = [*build["input_shape"][:-1], channels * r * r]
    size = 2 * math.ceil((k - 1) // 2 / r) + 1
    by_name[conv_name]["config"].update(kernel_size=[size, size], filters=filters * r * r)
    # The shuffle now reads the conv, and the conv's consumers read the shuffle.
    for layer in layers:
        _retarget(layer.get("inbound_nodes", []), conv_name, shuffle_name)
    for output in _output_refs(config):
        if output[0] == conv_name:
            output[0] = shuffle_name
    shuffle_layer["inbound_nodes"] = copy_module.deepcopy(by_name[conv_name]["inbound_nodes"])
    for history in keras_histories(shuffle_layer["inbound_nodes"]):
        history[0] = conv_name
    layers.remove(shuffle_layer)
    layers.insert(layers.index(by_name[conv_name]) + 1, shuffle_layer)
    rewritten = model.__class__.from_config(config)
    index = kernel_index(k, r, channels, filters)

    def copy_weights(target, source_model):
        """Assigns `source_model`'s weights to `target` (the rewritten copy, or a copy of
        it with the same layer names), rearranged for the rewritten tail."""
        import tensorflow as tf

        for layer in target.layers:
            values = source_model.get_layer(layer.name).weights
            if layer.name == conv_name:
                kernel, *bias = values
                flat = tf.concat([tf.reshape(kernel, [-1]), tf.zeros([1], kernel.dtype)], 0)
                values = [tf.gather(flat, index)] + [tf.tile(b, [r * r]) for b in bias]
            elif layer.name == middle_name and layer.weights:
                values = [tf.tile(w, [1] * (len(w.shape) - 1) + [r * r]) for w in values]
            for variable, value in zip(layer.weights, values, strict=True):
                variable.assign(value)

    copy_weights(rewritten, model)
    return rewritten, copy_weights
