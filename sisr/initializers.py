"""Registered, serialisable weight initializers.

PyTorch's default `nn.Conv2d` / `nn.Linear` initialisation, which the official EDSR and
WDSR code keeps (it never re-initialises a layer):

- kernel: `kaiming_uniform_(a=sqrt(5))`, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)); in Keras
  `VarianceScaling(1/3, "fan_in", "uniform")` (`torch_kernel`);
- bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the *kernel's* fan_in, which a bias
  initializer cannot tell from the bias shape; `FanInUniform` is given it.

`fan_in` = input channels x kernel height x kernel width.

`ICNR` wraps either for the conv before a pixel shuffle (the builders' `upsample_init="icnr"`,
off by default): the sub-pixel convolution then starts as nearest-neighbour upsampling.
"""

import math

import keras


def torch_kernel(seed=None):
    """PyTorch's default conv/linear kernel init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    # kaiming_uniform(a=sqrt(5)): bound = sqrt(6 / ((1 + a^2) fan_in)) = sqrt(1 / fan_in);
    # VarianceScaling's uniform bound is sqrt(3 * scale / fan_in).
    return keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed
    )


@keras.saving.register_keras_serializable(package="sisr")
class FanInUniform(keras.initializers.RandomUniform):
    """U(-gain/sqrt(fan_in), gain/sqrt(fan_in)) for a given `fan_in`.

    With `gain=1` and the kernel's fan_in, PyTorch's default bias init of `nn.Conv2d`
    and `nn.Linear`.

    Args:
        fan_in: positive int, the fan-in of the layer's kernel (in x kh x kw for a conv).
        gain: positive float multiplying the bound.
        seed: None, an int or a `keras.random.SeedGenerator`, as for Keras' own
            random initializers.
    """

    def __init__(self, fan_in, gain=1.0, seed=None):
        if isinstance(fan_in, bool) or not isinstance(fan_in, int) or fan_in < 1:
            raise ValueError(f"FanInUniform: `fan_in` must be a positive int, got {fan_in!r}")
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain > 0:
            raise ValueError(f"FanInUniform: `gain` must be a positive number, got {gain!r}")
        self.fan_in = fan_in
        self.gain = float(gain)
        bound = self.gain / math.sqrt(fan_in)
        super().__init__(minval=-bound, maxval=bound, seed=seed)

    def get_config(self):
        # minval/maxval follow from fan_in and gain; only the seed comes from the base.
        return {"fan_in": self.fan_in, "gain": self.gain, "seed": super().get_config()["seed"]}


@keras.saving.register_keras_serializable(package="sisr")
class ICNR(keras.initializers.Initializer):
    """ICNR: a sub-pixel convolution's weights that start as nearest-neighbour upsampling.

    `base` initialises a tensor with `scale**2` times fewer output channels (last axis);
    each of its channels is then copied to the `scale**2` channels that `PixelShuffle(scale)`
    (channels-last `depth_to_space`: output channel `c` of sub-pixel `(i, j)` reads input
    channel `(i*scale + j)*C + c`) places in one `scale x scale` block. The shuffled output
    of the conv therefore starts as the nearest-neighbour upsampling of a conv with `base`'s
    weights: no sub-pixel starts different from its neighbours, so there is no checkerboard
    at initialisation. Use it for the kernel and for the bias of the conv before the shuffle.

    Reference: Aitken et al., "Checkerboard artifact free sub-pixel convolution: A note on
    sub-pixel convolution, resize convolution and convolution resize", 2017.

    Args:
        scale: int >= 1, the factor of the `PixelShuffle` that follows the conv.
        base: a Keras initializer (an instance, a name or a serialised dict) for the
            `C` distinct channels; default Glorot uniform.
    """

    def __init__(self, scale, base="glorot_uniform"):
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"ICNR: `scale` must be a positive int, got {scale!r}")
        self.scale = scale
        self.base = keras.initializers.get(base)

    def __call__(self, shape, dtype=None):
        copies = self.scale * self.scale
        if not shape or shape[-1] % copies:
            raise ValueError(f"ICNR(scale={self.scale}): the last dimension of {tuple(shape)} "
                             f"must be a multiple of scale**2 = {copies}")
        distinct = self.base((*shape[:-1], shape[-1] // copies), dtype=dtype)
        # Channel k copies channel k % C: the same C channels for every sub-pixel (i, j).
        return keras.ops.tile(distinct, [1] * (len(shape) - 1) + [copies])

    def get_config(self):
        return {"scale": self.scale, "base": keras.initializers.serialize(self.base)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["base"] = keras.initializers.deserialize(config["base"])
        return cls(**config)
