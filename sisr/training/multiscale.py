"""Multi-scale training (MDSR): one network, a random scale per batch, as EDSR-PyTorch
trains it (`--scale 2+3+4`; its loader draws a scale index per batch).

- Data: one resumable batch stream per scale (`sisr.data.pipeline`) and a seeded scale
  choice per batch (`scale_choices`: batch b's scale depends only on the seed and b), so
  a run resumed after batch B continues with the very batches of the uninterrupted run.
- Step: `MultiScaleSR` trains the single-scale model of the batch's scale (its builder's
  `at_scale`, sharing the network's weights): L1 (or the configured loss) and one
  optimizer step on that model's weights only; the other branches get no gradient and
  are not updated, as in EDSR-PyTorch on PyTorch >= 2 (`zero_grad` sets gradients to
  None). With the MDSR profiles' `torch_adam` (`sisr.optimizers.TorchAdam`: PyTorch's
  step count per weight) a run matches the official one step for step. One compiled step
  per scale, chosen in Python: a single-device strategy only.
- Validation reports each scale (`val_psnr_x2`, ...) and their mean (`val_psnr`).
"""

import functools
import logging
import os

import keras
import numpy as np
import tensorflow as tf

from sisr import metrics
from sisr.fileio import atomic_output, atomic_write_json
from sisr.model.registry import get_spec
from sisr.saving import load_model
from sisr.training.callbacks import RunDirectory, StopOnNonFiniteLoss
from sisr.training.config import builder_kwargs
from sisr.training.trainer import (
    PretrainedMismatch, Trainer, _as_float, compare_with_bicubic, copy_pretrained,
    make_loss, make_optimizer, open_datasets, precision,
)

log = logging.getLogger(__name__)

# Batches per block of the scale choice stream: block c is drawn from
# `default_rng([seed, c])`, so any batch's scale is known without drawing the others.
CHOICE_BLOCK = 1024


def scale_choices(seed, count, num_scales, start=0):
    """The scale indices (int64, in [0, num_scales)) of batches start..start+count-1."""
    if count <= 0:
        return np.zeros([0], np.int64)
    first, last = start // CHOICE_BLOCK, (start + count - 1) // CHOICE_BLOCK
    blocks = [np.random.default_rng([seed, c]).integers(num_scales, size=CHOICE_BLOCK)
              for c in range(first, last + 1)]
    offset = start - first * CHOICE_BLOCK
    return np.concatenate(blocks)[offset:offset + count].astype(np.int64)


def train_stream(train_datasets, config, seed, start=0):
    """A tf.data stream of `(lr, hr, scale_index)` float32 batches, from batch `start` on:
    batch b is batch k of scale i's stream, i = `scale_choices(seed)[b]` and k the number
    of earlier batches of scale i."""
    total = config["epochs"] * config["steps_per_epoch"]
    n = len(train_datasets)
    before = np.bincount(scale_choices(seed, start, n), minlength=n)
    streams = []
    for i, data in enumerate(train_datasets):
        stream = data.train(batch_size=config["batch_size"], lr_patch=config["lr_patch"],
                            seed=seed + i, skip_batches=int(before[i]))
        streams.append(stream.map(functools.partial(_with_index, index=i)))
    choices = tf.data.Dataset.from_tensor_slices(scale_choices(seed, total - start, n, start))
    return tf.data.Dataset.choose_from_datasets(streams, choices, stop_on_empty_dataset=True)


def _with_index(lr, hr, index):
    return tf.cast(lr, tf.float32), tf.cast(hr, tf.float32), tf.constant(index, tf.int64)


class _Plain:
    """Attributes that Keras does not track."""

    def __init__(self, **values):
        self.__dict__.update(values)


class MultiScaleSR(keras.Model):
    """A multi-scale network trained one scale per batch (see the module docstring).

    Args:
        network: the multi-scale `SRModel` (one output per scale of `scales`).
        scales: its scales, in output order.

    `fit` takes `(lr, hr, scale_index)` batches; `model(lr)` runs every branch.
    """

    def __init__(self, network, scales, name="multiscale", **kwargs):
        super().__init__(name=name, **kwargs)
        self.network = network
        self.scales = list(scales)
        at_scale = get_spec(network.builder).at_scale
        # Held by a plain object: Keras would otherwise track (and save) the branches,
        # which share the network's layers.
        self._plain = _Plain(branches=[at_scale(network, s) for s in self.scales],
                             steps=None)
        self._loss_mean = keras.metrics.Mean(name="loss")
        self.pixel_loss = None
        self.built = True

    @property
    def metrics(self):
        return [self._loss_mean]

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def compile(self, optimizer, loss, **kwargs):
        """Sets the optimizer and the pixel loss, and builds the optimizer's state for
        every weight of the network (each step updates one scale's share of it)."""
        super().compile(optimizer=optimizer, **kwargs)
        self.pixel_loss = loss
        self.optimizer.build(self.network.trainable_variables)

    def _step(self, index, lr, hr):
        branch = self._plain.branches[index]
        variables = branch.trainable_variables
        with tf.GradientTape() as tape:
            sr = tf.cast(branch(lr, training=True), tf.float32)
            loss = self.pixel_loss(hr, sr)
            scaled = self.optimizer.scale_loss(loss)
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        self._loss_mean.update_state(loss)
        return {"loss": self._loss_mean.result()}

    def train_step_at(self, index, lr, hr):
        """One training step on a batch of scale `scales[index]` (compiled per scale)."""
        if self._plain.steps is None:
            self._plain.steps = [tf.function(functools.partial(self._step, i),
                                             reduce_retracing=True)
                                 for i in range(len(self.scales))]
        return self._plain.steps[index](tf.convert_to_tensor(lr, tf.float32),
                                  tf.convert_to_tensor(hr, tf.float32))

    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function

        def function(iterator):
            lr, hr, index = next(iterator)
            return self.train_step_at(int(index), lr, hr)

        self.train_function = function
        return function

    def get_config(self):
        raise NotImplementedError(
            "MultiScaleSR is not saved as a whole: save its network with sisr.save_model "
            "and back up a run with sisr.training.multiscale.save_backup")


def save_backup(model, path):
    """Atomically saves the network's weights and the optimizer state (`.weights.h5`)."""
    path = os.fspath(path)
    with atomic_output(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)


class MultiScaleValidation(keras.callbacks.Callback):
    """Validates a float32 copy of the network at every scale after every epoch (as
    `Validation` does one scale): `val_loss_xS` and `val_psnr_xS` per scale, and their
    means as `val_loss` and `val_psnr`.

    Args:
        datasets: per scale, a `tf.data.Dataset` of `(lr, hr)` float32 batches.
        export_model: an uncompiled float32 multi-scale network of the same architecture.
        loss: the training loss.
        shaves: per scale, the border pixels ignored by the PSNR.
        scales: the scales, in the network's output order.
    """

    def __init__(self, datasets, export_model, loss, shaves, scales):
        super().__init__()
        self.datasets, self.export_model = list(datasets), export_model
        self.loss, self.shaves, self.scales = loss, list(shaves), list(scales)
        at_scale = get_spec(export_model.builder).at_scale
        self._plain = _Plain(branches=[at_scale(export_model, s) for s in self.scales],
                             steps=None)

    def set_model(self, model):
        super().set_model(model.network)

    def _make_steps(self):
        from sisr.metrics import psnr_tf

        def loss(hr, sr):
            if isinstance(self.loss, keras.losses.Loss):
                return tf.reduce_mean(self.loss.call(hr, sr))
            return self.loss(hr, sr)

        def step(branch, shave, lr, hr):
            sr = tf.cast(branch(lr, training=False), tf.float32)
            return loss(hr, sr), psnr_tf(hr, sr, shave=shave)

        return [tf.function(functools.partial(step, branch, shave), reduce_retracing=True)
                for branch, shave in zip(self._plain.branches, self.shaves)]

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        self.export_model.set_weights(self.model.get_weights())
        if self._plain.steps is None:
            self._plain.steps = self._make_steps()
        means = {"val_loss": [], "val_psnr": []}
        for scale, step, dataset in zip(self.scales, self._plain.steps, self.datasets):
            losses, scores = [], []
            for lr, hr in dataset:
                loss, psnr = step(lr, hr)
                losses.append(float(loss) * int(lr.shape[0]))
                scores.extend(np.atleast_1d(psnr.numpy()).tolist())
            values = {"val_loss": float(np.sum(losses) / max(len(scores), 1)),
                      "val_psnr": float(np.mean(scores)) if scores else float("nan")}
            for key, value in values.items():
                logs[f"{key}_x{scale}"] = value
                means[key].append(value)
        for key, values in means.items():
            logs[key] = float(np.mean(values))


class MultiScaleRunDirectory(RunDirectory):
    """`RunDirectory` of a multi-scale run: models are the multi-scale network, backups
    `backup/epoch-EEE.weights.h5` (network and optimizer state)."""

    backup_suffix = ".weights.h5"

    def export_weights(self):
        return self.model.network.get_weights()

    def save_backup(self, path):
        save_backup(self.model, path)


class MultiScaleTrainer(Trainer):
    """`Trainer` of a multi-scale run (`train_scales`): the multi-scale network, one
    dataset pair per scale, a random scale per batch, validation and results per scale."""

    run_directory = MultiScaleRunDirectory

    def __init__(self, config):
        super().__init__(config)
        self.scales = list(config["train_scales"])
        self.shaves = [metrics.div2k_shave(s) for s in self.scales]

    def _network_kwargs(self):
        return dict(builder_kwargs(self.config), scale=None, branch_scales=self.scales)

    def networks(self):
        """The multi-scale network (every branch), for the memory check."""
        kwargs = self._network_kwargs()
        keys = {k: k for k in kwargs}
        keys.update(scale="train_scales", branch_scales="train_scales")
        return [(get_spec(self.config["model"]), kwargs, keys)]

    def build_network(self):
        return get_spec(self.config["model"]).builder(**self._network_kwargs())

    def open_datasets(self):
        pairs = [open_datasets(dict(self.config, scale=s)) for s in self.scales]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def pipelines(self, datasets, initial_epoch=0):
        config = self.config
        seed = config["seed"]
        if seed is None:  # a random scale sequence (not reproducible, as the crops)
            seed = int(np.random.default_rng().integers(2**31))
        train_ds = train_stream(datasets[0], config, seed,
                                start=initial_epoch * config["steps_per_epoch"])
        crop = None if config.get("benchmark") else config["valid_crop"]
        valid = [data.valid(crop=crop).map(_as_float) for data in datasets[1]]
        return train_ds, valid

    def build(self, resume):
        network = self.build_network()
        if self.pretrained is not None and not resume:
            self.seed_from_pretrained(network)
        self.loss = make_loss(self.config)
        model = MultiScaleSR(network, self.scales)
        model.compile(make_optimizer(self.config), self.loss)
        return model

    def seed_from_pretrained(self, model):
        names = copy_pretrained(model, self.pretrained, None)
        log.info("copied %d layers from %s", len(names), self.config["pretrained_model"])

    def prepare(self, resume=False):
        path = self.config["pretrained_model"]
        if path and not resume and self.pretrained is None:
            with precision("float32"):
                pretrained = load_model(path)
                try:
                    copy_pretrained(self.build_network(), pretrained, None)
                except PretrainedMismatch as err:
                    raise PretrainedMismatch(f"--pretrained-model {path}: {err}") from None
            self.pretrained = pretrained
        return super().prepare(resume)

    def restore(self, model, backup_path):
        model.load_weights(backup_path)

    def callbacks(self, model, export_model, valid_ds, run_dir, state):
        guard = StopOnNonFiniteLoss()
        run_cb = self.run_directory(run_dir, export_model, monitor="val_psnr", state=state)
        validation = MultiScaleValidation(valid_ds, export_model, self.loss, self.shaves,
                                          self.scales)
        return guard, run_cb, [guard, validation, run_cb]

    def result(self, run_dir, model, final, datasets, **extra):
        """Scores every scale of the final network against bicubic; `psnr` and
        `bicubic_psnr` are the means over the scales, `per_scale` has each."""
        at_scale = get_spec(final.builder).at_scale
        per_scale = {}
        for scale, shave, data in zip(self.scales, self.shaves, datasets[1]):
            psnr, bicubic, count = compare_with_bicubic(at_scale(final, scale), data, shave)
            per_scale[f"x{scale}"] = {"psnr": psnr, "bicubic_psnr": bicubic,
                                      "valid_images": count, "shave": shave}
        result = {
            "run_dir": run_dir,
            "epochs": self.config["epochs"],
            "iterations": int(model.optimizer.iterations.numpy()),
            **extra,
            "scales": self.scales,
            "valid_images": per_scale[f"x{self.scales[0]}"]["valid_images"],
            "shave": self.shaves[0],
            "psnr": float(np.mean([v["psnr"] for v in per_scale.values()])),
            "bicubic_psnr": float(np.mean([v["bicubic_psnr"] for v in per_scale.values()])),
            "per_scale": per_scale,
        }
        atomic_write_json(os.path.join(run_dir, "result.json"), result)
        return result


def trainer_class(config):
    """The trainer of a resolved configuration: `MultiScaleTrainer` for `train_scales`."""
    return MultiScaleTrainer if config.get("train_scales") else Trainer
