"""SRCNN (Dong et al., "Image Super-Resolution Using Deep Convolutional Networks", TPAMI
2016; ECCV 2014), with the options of the SRCNN variants trained on EDSR-PyTorch."""

import keras

from sisr.layers import BicubicUpsample, PixelShuffle
from sisr.model.common import SCALES, check_positive_int, check_scale, lr_input, sr_model
from sisr.model.registry import ModelSpec, register

ACTIVATIONS = ("relu", "leaky_relu", "prelu")
UPSAMPLERS = ("bicubic", "subpixel")
LEAKY_SLOPE = 0.01  # PyTorch's nn.LeakyReLU default
CA_REDUCTION = 16  # RCAN's channel-attention reduction
BN_MOMENTUM = 0.9  # PyTorch's nn.BatchNorm2d momentum 0.1, in Keras' convention
BN_EPSILON = 1e-5


def check_choice(value, choices, argument, builder):
    if value not in choices:
        raise ValueError(f"{builder}: `{argument}` must be one of {choices}, got {value!r}")


def check_int_list(values, argument, builder, length=None):
    """`values` as a list of positive ints (tuples and lists accepted), checked."""
    if not isinstance(values, (list, tuple)) or not values or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{builder}: `{argument}` must be a list of positive integers, "
                         f"got {values!r}")
    if length is not None and len(values) != length:
        raise ValueError(f"{builder}: `{argument}` must have {length} entries, got "
                         f"{len(values)}")
    return [int(v) for v in values]


def activation_layer(kind, name):
    """The activation `kind` (see `ACTIVATIONS`) as a layer named `name`; PReLU has one
    slope per channel, initialised to PyTorch's 0.25."""
    if kind == "relu":
        return keras.layers.ReLU(name=name)
    if kind == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=name)
    return keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25),
                              shared_axes=[1, 2], name=name)


def channel_attention(x, reduction, name):
    """RCAN's channel attention: global average, 1x1 conv down, ReLU, 1x1 conv up, sigmoid,
    times the input. Sees the whole image: a model with it is not tiled."""
    channels = int(x.shape[-1])
    w = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    w = keras.layers.Conv2D(max(1, channels // reduction), 1, activation="relu",
                            name=f"{name}_down")(w)
    w = keras.layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_up")(w)
    return keras.layers.Multiply(name=f"{name}_mul")([x, w])


def default_kernel_sizes(num_layers):
    """9-5-5 for three layers (the paper's best); deeper: 9, 5, then 3s, and 5 last."""
    return [9, 5] + [3] * (num_layers - 3) + [5]


def srcnn(scale, num_filters=64, num_layers=3, kernel_sizes=None, upsampler="bicubic",
          global_residual=False, batch_norm=False, activation="relu",
          channel_attention_reduction=None, residual_blocks=False):
    """Builds SRCNN: defaults = the paper's 9-5-5 network, 64 and 32 filters, ReLU.

    The paper upscales the LR image by bicubic interpolation first; this model takes the LR
    image (RGB on [0, 255]) and upscales it inside with MATLAB's bicubic
    (`sisr.layers.BicubicUpsample`). It works on [0, 1] as the paper does, on RGB (the paper
    trains on the Y channel, or RGB in its section 5.4), with "same" padding where the
    paper's convs are valid, so that the output is `scale` times the input.

    Args:
        scale: the upscaling factor.
        num_filters: width of the first layer; the last hidden layer has half as many
            (64 and 32 in the paper), any others `num_filters`.
        num_layers: convolutions in all (3 in the paper; the student variants use 8).
        kernel_sizes: one per layer; default `default_kernel_sizes(num_layers)`.
        upsampler: "bicubic" (the paper: convs on the upscaled image) or "subpixel" (convs
            on the LR image, the last one giving 3 * scale^2 channels, a pixel shuffle).
        global_residual: add the bicubic-upscaled image to the output (VDSR's residual).
        batch_norm: batch normalisation after each hidden conv, before its activation.
        activation: "relu", "leaky_relu" (slope 0.01) or "prelu" (per channel).
        channel_attention_reduction: None, or RCAN's channel attention after each hidden
            activation with this reduction (16 in RCAN); such a model is not tiled.
        residual_blocks: every hidden conv whose input is as wide as its output (conv2 up
            to the one before the narrow last hidden conv) becomes a residual block: its
            input is added to its output after the activation (and channel attention).
            At 3 layers there is none; at 8 there are 5.
    """
    check_scale(scale, SCALES, "srcnn")
    check_positive_int(num_filters, "num_filters", "srcnn")
    check_positive_int(num_layers, "num_layers", "srcnn")
    if num_layers < 2:
        raise ValueError(f"srcnn: `num_layers` must be at least 2, got {num_layers!r}")
    if kernel_sizes is None:
        kernel_sizes = default_kernel_sizes(max(num_layers, 3))[-num_layers:]
    kernel_sizes = check_int_list(kernel_sizes, "kernel_sizes", "srcnn", num_layers)
    check_choice(upsampler, UPSAMPLERS, "upsampler", "srcnn")
    check_choice(activation, ACTIVATIONS, "activation", "srcnn")
    for flag, argument in ((global_residual, "global_residual"), (batch_norm, "batch_norm"),
                           (residual_blocks, "residual_blocks")):
        if not isinstance(flag, bool):
            raise ValueError(f"srcnn: `{argument}` must be True or False, got {flag!r}")
    if channel_attention_reduction is not None:
        check_positive_int(channel_attention_reduction, "channel_attention_reduction", "srcnn")

    x_in = lr_input()
    x = keras.layers.Rescaling(1.0 / 255.0, name="normalize")(x_in)
    upscaled = None
    if upsampler == "bicubic" or global_residual:
        upscaled = BicubicUpsample(scale, name="bicubic")(x)
    if upsampler == "bicubic":
        x = upscaled
    widths = [num_filters] * (num_layers - 2) + [max(1, num_filters // 2)]
    for i, (width, size) in enumerate(zip(widths, kernel_sizes), start=1):
        shortcut = x if residual_blocks and i > 1 and int(x.shape[-1]) == width else None
        x = keras.layers.Conv2D(width, size, padding="same", name=f"conv{i}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                                name=f"conv{i}_bn")(x)
        x = activation_layer(activation, f"conv{i}_act")(x)
        if channel_attention_reduction is not None:
            x = channel_attention(x, channel_attention_reduction, f"conv{i}_ca")
        if shortcut is not None:
            x = keras.layers.Add(name=f"conv{i}_residual")([shortcut, x])
    if upsampler == "bicubic":
        x = keras.layers.Conv2D(3, kernel_sizes[-1], padding="same", name="output_conv")(x)
    else:
        x = keras.layers.Conv2D(3 * scale * scale, kernel_sizes[-1], padding="same",
                                name=f"output_x{scale}_conv")(x)
        x = PixelShuffle(scale, name=f"output_x{scale}_shuffle")(x)
    if global_residual:
        x = keras.layers.Add(name="residual_add")([upscaled, x])
    x = keras.layers.Rescaling(255.0, name="denormalize", dtype="float32")(x)
    return sr_model(x_in, x, "srcnn", scale=scale, num_filters=num_filters,
                    num_layers=num_layers, kernel_sizes=kernel_sizes, upsampler=upsampler,
                    global_residual=global_residual, batch_norm=batch_norm,
                    activation=activation,
                    channel_attention_reduction=channel_attention_reduction,
                    residual_blocks=residual_blocks)


register(ModelSpec(
    "srcnn", srcnn,
    tiny={"num_filters": 4, "num_layers": 3, "kernel_sizes": [3, 1, 3], "global_residual": True},
    float32_layers=("normalize", "bicubic", "output_*", "residual_add", "denormalize"),
))
