"""ESPCN (Shi et al., "Real-Time Single Image and Video Super-Resolution Using an
Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016), in the configuration of
keras-io's example "Image Super-Resolution using an Efficient Sub-Pixel CNN" and the
paper's."""

import keras

from sisr.layers import PixelShuffle
from sisr.model.common import SCALES, check_scale, lr_input, sr_model
from sisr.model.registry import ModelSpec, register
from sisr.model.srcnn import check_choice, check_int_list

ACTIVATIONS = ("relu", "tanh")
# The paper's network: (f1, n1) = (5, 64), (f2, n2) = (3, 32), f3 = 3, tanh.
PAPER = {"num_filters": [64, 32], "kernel_sizes": [5, 3, 3], "activation": "tanh"}


def espcn(scale, num_filters=(64, 64, 32), kernel_sizes=(5, 3, 3, 3), activation="relu"):
    """Builds ESPCN: defaults = keras-io's (64-5, 64-3, 32-3 ReLU, then 3x3 to
    3 * scale^2 channels and a pixel shuffle); `espcn(scale, **PAPER)` is the paper's.

    keras-io and the paper work on the Y channel on [0, 1]; this model takes and returns
    RGB on [0, 255] (on [0, 1] inside), so its first and last convs have 3 times the
    channels. keras-io's kernel initialisation (orthogonal) and its `depth_to_space`,
    whose channel order `sisr.layers.PixelShuffle` has.
    """
    check_scale(scale, SCALES, "espcn")
    num_filters = check_int_list(num_filters, "num_filters", "espcn")
    kernel_sizes = check_int_list(kernel_sizes, "kernel_sizes", "espcn",
                                  len(num_filters) + 1)
    check_choice(activation, ACTIVATIONS, "activation", "espcn")

    x_in = lr_input()
    x = keras.layers.Rescaling(1.0 / 255.0, name="normalize")(x_in)
    for i, (filters, size) in enumerate(zip(num_filters, kernel_sizes), start=1):
        x = keras.layers.Conv2D(filters, size, padding="same", activation=activation,
                                kernel_initializer="orthogonal", name=f"conv{i}")(x)
    x = keras.layers.Conv2D(3 * scale * scale, kernel_sizes[-1], padding="same",
                            kernel_initializer="orthogonal", name=f"output_x{scale}_conv")(x)
    x = PixelShuffle(scale, name=f"output_x{scale}_shuffle")(x)
    x = keras.layers.Rescaling(255.0, name="denormalize", dtype="float32")(x)
    return sr_model(x_in, x, "espcn", scale=scale, num_filters=num_filters,
                    kernel_sizes=kernel_sizes, activation=activation)


register(ModelSpec(
    "espcn", espcn,
    tiny={"num_filters": [4, 4], "kernel_sizes": [3, 3, 3]},
    float32_layers=("normalize", "output_*", "denormalize"),
))
