"""MDSR: the multi-scale builder, the EDSR-PyTorch port against the official module's
outputs and training steps (tests/data/mdsr/, provenance in tests/data/README.md), and
multi-scale training (a seeded scale per batch, resumable, validated per scale).

Fixture: EDSR-PyTorch's `MDSR` (16 filters, 2 blocks, `--scale 2+3+4`, rgb_range 255,
biases perturbed), its output at every scale, per scale 2 official Adam/L1 steps, and a
mixed run of 6 steps with a scale per batch. sisr's step (`MultiScaleSR.train_step_at`
with the profiles' `torch_adam`) updates the branch of the batch's scale and the shared
layers, as the official step, with PyTorch's per-parameter Adam step counts. Tolerances
as tests/test_official_fixtures.py states for EDSR (sisr's biases are in units 127.5
times smaller, so each bias takes the official Adam step in its own units). That step moves
sisr's shared biases further, in the official units, than the official step does, so the
next batch's gradients differ a little, and a weight whose gradient is small (near 1% of
its layer's median) can take its first Adam step (+-lr) the other way. The forward pass and
the gradients of one step are the official ones: at the fixture's state, the kernel
gradients of an x4 batch (head, body, x4 branch) agree within 1.2e-7, no sign differing.
Seed-dependent: from the same seed, 9d3bb0e's `mdsr.py` builds other weights, with which
the mixed run exceeds the limits below (99.9% of kernels 2.07 steps, biases 2.06). The
measured values are next to the limits below.
"""

import glob
import json
import os

import h5py
import keras
import numpy as np
import pytest

from reference_data import DATA
from sisr import pretrained
from sisr.inference import resolve
from sisr.model import mdsr, mdsr_at
from sisr.model.registry import get_spec, is_multi_scale, single_scale
from sisr.port import PortError, port
from sisr.pretrained import files, load_registry
from sisr.saving import load_model, save_model
from sisr.training import config as cfg
from sisr.training.multiscale import MultiScaleSR, scale_choices, train_stream
from sisr.training.trainer import make_loss, make_optimizer

FOLDER = os.path.join(DATA, "mdsr")
SCALES = (2, 3, 4)
LR = 1e-4
BIAS_UNITS = 127.5
LOSS_RTOL = 2e-3
# In units of the learning rate, over the trained layers (measured at seed 31, worst
# scale): per-scale runs of 2 steps, kernels (99%, 99.9%, max) and bias steps (max):
# 0.16, 0.55, 1.64 and 0.69; the mixed run of 6 steps, kernels (median, 99%, 99.9%, max)
# and bias steps: 0.0015, 0.087, 0.45, 2.29 and 0.22 (Keras' Adam there: median 0.32,
# 99% 0.58).
STEP_LIMITS = (0.25, 0.75, 2.0, 1.0)
MIXED_LIMITS = (0.02, 0.2, 0.75, 3.0, 0.5)


def fixtures():
    with open(os.path.join(FOLDER, "manifest.json")) as f:
        return sorted(json.load(f)["files"])


def load(name):
    with np.load(os.path.join(FOLDER, name)) as z:
        arrays = {k: z[k] for k in z.files}
    state = {k[3:]: v for k, v in arrays.items() if k.startswith("sd/")}
    return state, arrays


def nhwc(x):
    return np.asarray(x, np.float32).transpose(0, 2, 3, 1)


def test_parameter_counts_are_the_published_ones():
    # Published: MDSR baseline 3.2 M, MDSR 8.0 M (x2, x3 and x4 branches together).
    assert mdsr(None).count_params() == 3_227_203
    assert mdsr(None, num_res_blocks=80).count_params() == 7_953_987
    keras.backend.clear_session()


def test_single_scale_models_are_subgraphs_sharing_the_weights():
    keras.utils.set_random_seed(1)
    multi = mdsr(None, num_filters=8, num_res_blocks=1)
    assert is_multi_scale(multi) and len(multi.outputs) == 3
    x = np.random.default_rng(0).uniform(0, 255, (1, 5, 7, 3)).astype(np.float32)
    outputs = multi(x)
    for scale, out in zip(SCALES, outputs):
        single = mdsr_at(multi, scale)
        assert single.arguments["scale"] == scale and not is_multi_scale(single)
        assert single.output.shape[-1] == 3 and out.shape[1:3] == (5 * scale, 7 * scale)
        np.testing.assert_array_equal(np.asarray(single(x)), np.asarray(out))
        assert single_scale(multi, scale).count_params() == single.count_params()
        # the same layers: a fresh single-scale model takes the weights by name
        fresh = mdsr(scale, num_filters=8, num_res_blocks=1)
        for layer in fresh.layers:
            layer.set_weights(single.get_layer(layer.name).get_weights())
        np.testing.assert_array_equal(np.asarray(fresh(x)), np.asarray(out))
        np.testing.assert_array_equal(resolve(multi, x, scale=scale),
                                      resolve(single, x))
    with pytest.raises(ValueError, match="multi-scale model .* give a scale"):
        single_scale(multi)
    with pytest.raises(ValueError, match="not 8"):
        mdsr_at(multi, 8)
    with pytest.raises(ValueError, match="branch_scales"):
        mdsr(2, branch_scales=[3, 4])
    keras.backend.clear_session()


def test_multi_scale_model_round_trips_through_a_keras_file(tmp_path):
    keras.utils.set_random_seed(2)
    multi = mdsr(None, num_filters=8, num_res_blocks=1, branch_scales=[4, 2])
    save_model(multi, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    x = np.random.default_rng(1).uniform(0, 255, (1, 6, 5, 3)).astype(np.float32)
    for a, b in zip(multi(x), loaded(x)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert loaded.arguments["branch_scales"] == [4, 2] and is_multi_scale(loaded)
    keras.backend.clear_session()


@pytest.mark.parametrize("name", fixtures())
def test_port_reproduces_the_official_module_at_every_scale(name):
    state, z = load(name)
    multi = port(state)
    assert multi.arguments == {"scale": None, "num_filters": 16, "num_res_blocks": 2,
                               "branch_scales": list(SCALES)}
    x = nhwc(z["input"])
    for scale, out in zip(SCALES, multi(x)):
        expected = z[f"output_x{scale}"]
        assert np.abs(np.asarray(out).transpose(0, 3, 1, 2) - expected).max() < 1e-3
        single = port(state, scale=scale, source="mdsr-pytorch")
        assert single.arguments["scale"] == scale and len(single.outputs) == 1
        assert np.abs(np.asarray(single(x)).transpose(0, 3, 1, 2) - expected).max() < 1e-3
    # the biases matter: without them (or with their scaling wrong) the outputs differ
    unbiased = {k: (v if "mean" in k or not k.endswith("bias") else 0 * v)
                for k, v in state.items()}
    out = np.asarray(port(unbiased, scale=3)(x)).transpose(0, 3, 1, 2)
    assert np.abs(out - z["output_x3"]).max() > 1
    keras.backend.clear_session()


def test_port_refuses_other_scales_and_damaged_checkpoints():
    state, _ = load(fixtures()[0])
    with pytest.raises(PortError, match=r"scale: requested 8, the state_dict has \[2, 3, 4\]"):
        port(state, scale=8)
    damaged = {k: v for k, v in state.items() if not k.startswith("pre_process.1.")}
    with pytest.raises(PortError, match="pre_process"):
        port(damaged, source="mdsr-pytorch")
    wrong_mean = dict(state, **{"sub_mean.bias": state["sub_mean.bias"] + 5})
    with pytest.raises(PortError, match="DIV2K mean"):
        port(wrong_mean, source="mdsr-pytorch")
    keras.backend.clear_session()


def split(model):
    names = sorted(layer.name for layer in model.layers if layer.weights)
    return {n: model.get_layer(n).get_weights() for n in names}


def run_sisr(state, steps, optimizer="torch_adam", learning_rate=LR, loss="l1"):
    """sisr's multi-scale steps from `state` on `steps` = [(scale index, lr, hr)]:
    (losses, the trained network)."""
    config = {"optimizer": optimizer, "learning_rate": learning_rate, "lr_decay_steps": [],
              "lr_decay_factor": 0.5, "loss": loss}
    network = port(state)
    model = MultiScaleSR(network, list(SCALES))
    model.compile(make_optimizer(config), make_loss(config))
    losses = []
    for index, lr, hr in steps:
        model.reset_metrics()
        losses.append(float(model.train_step_at(int(index), nhwc(lr), nhwc(hr))["loss"]))
    return losses, network


def differences(state, network, official_state, layers):
    """Kernel differences and bias-step differences (in each side's units), in units of
    the learning rate, over `layers`."""
    initial, mine, theirs = split(port(state)), split(network), split(port(official_state))
    kernels, biases = [], []
    for layer in layers:
        (k0, b0), (km, bm), (kt, bt) = initial[layer], mine[layer], theirs[layer]
        assert np.abs(km - k0).max() > 0.5 * LR, layer  # the steps reached it
        kernels.append(np.abs(km - kt).ravel())
        biases.append(np.abs((bm - b0) - (bt - b0) * BIAS_UNITS).ravel())
    return np.concatenate(kernels) / LR, np.concatenate(biases) / LR


def check_training(name, scale, **rule):
    """sisr's 2 steps at `scale` against the official ones (AssertionError if not)."""
    state, z = load(name)
    steps = [(SCALES.index(scale), lr, hr)
             for lr, hr in zip(z[f"train_x{scale}/lr"], z[f"train_x{scale}/hr"])]
    losses, network = run_sisr(state, steps, **rule)
    np.testing.assert_allclose(losses, z[f"train_x{scale}/losses"], rtol=LOSS_RTOL)
    prefix = f"train_x{scale}/sd/"
    official = dict(state, **{k[len(prefix):]: v for k, v in z.items() if k.startswith(prefix)})
    initial, mine = split(port(state)), split(network)
    trained = []
    for layer, (k0, b0) in initial.items():
        if "_x" in layer and f"_x{scale}_" not in layer:  # other branches: untouched
            np.testing.assert_array_equal(mine[layer][0], k0)
            np.testing.assert_array_equal(mine[layer][1], b0)
        else:
            trained.append(layer)
    kernels, biases = differences(state, network, official, trained)
    measured = (np.percentile(kernels, 99), np.percentile(kernels, 99.9), kernels.max(),
                biases.max())
    assert all(m < t for m, t in zip(measured, STEP_LIMITS)), measured


@pytest.mark.parametrize("scale", SCALES)
def test_training_step_equals_the_official_one(scale):
    check_training(fixtures()[0], scale)
    keras.backend.clear_session()


@pytest.mark.parametrize("broken", [{"learning_rate": 1.5e-4}, {"loss": "mse"}])
def test_a_wrong_training_rule_breaks_the_match(broken):
    with pytest.raises(AssertionError):
        check_training(fixtures()[0], 3, **broken)
    keras.backend.clear_session()


def check_mixed(name, optimizer="torch_adam"):
    """sisr's mixed-scale run (a scale per batch) against the official one."""
    state, z = load(name)
    indices = z["mixed/indices"]
    steps = [(i, z[f"mixed/lr_{k}"], z[f"mixed/hr_{k}"]) for k, i in enumerate(indices)]
    losses, network = run_sisr(state, steps, optimizer=optimizer)
    np.testing.assert_allclose(losses, z["mixed/losses"], rtol=LOSS_RTOL)
    official = {k[len("mixed/sd/"):]: v for k, v in z.items() if k.startswith("mixed/sd/")}
    kernels, biases = differences(state, network, official, sorted(split(network)))
    measured = (np.median(kernels), np.percentile(kernels, 99),
                np.percentile(kernels, 99.9), kernels.max(), biases.max())
    assert all(m < t for m, t in zip(measured, MIXED_LIMITS)), measured


def test_a_mixed_scale_run_equals_the_official_one():
    # PyTorch's Adam keeps a step count per parameter: a branch's bias correction counts
    # only the batches of its scale. `torch_adam` does the same; Keras' Adam does not.
    check_mixed(fixtures()[0])
    with pytest.raises(AssertionError):
        check_mixed(fixtures()[0], optimizer="adam")
    keras.backend.clear_session()


def test_scale_choices_depend_only_on_the_seed_and_the_batch():
    whole = scale_choices(7, 3000, 3)
    assert set(np.unique(whole)) == {0, 1, 2}
    assert abs(np.bincount(whole).min() - 1000) < 120
    for start, count in ((0, 10), (1000, 50), (1023, 3), (2500, 500)):
        np.testing.assert_array_equal(scale_choices(7, count, 3, start),
                                      whole[start:start + count])
    assert not np.array_equal(scale_choices(8, 100, 3), whole[:100])


def test_the_stream_resumes_with_the_batches_of_the_whole_run():
    from sisr.data import open_dataset

    datasets = [open_dataset("demo", "train", s) for s in SCALES]
    config = {"epochs": 2, "steps_per_epoch": 5, "batch_size": 2, "lr_patch": 8}
    whole = list(train_stream(datasets, config, seed=3))
    later = list(train_stream(datasets, config, seed=3, start=6))
    assert len(whole) == 10 and len(later) == 4
    for (lr, hr, index), (lr2, hr2, index2) in zip(whole[6:], later):
        assert int(index) == int(index2)
        np.testing.assert_array_equal(lr, lr2)
        np.testing.assert_array_equal(hr, hr2)
    for (lr, hr, index), chosen in zip(whole, scale_choices(3, 10, 3)):
        assert int(index) == chosen and hr.shape[1] == lr.shape[1] * SCALES[chosen]


def test_train_scales_configuration():
    config = cfg.resolve("mdsr-16", {"train_scales": [3, 4]})
    assert (config["scale"], config["train_scales"]) == (3, [3, 4])
    single = cfg.resolve("mdsr-16", {"train_scales": [4]})
    assert (single["scale"], single["train_scales"]) == (4, None)
    assert cfg.resolve("mdsr")["num_res_blocks"] == 80
    full = cfg.resolve("mdsr-16")
    assert (full["train_scales"], full["lr_patch"], full["epochs"]) == ([2, 3, 4], 48, 650)
    with pytest.raises(cfg.ConfigError, match="only a multi-scale model"):
        cfg.resolve("edsr-16", {"train_scales": [2, 3]})
    assert cfg.resolve("mdsr-16", {"train_scales": [8, 2], "branch_scales": [2, 8]})["scale"] == 8
    with pytest.raises(cfg.ConfigError, match="scale 5 is not supported"):
        cfg.resolve("mdsr-16", {"train_scales": [2, 5]})
    with pytest.raises(cfg.ConfigError, match="one device"):
        cfg.resolve("mdsr-16", {"strategy": "mirrored"})


TINY = ["--set", "num_filters=8", "--set", "num_res_blocks=1", "--steps-per-epoch", "3",
        "--batch-size", "2", "--set", "lr_patch=12", "--set", "valid_crop=16", "--seed", "1",
        "--verbose", "0"]


def backup_arrays(run_dir):
    (path,) = glob.glob(os.path.join(run_dir, "backup", "*.weights.h5"))
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda n, i: out.__setitem__(n, i[()]) if isinstance(i, h5py.Dataset)
                     else None)
    return out


@pytest.mark.slow
def test_train_cli_multi_scale_reports_every_scale(tmp_path, capsys):
    from sisr import train

    assert train.main(["--profile", "mdsr-16", "--scale", "2+3+4", "--epochs", "1",
                       "--outdir", str(tmp_path), *TINY]) == 0
    out = capsys.readouterr().out
    for scale in SCALES:
        assert f"images, x{scale}, RGB, shave {scale + 6}): model" in out
    (run_dir,) = glob.glob(str(tmp_path / "*-mdsr-16"))
    with open(os.path.join(run_dir, "training.csv")) as f:
        header = f.readline()
    assert all(f"val_psnr_x{s}" in header for s in SCALES)
    best = load_model(os.path.join(run_dir, "best.keras"))
    assert is_multi_scale(best) and best.arguments["branch_scales"] == list(SCALES)
    keras.backend.clear_session()


def test_train_cli_refuses_bad_scales(capsys):
    from sisr import train

    assert train.main(["--profile", "edsr-16", "--scale", "2+3"]) == 2
    assert "only a multi-scale model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--profile", "mdsr-16", "--scale", "2+x"])
    assert "2+x" in capsys.readouterr().err


@pytest.mark.slow
def test_a_resumed_multi_scale_run_equals_the_uninterrupted_one(tmp_path):
    from sisr import train

    common = ["--profile", "mdsr-16", "--scale", "2+3+4", *TINY]
    assert train.main([*common, "--epochs", "3", "--outdir", str(tmp_path / "a")]) == 0
    assert train.main([*common, "--epochs", "2", "--outdir", str(tmp_path / "b")]) == 0
    (run_b,) = glob.glob(str(tmp_path / "b" / "*"))
    assert train.main(["--resume", run_b, "--epochs", "3", "--verbose", "0"]) == 0
    (run_a,) = glob.glob(str(tmp_path / "a" / "*"))
    a, b = backup_arrays(run_a), backup_arrays(run_b)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    keras.backend.clear_session()


def test_registry_entries_check_the_official_hash_prefixes():
    entries = load_registry(pretrained.registry.DEFAULT_REGISTRY)
    for stem, prefix, blocks in (("mdsr-baseline", "a00cab12", 16), ("mdsr", "4a78bedf", 80)):
        for scale in SCALES:
            e = entries[f"{stem}-x{scale}"]
            assert e.url.endswith(f"-{prefix}.pt") and e.converter == "mdsr-pytorch"
            assert e.args == {"scale": scale, "num_filters": 64, "num_res_blocks": blocks,
                              "branch_scales": list(SCALES)}
            assert e.sha256_prefix == prefix and files.hash_matches(e, prefix + "0" * 56)
            assert not files.hash_matches(e, "f" + prefix[1:] + "0" * 56)
    # (tests/test_pretrained.py builds every entry and checks its parameter count)
    assert get_spec("mdsr").layouts == ("mdsr-pytorch",)


def test_torch_adam_counts_steps_per_weight_and_round_trips(tmp_path):
    from sisr.optimizers import TorchAdam

    a, b = keras.Variable(np.ones(3, np.float32)), keras.Variable(np.ones(2, np.float32))
    opt = TorchAdam(learning_rate=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    opt.build([a, b])
    grads = [np.array([1.0, -2.0, 0.5], np.float32), np.array([3.0, 0.0, 1.0], np.float32)]
    opt.apply([grads[0], np.array([1.0, 1.0], np.float32)], [a, b])
    opt.apply([grads[1]], [a])  # b left out: not updated, its count stays 1
    # torch.optim.Adam's rule, per parameter (step counts 2 for a, 1 for b)
    m = v = np.zeros(3)
    expected_a = np.ones(3)
    for t, g in enumerate(grads, 1):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        expected_a -= 0.1 / (1 - 0.9 ** t) * m / (np.sqrt(v) / np.sqrt(1 - 0.999 ** t) + 1e-8)
    np.testing.assert_allclose(np.asarray(a), expected_a, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(b), 1 - 0.1 * np.ones(2), rtol=1e-6)
    assert [float(s) for s in opt._steps] == [2.0, 1.0]
    # its state goes into a single-scale run's .keras backup and comes back (`restore`)
    model = mdsr(2, num_filters=4, num_res_blocks=1)
    model.compile(optimizer=TorchAdam(), loss="mae")
    x = np.zeros((1, 4, 4, 3), np.float32)
    model.train_on_batch(x, np.zeros((1, 8, 8, 3), np.float32))
    save_model(model, tmp_path / "m.keras")
    fresh = mdsr(2, num_filters=4, num_res_blocks=1)
    fresh.compile(optimizer=TorchAdam(), loss="mae")
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(tmp_path / "m.keras")
    assert [float(s) for s in fresh.optimizer._steps] == [1.0] * len(model.trainable_variables)
    assert int(fresh.optimizer.iterations) == 1
    keras.backend.clear_session()


def test_a_one_scale_checkpoint_ports_into_a_single_scale_model():
    # EDSR-PyTorch's MDSR trained with one --scale has one branch (here: the x4 one)
    state, z = load(fixtures()[0])
    one = {k.replace("pre_process.2.", "pre_process.0.").replace("upsample.2.", "upsample.0."): v
           for k, v in state.items()
           if not k.startswith(("pre_process.0.", "pre_process.1.", "upsample.0.", "upsample.1."))}
    model = port(one)
    assert model.arguments["scale"] == 4 and model.arguments["branch_scales"] == [4]
    assert not is_multi_scale(model)
    y = np.asarray(model(nhwc(z["input"]))).transpose(0, 3, 1, 2)
    assert np.abs(y - z["output_x4"]).max() < 1e-3
    with pytest.raises(PortError, match="scale: requested 2"):
        port(one, scale=2)
    keras.backend.clear_session()
