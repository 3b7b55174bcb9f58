"""The training recipe's open tables: each name a configuration may give -> its factory.

`sisr.training.config` takes the allowed names (and its error messages) from these tables,
and the trainers call the factories; adding a loss, an optimiser, a strategy or an
initialisation is one entry here:

    recipe.LOSSES["charbonnier"] = lambda config: MyCharbonnier()

- `LOSSES[config["loss"]](config)` -> a Keras loss;
- `OPTIMIZERS[config["optimizer"]](config, learning_rate)` -> a Keras optimizer
  (`learning_rate` is a float or a schedule);
- `STRATEGIES[config["strategy"]]`: a `Strategy` whose `check(config)` raises ConfigError
  for a configuration it cannot run and whose `make()` returns the tf.distribute strategy;
- `INITS[config["init"]](model, batch)` -> changes a new model's weights on the first
  training batch (LR images) before training; never applied when a run resumes.
"""

import dataclasses
from collections.abc import Callable

# Adam as the official EDSR and WDSR code trains: PyTorch's betas and epsilon (1e-8; Keras'
# default is 1e-7, and Keras adds it to sqrt(v) where PyTorch adds it to sqrt(v_hat)).
ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8}


# -- losses ----------------------------------------------------------------------------
def _l1(config):
    import keras

    return keras.losses.MeanAbsoluteError()


def _mse(config):
    import keras

    return keras.losses.MeanSquaredError()


LOSSES = {"l1": _l1, "mse": _mse}


# -- optimisers ------------------------------------------------------------------------
def adam_arguments(config):
    """`ADAM`, with the betas of GAN fine-tuning's `gan_adam_betas` if the configuration
    has them (BasicSR's GAN recipes: 0.9, 0.99)."""
    betas = config.get("gan_adam_betas")
    return {**ADAM, **({"beta_1": betas[0], "beta_2": betas[1]} if betas else {})}


def _adam(config, learning_rate):
    import keras

    return keras.optimizers.Adam(learning_rate=learning_rate, **adam_arguments(config))


def _weight_norm_adam(config, learning_rate):
    from sisr.optimizers import WeightNormAdam

    return WeightNormAdam(learning_rate=learning_rate, **adam_arguments(config))


def _torch_adam(config, learning_rate):
    from sisr.optimizers import TorchAdam

    return TorchAdam(learning_rate=learning_rate, **adam_arguments(config))


# "torch_adam": torch.optim.Adam's per-weight step counts and epsilon (`TorchAdam`), what
# multi-scale training needs to match EDSR-PyTorch (a step updates one scale's branch).
OPTIMIZERS = {"adam": _adam, "weight_norm_adam": _weight_norm_adam, "torch_adam": _torch_adam}


# -- distribution strategies -----------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Strategy:
    """A distribution strategy: `check(config)` runs first (before TensorFlow runs any
    op) and raises ConfigError for what it cannot train; `make()` creates it."""

    make: Callable
    check: Callable = lambda config: None


def _single_process(config):
    from sisr.training import distributed

    distributed.check_single_process(config["strategy"])


def _default():
    import tensorflow as tf

    return tf.distribute.get_strategy()


def _mirrored():
    """All local GPUs, else all logical CPU devices."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    # CPU replicas: reduce on one device; collective all-reduce on CPUs gains nothing
    # and its instance keys can clash with another strategy in the same process.
    cpus = tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy(
        [d.name for d in cpus], cross_device_ops=tf.distribute.ReductionToOneDevice())


def _multi_worker():
    from sisr.training import distributed

    return distributed.multi_worker_strategy()


def _check_multi_worker(config):
    from sisr.training.config import ConfigError

    if config["precision"] == "mixed_float16":
        # Measured: two local workers never finish their first epoch (TF 2.21,
        # Keras 3.15); mixed_bfloat16 needs no loss scaling and works.
        raise ConfigError("--precision mixed_float16 with --strategy multi-worker is "
                          "refused: its dynamic loss scaling hangs the workers; use "
                          "mixed_bfloat16 or float32")


STRATEGIES = {
    "default": Strategy(_default, _single_process),
    "mirrored": Strategy(_mirrored, _single_process),
    # MultiWorkerMirroredStrategy over the cluster of TF_CONFIG (or Slurm), created once
    # per process and before TensorFlow runs any op (see `sisr.training.distributed`).
    "multi-worker": Strategy(_multi_worker, _check_multi_worker),
}


# -- initialisations -------------------------------------------------------------------
def _builder_init(model, batch):
    """The builder's own initialisation: nothing to change."""


def _data_dependent(model, batch):
    """`sisr.optimizers.data_dependent_init` of every conv/dense kernel (the kernels
    `weight_norm_adam` weight-normalises)."""
    from sisr.optimizers import data_dependent_init

    data_dependent_init(model, batch)


INITS = {"default": _builder_init, "data_dependent": _data_dependent}
