"""RRDBNet, the ESRGAN generator (Wang et al., "ESRGAN: Enhanced Super-Resolution
Generative Adversarial Networks", ECCVW 2018), as BasicSR's `rrdbnet_arch` (also the
network of Real-ESRGAN's x4plus / x2plus models, Wang et al., ICCVW 2021)."""

import keras

from sisr.layers import CropToScale, PixelUnshuffle, ResidualScaling
from sisr.model.common import check_positive_int, check_scale, conv, lr_input, sr_model
from sisr.model.registry import ModelSpec, register

SCALES = (2, 4)
# BasicSR's extension to x2: the input is pixel-unshuffled by 2, then run through the x4
# network.
UNSHUFFLE = {2: 2, 4: 1}
SLOPE = 0.2  # LeakyReLU's negative slope
RESIDUAL_SCALING = 0.2  # of every dense block and every RRDB


def dense_conv(filters, name):
    """A conv of a dense block, initialised as BasicSR's `default_init_weights(scale=0.1)`:
    Kaiming normal (fan in) times 0.1, zero bias."""
    return keras.layers.Conv2D(
        filters, 3, padding="same", name=name, bias_initializer="zeros",
        kernel_initializer=keras.initializers.VarianceScaling(
            scale=2.0 * 0.1 ** 2, mode="fan_in", distribution="untruncated_normal"))


def dense_block(x_in, num_feat, num_grow_ch, name):
    """Five 3x3 convs, each reading the block input and every earlier output; x0.2 + input."""
    features = [x_in]
    for k in range(1, 5):
        x = features[0] if k == 1 else keras.layers.Concatenate(
            name=f"{name}_concat{k}")(features)
        x = dense_conv(num_grow_ch, f"{name}_conv{k}")(x)
        features.append(keras.layers.LeakyReLU(SLOPE, name=f"{name}_lrelu{k}")(x))
    x = keras.layers.Concatenate(name=f"{name}_concat5")(features)
    x = dense_conv(num_feat, f"{name}_conv5")(x)
    x = ResidualScaling(RESIDUAL_SCALING, name=f"{name}_scale")(x)
    return keras.layers.Add(name=f"{name}_add")([x_in, x])


def rrdb(x_in, num_feat, num_grow_ch, name):
    """Residual in residual dense block: three dense blocks, x0.2 + input."""
    x = x_in
    for j in range(1, 4):
        x = dense_block(x, num_feat, num_grow_ch, f"{name}_rdb{j}")
    x = ResidualScaling(RESIDUAL_SCALING, name=f"{name}_scale")(x)
    return keras.layers.Add(name=f"{name}_add")([x_in, x])


def rrdbnet(scale=4, num_feat=64, num_block=23, num_grow_ch=32):
    """Builds RRDBNet: defaults = ESRGAN's and Real-ESRGAN's x4plus network.

    conv -> `num_block` RRDBs -> conv, + skip; two (nearest x2 -> conv -> LeakyReLU)
    stages; conv -> LeakyReLU -> conv to RGB. At x2 the input is first pixel-unshuffled by
    2 (BasicSR's extension; an odd height or width is padded by reflection and the padding
    cropped from the output, as Real-ESRGAN's inference does), so x2 and x4 share every
    layer but the first conv (`head_x2_conv`: 12 input channels).

    Takes RGB on [0, 255] and returns RGB on [0, 255]: the official network works on
    [0, 1], which the model's first and last layers rescale to. Initialisation: BasicSR's
    (dense-block convs Kaiming normal x0.1, zero biases; other convs PyTorch's default).
    """
    check_scale(scale, SCALES, "rrdbnet")
    check_positive_int(num_feat, "num_feat", "rrdbnet")
    check_positive_int(num_block, "num_block", "rrdbnet")
    check_positive_int(num_grow_ch, "num_grow_ch", "rrdbnet")

    x_in = lr_input()
    x = keras.layers.Rescaling(1.0 / 255, name="normalize")(x_in)
    r = UNSHUFFLE[scale]
    if r > 1:
        x = PixelUnshuffle(r, name=f"head_x{scale}_unshuffle")(x)
    head = "head_conv" if r == 1 else f"head_x{scale}_conv"
    x = b = conv(num_feat, 3, name=head)(x)
    for i in range(num_block):
        b = rrdb(b, num_feat, num_grow_ch, name=f"block{i + 1}")
    b = conv(num_feat, 3, name="body_conv")(b)
    x = keras.layers.Add(name="body_add")([x, b])
    for k in (1, 2):
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"upsample_up{k}")(x)
        x = conv(num_feat, 3, name=f"upsample_conv{k}")(x)
        x = keras.layers.LeakyReLU(SLOPE, name=f"upsample_lrelu{k}")(x)
    x = conv(num_feat, 3, name="hr_conv")(x)
    x = keras.layers.LeakyReLU(SLOPE, name="hr_lrelu")(x)
    x = conv(3, 3, name="output_conv")(x)
    if r > 1:
        x = CropToScale(scale, name="output_crop")([x, x_in])
    x = keras.layers.Rescaling(255.0, name="denormalize", dtype="float32")(x)
    return sr_model(x_in, x, "rrdbnet", scale=scale, num_feat=num_feat, num_block=num_block,
                    num_grow_ch=num_grow_ch)


register(ModelSpec(
    "rrdbnet", rrdbnet,
    scales=SCALES,
    tiny={"num_feat": 8, "num_block": 1, "num_grow_ch": 4},
    gan_generator=True,
    # Measured on a seeded full-size x4 model (official init; no trained weights here:
    # benchmarks/README.md): the input scaling and head, the residual stream (every RDB's
    # and RRDB's scaling and add), the trunk's end, the upsampler and the output. Without the
    # stream and the upsampler, 7 levels from float32; with them, 1. The dense blocks'
    # convolutions (~90% of the work) run in bf16.
    float32_layers=("normalize", "head_*", "block*_scale", "block*_add", "body_*",
                    "upsample_*", "hr_*", "output_*", "denormalize"),
    layouts=("basicsr-rrdb", "esrgan-old"),
    aliases=("esrgan", "rrdb"),
))
