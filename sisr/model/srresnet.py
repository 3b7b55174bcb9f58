"""SRResNet, the SRGAN generator (Ledig et al., "Photo-Realistic Single Image
Super-Resolution Using a Generative Adversarial Network", CVPR 2017)."""

import keras

from sisr.model.common import (
    BN_MOMENTUM, SCALES, check_positive_int, check_scale, conv, lr_input, sr_model,
    subpixel_upsample,
)
from sisr.model.registry import ModelSpec, register

# Keras' default init (Glorot uniform kernels, zero biases): see `srresnet`.
INIT = "keras"


def prelu(name):
    # One slope per channel, shared over height and width; 0.25 as in He et al. 2015.
    return keras.layers.PReLU(
        alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2], name=name
    )


def res_block(x_in, num_filters, name):
    """conv3x3 -> BN -> PReLU -> conv3x3 -> BN -> + input."""
    x = conv(num_filters, 3, name=f"{name}_conv1", init=INIT)(x_in)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(x)
    x = prelu(f"{name}_prelu")(x)
    x = conv(num_filters, 3, name=f"{name}_conv2", init=INIT)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn2")(x)
    return keras.layers.Add(name=f"{name}_add")([x_in, x])


def srresnet(scale=4, num_filters=64, num_res_blocks=16):
    """Builds SRResNet (x4 in the paper; x2, x3 and x8 change only the upsampler).

    Input RGB on [0, 255] is scaled to [0, 1]; the tanh output is mapped back to [0, 255].

    Initialisation: Keras' defaults (Glorot uniform kernels, zero biases, BatchNorm
    gamma 1 / beta 0, PReLU slopes 0.25). Ledig et al. publish no code nor initialisation;
    the reference implementation sisr follows (krasserm/super-resolution, Keras) uses
    Keras' defaults, and the batch normalisation after every body conv makes the body
    insensitive to the kernels' scale.
    """
    check_scale(scale, SCALES, "srresnet")
    check_positive_int(num_filters, "num_filters", "srresnet")
    check_positive_int(num_res_blocks, "num_res_blocks", "srresnet")

    x_in = lr_input()
    x = keras.layers.Rescaling(1.0 / 255, name="normalize")(x_in)
    x = conv(num_filters, 9, name="head_conv", init=INIT)(x)
    x = b = prelu("head_prelu")(x)
    for i in range(num_res_blocks):
        b = res_block(b, num_filters, name=f"block{i + 1}")
    b = conv(num_filters, 3, name="body_conv", init=INIT)(b)
    b = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="body_bn")(b)
    x = keras.layers.Add(name="body_add")([x, b])
    x = subpixel_upsample(x, scale, num_filters, name="upsample", activation=prelu,
                          init=INIT)
    x = conv(3, 9, name="output_conv", init=INIT)(x)
    x = keras.layers.Activation("tanh", name="output_tanh", dtype="float32")(x)
    x = keras.layers.Rescaling(127.5, offset=127.5, name="denormalize", dtype="float32")(x)
    return sr_model(x_in, x, "srresnet", scale=scale, num_filters=num_filters,
                    num_res_blocks=num_res_blocks)


register(ModelSpec(
    "srresnet", srresnet,
    tiny={"num_filters": 8, "num_res_blocks": 2},
    gan_generator=True,
    # Measured on the real SRResNet x4 weights (each group alone in bf16 breaks the guard):
    # the input normalisation and the head conv that reads it (a pixel / 255 keeps 8 bits),
    # the trunk's last conv and skip addition, and the first upsampling conv, whose input
    # is largest at the image border; tanh and rescaling stay float32.
    float32_layers=("normalize", "head_*", "body_*", "upsample_*_conv1", "output_tanh",
                    "denormalize"),
    layouts=("krasserm",),
    aliases=("sr_resnet", "srgan"),  # the profile's and the paper's names
))
