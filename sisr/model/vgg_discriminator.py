"""ESRGAN's VGG-style discriminator (Wang et al., ECCV Workshops 2018), as BasicSR's
`VGGStyleDiscriminator` (XPixelGroup/BasicSR basicsr/archs/discriminator_arch.py).

conv3x3 (bias) + LeakyReLU, conv4x4/2 + BN + LeakyReLU, then per stage (conv3x3 + BN +
LeakyReLU, conv4x4/2 + BN + LeakyReLU) with num_feat x2, x4, x8, x8 (and x8 again for
256 x 256 inputs) down to 4 x 4, linear to 100 + LeakyReLU, linear to 1: one real/fake
logit per image. Every conv after the first has no bias; LeakyReLU slope 0.2.
"""

import keras

from sisr.initializers import FanInUniform, torch_kernel
from sisr.model.common import check_positive_int, sr_model, torch_state
from sisr.model.registry import ModelSpec, register

INPUT_SIZES = (128, 256)
LEAKY_SLOPE = 0.2
# PyTorch's BatchNorm2d: eps 1e-5, running stats updated with momentum 0.1.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def torch_conv(filters, kernel_size, strides, use_bias, name):
    """A "same"-padded conv (PyTorch's padding 1 for k3/s1 and k4/s2 on even sides) with
    PyTorch's default init."""
    def apply(x):
        fan_in = int(x.shape[-1]) * kernel_size * kernel_size
        bias = {"bias_initializer": FanInUniform(fan_in)} if use_bias else {}
        return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                                   use_bias=use_bias, kernel_initializer=torch_kernel(),
                                   name=name, **bias)(x)
    return apply


def conv_bn(x, filters, kernel_size, strides, name):
    """conv (no bias) -> BN -> LeakyReLU."""
    x = torch_conv(filters, kernel_size, strides, False, f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                        name=f"{name}_bn")(x)
    return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_lrelu")(x)


def dense(units, name, dtype=None):
    def apply(x):
        fan_in = int(x.shape[-1])
        return keras.layers.Dense(units, kernel_initializer=torch_kernel(),
                                  bias_initializer=FanInUniform(fan_in), name=name,
                                  dtype=dtype)(x)
    return apply


def stage_multipliers(hr_size):
    """Channel multipliers of the conv pairs after the first: 2, 4, 8, 8 (, 8 for 256)."""
    return (2, 4, 8, 8) + ((8,) if hr_size == 256 else ())


def vgg_style_discriminator(hr_size=128, num_feat=64):
    """Builds the VGG-style discriminator for `hr_size` x `hr_size` RGB on [0, 255]
    (rescaled to BasicSR's [0, 1] inside); returns float32 logits [B, 1].

    Args:
        hr_size: 128 or 256, as in BasicSR.
        num_feat: channels of the first convs (x2, x4, x8 in later stages).

    Initialisation: PyTorch's defaults, as the official code keeps them. Flattening is
    channels-last (BasicSR's is channels-first; the port permutes linear1's inputs).
    """
    if hr_size not in INPUT_SIZES:
        raise ValueError(f"vgg_style_discriminator: `hr_size` must be one of {INPUT_SIZES}, "
                         f"got {hr_size!r}")
    check_positive_int(num_feat, "num_feat", "vgg_style_discriminator")

    x_in = keras.Input(shape=(hr_size, hr_size, 3), name="hr")
    x = keras.layers.Rescaling(1.0 / 255, name="normalize")(x_in)
    x = torch_conv(num_feat, 3, 1, True, "stage0_conv0")(x)
    x = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name="stage0_lrelu0")(x)
    x = conv_bn(x, num_feat, 4, 2, "stage0_1")
    for i, mult in enumerate(stage_multipliers(hr_size), start=1):
        x = conv_bn(x, num_feat * mult, 3, 1, f"stage{i}_0")
        x = conv_bn(x, num_feat * mult, 4, 2, f"stage{i}_1")
    x = keras.layers.Flatten(name="flatten")(x)
    x = dense(100, "linear1")(x)
    x = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name="linear1_lrelu")(x)
    x = dense(1, "output", dtype="float32")(x)
    return sr_model(x_in, x, "vgg_style_discriminator", hr_size=hr_size, num_feat=num_feat)


def load_basicsr_state(model, state, param_key=None):
    """Sets `model`'s weights from a BasicSR `VGGStyleDiscriminator` state_dict: a mapping
    of arrays or a checkpoint file (as the U-Net's `load_basicsr_state`), mapped by the
    port's format (`sisr.port.formats.basicsr_vgg_discriminator`; BN
    `num_batches_tracked` is ignored, every other tensor must be used)."""
    from sisr.port import pipeline
    from sisr.port.formats.basicsr_vgg_discriminator import describe

    plan = describe(torch_state(state, param_key))
    pipeline.check_keys(plan)
    pipeline.fill(model, plan)


register(ModelSpec(
    "vgg_style_discriminator", vgg_style_discriminator, scales=(),
    tiny={"hr_size": 128, "num_feat": 2},
    generator=False, local=False, layouts=("basicsr-vgg-discriminator",),
    aliases=("vgg_discriminator",),
))
