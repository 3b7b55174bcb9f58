"""RDN (Zhang et al., "Residual Dense Network for Image Super-Resolution", CVPR 2018)."""

import keras

from sisr.layers import PixelShuffle
from sisr.model.common import check_positive_int, check_scale, conv, lr_input, sr_model
from sisr.model.registry import ModelSpec, register

# The paper's configurations (EDSR-PyTorch's `--RDNconfig`): blocks D, convs per block C,
# growth rate G; G0 = 64 filters in both.
CONFIGS = {"A": {"num_blocks": 20, "num_layers": 6, "growth_rate": 32},
           "B": {"num_blocks": 16, "num_layers": 8, "growth_rate": 64}}
# Upsamplers: "rdn" = the paper's and EDSR-PyTorch's (conv to G r^2 + pixel shuffle, twice
# for x4, then a conv to RGB); "isr" / "isr-shuffle" = idealo ISR's (5x5 conv to 64, ReLU,
# 3x3 conv to 32, ReLU, 3x3 conv to 3 r^2, then nearest-neighbour upsampling ("ups", the
# published ISR weights) or a pixel shuffle, then a 3x3 conv to RGB).
UPSAMPLERS = ("rdn", "isr", "isr-shuffle")
RDN_STAGES = {2: (2,), 3: (3,), 4: (2, 2)}
SCALES = (2, 3, 4)


def dense_block(x_in, num_layers, growth_rate, num_filters, name):
    """Residual dense block: C x (conv3x3 (G) -> ReLU -> concatenated to its input), 1x1
    local fusion to G0, + input."""
    x = x_in
    for c in range(num_layers):
        y = conv(growth_rate, 3, name=f"{name}_conv{c + 1}", activation="relu")(x)
        x = keras.layers.Concatenate(name=f"{name}_concat{c + 1}")([x, y])
    x = conv(num_filters, 1, name=f"{name}_fusion")(x)
    return keras.layers.Add(name=f"{name}_add")([x_in, x])


def rdn_upsample(x, scale, growth_rate):
    prefix = f"upsample_x{scale}"
    for i, r in enumerate(RDN_STAGES[scale], start=1):
        x = conv(growth_rate * r * r, 3, name=f"{prefix}_conv{i}")(x)
        x = PixelShuffle(r, name=f"{prefix}_shuffle{i}")(x)
    return conv(3, 3, name="output_conv")(x)


def isr_upsample(x, scale, shuffle):
    prefix = f"upsample_x{scale}"
    x = conv(64, 5, name=f"{prefix}_conv1", activation="relu")(x)
    x = conv(32, 3, name=f"{prefix}_conv2", activation="relu")(x)
    x = conv(3 * scale * scale, 3, name=f"{prefix}_conv3")(x)
    if shuffle:
        x = PixelShuffle(scale, name=f"{prefix}_shuffle")(x)
        return conv(3, 3, name="output_conv")(x)
    x = keras.layers.UpSampling2D(scale, interpolation="nearest", name=f"{prefix}_resize")(x)
    # its input has 3 scale^2 channels: a scale-dependent layer
    return conv(3, 3, name=f"output_x{scale}_conv")(x)


def rdn(scale, num_blocks=16, num_layers=8, growth_rate=64, num_filters=64,
        upsampler="rdn"):
    """Builds RDN; the defaults are the paper's configuration B (D16 C8 G64, G0 64);
    configuration A is `**CONFIGS["A"]` (D20 C6 G32).

    Takes RGB of any size on the [0, 255] scale and returns RGB on the same scale, `scale`
    times larger. The network is EDSR-PyTorch's `rdn.py` at its published rgb_range 255:
    no normalisation, the image's values go in as they are, so ported weights need no
    change and training follows the official parametrisation. `upsampler` (see
    `UPSAMPLERS`) "isr" builds idealo ISR's network, whose [0, 1] weights the port rescales.
    Initialisation: PyTorch's default conv init, as the official code.
    """
    check_scale(scale, SCALES, "rdn")
    for value, argument in ((num_blocks, "num_blocks"), (num_layers, "num_layers"),
                            (growth_rate, "growth_rate"), (num_filters, "num_filters")):
        check_positive_int(value, argument, "rdn")
    if upsampler not in UPSAMPLERS:
        raise ValueError(f"rdn: `upsampler` must be one of {UPSAMPLERS}, got {upsampler!r}")

    x_in = lr_input()
    f1 = conv(num_filters, 3, name="head_conv")(x_in)
    x = conv(num_filters, 3, name="head_conv2")(f1)
    outputs = []
    for d in range(num_blocks):
        x = dense_block(x, num_layers, growth_rate, num_filters, name=f"block{d + 1}")
        outputs.append(x)
    x = (keras.layers.Concatenate(name="fusion_concat")(outputs) if num_blocks > 1
         else outputs[0])
    x = conv(num_filters, 1, name="fusion_conv1")(x)
    x = conv(num_filters, 3, name="fusion_conv2")(x)
    x = keras.layers.Add(name="fusion_add")([x, f1])
    if upsampler == "rdn":
        x = rdn_upsample(x, scale, growth_rate)
    else:
        x = isr_upsample(x, scale, shuffle=upsampler == "isr-shuffle")
    # no denormalisation layer to end in float32 under a mixed policy, as the others do
    x = keras.layers.Activation("linear", name="output_float32", dtype="float32")(x)
    return sr_model(x_in, x, "rdn", scale=scale, num_blocks=num_blocks,
                    num_layers=num_layers, growth_rate=growth_rate, num_filters=num_filters,
                    upsampler=upsampler)


register(ModelSpec(
    "rdn", rdn, scales=SCALES,
    tiny={"num_blocks": 2, "num_layers": 2, "growth_rate": 4, "num_filters": 8},
    # No normalisation layers: the first convs and the last ones, as for EDSR.
    float32_layers=("head_*", "fusion_*", "upsample_*", "output_*"),
    layouts=("edsr-pytorch-rdn", "isr-rdn"),
))
