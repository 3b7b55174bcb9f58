"""Whether a model may be run in tiles, and the tile margin that makes tiling exact.

`locality(model)` reads the functional graph of `model.get_config()` and allows only
layers known to be local, i.e. whose output pixel reads a bounded neighbourhood of its
input and nothing that depends on the image size: stride-1 convolutions ("same" padding),
transposed convolutions and upsamplers (which raise the resolution; also sisr's MATLAB
`BicubicUpsample` and `OpenCVUpsample`), pixel shuffles and unshuffles (tiles then cut on
the unshuffle's grid, `alignment`), and per-pixel layers (activations, per-channel
normalisation and rescaling, colour transforms, merges along the channels). Any other
layer (global pooling, attention, Dense, Flatten, Reshape, a nested model, an unknown
custom layer) makes the model not tileable, and so does a registered architecture
declared `local=False` (`sisr.model.ModelSpec.local`).

The radius is an upper bound in LR pixels: each convolution adds `dilation * (kernel - 1)
/ 2` pixels at the resolution it runs at.
"""

import math
from fractions import Fraction
from typing import NamedTuple

from sisr.graph import keras_histories

# Keras built-ins (module "keras.layers") that compute each pixel from that pixel alone.
_PER_PIXEL = frozenset({
    "InputLayer", "Activation", "ReLU", "LeakyReLU", "ELU", "Identity", "Rescaling",
    "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
})
_CONVOLUTIONS = frozenset({"Conv2D", "DepthwiseConv2D", "SeparableConv2D"})
# Input pixels on each side that `UpSampling2D` reads, by interpolation.
_UPSAMPLING_REACH = {"nearest": 1, "bilinear": 1, "area": 1, "bicubic": 2, "lanczos3": 3,
                     "lanczos5": 5}
_CHANNEL_AXES = (-1, 3, [-1], [3], (-1,), (3,))


class Locality(NamedTuple):
    """`radius`: the receptive-field radius in LR pixels, None if the model is not
    tileable; `reason`: why not (None if it is)."""

    radius: int | None
    reason: str | None


class _NotLocal(Exception):
    pass


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _channels_last(name, cls, cfg):
    if cfg.get("data_format") not in (None, "channels_last"):
        raise _NotLocal(f"layer {name!r} ({cls}) is not channels-last")


def _convolution(name, cls, cfg):
    """(input pixels read on each side, upscaling) of a convolution."""
    _channels_last(name, cls, cfg)
    kernel, strides = _pair(cfg["kernel_size"]), _pair(cfg.get("strides", 1))
    dilation = _pair(cfg.get("dilation_rate", 1))
    if cfg.get("padding") != "same":
        raise _NotLocal(f"layer {name!r} ({cls}) has padding {cfg.get('padding')!r}, not "
                        "'same': its output is not the size of its input")
    if cls != "Conv2DTranspose":
        if any(s != 1 for s in strides):
            raise _NotLocal(f"layer {name!r} ({cls}) has strides {strides}")
        return max(math.ceil(d * (k - 1) / 2) for k, d in zip(kernel, dilation)), 1
    # Output pixel y reads the inputs x with 0 <= y - s * x + pad < k: at most
    # ceil((k - 1) / s) input pixels beyond the ones it lies on.
    if (strides[0] != strides[1] or any(d != 1 for d in dilation)
            or cfg.get("output_padding") is not None):
        raise _NotLocal(f"layer {name!r} ({cls}) has strides {strides}, dilation "
                        f"{dilation} or output padding {cfg.get('output_padding')}")
    return max(math.ceil((k - 1) / strides[0]) for k in kernel), strides[0]


def _layer_reach(layer, cls, name, cfg):
    """(input pixels read on each side, upscaling) of one serialised layer, or _NotLocal."""
    module, registered = layer.get("module"), layer.get("registered_name")
    if registered in ("sisr>PixelShuffle",):
        return 0, cfg["scale"]
    if registered in ("sisr>ResidualScaling", "sisr>CropToScale", "sisr>ColorMatrix"):
        return 0, 1
    if registered == "sisr>BicubicUpsample":
        return 2, cfg["scale"]  # the cubic kernel reads 2 input pixels on each side
    if registered == "sisr>OpenCVUpsample":
        return (1 if cfg.get("interpolation", "linear") == "linear" else 2), cfg["scale"]
    if registered == "sisr>PixelUnshuffle":
        # A block of r pixels, and its padding by reflection within the last r - 1.
        return cfg["scale"] - 1, Fraction(1, cfg["scale"])
    if registered == "sisr>FusedBatchNormalization" or (
            module == "keras.layers" and cls in ("BatchNormalization", "LayerNormalization")):
        # Inference normalises with per-channel statistics; over other axes it would
        # depend on the image size.
        if cfg.get("axis", -1) not in _CHANNEL_AXES:
            raise _NotLocal(f"layer {name!r} ({cls}) normalises over axis {cfg.get('axis')}")
        return 0, 1
    if module != "keras.layers":
        raise _NotLocal(f"layer {name!r} ({cls}) is not known to be local")
    if not isinstance(cfg.get("activation", "linear"), str):
        # Keras' own activations act per pixel; a custom one may not.
        raise _NotLocal(f"layer {name!r} ({cls}) has a custom activation")
    if cls in _PER_PIXEL:
        return 0, 1
    if cls == "PReLU":
        # Without sharing over height and width, each pixel has its own slopes, tied to
        # its position in the image: a tile would use the slopes of other pixels.
        if not {1, 2} <= set(cfg.get("shared_axes") or ()):
            raise _NotLocal(f"layer {name!r} (PReLU) has slopes per pixel (shared_axes "
                            f"{cfg.get('shared_axes')}, not [1, 2])")
        return 0, 1
    if cls == "Concatenate":
        if cfg.get("axis", -1) not in (-1, 3):
            raise _NotLocal(f"layer {name!r} (Concatenate) joins along axis {cfg['axis']}")
        return 0, 1
    if cls in _CONVOLUTIONS or cls == "Conv2DTranspose":
        return _convolution(name, cls, cfg)
    if cls == "UpSampling2D":
        _channels_last(name, cls, cfg)
        size = _pair(cfg.get("size", 2))
        reach = _UPSAMPLING_REACH.get(cfg.get("interpolation", "nearest"))
        if size[0] != size[1] or reach is None:
            raise _NotLocal(f"layer {name!r} (UpSampling2D) has size {size} and "
                            f"interpolation {cfg.get('interpolation')!r}")
        return reach, size[0]
    raise _NotLocal(f"layer {name!r} ({cls}) is not known to be local")


def _read(config):
    """The receptive-field radius in LR pixels of a functional config, or _NotLocal."""
    state = {}  # layer name -> (radius in LR pixels, upscaling so far)
    previous = None
    for layer in config["layers"]:
        cls, cfg = layer.get("class_name"), layer.get("config") or {}
        name = layer.get("name") or cfg.get("name")
        if "inbound_nodes" in layer:
            parents = [h[0] for h in keras_histories(layer["inbound_nodes"])]
        else:  # Sequential: a chain
            parents = [previous] if previous else []
        missing = [p for p in parents if p not in state]
        if missing:
            raise _NotLocal(f"layer {name!r} reads {missing[0]!r}, which is not a layer "
                            "before it")
        radius = max((state[p][0] for p in parents), default=0.0)
        scale = max((state[p][1] for p in parents), default=1)
        reach, factor = _layer_reach(layer, cls, name, cfg)
        state[name] = (radius + reach / scale, scale * factor)
        previous = name
    outputs = config.get("output_layers", [[previous]])
    if outputs and isinstance(outputs[0], str):  # one output: [name, node, index]
        outputs = [outputs]
    outputs = [item[0] for item in outputs]
    if not outputs or any(name not in state for name in outputs):
        raise _NotLocal("its outputs cannot be traced to its layers")
    return math.ceil(max(state[name][0] for name in outputs) - 1e-9)


def locality(model):
    """The `Locality` of a Keras model: its receptive-field radius if it may be tiled,
    else why not (a layer not known to be local, or a registered `local=False` spec)."""
    from sisr.model import spec_of

    spec = spec_of(model)
    if spec is not None and not spec.local:
        return Locality(None, f"its architecture {spec.name!r} is registered as not local "
                              "(ModelSpec.local=False)")
    try:
        config = model.get_config()
        config["layers"]
    except (NotImplementedError, KeyError, TypeError, AttributeError):
        return Locality(None, "it is not a functional model whose layers can be read")
    try:
        return Locality(_read(config), None)
    except _NotLocal as err:
        return Locality(None, str(err))
    except (KeyError, TypeError, ValueError) as err:  # a config this reader does not know
        return Locality(None, f"its config cannot be read ({type(err).__name__}: {err})")


def alignment(model):
    """The LR pixel grid that tiles must be cut on for a tiled result to equal the whole
    image's: the product of the model's `PixelUnshuffle` block sizes (1 if none), as
    pixels are grouped in blocks counted from the image's top-left corner."""
    try:
        layers = model.get_config()["layers"]
    except (NotImplementedError, KeyError, TypeError, AttributeError):
        return 1
    factor = 1
    for layer in layers:
        if layer.get("registered_name") == "sisr>PixelUnshuffle":
            factor *= int((layer.get("config") or {})["scale"])
    return factor


def receptive_radius(model):
    """Radius in LR pixels of the model's receptive field (an upper bound), or None if
    the model is not tileable (`locality`)."""
    return locality(model).radius
