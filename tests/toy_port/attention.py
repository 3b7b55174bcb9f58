"""A toy architecture with RCAN-style channel attention, declared through the public
registration alone (tests/test_toy_architecture.py): a builder, its `ModelSpec`, and the
module of its checkpoint layout (this module: `detect`, `describe`).

The network: head conv, one channel-attention block (global average pool, 1x1 down,
ReLU, 1x1 up, sigmoid, multiply) with a skip, a conv to 3 * scale^2 channels and a pixel
shuffle. Its PyTorch-style state_dict: `head`, `du`, `up` and `tail` convs.
"""

import contextlib

import keras

from sisr.layers import PixelShuffle
from sisr.model import ModelSpec, register, unregister
from sisr.model.common import conv, lr_input, sr_model
from sisr.port.plan import Plan
from sisr.port.rules import ConvFill, conv_key_set, conv_shape

NAME = "toy-attention"
ALIASES = {}
CONVS = ("head", "du", "up", "tail")


def toy_attention(scale, num_filters=8, reduction=4):
    """The toy network (LR RGB [0, 255] in, SR RGB out)."""
    x_in = lr_input()
    x = keras.layers.Rescaling(1 / 255, name="normalize")(x_in)
    x = conv(num_filters, 3, name="head_conv")(x)
    a = keras.layers.GlobalAveragePooling2D(keepdims=True, name="ca_pool")(x)
    a = conv(num_filters // reduction, 1, name="ca_down", activation="relu")(a)
    a = conv(num_filters, 1, name="ca_up", activation="sigmoid")(a)
    a = keras.layers.Multiply(name="ca_mul")([x, a])
    x = keras.layers.Add(name="ca_add")([x, a])
    x = conv(3 * scale * scale, 3, name=f"tail_x{scale}_conv")(x)
    x = PixelShuffle(scale, name=f"tail_x{scale}_shuffle")(x)
    x = keras.layers.Rescaling(255, name="denormalize", dtype="float32")(x)
    return sr_model(x_in, x, "toy_attention", scale=scale, num_filters=num_filters,
                    reduction=reduction)


# Global pooling: not local (the contract suite checks that a spec declared local is).
SPEC = ModelSpec("toy_attention", toy_attention, scales=(2, 3), tiny={"num_filters": 4},
                 float32_layers=("normalize", "head_*", "denormalize"), local=False,
                 layouts=("toy_port.attention",))


def expected_keys(state_dict):
    return set().union(*(conv_key_set(state_dict, name) for name in CONVS))


def detect(state_dict):
    return set(state_dict) == expected_keys(state_dict)


def describe(state_dict, **options):
    num_filters = conv_shape(state_dict, "head")[0]
    reduction = num_filters // conv_shape(state_dict, "du")[0]
    scale = round((conv_shape(state_dict, "tail")[0] / 3) ** 0.5)
    fills = [ConvFill.of(state_dict, "head", "head_conv"),
             ConvFill.of(state_dict, "du", "ca_down"),
             ConvFill.of(state_dict, "up", "ca_up"),
             ConvFill.of(state_dict, "tail", f"tail_x{scale}_conv", shuffle=scale)]
    return Plan(NAME, "toy_attention",
                {"scale": scale, "num_filters": num_filters, "reduction": reduction}, fills,
                keys=tuple(state_dict),
                evidence={"scale": f"tail.weight {conv_shape(state_dict, 'tail')}"})


@contextlib.contextmanager
def registered():
    """`SPEC`, registered for the duration of the block."""
    spec = register(SPEC)
    try:
        yield spec
    finally:
        unregister(spec.name)
