"""Pixel-loss training of a generator from a resolved configuration (see `sisr.training.config`)."""

import contextlib
import logging
import os

import keras
import numpy as np
import tensorflow as tf

from sisr import metrics
from sisr.errors import SisrError
from sisr.fileio import atomic_write_json
from sisr.inference import resolve
from sisr.model.registry import get_spec
from sisr.saving import load_model
from sisr.training import distributed, recipe
from sisr.training.callbacks import (
    BACKUP_DIR, NonFiniteLoss, RunDirectory, StopOnNonFiniteLoss, Validation, resume_point,
)
from sisr.training.config import ConfigError, builder_kwargs, learning_rate_values
from sisr.training.memory import check_fits

log = logging.getLogger(__name__)


class PretrainedMismatch(SisrError, ValueError):
    """A pretrained model whose layers do not fit the model being trained."""


@contextlib.contextmanager
def precision(policy):
    """Sets the global Keras dtype policy for the block and restores the previous one."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def make_strategy(name):
    """The tf.distribute strategy called `name` in `sisr.training.recipe.STRATEGIES`
    (`default`: one device; `mirrored`: all local GPUs, else all logical CPU devices;
    `multi-worker`: the cluster of TF_CONFIG or Slurm)."""
    try:
        entry = recipe.STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}") from None
    return entry.make()


def build_model(config):
    return get_spec(config["model"]).builder(**builder_kwargs(config))


ADAM = recipe.ADAM  # kept for callers of sisr.training.trainer.ADAM


def make_optimizer(config):
    """The optimizer `config["optimizer"]` names (`recipe.OPTIMIZERS`), with the
    piecewise-constant learning rate of `learning_rate`, `lr_decay_steps` and
    `lr_decay_factor`."""
    boundaries = list(config["lr_decay_steps"])
    values = learning_rate_values(config)
    lr = (keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
          if boundaries else values[0])
    return recipe.OPTIMIZERS[config["optimizer"]](config, lr)


def make_loss(config):
    """The pixel loss `config["loss"]` names (`recipe.LOSSES`)."""
    return recipe.LOSSES[config["loss"]](config)


def copy_pretrained(model, pretrained, scale):
    """Copies the weights of same-named layers from `pretrained` into `model`.

    Layers whose name carries a scale (`..._x4_...`) may be missing from the pretrained
    model (an x2 model seeds an x4 model); any other missing layer, or a layer with
    differently shaped weights, means another architecture and raises PretrainedMismatch.
    Returns the names of the copied layers.
    """
    source = {layer.name: layer for layer in pretrained.layers}
    copied, missing, mismatched = [], [], []
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        other = source.get(layer.name)
        if other is None:
            if f"_x{scale}_" not in layer.name:
                missing.append(layer.name)
            continue
        other_weights = other.get_weights()
        if [w.shape for w in other_weights] != [w.shape for w in weights]:
            mismatched.append(f"{layer.name} {[w.shape for w in weights]} vs "
                              f"{[w.shape for w in other_weights]}")
            continue
        copied.append((layer, other_weights))
    if missing or mismatched or not copied:
        details = []
        if missing:
            details.append(f"missing in the pretrained model: {', '.join(missing)}")
        if mismatched:
            details.append(f"different shapes: {'; '.join(mismatched)}")
        raise PretrainedMismatch(
            f"pretrained model {pretrained.name!r} does not match {model.name!r}: "
            + (" | ".join(details) or "no layer in common")
        )
    for layer, weights in copied:
        layer.set_weights(weights)
    return [layer.name for layer, _ in copied]


def open_datasets(config):
    from sisr.data import open_dataset

    train = open_dataset(config["dataset"], "train", config["scale"],
                         downgrade=config["downgrade"], images=config["train_images"])
    valid = open_dataset(config["dataset"], "valid", config["scale"],
                         downgrade=config["downgrade"], images=config["valid_images"])
    return train, valid


def _as_float(lr, hr):
    return tf.cast(lr, tf.float32), tf.cast(hr, tf.float32)


def make_pipelines(config, datasets, initial_epoch=0):
    """float32 `(train, valid)` tf.data pipelines of a `(train, valid)` dataset pair.

    Validation uses full images with `benchmark`, else LR centre crops of `valid_crop`.
    Raises ValueError if the images are too small for the patch or crop size.
    """
    train_data, valid_data = datasets
    seed = config["seed"]

    # A seeded run resumed after epoch k continues the stream of batches where the
    # uninterrupted run would be: the same batches from epoch k on.
    skip = 0 if seed is None else initial_epoch * config["steps_per_epoch"]
    degradation = config.get("degradation")
    if degradation is not None:
        from sisr.data.degradations import load_preset

        # Read here, not inside `build` (traced by AutoGraph, which would convert the
        # preset file's reading and warn that it cannot).
        degradation = load_preset(degradation)

    def build():
        return train_data.train(batch_size=config["batch_size"], lr_patch=config["lr_patch"],
                                seed=seed, skip_batches=skip,
                                degradation=degradation).map(_as_float)

    if seed is None:
        train_ds = build()
    else:
        # Keras' fit under a strategy iterates the data once before training (to build the
        # model), which advances seeded shuffles; a pipeline built anew by every iteration
        # gives the same batches under every strategy and number of workers.
        train_ds = tf.data.Dataset.range(1).flat_map(lambda _: build())
    crop = None if config.get("benchmark") else config["valid_crop"]
    valid_ds = valid_data.valid(crop=crop).map(_as_float)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return train_ds.with_options(options), valid_ds


def validation_images(config):
    """What the per-epoch validation scores: "full images" or "LR centre crops of N px"."""
    if config.get("benchmark"):
        return "full images"
    return f"LR centre crops of {config['valid_crop']} px"


def new_run_dir(outdir, profile, strategy=None):
    """`OUTDIR/YYYYmmdd-HHMMSS-<profile>/`, made unique with a suffix if needed; under a
    multi-worker strategy, the chief's (see `sisr.training.distributed.new_run_dir`)."""
    return distributed.new_run_dir(outdir, profile, strategy)


def compare_with_bicubic(model, dataset, shave):
    """Mean RGB PSNR over the full images of `dataset`: model vs MATLAB bicubic."""
    from sisr.imresize import imresize

    scores, bicubic = [], []
    for _, lr, hr in dataset.pairs():
        sr = resolve(model, lr[None])[0]
        scores.append(metrics.psnr(hr, sr, shave=shave))
        bicubic.append(metrics.psnr(hr, imresize(lr, dataset.scale), shave=shave))
    return float(np.mean(scores)), float(np.mean(bicubic)), len(scores)


class Trainer:
    """Trains a generator with a pixel loss as a resolved configuration says, keeping a run
    directory up to date (see `RunDirectory`).

    `run` is the skeleton that every training shares: seeding, the float32 export model,
    the strategy and precision scopes, resuming from the backup, the callbacks, `fit`, the
    non-finite-loss report and the final comparison with bicubic. Subclasses change its
    hooks (`prepare`, `build`, `initialize`, `restore`, `validation_loss`, the
    `run_directory` and `validation` callback classes), as `sisr.training.gan.GANTrainer`
    does for SRGAN fine-tuning.
    """

    #: The key of the result naming the model file in `models/` that was kept last.
    result_key = "best_model"
    #: What the trained network is called in reports.
    trained = "model"
    run_directory = RunDirectory
    validation = Validation

    def __init__(self, config):
        self.config = config
        #: The standalone model file that `run` scores at the end and the CLI reports.
        self.final_model = self.run_directory.final_model
        self.shave = metrics.div2k_shave(config["scale"])
        self.datasets = None
        self.pretrained = None  # the loaded --pretrained-model, once checked
        self.strategy = None
        self._memory_checked = False
        self._resume = {}  # run directory -> its resume state

    def networks(self):
        """`(spec, builder kwargs, config key of each argument)` of every network trained."""
        spec = get_spec(self.config["model"])
        kwargs = builder_kwargs(self.config)
        return [(spec, kwargs, {k: k for k in kwargs})]

    def check_memory(self):
        """Raises ConfigError, with an estimate, if the networks' weights and optimiser
        state cannot fit in this machine's memory; builds nothing (see
        `sisr.training.memory`)."""
        if not self._memory_checked:
            check_fits(self.networks(), getattr(self.config, "origins", {}))
            self._memory_checked = True

    def resume_state(self, run_dir):
        """The backup state that resuming `run_dir` starts from (`callbacks.resume_point`:
        an earlier intact backup if the last one is damaged, with a warning); raises
        ConfigError if no epoch has completed and DamagedRun if nothing can be resumed.
        Reads only."""
        if run_dir not in self._resume:
            state, warning = resume_point(run_dir, self.run_directory.backup_suffix)
            if state is None:
                raise ConfigError(f"{run_dir} has no completed epoch to resume from")
            if warning:
                log.warning("%s", warning)
            self._resume[run_dir] = state
        return self._resume[run_dir]

    def run_name(self):
        """The run directory's name after its time stamp."""
        return self.config["profile"] or self.config["model"]

    def start(self):
        """Creates the distribution strategy (a multi-worker one must exist before
        TensorFlow runs any op) and checks that the global batch splits evenly over its
        replicas; returns it."""
        if self.strategy is None:
            recipe.STRATEGIES[self.config["strategy"]].check(self.config)
            self.strategy = make_strategy(self.config["strategy"])
            replicas = self.strategy.num_replicas_in_sync
            if self.config["batch_size"] % replicas:
                raise ConfigError(
                    f"--batch-size {self.config['batch_size']} (the global batch) does not "
                    f"split evenly over the {replicas} replicas of --strategy "
                    f"{self.config['strategy']}; use a multiple of {replicas}")
        return self.strategy

    def prepare(self, resume=False):
        """Checks the inputs so that bad ones fail before a run directory exists: checks
        that the networks fit in memory (`check_memory`), opens the datasets, checks that
        patches and crops fit their images and, for a new run, that the pretrained model
        fits the model."""
        self.check_memory()
        strategy = self.start()
        if not resume and self.config["init"] != "default" and self.config["seed"] is None \
                and distributed.is_multi_worker(strategy):
            # Every worker initialises on its own first batch: the same one only when seeded.
            raise ConfigError(f"`init` {self.config['init']} with --strategy multi-worker "
                              "needs a --seed (every worker initialises on its own batch)")
        if self.datasets is None:
            self.datasets = self.open_datasets()
            self.pipelines(self.datasets)
        path = self.config["pretrained_model"]
        if path and not resume and self.pretrained is None:
            with precision("float32"):
                pretrained = load_model(path)
                try:
                    copy_pretrained(self.build_network(), pretrained, self.config["scale"])
                except PretrainedMismatch as err:
                    raise PretrainedMismatch(f"--pretrained-model {path}: {err}") from None
            self.pretrained = pretrained
        return self.datasets

    def seed_from_pretrained(self, model):
        """Copies the checked pretrained model's layers into `model` (a new run's)."""
        names = copy_pretrained(model, self.pretrained, self.config["scale"])
        log.info("copied %d layers from %s", len(names), self.config["pretrained_model"])

    # -- hooks ---------------------------------------------------------------------------
    def build_network(self):
        """The network trained (uncompiled), as the configuration says."""
        return build_model(self.config)

    def open_datasets(self):
        """The datasets that `pipelines` reads (checked by `prepare`)."""
        return open_datasets(self.config)

    def pipelines(self, datasets, initial_epoch=0):
        """`(train, valid)` tf.data pipelines (see `make_pipelines`)."""
        return make_pipelines(self.config, datasets, initial_epoch)

    def build(self, resume):
        """The compiled model to `fit` (called inside the strategy and precision scopes)."""
        config = self.config
        model = self.build_network()
        if self.pretrained is not None and not resume:
            self.seed_from_pretrained(model)
        self.loss = make_loss(config)
        model.compile(optimizer=make_optimizer(config), loss=self.loss,
                      metrics=[metrics.PSNR(shave=self.shave)])
        return model

    def initialize(self, model, train_ds):
        """Applies `config["init"]` (`recipe.INITS`) to a new run's model on the first
        training batch (the batch `fit` starts with when the run has a seed)."""
        name = self.config["init"]
        if name == "default":
            return
        lr, _ = next(iter(train_ds))
        recipe.INITS[name](model, lr)
        log.info("initialised %s with `init` %s on a batch of %d", self.trained, name,
                 int(lr.shape[0]))

    def restore(self, model, backup_path):
        """Loads the backup of the last completed epoch (weights and optimizer state)."""
        model.optimizer.build(model.trainable_variables)
        model.load_weights(backup_path)

    def validation_loss(self, model):
        """The loss reported as `val_loss`."""
        return self.loss

    def callbacks(self, model, export_model, valid_ds, run_dir, state):
        """(guard, run-directory callback, every callback in order)."""
        guard = StopOnNonFiniteLoss()
        run_cb = self.run_directory(run_dir, export_model, monitor="val_psnr", state=state)
        run_cb.scored_on = validation_images(self.config)
        # Validation before RunDirectory and TensorBoard, which read the val_* logs it adds.
        validation = self.validation(valid_ds, export_model, self.validation_loss(model),
                                     self.shave)
        return guard, run_cb, [guard, validation, run_cb]

    # -- the skeleton --------------------------------------------------------------------
    def run(self, run_dir, resume=False, verbose=1):
        """Trains, keeping `run_dir` up to date; returns the result dict (`result.json`).

        With `resume=True`, continues from the run directory's backup: same optimizer
        state and schedule position, from the first epoch that had not completed.

        Under a multi-worker strategy only the chief writes `run_dir` and returns the
        result; the other workers return None (see `sisr.training.distributed`).
        """
        config = self.config
        strategy = self.start()
        chief = distributed.is_chief(strategy)
        state = self.resume_state(run_dir) if resume else None
        initial_epoch = state["epoch"] if state else 0
        if chief:
            atomic_write_json(os.path.join(run_dir, "config.json"), config)
        else:
            verbose = 0  # the chief reports progress
        datasets = self.prepare(resume)
        if config["seed"] is not None:
            keras.utils.set_random_seed(config["seed"])

        with precision("float32"):
            export_model = self.build_network()
        with precision(config["precision"]), strategy.scope(), \
                distributed.output_dir(run_dir, strategy) as out_dir:
            train_ds, valid_ds = self.pipelines(datasets, initial_epoch)
            model = self.build(resume)
            if strategy.num_replicas_in_sync > 1:
                distributed.synchronize_batch_norm(model)
            if resume:
                self.restore(model, os.path.join(run_dir, BACKUP_DIR, state["backup"]))
                check_restored(model, state, run_dir)
                log.info("resuming %s after epoch %d (step %d)", run_dir, initial_epoch,
                         state["iterations"])
            else:
                self.initialize(model, train_ds)
            # Other workers repeat the chief's saves into their own temporary directory,
            # starting afresh (no resumed state to restore there).
            guard, run_cb, callbacks = self.callbacks(model, export_model, valid_ds, out_dir,
                                                      state if chief else None)
            if chief:
                callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"),
                                                             write_graph=False))
            model.fit(train_ds, epochs=config["epochs"],
                      steps_per_epoch=config["steps_per_epoch"], initial_epoch=initial_epoch,
                      callbacks=callbacks, shuffle=False, verbose=verbose)

        if guard.failure:
            epoch, batch, what = guard.failure
            kept = run_cb.best_model or "no model (no epoch completed)"
            raise NonFiniteLoss(f"training stopped: {what} at epoch {epoch + 1}, batch "
                                f"{batch + 1}; kept the last good model: {kept} (try a lower "
                                "--learning-rate)")
        if not chief:
            return None
        final_path = os.path.join(run_dir, self.final_model)
        if not os.path.isfile(final_path):
            raise NonFiniteLoss(f"training ended without a usable model: no epoch ended with "
                                f"finite losses and validation scores, so {final_path} was "
                                "never written (try a lower --learning-rate)")
        final = load_model(final_path)
        return self.result(run_dir, model, final, datasets,
                           **{self.result_key: run_cb.best_model})

    def result(self, run_dir, model, final, datasets, **extra):
        """Scores the final model and writes `result.json` (see `write_result`)."""
        return write_result(run_dir, self.config, model, final, datasets[1], self.shave,
                            **extra)


def check_restored(model, state, run_dir):
    """Raises ConfigError unless the optimizer resumed at the saved step (Keras only warns
    when a backup's optimizer variables do not fit)."""
    restored = int(model.optimizer.iterations.numpy())
    if restored != int(state["iterations"]):
        raise ConfigError(
            f"--resume {run_dir}: the optimizer state was not restored (step {restored}, "
            f"expected {state['iterations']}); was the run saved with another precision or "
            "optimizer?")


def train(config, run_dir, resume=False, verbose=1):
    """Pixel-loss training of `config` into `run_dir` (see `Trainer.run`)."""
    return Trainer(config).run(run_dir, resume=resume, verbose=verbose)


def write_result(run_dir, config, model, final, valid_data, shave, scored=None, **extra):
    """Scores `final` against bicubic on the full validation images (unless `scored`
    gives `compare_with_bicubic`'s result already) and writes `result.json`; returns the
    result dict."""
    model_psnr, bicubic_psnr, count = scored or compare_with_bicubic(final, valid_data, shave)
    result = {
        "run_dir": run_dir,
        "epochs": config["epochs"],
        "iterations": int(model.optimizer.iterations.numpy()),
        **extra,
        "valid_images": count,
        "shave": shave,
        "psnr": model_psnr,
        "bicubic_psnr": bicubic_psnr,
    }
    atomic_write_json(os.path.join(run_dir, "result.json"), result)
    return result
