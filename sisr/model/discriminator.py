"""The SRGAN discriminator (Ledig et al., CVPR 2017, figure 4)."""

import keras

from sisr.model.common import BN_MOMENTUM, check_positive_int, sr_model
from sisr.model.registry import ModelSpec, register


def disc_block(x, num_filters, strides, batchnorm, name):
    """conv3x3 [-> BN] -> LeakyReLU(0.2)."""
    x = keras.layers.Conv2D(num_filters, 3, strides=strides, padding="same",
                            name=f"{name}_conv")(x)
    if batchnorm:
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.LeakyReLU(negative_slope=0.2, name=f"{name}_lrelu")(x)


def discriminator(hr_size=96, num_filters=64):
    """Builds the SRGAN discriminator for `hr_size` x `hr_size` RGB on [0, 255].

    Returns the probability (sigmoid, float32) that each image is a real HR image.

    Initialisation: Keras' defaults (Glorot uniform kernels, zero biases), as in the
    reference implementation sisr follows (krasserm/super-resolution, Keras); Ledig et al.
    publish no code nor initialisation.
    """
    check_positive_int(hr_size, "hr_size", "discriminator")
    check_positive_int(num_filters, "num_filters", "discriminator")
    if hr_size % 16:
        raise ValueError(
            f"discriminator: `hr_size` must be a multiple of 16 (four stride-2 blocks), "
            f"got {hr_size!r}"
        )

    x_in = keras.Input(shape=(hr_size, hr_size, 3), name="hr")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(x_in)
    spec = [(1, 1, False), (1, 2, True), (2, 1, True), (2, 2, True),
            (4, 1, True), (4, 2, True), (8, 1, True), (8, 2, True)]
    for i, (mult, strides, bn) in enumerate(spec, start=1):
        x = disc_block(x, num_filters * mult, strides, bn, name=f"block{i}")
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(1024, name="fc1")(x)
    x = keras.layers.LeakyReLU(negative_slope=0.2, name="fc1_lrelu")(x)
    x = keras.layers.Dense(1, activation="sigmoid", name="output", dtype="float32")(x)
    return sr_model(x_in, x, "discriminator", hr_size=hr_size, num_filters=num_filters)


register(ModelSpec(
    "discriminator", discriminator, scales=(), tiny={"hr_size": 16, "num_filters": 4},
    generator=False, local=False, layouts=("krasserm",),
))
