"""VDSR (Kim et al., "Accurate Image Super-Resolution Using Very Deep Convolutional
Networks", CVPR 2016), as EDSR-PyTorch's `src/model/vdsr.py` builds it."""

import keras

from sisr.layers import BicubicUpsample
from sisr.model.common import (
    SCALES, check_positive_int, check_scale, conv, lr_input, mean_shift, sr_model,
)
from sisr.model.registry import ModelSpec, register


def vdsr(scale, num_filters=64, num_layers=20):
    """Builds VDSR: MATLAB bicubic upscaling, `num_layers` 3x3 convs with biases (ReLU
    between them), and the upscaled image added back (global residual).

    The paper and EDSR-PyTorch feed the network an image upscaled beforehand (EDSR-PyTorch
    reads MATLAB-upscaled `LR_bicubicL` files); this model takes the LR image, RGB on
    [0, 255], and upscales it inside with `sisr.layers.BicubicUpsample` (MATLAB's
    `imresize`, unrounded), so its output is EDSR-PyTorch's VDSR fed `imresize(lr, scale)`.
    As EDSR-PyTorch's (at rgb_range 255), the network works on `x - mean` (DIV2K mean), so
    ported weights need no change and training follows the official parametrisation.
    Initialisation: PyTorch's default conv init, as the official code.
    """
    check_scale(scale, SCALES, "vdsr")
    check_positive_int(num_filters, "num_filters", "vdsr")
    check_positive_int(num_layers, "num_layers", "vdsr")
    if num_layers < 2:
        raise ValueError(f"vdsr: `num_layers` must be at least 2, got {num_layers!r}")

    x_in = lr_input()
    x = BicubicUpsample(scale, name="bicubic")(x_in)
    x = skip = mean_shift(-1, "normalize")(x)
    for i in range(1, num_layers):
        x = conv(num_filters, 3, f"body_conv{i}", activation="relu")(x)
    x = conv(3, 3, f"body_conv{num_layers}")(x)
    x = keras.layers.Add(name="body_add")([skip, x])
    x = mean_shift(+1, "denormalize")(x)
    return sr_model(x_in, x, "vdsr", scale=scale, num_filters=num_filters,
                    num_layers=num_layers)


register(ModelSpec(
    "vdsr", vdsr,
    tiny={"num_filters": 8, "num_layers": 3},
    float32_layers=("bicubic", "normalize", "body_add", "denormalize"),
    layouts=("edsr-pytorch-vdsr",),
))
