"""Pixel-loss training of a generator from a resolved configuration (see `sisr.training.config`)."""

import contextlib
import datetime
import logging
import os

import keras
import numpy as np
import tensorflow as tf

from sisr import metrics
from sisr.training.callbacks import (
    NonFiniteLoss, RunDirectory, StopOnNonFiniteLoss, Validation, read_state,
)
from sisr.training.config import builder_kwargs, learning_rate_values
from sisr.fileio import atomic_write_json
from sisr.inference import resolve
from sisr.model.registry import get_spec
from sisr.saving import load_model

log = logging.getLogger(__name__)


class PretrainedMismatch(ValueError):
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
    """`default`: one device; `mirrored`: all local GPUs, else all logical CPU devices;
    `multi-worker`: MultiWorkerMirroredStrategy configured by TF_CONFIG."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        # CPU replicas: reduce on one device; collective all-reduce on CPUs gains nothing
        # and its instance keys can clash with another strategy in the same process.
        cpus = tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(
            [d.name for d in cpus], cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}")


def build_model(config):
    return get_spec(config["model"]).builder(**builder_kwargs(config))


def make_optimizer(config):
    boundaries = list(config["lr_decay_steps"])
    values = learning_rate_values(config)
    lr = (keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
          if boundaries else values[0])
    if config["optimizer"] == "weight_norm_adam":
        from sisr.optimizers import WeightNormAdam

        return WeightNormAdam(learning_rate=lr, beta_1=0.9, beta_2=0.999)
    return keras.optimizers.Adam(learning_rate=lr, beta_1=0.9, beta_2=0.999)


def make_loss(config):
    return {"l1": keras.losses.MeanAbsoluteError, "mse": keras.losses.MeanSquaredError}[
        config["loss"]]()


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
    # A resumed run offsets the data seed so that it does not replay the same batches.
    data_seed = None if seed is None else seed + initial_epoch
    train_ds = train_data.train(batch_size=config["batch_size"], lr_patch=config["lr_patch"],
                                seed=data_seed).map(_as_float)
    crop = None if config.get("benchmark") else config["valid_crop"]
    valid_ds = valid_data.valid(crop=crop).map(_as_float)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return train_ds.with_options(options), valid_ds


def new_run_dir(outdir, profile):
    """`OUTDIR/YYYYmmdd-HHMMSS-<profile>/`, made unique with a suffix if needed."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(outdir, f"{stamp}-{profile}")
    path, n = base, 1
    while os.path.exists(path):
        n += 1
        path = f"{base}-{n}"
    os.makedirs(path)
    return path


def compare_with_bicubic(model, dataset, shave):
    """Mean RGB PSNR over the full images of `dataset`: model vs MATLAB bicubic."""
    from sisr.imresize import imresize

    scores, bicubic = [], []
    for _, lr, hr in dataset.pairs():
        sr = resolve(model, lr[None])[0].numpy()
        scores.append(metrics.psnr(hr, sr, shave=shave))
        bicubic.append(metrics.psnr(hr, imresize(lr, dataset.scale), shave=shave))
    return float(np.mean(scores)), float(np.mean(bicubic)), len(scores)


def train(config, run_dir, resume=False, verbose=1):
    """Trains as `config` says, keeping `run_dir` up to date; returns a result dict.

    With `resume=True`, continues from the run directory's backup: same optimiser state
    and schedule position, from the first epoch that had not completed.
    """
    state = read_state(run_dir) if resume else None
    if resume and state is None:
        raise ValueError(f"{run_dir} has no completed epoch to resume from")
    initial_epoch = state["epoch"] if state else 0
    if not resume:
        atomic_write_json(os.path.join(run_dir, "config.json"), config)

    train_data, valid_data = open_datasets(config)
    shave = metrics.div2k_shave(config["scale"])
    seed = config["seed"]
    if seed is not None:
        keras.utils.set_random_seed(seed)

    with precision("float32"):
        export_model = build_model(config)

    strategy = make_strategy(config["strategy"])
    with precision(config["precision"]), strategy.scope():
        model = build_model(config)
        if config["pretrained_model"] and not resume:
            pretrained = load_model(config["pretrained_model"])
            names = copy_pretrained(model, pretrained, config["scale"])
            log.info("copied %d layers from %s", len(names), config["pretrained_model"])
        loss = make_loss(config)
        model.compile(optimizer=make_optimizer(config), loss=loss,
                      metrics=[metrics.PSNR(shave=shave)])
        if resume:
            model.optimizer.build(model.trainable_variables)
            model.load_weights(os.path.join(run_dir, "backup", state["backup"]))
            log.info("resuming %s after epoch %d (optimizer step %d)", run_dir,
                     initial_epoch, int(model.optimizer.iterations.numpy()))

        train_ds, valid_ds = make_pipelines(config, (train_data, valid_data), initial_epoch)

        guard = StopOnNonFiniteLoss()
        run_cb = RunDirectory(run_dir, export_model, monitor="val_psnr", state=state)
        callbacks = [
            guard,
            # Before RunDirectory and TensorBoard, which read the val_* logs it adds.
            Validation(valid_ds, export_model, loss, shave),
            run_cb,
            keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), write_graph=False),
        ]
        model.fit(train_ds, epochs=config["epochs"], steps_per_epoch=config["steps_per_epoch"],
                  initial_epoch=initial_epoch, callbacks=callbacks,
                  shuffle=False, verbose=verbose)

    if guard.failure:
        epoch, batch, loss = guard.failure
        kept = run_cb.best_model or "no model (no epoch completed)"
        raise NonFiniteLoss(
            f"training stopped: loss became {loss} at epoch {epoch + 1}, batch {batch + 1}; "
            f"kept the last good model: {kept} (try a lower --learning-rate)"
        )

    best_path = os.path.join(run_dir, "best.keras")
    final = load_model(best_path) if os.path.isfile(best_path) else export_model
    return write_result(run_dir, config, model, final, valid_data, shave,
                        best_model=run_cb.best_model)


def write_result(run_dir, config, model, final, valid_data, shave, **extra):
    """Scores `final` against bicubic on the full validation images and writes
    `result.json`; returns the result dict."""
    model_psnr, bicubic_psnr, count = compare_with_bicubic(final, valid_data, shave)
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
