"""Argument checks and building blocks shared by the model builders."""

from collections.abc import Mapping

import keras
import numpy as np

from sisr.initializers import ICNR, FanInUniform, torch_kernel
from sisr.layers import DIV2K_RGB_MEAN, PixelShuffle
from sisr.model.registry import SCALES  # noqa: F401  (re-exported)
from sisr.model.srmodel import SRModel

# Batch-norm momentum of SRResNet and the SRGAN discriminator, as in the original Keras
# project (krasserm/super-resolution); Keras' default is 0.99.
BN_MOMENTUM = 0.8

# Weight initialisations of `conv`: "torch" = PyTorch's default nn.Conv2d init, kept by the
# official EDSR and WDSR code; "keras" = Keras' defaults (Glorot uniform kernel, zero bias),
# as in krasserm/super-resolution's SRGAN.
INITS = ("torch", "keras")
# Initialisations of the convs before a pixel shuffle (builders' `upsample_init`): "default"
# = the builder's own (the official code's); "icnr" = the same distribution, with each
# group of scale**2 channels that the shuffle places in one block starting identical
# (`sisr.initializers.ICNR`): the upsampler starts as nearest-neighbour upsampling, without
# the checkerboard of independently initialised sub-pixels.
UPSAMPLE_INITS = ("default", "icnr")
# The pixel-shuffle stages of `subpixel_upsample` at each scale.
UPSAMPLE_STAGES = {2: (2,), 3: (3,), 4: (2, 2), 8: (2, 2, 2)}


def check_scale(scale, allowed, builder):
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in allowed:
        raise ValueError(
            f"{builder}: `scale` must be one of {sorted(allowed)}, got {scale!r}"
        )


def check_positive_int(value, argument, builder):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{builder}: `{argument}` must be a positive integer, got {value!r}"
        )


def check_scaling(res_block_scaling, builder):
    if res_block_scaling is None:
        return
    if isinstance(res_block_scaling, bool) or not isinstance(res_block_scaling, (int, float)) \
            or not res_block_scaling > 0:
        raise ValueError(
            f"{builder}: `res_block_scaling` must be None or a positive number, "
            f"got {res_block_scaling!r}"
        )


def torch_state(source, param_key=None):
    """A PyTorch state_dict as {key: float32 array}: `source` is a mapping already, or a
    checkpoint file (`.pth`, `.safetensors`, `.npz`) read without torch by
    `sisr.port.io.load_state_dict` (`param_key`: its entry, e.g. BasicSR's "params")."""
    if isinstance(source, Mapping):
        return {str(k): np.asarray(v, np.float32) for k, v in source.items()}
    from sisr.port.io import load_state_dict

    return dict(load_state_dict(source, param_key=param_key))


def sr_model(inputs, outputs, builder, **arguments):
    """The `SRModel` of a builder: named after it, with its arguments recorded."""
    return SRModel(inputs, outputs, builder=builder, arguments=arguments, name=builder)


def lr_input(name="lr"):
    """Input of RGB images on the [0, 255] scale, any height and width."""
    return keras.Input(shape=(None, None, 3), name=name)


def check_upsample_init(upsample_init, builder):
    if upsample_init not in UPSAMPLE_INITS:
        raise ValueError(f"{builder}: `upsample_init` must be one of {UPSAMPLE_INITS}, "
                         f"got {upsample_init!r}")


def mean_shift(sign, name):
    """`x + sign * mean` on the [0, 255] scale: EDSR-PyTorch's MeanShift at rgb_range 255,
    the normalisation RCAN and VDSR were published with (no division, unlike EDSR's / 127.5
    here)."""
    return keras.layers.Rescaling(1.0, offset=[sign * m for m in DIV2K_RGB_MEAN], name=name,
                                  dtype="float32" if sign > 0 else None)


def conv(filters, kernel_size, name, activation=None, init="torch", icnr=None):
    """A "same"-padded Conv2D named `name`, initialised as `init` says (see `INITS`); with
    `icnr=r`, that initialisation wrapped in `ICNR(r)` (the conv precedes a pixel shuffle r).

    Returns a function of the input tensor: PyTorch's bias bound needs the kernel's fan-in,
    hence the input's channels.
    """
    if init not in INITS:
        raise ValueError(f"conv: `init` must be one of {INITS}, got {init!r}")

    def apply(x):
        initializers = {}
        if init == "torch":
            fan_in = int(x.shape[-1]) * kernel_size * kernel_size
            initializers = {"kernel_initializer": torch_kernel(),
                            "bias_initializer": FanInUniform(fan_in)}
        if icnr is not None:
            # Keras' default bias is zeros, identical in every channel already.
            initializers = {key: ICNR(icnr, base) for key, base in initializers.items()} \
                or {"kernel_initializer": ICNR(icnr)}
        return keras.layers.Conv2D(filters, kernel_size, padding="same", activation=activation,
                                   name=name, **initializers)(x)

    return apply


def subpixel_upsample(x, scale, num_filters, name, activation=None, init="torch",
                      upsample_init="default"):
    """EDSR/SRResNet upsampler: conv(F*r*r) + pixel shuffle r, twice or thrice for x4/x8;
    `upsample_init="icnr"` initialises the convs with ICNR (see `UPSAMPLE_INITS`).

    Layer names carry the scale (`{name}_x{scale}_...`) so that they never collide with
    the weights of a model of another scale when weights are copied by layer name.
    """
    stages = UPSAMPLE_STAGES[scale]
    prefix = f"{name}_x{scale}"
    for i, r in enumerate(stages, start=1):
        x = conv(num_filters * r * r, 3, name=f"{prefix}_conv{i}", init=init,
                 icnr=r if upsample_init == "icnr" else None)(x)
        x = PixelShuffle(r, name=f"{prefix}_shuffle{i}")(x)
        if activation is not None:
            x = activation(f"{prefix}_act{i}")(x)
    return x
