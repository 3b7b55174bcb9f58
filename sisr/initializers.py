"""Registered, serialisable weight initializers.

PyTorch's default `nn.Conv2d` / `nn.Linear` initialisation, which the official EDSR and
WDSR code keeps (it never re-initialises a layer):

- kernel: `kaiming_uniform_(a=sqrt(5))`, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)); in Keras
  `VarianceScaling(1/3, "fan_in", "uniform")` (`torch_kernel`);
- bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the *kernel's* fan_in, which a bias
  initializer cannot tell from the bias shape; `FanInUniform` is given it.

`fan_in` = input channels x kernel height x kernel width.
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
