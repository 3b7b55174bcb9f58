"""`python -m sisr.train` end to end on the demo set with tiny models."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import sisr
from peak_memory import PRINT_PEAK, peak_kib
from sisr import train
from sisr.training import trainer
from sisr.training.callbacks import _finite, read_state

TINY_PROFILE = {
    "model": "wdsr_b", "num_filters": 8, "num_res_blocks": 1, "res_block_expansion": 2,
    "optimizer": "weight_norm_adam", "learning_rate": 1e-3, "loss": "l1",
    "epochs": 2, "steps_per_epoch": 3, "batch_size": 4, "lr_patch": 16, "valid_crop": 24,
    "scale": 2, "scales": [2, 3, 4],
}


def write_profile(tmp_path, **changes):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({**TINY_PROFILE, **changes}))
    return str(path)


def run_dirs(outdir):
    return sorted(os.path.join(outdir, d) for d in os.listdir(outdir))


def test_train_writes_a_complete_run_directory(tmp_path, capsys):
    outdir = tmp_path / "runs"
    code = train.main(["--profile", write_profile(tmp_path), "--dataset", "demo",
                       "--outdir", str(outdir), "--seed", "1", "--verbose", "0"])
    assert code == 0
    [run_dir] = run_dirs(outdir)
    assert os.path.basename(run_dir).endswith("-tiny")

    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["model"] == "wdsr_b" and config["seed"] == 1 and config["dataset"] == "demo"

    with open(os.path.join(run_dir, "training.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"loss", "psnr", "val_loss", "val_psnr"} <= set(rows[0])

    assert any(name.startswith("events.") for _, _, files in
               os.walk(os.path.join(run_dir, "logs")) for name in files)
    models = sorted(os.listdir(os.path.join(run_dir, "models")))
    assert models and all(m.startswith("epoch-00") and "-psnr-" in m for m in models)

    best = sisr.load_model(os.path.join(run_dir, "best.keras"))
    lr = np.zeros((1, 6, 5, 3), np.uint8)
    assert sisr.resolve(best, lr).shape == (1, 12, 10, 3)

    state = read_state(run_dir)
    assert state["epoch"] == 2 and state["iterations"] == 6
    assert set(os.listdir(os.path.join(run_dir, "backup"))) == {"state.json", state["backup"]}

    with open(os.path.join(run_dir, "result.json")) as f:
        result = json.load(f)
    out = capsys.readouterr().out
    assert f"model {result['psnr']:.2f} dB, bicubic {result['bicubic_psnr']:.2f} dB" in out
    # No temporary files left behind by the atomic writes.
    assert not [n for _, _, files in os.walk(run_dir) for n in files if n.startswith(".tmp-")]


def _spawn(args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, "-m", "sisr.train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_rrdbnet_psnr_profile_trains_a_few_steps(tmp_path, capsys):
    # The shipped profile itself, shrunk by flags to a tiny RRDBNet and a few steps.
    outdir = tmp_path / "runs"
    assert train.main(["--profile", "rrdbnet-psnr-x4", "--dataset", "demo",
                       "--outdir", str(outdir), "--seed", "2", "--verbose", "0",
                       "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2",
                       "--set", "num_feat=8", "--set", "num_block=1",
                       "--set", "num_grow_ch=4", "--set", "lr_patch=16",
                       "--set", "valid_crop=24"]) == 0
    [run_dir] = run_dirs(outdir)
    assert run_dir.endswith("-rrdbnet-psnr-x4")
    best = sisr.load_model(os.path.join(run_dir, "best.keras"))
    assert best.count_params() == sisr.model.build("rrdbnet", scale=4, num_feat=8,
                                                   num_block=1, num_grow_ch=4).count_params()
    assert sisr.resolve(best, np.zeros((1, 5, 6, 3), np.uint8)).shape == (1, 20, 24, 3)
    with open(os.path.join(run_dir, "result.json")) as f:
        result = json.load(f)
    assert np.isfinite(result["psnr"])


def test_killed_run_resumes_where_it_stopped(tmp_path):
    epochs, steps = 4, 20
    profile = write_profile(tmp_path, epochs=epochs, steps_per_epoch=steps)
    outdir = tmp_path / "runs"
    proc = _spawn(["--profile", profile, "--dataset", "demo", "--outdir", str(outdir),
                   "--seed", "3", "--verbose", "0"], cwd=str(tmp_path))
    deadline = time.time() + 240
    state = None
    while time.time() < deadline and proc.poll() is None:
        dirs = run_dirs(outdir) if outdir.exists() else []
        state = read_state(dirs[0]) if dirs else None
        if state and state["epoch"] >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed:\n" + \
        proc.stdout.read()
    assert state and 1 <= state["epoch"] < epochs
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [run_dir] = run_dirs(outdir)
    killed_at = read_state(run_dir)

    result = subprocess.run([sys.executable, "-m", "sisr.train", "--resume", run_dir,
                             "--verbose", "0"], cwd=str(tmp_path), capture_output=True,
                            text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stdout + result.stderr
    final = read_state(run_dir)
    assert final["epoch"] == epochs
    # The optimiser's iteration count continued from the backup: no step lost or repeated
    # beyond the unfinished epoch.
    assert final["iterations"] == epochs * steps
    assert killed_at["iterations"] == killed_at["epoch"] * steps
    with open(os.path.join(run_dir, "training.csv")) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(epochs))


def test_pretrained_x2_seeds_x4(tmp_path):
    x2 = sisr.model.wdsr_b(2, num_filters=8, num_res_blocks=2, res_block_expansion=2)
    for var in x2.weights:
        var.assign(np.random.default_rng(0).normal(size=var.shape).astype("float32"))
    path = str(tmp_path / "x2.keras")
    sisr.save_model(x2, path)
    profile = write_profile(tmp_path, num_res_blocks=2, epochs=1, steps_per_epoch=1,
                            learning_rate=1e-9)
    config = sisr.training.config.resolve(profile, {"scale": 4, "pretrained_model": path})
    x4 = trainer.build_model(config)
    copied = trainer.copy_pretrained(x4, sisr.load_model(path), 4)
    expected = [layer.name for layer in x2.layers if layer.weights and "_x2_" not in layer.name]
    assert sorted(copied) == sorted(expected)
    for name in expected:
        for a, b in zip(x4.get_layer(name).get_weights(), x2.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_pretrained_of_another_architecture_is_rejected(tmp_path, capsys):
    path = str(tmp_path / "edsr.keras")
    sisr.save_model(sisr.model.edsr(2, num_filters=8, num_res_blocks=1), path)
    code = train.main(["--profile", write_profile(tmp_path), "--dataset", "demo",
                       "--pretrained-model", path, "--outdir", str(tmp_path / "runs"),
                       "--verbose", "0"])
    assert code == 2  # refused before any work: no run directory
    err = capsys.readouterr().err
    assert "does not match 'wdsr_b'" in err and "block1_conv3" in err
    assert not (tmp_path / "runs").exists()


def test_mirrored_strategy_trains_on_two_replicas(tmp_path):
    assert trainer.make_strategy("mirrored").num_replicas_in_sync == 2
    code = train.main(["--profile", write_profile(tmp_path, epochs=1, steps_per_epoch=2),
                       "--dataset", "demo", "--strategy", "mirrored",
                       "--outdir", str(tmp_path / "runs"), "--verbose", "0"])
    assert code == 0
    [run_dir] = run_dirs(tmp_path / "runs")
    assert read_state(run_dir)["iterations"] == 2


def test_mixed_bfloat16_training_runs(tmp_path):
    code = train.main(["--profile", write_profile(tmp_path, epochs=1, steps_per_epoch=2),
                       "--dataset", "demo", "--precision", "mixed_bfloat16",
                       "--outdir", str(tmp_path / "runs"), "--verbose", "0"])
    assert code == 0
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards
    [run_dir] = run_dirs(tmp_path / "runs")
    best = sisr.load_model(os.path.join(run_dir, "best.keras"))
    assert best.get_layer("head_conv").compute_dtype == "float32"


def test_an_infinite_psnr_is_a_perfect_score_not_a_failed_epoch():
    # A flat training patch reproduced exactly scores +inf dB (seen with 16-pixel patches
    # of the demo's text image): the epoch must still be saved.
    assert _finite({"loss": 12.6, "psnr": math.inf, "val_psnr": 28.2})
    assert not _finite({"loss": math.nan, "psnr": 20.0})
    assert not _finite({"loss": math.inf})
    assert not _finite({"val_psnr": math.nan})
    assert not _finite({"psnr": -math.inf})


def test_nan_loss_stops_with_a_clear_message_and_keeps_good_model(tmp_path, monkeypatch,
                                                                   capsys):
    import tensorflow as tf

    class ExplodingLoss(keras.losses.Loss):
        """L1 until it has been called `after` times, NaN from then on."""

        def __init__(self, after):
            super().__init__()
            self.after = after
            self.calls = tf.Variable(0, trainable=False)

        def call(self, y_true, y_pred):
            n = self.calls.assign_add(1)
            loss = tf.reduce_mean(tf.abs(y_true - y_pred), axis=(1, 2, 3))
            return tf.where(n > self.after, tf.fill(tf.shape(loss), np.nan), loss)

    # Epoch 1: 3 training steps + 3 validation images; the NaN arrives in epoch 2.
    monkeypatch.setattr(trainer, "make_loss", lambda config: ExplodingLoss(after=6))
    code = train.main(["--profile", write_profile(tmp_path, epochs=3, steps_per_epoch=3),
                       "--dataset", "demo", "--outdir", str(tmp_path / "runs"),
                       "--verbose", "0"])
    assert code == 1
    err = capsys.readouterr().err
    assert "loss = nan at epoch 2, batch 1" in err and "kept the last good model" in err
    [run_dir] = run_dirs(tmp_path / "runs")
    assert read_state(run_dir)["epoch"] == 1
    best = sisr.load_model(os.path.join(run_dir, "best.keras"))
    assert all(np.isfinite(w).all() for w in best.get_weights())


def test_resume_refuses_a_mixed_float16_switch_and_cleans_up_after_a_kill(tmp_path, capsys):
    steps = 2
    profile = write_profile(tmp_path, epochs=1, steps_per_epoch=steps)
    assert train.main(["--profile", profile, "--dataset", "demo", "--seed", "4",
                       "--outdir", str(tmp_path / "runs"), "--verbose", "0"]) == 0
    [run_dir] = run_dirs(tmp_path / "runs")
    state = read_state(run_dir)
    capsys.readouterr()
    # Loss scaling is optimizer state that a float32 backup does not have: refused before
    # anything runs, rather than restarting the optimizer at step 0.
    assert train.main(["--resume", run_dir, "--epochs", "2", "--precision",
                       "mixed_float16"]) == 2
    assert "mixed_float16 cannot be switched on or off" in capsys.readouterr().err
    assert read_state(run_dir) == state
    # What a kill leaves: a temporary file, and the model of an epoch that never completed
    # (saved just before the kill), which best.keras may already be a copy of.
    models = os.path.join(run_dir, "models")
    [kept] = os.listdir(models)
    open(os.path.join(models, ".tmp-0123abcd.keras"), "w").close()
    rolled_back = os.path.join(models, "epoch-002-psnr-99.00.keras")
    with open(rolled_back, "wb") as f:
        f.write(b"not the model of a completed epoch")
    with open(os.path.join(run_dir, "best.keras"), "wb") as f:
        f.write(b"not the model of a completed epoch")
    # float32 -> mixed_bfloat16 keeps the optimizer state: the step count continues.
    assert train.main(["--resume", run_dir, "--epochs", "2", "--precision",
                       "mixed_bfloat16", "--verbose", "0"]) == 0
    final = read_state(run_dir)
    assert final["epoch"] == 2 and final["iterations"] == 2 * steps
    names = os.listdir(models)
    assert kept in names and ".tmp-0123abcd.keras" not in names
    assert not os.path.exists(rolled_back) or os.path.getsize(rolled_back) > 1000
    sisr.load_model(os.path.join(run_dir, "best.keras"))  # a real model again


def test_a_run_that_ends_without_a_usable_model_fails(tmp_path, capsys, monkeypatch):
    # Training losses are finite but validation never is (as after a diverging step), so
    # no model is ever saved: the run must not report a best model or a score.
    import tensorflow as tf

    from sisr import metrics

    monkeypatch.setattr(metrics, "psnr_tf", lambda hr, sr, shave: tf.fill([1], np.nan))
    profile = write_profile(tmp_path, epochs=1, steps_per_epoch=1)
    code = train.main(["--profile", profile, "--dataset", "demo", "--outdir",
                       str(tmp_path / "runs"), "--verbose", "0"])
    assert code == 1
    err = capsys.readouterr().err
    assert "without a usable model" in err
    [run_dir] = run_dirs(tmp_path / "runs")
    assert not os.path.exists(os.path.join(run_dir, "best.keras"))
    assert not os.path.exists(os.path.join(run_dir, "result.json"))


@pytest.mark.parametrize("case", ["config_not_an_object", "outdir_is_a_file",
                                  "pretrained_refused", "bad_dataset"])
def test_bad_input_is_refused_before_a_run_directory_exists(tmp_path, capsys, case):
    profile = write_profile(tmp_path)
    outdir = tmp_path / "runs"
    args = ["--profile", profile, "--dataset", "demo", "--outdir", str(outdir),
            "--verbose", "0"]
    if case == "config_not_an_object":
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "config.json").write_text("[1, 2]")
        args, message = ["--resume", str(tmp_path / "run")], "does not hold a JSON object"
    elif case == "outdir_is_a_file":
        outdir.write_text("")
        message = "cannot write to output directory"
    elif case == "pretrained_refused":
        # A .keras archive whose config names a class that safe mode refuses to import.
        import zipfile

        path = tmp_path / "evil.keras"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", json.dumps(
                {"module": "os", "class_name": "system", "config": {}}))
            archive.writestr("metadata.json", "{}")
        args += ["--pretrained-model", str(path)]
        message = "evil.keras: Keras refused to load it in safe mode"
    else:
        args[args.index("demo")] = str(tmp_path / "nowhere")
        message = "nowhere"
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not outdir.is_dir() or not os.listdir(outdir)


def _head_pre_activation(model, batch):
    head = model.get_layer("head_conv")
    x = keras.Model(model.input, head.input)(batch)
    y = keras.ops.conv(x, head.kernel, padding="same") + head.bias
    return np.asarray(y, np.float64)


def test_data_dependent_init_applies_to_a_new_run_only(tmp_path, monkeypatch):
    from sisr.optimizers import data_dependent_init
    from sisr.training import config as cfg
    from sisr.training import recipe

    batches = []

    def init(model, batch):
        batches.append(np.asarray(batch))
        return data_dependent_init(model, batch)

    monkeypatch.setitem(recipe.INITS, "data_dependent", init)
    # A learning rate too small to move the weights: the saved model is the initial one.
    profile = write_profile(tmp_path, epochs=1, steps_per_epoch=1, learning_rate=1e-12)
    args = ["--dataset", "demo", "--seed", "5", "--outdir", str(tmp_path / "runs"),
            "--verbose", "0"]
    assert train.main(["--profile", profile, "--set", "init=data_dependent", *args]) == 0
    [run_dir] = run_dirs(tmp_path / "runs")
    assert len(batches) == 1
    # Applied on the run's first training batch: the head conv's output on it has zero
    # mean and unit variance per channel.
    config = cfg.resolve(profile, {"dataset": "demo", "seed": 5, "init": "data_dependent"})
    lr, _ = next(iter(trainer.make_pipelines(config, trainer.open_datasets(config))[0]))
    np.testing.assert_array_equal(batches[0], lr.numpy())
    model = sisr.load_model(os.path.join(run_dir, "best.keras"))
    y = _head_pre_activation(model, lr)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-3)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, rtol=1e-3)
    # Without it, the builder's initialisation does not do that.
    plain = trainer.build_model(cfg.resolve(profile))
    assert not np.allclose(_head_pre_activation(plain, lr).std(axis=(0, 1, 2)), 1.0,
                           rtol=1e-2)

    # Resuming continues from the backup: not initialised again.
    assert train.main(["--resume", run_dir, "--epochs", "2", "--verbose", "0"]) == 0
    assert len(batches) == 1 and read_state(run_dir)["iterations"] == 2


# Builder values the builder refuses or cannot use: (where given, key, value, message part).
BAD_BUILDER_VALUES = [
    ("set", "num_res_blocks", "abc", "must be a positive integer"),
    ("set", "num_res_blocks", "1e9", "must be a positive integer"),
    ("set", "num_res_blocks", "[1]", "must be a positive integer"),
    ("set", "res_block_scaling", "oops", "must be None or a positive number"),
    ("set", "num_blocks", "3", "unknown key(s)"),
    ("set", "num_res_blocks", "1000000000", "for its weights and optimiser state"),
    ("profile", "num_res_blocks", 1e308, "must be a positive integer"),
    ("profile", "num_res_blocks", float("nan"), "must be a positive integer"),
    ("profile", "num_res_blocks", -3, "must be a positive integer"),
    ("profile", "num_filters", 99999999, "for its weights and optimiser state"),
    ("profile", "res_block_scaling", "oops", "must be None or a positive number"),
    ("profile", "num_blocks", 3, "unknown key(s)"),
]


@pytest.mark.parametrize("where, key, value, message", BAD_BUILDER_VALUES,
                         ids=[f"{w}-{k}={v}" for w, k, v, _ in BAD_BUILDER_VALUES])
def test_builder_values_are_refused_before_any_work(tmp_path, capsys, monkeypatch, where, key,
                                                    value, message):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built")

    # Nothing is built, nor any data opened: the refusal comes from the configuration.
    monkeypatch.setattr(trainer, "build_model", refuse)
    monkeypatch.setattr(trainer, "open_datasets", refuse)
    outdir = tmp_path / "runs"
    args = ["--dataset", "demo", "--outdir", str(outdir), "--verbose", "0"]
    if where == "set":
        profile = write_profile(tmp_path)
        args += ["--profile", profile, "--set", f"{key}={value}"]
        source = f"--set {key}={value}"
    else:
        profile = write_profile(tmp_path, **{key: value})
        args += ["--profile", profile]
        source = f"profile {profile}"
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert key in err[0] and source in err[0] and message in err[0], err[0]
    if "optimiser state" in message:  # the estimate and this machine's memory
        assert "GiB" in err[0] or "TiB" in err[0] or "EiB" in err[0], err[0]
        assert "this machine has" in err[0]
    assert not outdir.exists()


def test_a_model_too_large_for_memory_is_refused_without_allocating_it(tmp_path):
    # In a fresh process, whose peak memory shows that no weight was allocated: with
    # 99999999 filters the head convolution's kernel alone would take 10.8 GB.
    profile = write_profile(tmp_path, num_filters=99999999)
    script = ("import sys\nfrom sisr import train\ncode = train.main(sys.argv[1:])\n"
              + PRINT_PEAK + "sys.exit(code)\n")
    outdir = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-c", script, "--profile", profile, "--dataset", "demo", "--outdir",
         str(outdir)], capture_output=True, text=True, cwd=str(tmp_path),
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "num_filters" in errors[0] and "would need" in errors[0]
    peak = peak_kib(result.stdout)
    assert peak < 2 * 2**20, f"peak RSS {peak} KiB"
    assert not outdir.exists()


# -- --resume with a damaged backup ----------------------------------------------------
def snapshot(run_dir):
    """Every file of a run directory and its contents."""
    files = {}
    for folder, _, names in os.walk(run_dir):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, run_dir)] = f.read()
    return files


def truncate(path, size=2000):
    with open(path, "r+b") as f:
        f.truncate(size)


def two_epoch_run(tmp_path, steps):
    """A run of two epochs that also kept the backup of its first epoch (as a kill between
    the second backup's state and the removal of the first leaves it)."""
    profile = write_profile(tmp_path, epochs=1, steps_per_epoch=steps)
    assert train.main(["--profile", profile, "--dataset", "demo", "--seed", "6",
                       "--outdir", str(tmp_path / "runs"), "--verbose", "0"]) == 0
    [run_dir] = run_dirs(tmp_path / "runs")
    first = os.path.join(run_dir, "backup", "epoch-001.keras")
    with open(first, "rb") as f:
        kept = f.read()
    assert train.main(["--resume", run_dir, "--epochs", "2", "--verbose", "0"]) == 0
    with open(first, "wb") as f:
        f.write(kept)
    return run_dir


def test_resume_falls_back_to_the_previous_intact_backup(tmp_path, capsys, caplog):
    steps = 2
    run_dir = two_epoch_run(tmp_path, steps)
    damaged = os.path.join(run_dir, "backup", "epoch-002.keras")
    truncate(damaged)
    models = set(os.listdir(os.path.join(run_dir, "models")))
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="sisr"):
        assert train.main(["--resume", run_dir, "--epochs", "3", "--verbose", "0"]) == 0
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert damaged in warning and "resuming from epoch 1 (epoch-001.keras)" in warning
    state = read_state(run_dir)
    # Epochs 2 and 3 trained from the first epoch's backup: the step count continued.
    assert state["epoch"] == 3 and state["iterations"] == 3 * steps
    assert sorted(os.listdir(os.path.join(run_dir, "backup"))) == ["epoch-003.keras",
                                                                   "state.json"]
    # The models of completed epochs are the user's: none was removed.
    assert models <= set(os.listdir(os.path.join(run_dir, "models")))
    with open(os.path.join(run_dir, "training.csv")) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2]
    sisr.load_model(os.path.join(run_dir, "best.keras"))


# Each damage takes a two-epoch run (~5 s): two in the default tier, two in the slow one.
@pytest.mark.parametrize("damage", [
    "state_truncated", pytest.param("state_invalid", marks=pytest.mark.slow),
    pytest.param("state_not_a_state", marks=pytest.mark.slow), "every_backup"])
def test_resume_refuses_a_damaged_run_and_changes_nothing(tmp_path, capsys, damage):
    run_dir = two_epoch_run(tmp_path, steps=1)
    backup = os.path.join(run_dir, "backup")
    state_path = os.path.join(backup, "state.json")
    if damage == "state_truncated":
        truncate(state_path, 20)
        damaged = state_path
    elif damage == "state_invalid":
        with open(state_path, "wb") as f:
            f.write(b"\xff\xfe not json")
        damaged = state_path
    elif damage == "state_not_a_state":
        with open(state_path, "w") as f:
            json.dump({"epoch": "2", "backup": "../../elsewhere.keras"}, f)
        damaged = state_path
    else:
        for name in ("epoch-001.keras", "epoch-002.keras"):
            truncate(os.path.join(backup, name))
        damaged = os.path.join(backup, "epoch-002.keras")
    before = snapshot(run_dir)
    capsys.readouterr()
    assert train.main(["--resume", run_dir, "--epochs", "3", "--verbose", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert f"{damaged} is damaged" in err[0] and "--pretrained-model" in err[0], err[0]
    assert snapshot(run_dir) == before


# -- resume equals an uninterrupted run ------------------------------------------------
class Killed(Exception):
    """What a crash in the middle of an epoch leaves: the backup of the last epoch."""


def saved_variables(keras_path):
    """{path: array} of every variable a `.keras` backup holds: the model's weights and
    the optimizer's (iterations, Adam moments, ...)."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(keras_path) as archive:
        data = archive.read("model.weights.h5")
    found = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda name, item: found.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return found


def final_backup(run_dir):
    return os.path.join(run_dir, "backup", read_state(run_dir)["backup"])


def assert_same_variables(got, expected):
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def train_losses(run_dir):
    with open(os.path.join(run_dir, "training.csv")) as f:
        return [(int(r["epoch"]), r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("optimizer", [
    "adam", pytest.param("weight_norm_adam", marks=pytest.mark.slow)])  # ~7 s each
def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch, optimizer):
    """Same seed: after a crash in epoch 2 and --resume, the weights and every optimizer
    variable at the end are those of a run that was never interrupted."""
    epochs, steps = 3, 3
    profile = write_profile(tmp_path, epochs=epochs, steps_per_epoch=steps,
                            optimizer=optimizer, lr_decay_steps=[4], lr_decay_factor=0.5)
    common = ["--dataset", "demo", "--seed", "7", "--verbose", "0"]
    assert train.main(["--profile", profile, "--outdir", str(tmp_path / "whole"),
                       *common]) == 0
    [whole] = run_dirs(tmp_path / "whole")

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 1:  # two steps into the second epoch
                raise Killed

    callbacks = trainer.Trainer.callbacks

    def with_kill(self, *args, **kwargs):
        guard, run_cb, found = callbacks(self, *args, **kwargs)
        return guard, run_cb, [*found, Kill()]

    monkeypatch.setattr(trainer.Trainer, "callbacks", with_kill)
    with pytest.raises(Killed):
        train.main(["--profile", profile, "--outdir", str(tmp_path / "parts"), *common])
    monkeypatch.setattr(trainer.Trainer, "callbacks", callbacks)
    [parts] = run_dirs(tmp_path / "parts")
    assert read_state(parts)["epoch"] == 1
    assert train.main(["--resume", parts, "--verbose", "0"]) == 0

    expected = saved_variables(final_backup(whole))
    optimizer_variables = [n for n in expected if n.startswith("optimizer/")]
    # iterations and the moments of every trained variable (and of g, for weight norm)
    assert len(optimizer_variables) > 2 * sum(1 for n in expected if n.startswith("layers/"))
    assert int(expected["optimizer/vars/0"]) == epochs * steps  # Keras: iterations first
    assert_same_variables(saved_variables(final_backup(parts)), expected)
    assert train_losses(parts) == train_losses(whole)
    # The optimiser the runs trained with, as saved: PyTorch's Adam settings (README).
    for run_dir in (whole, parts):
        saved = saved_optimizer(final_backup(run_dir))
        assert (saved["beta_1"], saved["beta_2"], saved["epsilon"]) == (0.9, 0.999, 1e-8)


def saved_optimizer(keras_path):
    """The configuration of the optimizer a `.keras` backup was compiled with."""
    import zipfile

    with zipfile.ZipFile(keras_path) as archive:
        config = json.loads(archive.read("config.json"))
    return config["compile_config"]["optimizer"]["config"]


@pytest.mark.parametrize("verbose", ["1", "2"])
def test_standard_output_holds_only_the_results(tmp_path, capsys, verbose):
    # Keras' progress bars went to stdout, with escape codes and backspaces when redirected.
    outdir = tmp_path / "runs"
    assert train.main(["--profile", write_profile(tmp_path), "--dataset", "demo",
                       "--outdir", str(outdir), "--seed", "1", "--verbose", verbose]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert lines[0].startswith("validation PSNR (") and lines[1].startswith("model: ")
    for text in (out, err):
        assert "\x1b" not in text and "\b" not in text and "\r" not in text
    # stderr is no terminal here: one line per epoch, not a bar.
    epochs = [line for line in err.splitlines() if " - loss: " in line]
    assert len(epochs) == 2, err
