"""Real-ESRGAN's compact network, `SRVGGNetCompact` (xinntao/Real-ESRGAN,
realesrgan/archs/srvgg_arch.py): the realesr-general-x4v3 and realesr-animevideov3 models."""

import keras

from sisr.layers import PixelShuffle
from sisr.model.common import check_positive_int, check_scale, conv, lr_input, sr_model
from sisr.model.registry import ModelSpec, register

SCALES = (2, 3, 4)
ACTIVATIONS = ("prelu", "relu", "leakyrelu")
LEAKY_SLOPE = 0.1  # SRVGGNetCompact's LeakyReLU


def activation(kind, name):
    if kind == "prelu":
        # One slope per channel (PyTorch's PReLU(num_parameters=num_feat), init 0.25).
        return keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25),
                                  shared_axes=[1, 2], name=name)
    if kind == "relu":
        return keras.layers.ReLU(name=name)
    return keras.layers.LeakyReLU(LEAKY_SLOPE, name=name)


def srvgg_compact(scale=4, num_feat=64, num_conv=16, act="prelu"):
    """Builds SRVGGNetCompact: conv + activation, `num_conv` (conv + activation), a conv
    to 3 * scale^2 channels and a pixel shuffle, plus the nearest-upsampled input.

    Takes RGB on [0, 255] and returns RGB on [0, 255] (the official network works on
    [0, 1]: the model rescales inside). Real-ESRGAN's models: num_conv 32 for
    realesr-general-x4v3 (and its wdn variant), 16 for realesr-animevideov3.
    Initialisation: PyTorch's defaults (the official code keeps them).
    """
    check_scale(scale, SCALES, "srvgg_compact")
    check_positive_int(num_feat, "num_feat", "srvgg_compact")
    check_positive_int(num_conv, "num_conv", "srvgg_compact")
    if act not in ACTIVATIONS:
        raise ValueError(f"srvgg_compact: `act` must be one of {ACTIVATIONS}, got {act!r}")

    x_in = lr_input()
    x0 = keras.layers.Rescaling(1.0 / 255, name="normalize")(x_in)
    x = conv(num_feat, 3, name="head_conv")(x0)
    x = activation(act, "head_act")(x)
    for i in range(num_conv):
        x = conv(num_feat, 3, name=f"body{i + 1}_conv")(x)
        x = activation(act, f"body{i + 1}_act")(x)
    x = conv(3 * scale * scale, 3, name=f"upsample_x{scale}_conv")(x)
    x = PixelShuffle(scale, name=f"upsample_x{scale}_shuffle")(x)
    base = keras.layers.UpSampling2D(scale, interpolation="nearest",
                                     name=f"output_x{scale}_nearest")(x0)
    x = keras.layers.Add(name="output_add")([x, base])
    x = keras.layers.Rescaling(255.0, name="denormalize", dtype="float32")(x)
    return sr_model(x_in, x, "srvgg_compact", scale=scale, num_feat=num_feat,
                    num_conv=num_conv, act=act)


register(ModelSpec(
    "srvgg_compact", srvgg_compact,
    scales=SCALES,
    tiny={"num_feat": 8, "num_conv": 2},
    # Not measured on real weights: the input scaling and head, the output conv (its
    # residual is added to the image) and the output.
    float32_layers=("normalize", "head_*", "upsample_*", "output_*", "denormalize"),
    layouts=("realesrgan-srvgg",),
    aliases=("srvgg", "srvggnet_compact"),
))
