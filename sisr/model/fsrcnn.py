"""FSRCNN (Dong, Loy and Tang, "Accelerating the Super-Resolution Convolutional Neural
Network", ECCV 2016)."""

import keras

from sisr.model.common import SCALES, check_positive_int, check_scale, lr_input, sr_model
from sisr.model.registry import ModelSpec, register


def prelu(name):
    """The paper's PReLU: one slope per channel (PyTorch's init 0.25)."""
    return keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25),
                              shared_axes=[1, 2], name=name)


def conv_prelu(x, filters, size, name):
    x = keras.layers.Conv2D(filters, size, padding="same", kernel_initializer="he_normal",
                            name=f"{name}_conv")(x)
    return prelu(f"{name}_prelu")(x)


def fsrcnn(scale, d=56, s=12, m=4):
    """Builds FSRCNN(d, s, m): defaults = the paper's FSRCNN (56, 12, 4).

    Feature extraction conv5x5(d), shrinking conv1x1(s), m mapping conv3x3(s), expanding
    conv1x1(d), each with PReLU, and a 9x9 deconvolution of stride `scale`. The
    deconvolution has Keras' "same" padding: the output is exactly `scale` times the input,
    and the kernel's centre lands on LR pixel centres as nearly as a stride allows (PyTorch
    ports that pad 4 and add `scale - 1` output padding shift the image by `(scale - 1) / 2`
    HR pixels). RGB on [0, 255] in and out; the paper works on the Y channel on [0, 1]: its
    12,464 weights are this network's at one channel. Initialisation as the paper: He
    normal for the convs, N(0, 0.001) for the deconvolution, zero biases.
    """
    check_scale(scale, SCALES, "fsrcnn")
    for value, argument in ((d, "d"), (s, "s")):
        check_positive_int(value, argument, "fsrcnn")
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise ValueError(f"fsrcnn: `m` must be a non-negative integer, got {m!r}")

    x_in = lr_input()
    x = keras.layers.Rescaling(1.0 / 255.0, name="normalize")(x_in)
    x = conv_prelu(x, d, 5, "feature")
    x = conv_prelu(x, s, 1, "shrink")
    for i in range(1, m + 1):
        x = conv_prelu(x, s, 3, f"map{i}")
    x = conv_prelu(x, d, 1, "expand")
    x = keras.layers.Conv2DTranspose(
        3, 9, strides=scale, padding="same", name=f"upsample_x{scale}_deconv",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))(x)
    x = keras.layers.Rescaling(255.0, name="denormalize", dtype="float32")(x)
    return sr_model(x_in, x, "fsrcnn", scale=scale, d=d, s=s, m=m)


register(ModelSpec(
    "fsrcnn", fsrcnn,
    tiny={"d": 8, "s": 4, "m": 1},
    float32_layers=("normalize", "feature_*", "upsample_*", "denormalize"),
))
