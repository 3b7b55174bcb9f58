"""Real-ESRGAN's U-Net discriminator with spectral normalisation (Wang et al., ICCVW 2021),
as BasicSR's `UNetDiscriminatorSN` (XPixelGroup/BasicSR basicsr/archs/discriminator_arch.py).

conv0 (3x3, bias) -> three stride-2 4x4 SN convs (x2 channels each) -> three (bilinear x2
upsampling, 3x3 SN conv, + the encoder feature of that size) -> two 3x3 SN convs -> a 3x3
conv to one channel: a real/fake logit per pixel. LeakyReLU 0.2 after every conv but the
last; the SN convs have no bias.
"""

import keras

from sisr.initializers import FanInUniform, torch_kernel
from sisr.model.common import check_positive_int, conv, sr_model, torch_state
from sisr.model.registry import ModelSpec, register
from sisr.spectral_norm import SpectralConv2D

LEAKY_SLOPE = 0.2
# Three stride-2 convs down, three x2 upsamplings back: sides must divide by 8.
SIZE_MULTIPLE = 8


def sn_conv(filters, kernel_size, strides, name):
    """A bias-free spectrally normalised conv with PyTorch's default kernel init."""
    return SpectralConv2D(filters, kernel_size, strides=strides, use_bias=False,
                          kernel_initializer=torch_kernel(), name=name)


def lrelu(name):
    return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=name)


def up_block(x, skip, filters, name):
    """bilinear x2 -> SN conv3x3 -> LeakyReLU [-> + skip]."""
    # Keras' bilinear resize samples at half-pixel centres, as PyTorch's
    # F.interpolate(mode="bilinear", align_corners=False).
    x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(x)
    x = lrelu(f"{name}_lrelu")(sn_conv(filters, 3, 1, f"{name}_conv")(x))
    if skip is not None:
        x = keras.layers.Add(name=f"{name}_skip")([x, skip])
    return x


def unet_discriminator_sn(num_in_ch=3, num_feat=64, skip_connection=True, input_size=None):
    """Builds the U-Net SN discriminator for RGB on [0, 255] (rescaled to BasicSR's [0, 1]
    inside); returns float32 per-pixel logits [B, H, W, 1].

    Args:
        num_in_ch: input channels.
        num_feat: channels of the first conv (x2, x4, x8 down the encoder).
        skip_connection: add the encoder features to the decoder's (BasicSR's default).
        input_size: a fixed square input side, or None for any height and width; sides
            must be multiples of 8.

    Initialisation: PyTorch's defaults, as the official code keeps them.
    """
    check_positive_int(num_in_ch, "num_in_ch", "unet_discriminator_sn")
    check_positive_int(num_feat, "num_feat", "unet_discriminator_sn")
    if input_size is not None:
        check_positive_int(input_size, "input_size", "unet_discriminator_sn")
        if input_size % SIZE_MULTIPLE:
            raise ValueError(f"unet_discriminator_sn: `input_size` must be a multiple of "
                             f"{SIZE_MULTIPLE}, got {input_size!r}")

    x_in = keras.Input(shape=(input_size, input_size, num_in_ch), name="hr")
    x = keras.layers.Rescaling(1.0 / 255, name="normalize")(x_in)
    x0 = lrelu("conv0_lrelu")(conv(num_feat, 3, name="conv0")(x))
    x1 = lrelu("down1_lrelu")(sn_conv(num_feat * 2, 4, 2, "down1_conv")(x0))
    x2 = lrelu("down2_lrelu")(sn_conv(num_feat * 4, 4, 2, "down2_conv")(x1))
    x3 = lrelu("down3_lrelu")(sn_conv(num_feat * 8, 4, 2, "down3_conv")(x2))

    skips = (x2, x1, x0) if skip_connection else (None, None, None)
    x = up_block(x3, skips[0], num_feat * 4, "up1")
    x = up_block(x, skips[1], num_feat * 2, "up2")
    x = up_block(x, skips[2], num_feat, "up3")

    x = lrelu("extra1_lrelu")(sn_conv(num_feat, 3, 1, "extra1_conv")(x))
    x = lrelu("extra2_lrelu")(sn_conv(num_feat, 3, 1, "extra2_conv")(x))
    fan_in = num_feat * 9
    x = keras.layers.Conv2D(1, 3, padding="same", name="output", dtype="float32",
                            kernel_initializer=torch_kernel(),
                            bias_initializer=FanInUniform(fan_in))(x)
    return sr_model(x_in, x, "unet_discriminator_sn", num_in_ch=num_in_ch,
                    num_feat=num_feat, skip_connection=skip_connection,
                    input_size=input_size)


def load_basicsr_state(model, state, param_key=None):
    """Sets `model`'s weights from a BasicSR `UNetDiscriminatorSN` state_dict
    (`convN.weight` / `convN.bias`; the SN convs' `weight_orig`, `weight_u`, `weight_v`):
    a mapping of arrays, or a checkpoint file such as Real-ESRGAN's published
    `RealESRGAN_x4plus_netD.pth` or BasicSR's `net_d_*.pth` (read without torch; see
    `sisr.model.common.torch_state`). The port's format
    (`sisr.port.formats.basicsr_unet_discriminator`) maps it; every tensor must be used
    and every layer set (`sisr.port.PortError` otherwise). `python -m sisr.port` makes a
    new model from such a file."""
    from sisr.port import pipeline
    from sisr.port.formats.basicsr_unet_discriminator import describe

    plan = describe(torch_state(state, param_key))
    pipeline.check_keys(plan)
    pipeline.fill(model, plan)


register(ModelSpec(
    "unet_discriminator_sn", unet_discriminator_sn, scales=(),
    tiny={"num_feat": 4, "input_size": 16},
    generator=False, local=False, layouts=("basicsr-unet-discriminator",),
    aliases=("unet_discriminator",),
))
