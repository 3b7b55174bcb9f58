"""RCAN (Zhang et al., "Image Super-Resolution Using Very Deep Residual Channel Attention
Networks", ECCV 2018)."""

import keras

from sisr.model.common import (
    SCALES, check_positive_int, check_scale, conv, lr_input, mean_shift, sr_model,
    subpixel_upsample,
)
from sisr.model.registry import ModelSpec, register


def channel_attention(x_in, num_filters, reduction, name):
    """Global average pool -> 1x1 conv (F / reduction) -> ReLU -> 1x1 conv (F) -> sigmoid,
    multiplying the input channel by channel."""
    a = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x_in)
    a = conv(num_filters // reduction, 1, name=f"{name}_down", activation="relu")(a)
    a = conv(num_filters, 1, name=f"{name}_up", activation="sigmoid")(a)
    return keras.layers.Multiply(name=f"{name}_mul")([x_in, a])


def rcab(x_in, num_filters, reduction, name):
    """Residual channel attention block: conv3x3 -> ReLU -> conv3x3 -> attention -> + input."""
    x = conv(num_filters, 3, name=f"{name}_conv1", activation="relu")(x_in)
    x = conv(num_filters, 3, name=f"{name}_conv2")(x)
    x = channel_attention(x, num_filters, reduction, name=f"{name}_ca")
    return keras.layers.Add(name=f"{name}_add")([x_in, x])


def residual_group(x_in, num_blocks, num_filters, reduction, name):
    """`num_blocks` RCABs -> conv3x3 -> + input."""
    x = x_in
    for i in range(num_blocks):
        x = rcab(x, num_filters, reduction, name=f"{name}_block{i + 1}")
    x = conv(num_filters, 3, name=f"{name}_conv")(x)
    return keras.layers.Add(name=f"{name}_add")([x_in, x])


def rcan(scale, num_groups=10, num_blocks=20, num_filters=64, reduction=16):
    """Builds RCAN; the defaults are the paper's (10 groups of 20 blocks, 64 filters,
    reduction 16).

    Takes RGB of any size on the [0, 255] scale and returns RGB on the same scale, `scale`
    times larger. The network is EDSR-PyTorch's `rcan.py` at its published rgb_range 255:
    it works on `x - mean` (DIV2K mean), so ported weights need no change and training
    follows the official parametrisation. Initialisation: PyTorch's default conv init, as
    the official code (`sisr.initializers`). Channel attention pools the whole image:
    tiles would see other means, so tiled inference is refused (`local=False`).
    """
    check_scale(scale, SCALES, "rcan")
    for value, argument in ((num_groups, "num_groups"), (num_blocks, "num_blocks"),
                            (num_filters, "num_filters"), (reduction, "reduction")):
        check_positive_int(value, argument, "rcan")
    if num_filters // reduction < 1:
        raise ValueError(f"rcan: `reduction` ({reduction}) must be at most `num_filters` "
                         f"({num_filters})")

    x_in = lr_input()
    x = mean_shift(-1, "normalize")(x_in)
    x = b = conv(num_filters, 3, name="head_conv")(x)
    for g in range(num_groups):
        b = residual_group(b, num_blocks, num_filters, reduction, name=f"group{g + 1}")
    b = conv(num_filters, 3, name="body_conv")(b)
    x = keras.layers.Add(name="body_add")([x, b])
    x = subpixel_upsample(x, scale, num_filters, name="upsample")
    x = conv(3, 3, name="output_conv")(x)
    x = mean_shift(+1, "denormalize")(x)
    return sr_model(x_in, x, "rcan", scale=scale, num_groups=num_groups,
                    num_blocks=num_blocks, num_filters=num_filters, reduction=reduction)


register(ModelSpec(
    "rcan", rcan,
    tiny={"num_groups": 2, "num_blocks": 2, "num_filters": 16, "reduction": 2},
    # As EDSR's, plus the attention's global means (a sum over the whole image).
    float32_layers=("normalize", "head_*", "body_*", "*_ca_pool", "upsample_*", "output_*",
                    "denormalize"),
    local=False,  # channel attention: global average pooling
    layouts=("edsr-pytorch-rcan", "basicsr-rcan"),
))
