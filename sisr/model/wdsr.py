"""WDSR-A and WDSR-B (Yu et al., "Wide Activation for Efficient and Accurate Image
Super-Resolution", 2018)."""

import keras

from sisr.layers import PixelShuffle, ResidualScaling, denormalize, normalize
from sisr.model.common import (
    SCALES, check_positive_int, check_scale, check_scaling, check_upsample_init, conv, lr_input,
    sr_model,
)

# WDSR-B's low-rank 1x1 conv has int(num_filters * LINEAR) channels (25 for 32 filters).
LINEAR = 0.8
NORMALIZATIONS = ("weight", "batch", "none")
# PyTorch's nn.BatchNorm2d defaults (momentum 0.1 in its convention): short studies need the
# moving statistics to follow the weights within a few hundred steps, which Keras' 0.99
# would not.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
# Kept float32 in bf16 copies, by analogy with SRResNet's measured groups (no trained WDSR
# weights here): normalisation, head, and the cheap convs to 3 * scale**2 channels.
FLOAT32_LAYERS = ("normalize", "head_*", "main_x*", "skip_x*", "output_add", "denormalize")


def check_normalization(normalization, builder):
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"{builder}: `normalization` must be one of {NORMALIZATIONS}, got "
                         f"{normalization!r}")


def _bn(x, batch_norm, name):
    if not batch_norm:
        return x
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                           name=f"{name}_bn")(x)


def _expand(x, filters, size, batch_norm, name):
    """A block's first, wide conv `{name}_conv1` and its ReLU [with a BatchNormalization
    between them]; without batch norm the ReLU is the conv's own activation."""
    if not batch_norm:
        return conv(filters, size, name=f"{name}_conv1", activation="relu")(x)
    x = _bn(conv(filters, size, name=f"{name}_conv1")(x), True, f"{name}_conv1")
    return keras.layers.ReLU(name=f"{name}_conv1_relu")(x)


def res_block_a(x_in, num_filters, expansion, scaling, name, batch_norm=False):
    """Wide activation: conv3x3(F*r) -> ReLU -> conv3x3(F) [-> *scaling] -> + input;
    `batch_norm`: a BatchNormalization after each conv (before the ReLU)."""
    x = _expand(x_in, num_filters * expansion, 3, batch_norm, name)
    x = _bn(conv(num_filters, 3, name=f"{name}_conv2")(x), batch_norm, f"{name}_conv2")
    if scaling is not None:
        x = ResidualScaling(scaling, name=f"{name}_scale")(x)
    return keras.layers.Add(name=f"{name}_add")([x_in, x])


def res_block_b(x_in, num_filters, expansion, scaling, name, batch_norm=False):
    """Wide activation with low-rank convolutions:
    conv1x1(F*r) -> ReLU -> conv1x1(int(0.8 F)) -> conv3x3(F) [-> *scaling] -> + input;
    `batch_norm`: a BatchNormalization after each conv (before the ReLU)."""
    x = _expand(x_in, num_filters * expansion, 1, batch_norm, name)
    x = _bn(conv(int(num_filters * LINEAR), 1, name=f"{name}_conv2")(x), batch_norm,
            f"{name}_conv2")
    x = _bn(conv(num_filters, 3, name=f"{name}_conv3")(x), batch_norm, f"{name}_conv3")
    if scaling is not None:
        x = ResidualScaling(scaling, name=f"{name}_scale")(x)
    return keras.layers.Add(name=f"{name}_add")([x_in, x])


def wdsr(scale, num_filters, num_res_blocks, res_block_expansion, res_block_scaling,
         res_block, name, upsample_init="default", normalization="weight"):
    """Builds WDSR-A or -B (`res_block`).

    `normalization` (`NORMALIZATIONS`), the three that the WDSR paper compares:
    - "weight" (default): weight normalisation, which sisr applies in the optimiser
      (`weight_norm_adam`, `sisr.optimizers`): the network is the plain one;
    - "none": the same network, to be trained with a plain optimiser (`adam`);
    - "batch": a BatchNormalization after every conv of the residual blocks (before the
      ReLU after the first), as SRResNet's blocks have it. Only the blocks: head, tail and
      skip convs map to and from RGB, and batch statistics there would shift the image's
      colours, which is what the EDSR paper removed batch norm for; in the blocks it
      normalises exactly the features whose scale weight normalisation controls. The
      parameter count grows by 4 per channel of every normalised conv (2 trained, 2
      moving statistics); the other two build identical networks.

    Initialisation as the official code (JiahuiYu/wdsr_ntire2018): every conv is
    `weight_norm(nn.Conv2d(...))` with PyTorch's default init and no explicit
    re-initialisation, and weight norm starts from g = ||v||, so the effective kernels are
    the default ones: kernels and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (`sisr.initializers`). The input normalisation is the official one.
    `upsample_init="icnr"` (not the official init) draws the two convs before the pixel
    shuffles from the same distribution with ICNR (`sisr.initializers.ICNR`): both branches
    start as nearest-neighbour upsampling, without a sub-pixel checkerboard.
    """
    check_scale(scale, SCALES, name)
    check_positive_int(num_filters, "num_filters", name)
    check_positive_int(num_res_blocks, "num_res_blocks", name)
    check_positive_int(res_block_expansion, "res_block_expansion", name)
    check_scaling(res_block_scaling, name)
    check_upsample_init(upsample_init, name)
    check_normalization(normalization, name)
    if int(num_filters * LINEAR) < 1 and res_block is res_block_b:
        raise ValueError(f"{name}: `num_filters` must be at least 2, got {num_filters!r}")

    x_in = lr_input()
    x = normalize()(x_in)

    # main branch
    m = conv(num_filters, 3, name="head_conv")(x)
    for i in range(num_res_blocks):
        m = res_block(m, num_filters, res_block_expansion, res_block_scaling,
                      name=f"block{i + 1}", batch_norm=normalization == "batch")
    icnr = scale if upsample_init == "icnr" else None
    m = conv(3 * scale * scale, 3, name=f"main_x{scale}_conv", icnr=icnr)(m)
    m = PixelShuffle(scale, name=f"main_x{scale}_shuffle")(m)

    # skip branch, from the normalised input
    s = conv(3 * scale * scale, 5, name=f"skip_x{scale}_conv", icnr=icnr)(x)
    s = PixelShuffle(scale, name=f"skip_x{scale}_shuffle")(s)

    x = keras.layers.Add(name="output_add")([m, s])
    x = denormalize()(x)
    return sr_model(x_in, x, name, scale=scale, num_filters=num_filters,
                    num_res_blocks=num_res_blocks, res_block_expansion=res_block_expansion,
                    res_block_scaling=res_block_scaling, upsample_init=upsample_init,
                    normalization=normalization)
