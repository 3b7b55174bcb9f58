"""VDSR (Kim et al., "Accurate Image Super-Resolution Using Very Deep Convolutional
Networks", CVPR 2016), as EDSR-PyTorch's `src/model/vdsr.py` builds it."""

import keras

from sisr.initializers import torch_kernel
from sisr.layers import BicubicUpsample, denormalize, normalize
from sisr.model.common import SCALES, check_positive_int, check_scale, lr_input, sr_model
from sisr.model.registry import ModelSpec, register


def plain_conv(filters, name, activation=None):
    """A 3x3 "same" conv without bias, PyTorch's default kernel init (EDSR-PyTorch's
    `BasicBlock`, whose `bias` defaults to False)."""
    return keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                               activation=activation, kernel_initializer=torch_kernel(),
                               name=name)


def vdsr(scale, num_filters=64, num_layers=20):
    """Builds VDSR: MATLAB bicubic upscaling, `num_layers` 3x3 convs (ReLU between them,
    no biases), and the upscaled image added back (global residual).

    The paper and EDSR-PyTorch feed the network an image upscaled beforehand (EDSR-PyTorch
    reads MATLAB-upscaled `LR_bicubicL` files); this model takes the LR image, RGB on
    [0, 255], and upscales it inside with `sisr.layers.BicubicUpsample` (MATLAB's
    `imresize`, unrounded), so its output is EDSR-PyTorch's VDSR fed `imresize(lr, scale)`.
    Inputs are normalised to (x - DIV2K mean) / 127.5 where EDSR-PyTorch subtracts the mean
    only: without biases the network is positively homogeneous, so the same kernels give
    the same output.
    """
    check_scale(scale, SCALES, "vdsr")
    check_positive_int(num_filters, "num_filters", "vdsr")
    check_positive_int(num_layers, "num_layers", "vdsr")
    if num_layers < 2:
        raise ValueError(f"vdsr: `num_layers` must be at least 2, got {num_layers!r}")

    x_in = lr_input()
    x = BicubicUpsample(scale, name="bicubic")(x_in)
    x = skip = normalize()(x)
    for i in range(1, num_layers):
        x = plain_conv(num_filters, f"body_conv{i}", activation="relu")(x)
    x = plain_conv(3, f"body_conv{num_layers}")(x)
    x = keras.layers.Add(name="body_add")([skip, x])
    x = denormalize()(x)
    return sr_model(x_in, x, "vdsr", scale=scale, num_filters=num_filters,
                    num_layers=num_layers)


register(ModelSpec(
    "vdsr", vdsr,
    tiny={"num_filters": 8, "num_layers": 3},
    float32_layers=("bicubic", "normalize", "body_add", "denormalize"),
    layouts=("edsr-pytorch-vdsr",),
))
