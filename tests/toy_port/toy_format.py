"""A toy architecture and its checkpoint format, outside sisr (tests/test_port_formats.py).

The network: a 3x3 conv to F channels, a 3x3 conv to 3 * scale^2 channels and a pixel
shuffle. Its PyTorch-style state_dict holds `first.{weight,bias}` and `last.{weight,bias}`.
A test registers it with `layouts=("toy_port.toy_format",)`: the port must find this
module from the registry alone.
"""

from sisr.layers import PixelShuffle
from sisr.model.common import conv, lr_input, sr_model
from sisr.port.plan import Plan
from sisr.port.rules import ConvFill, conv_key_set, conv_shape

NAME = "toy"
ALIASES = {"toy-sr": None}
LAYOUT = "toy_port.toy_format"


def toy_sr(scale, num_filters=4):
    """The toy network (LR RGB [0, 255] in, SR out)."""
    x_in = lr_input()
    x = conv(num_filters, 3, name="first_conv", activation="relu")(x_in)
    x = conv(3 * scale * scale, 3, name=f"last_x{scale}_conv")(x)
    x = PixelShuffle(scale, name=f"last_x{scale}_shuffle")(x)
    return sr_model(x_in, x, "toy_sr", scale=scale, num_filters=num_filters)


def expected_keys(state_dict):
    return conv_key_set(state_dict, "first") | conv_key_set(state_dict, "last")


def detect(state_dict):
    return set(state_dict) == expected_keys(state_dict)


def describe(state_dict, **options):
    num_filters = conv_shape(state_dict, "first")[0]
    scale = round((conv_shape(state_dict, "last")[0] / 3) ** 0.5)
    fills = [ConvFill.of(state_dict, "first", "first_conv"),
             ConvFill.of(state_dict, "last", f"last_x{scale}_conv", shuffle=scale)]
    return Plan(NAME, "toy_sr", {"scale": scale, "num_filters": num_filters}, fills,
                keys=tuple(state_dict),
                evidence={"scale": f"the state_dict has {scale} (last.weight "
                                   f"{conv_shape(state_dict, 'last')})"})
