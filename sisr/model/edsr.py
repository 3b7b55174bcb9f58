"""EDSR (Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution",
CVPRW 2017)."""

import keras

from sisr.layers import ResidualScaling, denormalize, normalize
from sisr.model.common import (
    SCALES, check_positive_int, check_scale, check_scaling, check_upsample_init, conv, lr_input,
    sr_model, subpixel_upsample,
)
from sisr.model.registry import ModelSpec, register


def res_block(x_in, num_filters, scaling, name):
    """conv3x3 -> ReLU -> conv3x3 [-> *scaling] -> + input."""
    x = conv(num_filters, 3, name=f"{name}_conv1", activation="relu")(x_in)
    x = conv(num_filters, 3, name=f"{name}_conv2")(x)
    if scaling is not None:
        x = ResidualScaling(scaling, name=f"{name}_scale")(x)
    return keras.layers.Add(name=f"{name}_add")([x_in, x])


# Outputs of `edsr`: None = the paper's (mean added back); "tanh" = tanh mapped to
# [0, 255], the EDSR generator of the original Keras project's 2018 SRGAN code.
OUTPUT_ACTIVATIONS = (None, "tanh")


def edsr(scale, num_filters=64, num_res_blocks=16, res_block_scaling=None,
         output_activation=None, upsample_init="default"):
    """Builds EDSR: baseline = defaults; full EDSR = (256, 32, 0.1).

    Takes RGB of any size on the [0, 255] scale and returns RGB on the same scale,
    `scale` times larger (no clipping inside the model). `output_activation="tanh"`
    ends with tanh and (x + 1) * 127.5 instead of adding the mean back: the 2018 EDSR
    generator of krasserm/super-resolution (its files are read by `sisr.port`).

    Initialisation: PyTorch's default conv init, which EDSR-PyTorch keeps: kernels and
    biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (`sisr.initializers`). sisr normalises
    inputs to (x - mean) / 127.5 where EDSR-PyTorch (rgb_range 255) uses x - mean, so
    these biases are in units 127.5 times larger: this model initialises and trains as
    EDSR-PyTorch run with `--rgb_range 2`, which is the same network up to the scale of
    its biases. `upsample_init="icnr"` (not the official init) draws the upsampler's convs
    from the same distribution with ICNR (`sisr.initializers.ICNR`): the upsampler starts
    as nearest-neighbour upsampling, without a sub-pixel checkerboard.
    """
    check_scale(scale, SCALES, "edsr")
    check_positive_int(num_filters, "num_filters", "edsr")
    check_positive_int(num_res_blocks, "num_res_blocks", "edsr")
    check_scaling(res_block_scaling, "edsr")
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"edsr: `output_activation` must be one of {OUTPUT_ACTIVATIONS}, "
                         f"got {output_activation!r}")
    check_upsample_init(upsample_init, "edsr")

    x_in = lr_input()
    x = normalize()(x_in)
    x = b = conv(num_filters, 3, name="head_conv")(x)
    for i in range(num_res_blocks):
        b = res_block(b, num_filters, res_block_scaling, name=f"block{i + 1}")
    b = conv(num_filters, 3, name="body_conv")(b)
    x = keras.layers.Add(name="body_add")([x, b])
    x = subpixel_upsample(x, scale, num_filters, name="upsample", upsample_init=upsample_init)
    x = conv(3, 3, name="output_conv")(x)
    if output_activation == "tanh":
        x = keras.layers.Activation("tanh", name="output_tanh", dtype="float32")(x)
        x = keras.layers.Rescaling(127.5, offset=127.5, name="denormalize", dtype="float32")(x)
    else:
        x = denormalize()(x)
    return sr_model(x_in, x, "edsr", scale=scale, num_filters=num_filters,
                    num_res_blocks=num_res_blocks, res_block_scaling=res_block_scaling,
                    output_activation=output_activation, upsample_init=upsample_init)


register(ModelSpec(
    "edsr", edsr,
    tiny={"num_filters": 8, "num_res_blocks": 2, "res_block_scaling": 0.1},
    gan_generator=True,
    # By analogy with SRResNet's measured groups (no trained EDSR weights here): the
    # normalisation and head, the trunk's end, the upsampler and the output conv.
    float32_layers=("normalize", "head_*", "body_*", "upsample_*", "output_*", "denormalize"),
    layouts=("edsr-pytorch", "basicsr-edsr", "krasserm"),
))
