"""Callbacks that keep a run directory: models, best model, backup for resuming, CSV log."""

import csv
import io
import json
import logging
import math
import os
import re
import zipfile

import h5py
import keras
import numpy as np
import tensorflow as tf

from sisr.errors import SisrError, UsageError
from sisr.fileio import atomic_copy, atomic_write_json, atomic_write_text, is_temp_name
from sisr.saving import save_model

log = logging.getLogger(__name__)

BACKUP_DIR = "backup"
STATE_FILE = "state.json"


class NonFiniteLoss(SisrError, RuntimeError):
    """Training produced a NaN or infinite loss."""


class DamagedRun(UsageError):
    """A run directory whose backup cannot be resumed from."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first batch where a logged loss (`loss`, `content_loss`, ...)
    is NaN or infinite, and remembers where: `failure = (epoch, batch, "key = value")`."""

    def __init__(self):
        super().__init__()
        self.failure = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        for key, value in (logs or {}).items():
            if "loss" in key and not math.isfinite(float(value)):
                self.failure = (self._epoch, batch, f"{key} = {float(value)}")
                self.model.stop_training = True
                return


class Validation(keras.callbacks.Callback):
    """Validates a float32 copy of the trained model after every epoch.

    Runs outside `fit`'s distributed evaluation so that full images of any size work on
    any number of replicas, and scores the model as it will be deployed (float32, clip +
    round). Adds `val_loss` and `val_psnr` to the epoch logs seen by later callbacks.

    Args:
        dataset: `tf.data.Dataset` of `(lr, hr)` float32 batches.
        export_model: an uncompiled float32 model of the same architecture.
        loss: the training loss (a `keras.losses.Loss`).
        shave: border pixels ignored by the PSNR.
    """

    def __init__(self, dataset, export_model, loss, shave):
        super().__init__()
        self.dataset = dataset
        self.export_model = export_model
        self.loss = loss
        self.shave = shave
        self._step = None

    def _make_step(self):
        from sisr.metrics import psnr_tf

        # A Keras loss called under a strategy's scope divides by the replica count (its
        # share of a global batch); here each worker scores whole batches itself.
        loss = self.loss
        if isinstance(loss, keras.losses.Loss):
            def loss(hr, sr):
                return tf.reduce_mean(self.loss.call(hr, sr))

        @tf.function(reduce_retracing=True)
        def step(lr, hr):
            sr = tf.cast(self.export_model(lr, training=False), tf.float32)
            return loss(hr, sr), psnr_tf(hr, sr, shave=self.shave)

        return step

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        self.export_model.set_weights(self.model.get_weights())
        if self._step is None:
            self._step = self._make_step()
        losses, scores = [], []
        for lr, hr in self.dataset:
            loss, psnr = self._step(lr, hr)
            losses.append(float(loss) * int(lr.shape[0]))
            scores.extend(np.atleast_1d(psnr.numpy()).tolist())
        logs["val_loss"] = float(np.sum(losses) / max(len(scores), 1))
        logs["val_psnr"] = float(np.mean(scores)) if scores else float("nan")
        log.debug("epoch %d: val_loss %.4f, val_psnr %.3f dB", epoch + 1, logs["val_loss"],
                 logs["val_psnr"])


def _finite(logs):
    """False if a logged number is NaN or infinite, except a PSNR of +inf: an exactly
    reproduced patch (a flat one, say) is a perfect score, not a diverged run."""
    for key, value in logs.items():
        if not (isinstance(value, (int, float)) or hasattr(value, "__float__")):
            continue
        value = float(value)
        if not (math.isfinite(value) or ("psnr" in key and value == math.inf)):
            return False
    return True


def read_state(run_dir):
    """The backup state of a run directory, or None if no epoch has completed."""
    path = os.path.join(run_dir, BACKUP_DIR, STATE_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


_EPOCH_FILE = re.compile(r"epoch-(\d+)[.-]")


def remove_leftovers(run_dir, epoch, models_through=None):
    """Removes what a killed run left behind: temporary files of interrupted writes, and
    the backups of epochs after `epoch` (the last completed one, which a resumed run trains
    again after) and the models of epochs after `models_through` (default `epoch`; later
    when an earlier backup is resumed from: the models of completed epochs are kept)."""
    models_through = epoch if models_through is None else models_through
    for folder, last in ((run_dir, None), (os.path.join(run_dir, "models"), models_through),
                         (os.path.join(run_dir, BACKUP_DIR), epoch)):
        for name in os.listdir(folder):
            match = _EPOCH_FILE.match(name)
            later = last is not None and match and int(match.group(1)) > last
            if is_temp_name(name) or later:
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    log.info("removing %s, left by an interrupted run", path)
                    os.remove(path)


def backup_problem(path):
    """Why the backup `path` cannot be read back, or None: a `.keras` archive's members
    are checked against their checksums, every dataset of an HDF5 file is read."""
    if not os.path.isfile(path):
        return "missing"
    try:
        if path.endswith(".keras"):
            if not zipfile.is_zipfile(path):
                return "not a complete .keras archive (truncated?)"
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
                if bad is not None:
                    return f"its member {bad} is corrupt"
                if "model.weights.h5" not in archive.namelist():
                    return "no model.weights.h5 in the archive"
            return None
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset)
                         else None)
    except (OSError, EOFError, RuntimeError, ValueError, KeyError, zipfile.BadZipFile) as err:
        return f"unreadable: {err}"
    return None


def _state_problem(state):
    if not isinstance(state, dict):
        return "not a JSON object"
    for key in ("epoch", "iterations"):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"`{key}` is {value!r}, not a count"
    backup = state.get("backup")
    if not isinstance(backup, str) or os.path.basename(backup) != backup \
            or not _EPOCH_FILE.match(backup):
        return f"`backup` is {backup!r}, not a backup file name"
    return None


def resume_point(run_dir, backup_suffix=".keras"):
    """`(state, warning)`: the backup state to resume `run_dir` from, or `(None, None)` if
    no epoch has completed.

    When the backup that `backup/state.json` names is damaged, the latest intact earlier
    backup is resumed from instead, with a `warning` saying so: its state keeps the best
    model and `models_through` (the last completed epoch, whose models are kept). Raises
    DamagedRun, naming the file, if `state.json` is damaged or no backup is intact.
    Reads only: the damaged backup is removed by `RunDirectory` with the other backups of
    epochs that are trained again.
    """
    backup_dir = os.path.join(run_dir, BACKUP_DIR)
    path = os.path.join(backup_dir, STATE_FILE)
    if not os.path.isfile(path):
        return None, None
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        problem = _state_problem(state)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = str(err)
    if problem:
        raise DamagedRun(
            f"--resume {run_dir}: {path} is damaged ({problem}); it records the last "
            "completed epoch and cannot be rebuilt: restore it from a copy, or start a new "
            f"run with --pretrained-model set to a model in {os.path.join(run_dir, 'models')}")
    damaged = os.path.join(backup_dir, state["backup"])
    problem = backup_problem(damaged)
    if problem is None:
        return state, None
    last = state["epoch"]
    per_epoch, uneven = divmod(state["iterations"], last) if last else (0, 1)
    earlier = sorted(((int(m.group(1)), name) for name in os.listdir(backup_dir)
                      if name.endswith(backup_suffix) and (m := _EPOCH_FILE.match(name))
                      and 0 < int(m.group(1)) < last), reverse=True)
    for epoch, name in earlier if not uneven else ():
        if backup_problem(os.path.join(backup_dir, name)) is None:
            again = f"epoch {last} is" if epoch + 1 == last else \
                f"epochs {epoch + 1}-{last} are"
            warning = (f"{damaged} is damaged ({problem}); resuming from epoch {epoch} "
                       f"({name}) instead: {again} trained again, "
                       "the damaged backup is removed and the models saved so far are kept")
            return {**state, "epoch": epoch, "iterations": epoch * per_epoch,
                    "backup": name, "models_through": last}, warning
    raise DamagedRun(
        f"--resume {run_dir}: {damaged} is damaged ({problem}) and no earlier backup is "
        "intact, so the run cannot be resumed; start a new run with --pretrained-model set "
        f"to a model in {os.path.join(run_dir, 'models')}")


class RunDirectory(keras.callbacks.Callback):
    """After every completed epoch with finite losses, atomically:

    - appends the epoch's logs to `training.csv`;
    - saves `models/epoch-EEE-psnr-PP.PP.keras` and `best.keras` when the validation PSNR
      improves (standalone float32 models, no optimiser: what `sisr.resolve` needs);
    - saves `backup/epoch-EEE.keras` (model + optimiser state), then `backup/state.json`
      pointing at it, then removes older backups.

    Args:
        run_dir: the run directory.
        export_model: an uncompiled model of the same architecture (built in float32),
            into which the trained weights are copied for the standalone saves.
        monitor: the log key to maximise, e.g. "val_psnr".
        state: the state read back when resuming (best score, CSV rows kept).
    """

    def __init__(self, run_dir, export_model, monitor="val_psnr", state=None):
        super().__init__()
        self.run_dir = run_dir
        self.export_model = export_model
        self.monitor = monitor
        self.scored_on = None  # what the monitored score is measured on, for the log
        state = state or {}
        self.best = state.get("best")
        self.best_model = state.get("best_model")
        self.skipped = []
        os.makedirs(os.path.join(run_dir, "models"), exist_ok=True)
        os.makedirs(os.path.join(run_dir, BACKUP_DIR), exist_ok=True)
        remove_leftovers(run_dir, state.get("epoch", 0), state.get("models_through"))
        if self.best_model:  # the final model may be of an epoch that was rolled back
            atomic_copy(os.path.join(run_dir, self.best_model),
                        os.path.join(run_dir, self.final_model))

    # -- CSV -------------------------------------------------------------------------
    def _csv_path(self):
        return os.path.join(self.run_dir, "training.csv")

    def _read_rows(self, before_epoch):
        if not os.path.isfile(self._csv_path()):
            return []
        with open(self._csv_path(), newline="") as f:
            return [row for row in csv.DictReader(f) if int(row["epoch"]) < before_epoch]

    def _write_csv(self, epoch, logs):
        rows = self._read_rows(epoch)
        rows.append({"epoch": epoch, **{k: float(v) for k, v in logs.items()}})
        fields = ["epoch"] + sorted({k for row in rows for k in row} - {"epoch"})
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self._csv_path(), out.getvalue())

    # -- hooks for subclasses (e.g. the SRGAN run directory) ---------------------------
    backup_suffix = ".keras"
    final_model = "best.keras"  # the copy of the model file that `best_model` names

    def export_weights(self):
        """The weights copied into `export_model` for the standalone saves."""
        return self.model.get_weights()

    def save_backup(self, path):
        """Saves everything needed to resume (model and optimiser state) to `path`."""
        save_model(self.model, path)

    def save_models(self, epoch, score):
        """Saves the standalone model when `score` (the monitored log) improves."""
        if score is None:
            save_model(self.export_model, os.path.join(self.run_dir, "last.keras"))
            return
        if self.best is not None and score <= self.best:
            return
        self.best = float(score)
        name = f"epoch-{epoch + 1:03d}-psnr-{score:.2f}.keras"
        path = os.path.join(self.run_dir, "models", name)
        save_model(self.export_model, path)
        atomic_copy(path, os.path.join(self.run_dir, self.final_model))
        self.best_model = os.path.join("models", name)
        log.info("epoch %d: %s improved to %.3f dB%s, saved %s", epoch + 1, self.monitor,
                 score, f" ({self.scored_on})" if self.scored_on else "", self.best_model)

    # -- epoch end -------------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if not _finite(logs):
            self.skipped.append(epoch)
            log.error("epoch %d ended with a non-finite loss/metric %s: nothing saved",
                      epoch + 1, logs)
            return
        self._write_csv(epoch, logs)
        self.export_model.set_weights(self.export_weights())
        self.save_models(epoch, logs.get(self.monitor))

        # The backup first, then the state that points at it, then older backups: a
        # crash at any point leaves a state.json whose backup exists.
        backup_name = f"epoch-{epoch + 1:03d}{self.backup_suffix}"
        backup_dir = os.path.join(self.run_dir, BACKUP_DIR)
        self.save_backup(os.path.join(backup_dir, backup_name))
        atomic_write_json(os.path.join(backup_dir, STATE_FILE), {
            "epoch": epoch + 1,
            "iterations": int(self.model.optimizer.iterations.numpy()),
            "backup": backup_name,
            "best": self.best,
            "best_model": self.best_model,
        })
        for name in os.listdir(backup_dir):
            if name.endswith(self.backup_suffix) and name != backup_name:
                os.remove(os.path.join(backup_dir, name))
