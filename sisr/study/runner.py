"""Small training studies: the same short training for several configurations, one table.

    from sisr import study
    table = study.run(["wdsr-b-8", {"profile": "wdsr-b-8", "num_res_blocks": 4}],
                      steps=200, seeds=(0, 1), out_dir="runs/my-study")

A cell is a profile name, or a dict of a `profile` and overrides: the keys that
`python -m sisr.train --set` takes (an optional `label` names the cell). Every cell is
resolved by `sisr.training.config.resolve` and trained by the `Trainer` of
`python -m sisr.train`, with the study's `steps` (split into `epochs`, each followed by the
trainer's validation), `seed` and `dataset`, then scored on the full validation images.

The table has one row per cell and seed (see `COLUMNS`): parameters, FLOPs per LR pixel
(`flops_per_lr_pixel`: 2 x the multiply-adds of every convolution per LR input pixel),
PSNR and SSIM (RGB, DIV2K shave, `sisr.metrics`), bicubic's PSNR, the median time per
training step, and the validation PSNR after each epoch. It is a pandas DataFrame if
pandas is installed, else a list of dicts.

Each cell and seed is kept in `out_dir` as `<label>/seed-<seed>/` (the run directory) and,
once done, `<label>/seed-<seed>.json` (its row, written atomically): running the same study
again skips the finished cells and resumes an unfinished one from its last completed epoch.

`python -m sisr.study spec.json` runs a study from a JSON file (`docs/study-example.json`)
and writes `study.csv` and `study.png` into the output directory.
"""

import json
import logging
import math
import os
import re
import shutil
import statistics
import tempfile
import time

from sisr.errors import UsageError
from sisr.fileio import atomic_write_json

log = logging.getLogger(__name__)

COLUMNS = ("cell", "seed", "model", "parameters", "flops_per_lr_pixel", "psnr", "ssim",
           "bicubic_psnr", "time_per_step", "steps", "val_psnr_per_epoch")
RESULT_VERSION = 1
# Study-wide settings that a cell may not override: they make the cells comparable.
STUDY_KEYS = ("epochs", "steps_per_epoch", "seed", "dataset", "profile")


class StudyError(UsageError):
    """A study specification or output directory that cannot be used."""


# -- cells ------------------------------------------------------------------------------
def _label(cell):
    if isinstance(cell, str):
        return cell
    label = cell.get("label")
    if label is not None:
        return str(label)
    parts = [str(cell.get("profile") or cell.get("model"))]
    parts += [f"{k}={json.dumps(v)}" for k, v in cell.items()
              if k not in ("profile", "model", "label")]
    return " ".join(parts)


def _dir_name(label):
    """A folder name for a label: unsafe characters replaced."""
    name = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", label).strip("._") or "cell"
    return name[:120]


def resolve_cells(cells, dataset="demo", steps=100, epochs=1, overrides=None, where="cells"):
    """`[(label, config without seed)]` of `cells`, each resolved and validated by
    `sisr.training.config.resolve`; raises StudyError (a one-line message naming the
    cell and key) for a cell that cannot be used."""
    from sisr.training import config as cfg

    if not isinstance(cells, (list, tuple)) or not cells:
        raise StudyError(f"`{where}` must be a non-empty list of profile names or objects, "
                         f"got {cells!r}")
    for key, value in (("steps", steps), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise StudyError(f"`{key}` must be a positive int, got {value!r}")
    if steps % epochs:
        raise StudyError(f"`steps` ({steps}) must be a multiple of `epochs` ({epochs})")
    if overrides is not None and not isinstance(overrides, dict):
        raise StudyError(f"`overrides` must be an object of configuration keys, got "
                         f"{overrides!r}")
    resolved, dirs = [], {}
    for i, cell in enumerate(cells, start=1):
        if isinstance(cell, str):
            profile, own = cell, {}
        elif isinstance(cell, dict):
            own = {k: v for k, v in cell.items() if k not in ("profile", "label")}
            profile = cell.get("profile")
            if profile is not None and not isinstance(profile, str):
                raise StudyError(f"{where}[{i}]: `profile` must be a profile name, got "
                                 f"{profile!r}")
        else:
            raise StudyError(f"{where}[{i}] must be a profile name or an object, got {cell!r}")
        label = _label(cell)
        fixed = sorted(set(own) & set(STUDY_KEYS))
        if fixed:
            raise StudyError(f"{where}[{i}] ({label}): `{fixed[0]}` is set by the study for "
                             "every cell, not per cell")
        values = {**(overrides or {}), **own, "dataset": dataset,
                  "epochs": epochs, "steps_per_epoch": steps // epochs}
        origins = {k: f"`{k}` in {where}[{i}] ({label})" for k in own}
        origins.update({k: f"`{k}` in overrides" for k in overrides or {} if k not in own})
        try:
            config = cfg.resolve(profile, values, origins=origins)
        except UsageError as err:
            raise StudyError(f"{where}[{i}] ({label}): {err}") from None
        name = _dir_name(label)
        if name in dirs:
            raise StudyError(f"{where}[{i}]: label {label!r} is the same as {where}"
                             f"[{dirs[name]}]'s (as a folder name); give one a `label`")
        dirs[name] = i
        resolved.append((label, config))
    return resolved


# -- measurements -----------------------------------------------------------------------
def conv_flops_per_pixel(model, size=32):
    """2 x the multiply-adds of every Conv2D (and Conv2DTranspose) of `model` per pixel of
    its (LR) input, from the output shapes of a symbolic `size` x `size` input; other
    layers (activations, additions, resizing) are not counted."""
    import keras

    convs = []

    def collect(layer):
        if isinstance(layer, keras.Model):
            for inner in layer.layers:
                collect(inner)
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            convs.append(layer)

    collect(model)
    tensors, owners = [], []
    for layer in convs:
        for node in layer._inbound_nodes:  # a shared layer counts once per call
            tensors.append((node.input_tensors[0], node.output_tensors[0]))
            owners.append(layer)
    if not tensors:
        return 0.0
    probe = keras.Model(model.inputs, [t for pair in tensors for t in pair])
    spec = keras.KerasTensor((1, size, size, int(model.inputs[0].shape[-1])))
    shapes = probe.compute_output_spec(spec)
    total = 0
    for j, layer in enumerate(owners):
        inp, out = shapes[2 * j].shape, shapes[2 * j + 1].shape
        kh, kw = layer.kernel_size
        groups = getattr(layer, "groups", 1) or 1
        if isinstance(layer, keras.layers.Conv2DTranspose):
            positions, cin = inp[1] * inp[2], inp[-1]
        else:
            positions, cin = out[1] * out[2], inp[-1]
        total += positions * kh * kw * (cin // groups) * out[-1]
    return 2.0 * total / (size * size)


def _step_timer():
    """A Keras callback keeping the duration of every training step after the first
    (which traces the step function) in `times`."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self._start, self._seen = [], None, 0

        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            # The loss guard before this callback has read the logs: the step is done.
            elapsed = time.perf_counter() - self._start
            self._seen += 1
            if self._seen > 1:
                self.times.append(elapsed)

    return StepTimer()


def _trainer(config, timer):
    from sisr.training.trainer import Trainer, write_result

    class StudyTrainer(Trainer):
        """`sisr.train`'s Trainer, also timing every step and scoring SSIM with PSNR."""

        scores = final = None

        def callbacks(self, *args):
            guard, run_cb, callbacks = super().callbacks(*args)
            return guard, run_cb, [*callbacks, timer]

        def result(self, run_dir, model, final, datasets, **extra):
            self.final, self.scores = final, score(final, datasets[1], self.shave)
            psnr, _, bicubic, count = self.scores
            return write_result(run_dir, self.config, model, final, datasets[1], self.shave,
                                scored=(psnr, bicubic, count), **extra)

    return StudyTrainer(config)


def _history(run_dir):
    import csv

    path = os.path.join(run_dir, "training.csv")
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda row: int(row["epoch"]))
    return [float(row["val_psnr"]) for row in rows if row.get("val_psnr")]


def score(model, dataset, shave):
    """(mean PSNR, mean SSIM, mean bicubic PSNR, images) over the full images of
    `dataset` (RGB, `shave` border pixels ignored)."""
    import numpy as np

    from sisr import metrics
    from sisr.imresize import imresize
    from sisr.inference import resolve

    psnrs, ssims, bicubic = [], [], []
    for _, lr, hr in dataset.pairs():
        sr = resolve(model, lr[None])[0]
        psnrs.append(metrics.psnr(hr, sr, shave=shave))
        ssims.append(metrics.ssim(hr, sr, shave=shave))
        bicubic.append(metrics.psnr(hr, imresize(lr, dataset.scale), shave=shave))
    return (float(np.mean(psnrs)), float(np.mean(ssims)), float(np.mean(bicubic)),
            len(psnrs))


# -- one cell ---------------------------------------------------------------------------
def _comparable(config):
    return json.loads(json.dumps(dict(config)))


def _check_same(path, saved, config, what):
    if saved != config:
        changed = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
        raise StudyError(f"{path}: {what} of another configuration (differs in "
                         f"{', '.join(changed)}); use another output directory or remove it")


def run_cell(label, config, seed, cell_dir, verbose=0):
    """Trains and scores one cell with one seed in `cell_dir` (resuming or skipping as the
    module's docstring says); returns its row."""
    from sisr.training.callbacks import read_state

    config = _comparable({**config, "seed": seed})
    result_path = os.path.join(cell_dir, f"seed-{seed}.json")
    run_dir = os.path.join(cell_dir, f"seed-{seed}")
    if os.path.isfile(result_path):
        with open(result_path) as f:
            stored = json.load(f)
        _check_same(result_path, stored.get("config"), config, "the result")
        log.info("%s, seed %d: done already (%s)", label, seed, result_path)
        return {column: stored["row"][column] for column in COLUMNS}

    state = read_state(run_dir) if os.path.isdir(run_dir) else None
    saved_config = os.path.join(run_dir, "config.json")
    if state is not None and os.path.isfile(saved_config):
        with open(saved_config) as f:
            _check_same(run_dir, json.load(f), config, "a run")
        resume = True
        log.info("%s, seed %d: resuming after epoch %d", label, seed, state["epoch"])
    else:
        resume = False
        if os.path.isdir(run_dir):  # interrupted before its first epoch: redone
            shutil.rmtree(run_dir)
        os.makedirs(run_dir)
        log.info("%s, seed %d: training %d steps", label, seed,
                 config["epochs"] * config["steps_per_epoch"])

    from sisr.training.config import Configuration

    timer = _step_timer()
    trainer = _trainer(Configuration(config), timer)
    result = trainer.run(run_dir, resume=resume, verbose=verbose)
    final = trainer.final
    psnr, ssim, bicubic, _ = trainer.scores
    row = {
        "cell": label,
        "seed": seed,
        "model": config["model"],
        "parameters": int(final.count_params()),
        "flops_per_lr_pixel": conv_flops_per_pixel(final),
        "psnr": psnr,
        "ssim": ssim,
        "bicubic_psnr": bicubic,
        "time_per_step": statistics.median(timer.times) if timer.times else math.nan,
        "steps": int(result["iterations"]),
        "val_psnr_per_epoch": _history(run_dir),
    }
    atomic_write_json(result_path, {"version": RESULT_VERSION, "config": config, "row": row})
    return row


# -- the study --------------------------------------------------------------------------
def table(rows):
    """`rows` as a pandas DataFrame if pandas is installed, else the list itself."""
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows, columns=list(COLUMNS))


def run(cells, dataset="demo", steps=100, seeds=(0,), out_dir=None, epochs=1,
        overrides=None, verbose=0):
    """Trains every cell with every seed for `steps` steps and returns the table (see the
    module's docstring).

    Args:
        cells: profile names or dicts of a `profile` and overrides (and a `label`).
        dataset: what `--dataset` takes ("demo", a DIV2K root or an image folder).
        steps: training steps of every cell (the profiles' schedules still apply).
        seeds: a seed per run of every cell (initial weights and batches).
        out_dir: where the cells' runs and results are kept (resumable); None: a
            temporary folder, removed at the end.
        epochs: validation points: `steps` split into this many epochs.
        overrides: configuration keys applied to every cell before its own (e.g.
            `{"batch_size": 4, "lr_patch": 24}`).
        verbose: Keras' progress output of each training (0: none).
    """
    if isinstance(seeds, int) or not isinstance(seeds, (list, tuple)) or not seeds or any(
            isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise StudyError(f"`seeds` must be a non-empty list of ints, got {seeds!r}")
    resolved = resolve_cells(cells, dataset, steps, epochs, overrides)
    temporary = out_dir is None
    root = tempfile.mkdtemp(prefix="sisr-study-") if temporary else os.fspath(out_dir)
    try:
        rows = []
        for label, config in resolved:
            cell_dir = os.path.join(root, _dir_name(label))
            os.makedirs(cell_dir, exist_ok=True)
            for seed in seeds:
                rows.append(run_cell(label, config, seed, cell_dir, verbose))
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    return table(rows)


def rows_of(result):
    """The rows (dicts) of what `run` returned."""
    if isinstance(result, list):
        return result
    return result.to_dict("records")


# -- outputs ----------------------------------------------------------------------------
def csv_text(rows):
    """The table as CSV text (the per-epoch PSNRs joined by spaces)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "val_psnr_per_epoch": " ".join(
            f"{v:.4f}" for v in row["val_psnr_per_epoch"])})
    return out.getvalue()


def plot(rows, path):
    """Saves a figure of `rows` to `path`: PSNR per cell (each seed a dot, the mean a bar)
    and, for runs of several epochs, validation PSNR per epoch. Raises ImportError if
    matplotlib is missing."""
    from matplotlib.figure import Figure

    labels = list(dict.fromkeys(row["cell"] for row in rows))
    curves = any(len(row["val_psnr_per_epoch"]) > 1 for row in rows)
    fig = Figure(figsize=(11 if curves else 6, 0.4 * len(labels) + 2.5), layout="constrained")
    axes = fig.subplots(1, 2 if curves else 1, squeeze=False)[0]
    ax = axes[0]
    for i, label in enumerate(labels):
        values = [row["psnr"] for row in rows if row["cell"] == label]
        ax.barh(i, statistics.fmean(values), color="tab:blue", alpha=0.5)
        ax.plot(values, [i] * len(values), "k.")
    bicubic = statistics.fmean(row["bicubic_psnr"] for row in rows)
    ax.axvline(bicubic, color="gray", linestyle="--", label=f"bicubic {bicubic:.2f} dB")
    low = min(min(row["psnr"] for row in rows), bicubic)
    high = max(max(row["psnr"] for row in rows), bicubic)
    ax.set_xlim(low - 0.5, high + 0.25)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("PSNR, full validation images (dB)")
    ax.legend(loc="lower right")
    if curves:
        ax = axes[1]
        for n, label in enumerate(labels):
            for row in rows:
                if row["cell"] == label:
                    history = row["val_psnr_per_epoch"]
                    ax.plot(range(1, len(history) + 1), history, color=f"C{n % 10}",
                            label=label if row["seed"] == rows[0]["seed"] else None)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation PSNR, centre crops (dB)")
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
