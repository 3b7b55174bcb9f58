"""Tests of the weight-norm Adam optimiser and the data-dependent initialisation."""

import copy

import numpy as np
import pytest
import keras
import tensorflow as tf
from keras import ops

from sisr.model import wdsr_b
from sisr.optimizers import WeightNormAdam, data_dependent_init
from sisr.saving import load_model


# ------------------------------------------------ numpy reference (docs/reference.md §4)

def _np_adam(x, grad, m, v, t, lr, beta_1=0.9, beta_2=0.999, eps=1e-7):
    m = beta_1 * m + (1 - beta_1) * grad
    v = beta_2 * v + (1 - beta_2) * grad ** 2
    # Keras converts the betas to float32 tensors before raising them to the power t.
    b1, b2 = float(np.float32(beta_1)), float(np.float32(beta_2))
    alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    return x - alpha * m / (np.sqrt(v) + eps), m, v


def _np_weight_norm_adam(w, grads, lrs):
    """docs/reference.md §4 in float64 for a kernel `w` (out = last axis), grads per step."""
    w = w.astype(np.float64)
    axes = tuple(range(w.ndim - 1))
    s = np.ones(w.shape[-1])
    m_v, v_v = np.zeros_like(w), np.zeros_like(w)
    m_g, v_g = np.zeros_like(s), np.zeros_like(s)
    for t, (dw, lr) in enumerate(zip(grads, lrs), start=1):
        vee = w / s
        n = np.sqrt((vee ** 2).sum(axes))
        g = s * n
        dg = (dw * vee).sum(axes) / n
        dvee = s * (dw - (dg / n) * vee)
        vee, m_v, v_v = _np_adam(vee, dvee, m_v, v_v, t, lr)
        g, m_g, v_g = _np_adam(g, dg, m_g, v_g, t, lr)
        s = g / np.sqrt((vee ** 2).sum(axes))
        w = s * vee
    return w, s


def _channel_norms(w):
    return np.sqrt((np.asarray(w, np.float64) ** 2).sum(axis=tuple(range(w.ndim - 1))))


# ---------------------------------------------------------------- exact steps

def test_single_step_hand_computed():
    # Kernel (in=2, out=2): channel 0 = (3, 4), norm 5; channel 1 = (0, 1), norm 1.
    kernel = keras.Variable(np.array([[3.0, 0.0], [4.0, 1.0]], "float32"), name="kernel")
    bias = keras.Variable(np.zeros(2, "float32"), name="bias")
    optimizer = WeightNormAdam(learning_rate=0.1, epsilon=1e-12)
    optimizer.apply_gradients([
        (np.array([[1.0, 0.0], [0.0, 1.0]], "float32"), kernel),
        (np.array([0.5, -2.0], "float32"), bias),
    ])
    # By hand: dg = (0.6, 1.0); dV = ((0.64, -0.48), (0, 0)). Adam's first step moves
    # every coordinate with a non-zero gradient by lr * sign(gradient):
    # V' = ((2.9, 4.1), (0, 1)), g' = (4.9, 0.9), W' = g' V' / ||V'||.
    v0 = np.array([2.9, 4.1])
    expected = np.array([4.9 * v0 / np.linalg.norm(v0), [0.0, 0.9]]).T
    # rtol: float32 rounds 1 - 0.999 (Adam's bias correction) with a ~1e-5 relative error.
    np.testing.assert_allclose(kernel.numpy(), expected, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(bias.numpy(), [-0.1, 0.1], rtol=2e-5)
    scale = next(v for v in optimizer.variables if v.path.endswith("kernel_wn_scale"))
    np.testing.assert_allclose(scale.numpy(), [4.9 / np.linalg.norm(v0), 0.9], rtol=2e-5)


@pytest.mark.parametrize("schedule", [False, True])
def test_steps_match_numpy_reference(schedule):
    # float64 variables, so that the comparison is tight: Adam's normalisation amplifies
    # float32 round-off of small gradient entries up to ~lr * 1e-4.
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(3, 3, 4, 5))
    grads = [rng.normal(size=w0.shape) for _ in range(5)]
    if schedule:
        learning_rate = keras.optimizers.schedules.PiecewiseConstantDecay([2], [0.05, 0.01])
        lrs = [0.05, 0.05, 0.05, 0.01, 0.01]  # iterations 0, 1, 2 use the first value
    else:
        learning_rate, lrs = 0.05, [0.05] * 5
    kernel = keras.Variable(w0, name="kernel", dtype="float64")
    optimizer = WeightNormAdam(learning_rate=learning_rate)
    for grad in grads:
        optimizer.apply_gradients([(grad, kernel)])
    # The learning rate is float32 inside the optimiser: 0.05 is off by ~1.5e-8 relative.
    lrs = [float(np.float32(lr)) for lr in lrs]
    expected_w, expected_s = _np_weight_norm_adam(w0, grads, lrs)
    np.testing.assert_allclose(kernel.numpy(), expected_w, rtol=1e-9, atol=1e-11)
    scale = next(v for v in optimizer.variables if v.path.endswith("kernel_wn_scale"))
    assert scale.dtype == "float64"
    np.testing.assert_allclose(scale.numpy(), expected_s, rtol=1e-9)


def test_unselected_variables_get_exactly_keras_adam():
    rng = np.random.default_rng(2)
    values = [rng.normal(size=(4,)), rng.normal(size=(2, 3)), rng.normal(size=(3, 3))]
    names = ["bias", "kernel", "other"]
    ours = [keras.Variable(x.astype("float32"), name=n) for x, n in zip(values, names)]
    theirs = [keras.Variable(x.astype("float32"), name=n) for x, n in zip(values, names)]
    # Only `kernel` is weight-normalised; `bias` (rank 1) and `other` (unmatched) are not.
    optimizer = WeightNormAdam(learning_rate=0.01)
    adam = keras.optimizers.Adam(learning_rate=0.01)
    for _ in range(4):
        grads = [rng.normal(size=x.shape).astype("float32") for x in values]
        optimizer.apply_gradients(zip(grads, ours))
        adam.apply_gradients(zip(grads, theirs))
    np.testing.assert_array_equal(ours[0].numpy(), theirs[0].numpy())
    np.testing.assert_array_equal(ours[2].numpy(), theirs[2].numpy())
    assert not np.allclose(ours[1].numpy(), theirs[1].numpy(), atol=1e-4)


def test_weight_norm_off_is_keras_adam():
    rng = np.random.default_rng(3)
    w0 = rng.normal(size=(3, 3, 2, 4)).astype("float32")
    ours, theirs = keras.Variable(w0, name="kernel"), keras.Variable(w0, name="kernel")
    optimizer = WeightNormAdam(learning_rate=0.01, weight_norm=[])
    adam = keras.optimizers.Adam(learning_rate=0.01)
    for _ in range(3):
        grad = rng.normal(size=w0.shape).astype("float32")
        optimizer.apply_gradients([(grad, ours)])
        adam.apply_gradients([(grad, theirs)])
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert len(optimizer.variables) == len(adam.variables)


# ---------------------------------------------------------------- (g, V) equivalence

def _explicit_forward(params, x):
    """conv3x3(4) + ReLU -> conv1x1(3) -> flatten -> dense(2), from explicit (g, V)."""
    def kernel(g, vee):
        axes = tuple(range(len(vee.shape) - 1))
        return g * vee / ops.sqrt(ops.sum(ops.square(vee), axis=axes))

    (g1, v1, b1), (g2, v2, b2), (g3, v3, b3) = params
    x = ops.relu(ops.conv(x, kernel(g1, v1), padding="same") + b1)
    x = ops.conv(x, kernel(g2, v2), padding="same") + b2
    x = ops.reshape(x, (x.shape[0], -1))
    return ops.matmul(x, kernel(g3, v3)) + b3


def _small_model():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(3, 1, padding="same", name="c2")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, name="d")(x)
    return keras.Model(inputs, outputs)


def test_trajectory_equals_adam_on_explicit_g_v_model():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 6, 6, 2)).astype("float32")
    y = rng.normal(size=(5, 2)).astype("float32")
    model = _small_model()
    for layer in model.layers[1:]:  # non-zero biases, so their gradients matter too
        if hasattr(layer, "bias"):
            layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32") * 0.1)
    params = []
    for layer in (model.get_layer("c1"), model.get_layer("c2"), model.get_layer("d")):
        w = layer.kernel.numpy()
        params.append([
            keras.Variable(_channel_norms(w).astype("float32"), name="g"),
            keras.Variable(w, name="v"),
            keras.Variable(layer.bias.numpy(), name="b"),
        ])
    flat_params = [p for group in params for p in group]
    optimizer = WeightNormAdam(learning_rate=0.01)
    adam = keras.optimizers.Adam(learning_rate=0.01)

    for step in range(10):
        with tf.GradientTape() as tape:
            loss = ops.mean(ops.square(model(x) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        with tf.GradientTape() as tape:
            loss_explicit = ops.mean(ops.square(_explicit_forward(params, x) - y))
        grads = tape.gradient(loss_explicit, flat_params)
        adam.apply_gradients(zip(grads, flat_params))
        np.testing.assert_allclose(float(loss), float(loss_explicit), rtol=1e-5)

        for layer, (g, vee, b) in zip(
            (model.get_layer("c1"), model.get_layer("c2"), model.get_layer("d")), params
        ):
            v_np = vee.numpy().astype(np.float64)
            w_explicit = g.numpy() * v_np / _channel_norms(v_np)
            np.testing.assert_allclose(layer.kernel.numpy(), w_explicit, atol=1e-5,
                                       err_msg=f"{layer.name} kernel, step {step + 1}")
            np.testing.assert_allclose(layer.bias.numpy(), b.numpy(), atol=1e-5,
                                       err_msg=f"{layer.name} bias, step {step + 1}")
    # The trajectory really differs from plain Adam on W (so the check above has teeth).
    plain = _small_model()
    assert not np.allclose(model.get_layer("c1").kernel.numpy(),
                           plain.get_layer("c1").kernel.numpy(), atol=1e-3)


# ---------------------------------------------------------------- selection and config

def test_default_selection_is_conv_and_dense_kernels():
    model = _small_model()
    optimizer = WeightNormAdam()
    selected = [v.path for v in model.trainable_variables if optimizer.is_weight_normalized(v)]
    assert selected == ["c1/kernel", "c2/kernel", "d/kernel"]
    optimizer.build(model.trainable_variables)
    # 2 Adam moments per variable (6) + gain moments and scale per kernel (3 x 3)
    # + iteration + learning rate.
    assert len(optimizer.variables) == 2 + 2 * 6 + 3 * 3


def test_selection_by_regex_list():
    model = _small_model()
    optimizer = WeightNormAdam(weight_norm=[r"^c\d/kernel$", "bias"])
    selected = [v.path for v in model.trainable_variables if optimizer.is_weight_normalized(v)]
    assert selected == ["c1/kernel", "c2/kernel"]  # rank-1 biases never weight-normalised
    assert WeightNormAdam(weight_norm="c2").weight_norm == ["c2"]


@pytest.mark.parametrize("bad", ["(", ["ok", 3], 5])
def test_bad_selector_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="weight_norm"):
        WeightNormAdam(weight_norm=bad)


def test_config_round_trip():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([200_000], [1e-3, 5e-4])
    optimizer = WeightNormAdam(learning_rate=schedule, beta_1=0.8, beta_2=0.99,
                               epsilon=1e-6, weight_norm=["conv"], clipnorm=1.0)
    config = optimizer.get_config()
    restored = WeightNormAdam.from_config(copy.deepcopy(config))  # from_config mutates
    assert restored.get_config() == config
    assert config["weight_norm"] == ["conv"] and config["beta_1"] == 0.8
    serialized = keras.saving.serialize_keras_object(optimizer)
    assert serialized["registered_name"] == "sisr>WeightNormAdam"
    again = keras.saving.deserialize_keras_object(copy.deepcopy(serialized))
    assert isinstance(again, WeightNormAdam)
    assert isinstance(again._learning_rate, keras.optimizers.schedules.PiecewiseConstantDecay)
    assert again.get_config() == config
    assert WeightNormAdam.from_config(WeightNormAdam().get_config()).weight_norm is None


# ---------------------------------------------------------------- saving, precision, distribution

def _tiny_wdsr():
    return wdsr_b(2, num_filters=4, num_res_blocks=1, res_block_expansion=2)


def _data(batch=4, size=8):
    rng = np.random.default_rng(5)
    lr = rng.uniform(0, 255, size=(batch, size, size, 3)).astype("float32")
    hr = rng.uniform(0, 255, size=(batch, 2 * size, 2 * size, 3)).astype("float32")
    return lr, hr


def _scales(optimizer):
    """The scales `s` by variable path without the optimiser's (auto-numbered) name."""
    return {v.path.split("/", 1)[1]: v.numpy() for v in optimizer.variables
            if v.path.endswith("_wn_scale")}


def test_state_survives_keras_save_and_load(tmp_path):
    lr, hr = _data()
    model = _tiny_wdsr()
    model.compile(optimizer=WeightNormAdam(learning_rate=1e-2), loss="mae")
    for _ in range(3):
        model.train_on_batch(lr, hr)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_model(path, compile=True)
    assert isinstance(loaded.optimizer, WeightNormAdam)
    assert int(loaded.optimizer.iterations) == 3
    scales = _scales(loaded.optimizer)
    assert scales and all(not np.allclose(s, 1.0) for s in scales.values())
    for name, value in _scales(model.optimizer).items():
        np.testing.assert_array_equal(scales[name], value)

    model.train_on_batch(lr, hr)
    loaded.train_on_batch(lr, hr)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)


def _assert_weight_norm_first_step(before, model, learning_rate):
    """After one step from s = 1, Adam moves each g by lr * sign(dg): every kernel's
    per-channel norm |g| changes by exactly lr (plain Adam on W would not do this)."""
    checked = 0
    for w0, variable in zip(before, model.trainable_variables):
        if variable.path.endswith("kernel"):
            change = np.abs(_channel_norms(variable.numpy()) - _channel_norms(w0))
            np.testing.assert_allclose(change, learning_rate, rtol=2e-3, err_msg=variable.path)
            checked += 1
    assert checked == sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)


def test_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    lr, hr = _data()
    model = _tiny_wdsr()
    before = [v.numpy() for v in model.trainable_variables]
    # A tiny epsilon: a step is lr * sign(dg) only where |dg| >> epsilon, and PyTorch's
    # default init (small kernels) gives some channels a |dg| near 1e-5.
    model.compile(optimizer=WeightNormAdam(learning_rate=1e-2, epsilon=1e-12), loss="mae")
    model.fit(lr, hr, batch_size=4, epochs=1, verbose=0)
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert all(v.dtype == "float32" for v in model.optimizer.variables
               if v.path.endswith(("_wn_scale", "_gain_momentum")))
    _assert_weight_norm_first_step(before, model, 1e-2)


def test_mixed_float16_with_loss_scale_optimizer():
    keras.mixed_precision.set_global_policy("mixed_float16")
    lr, hr = _data()
    model = _tiny_wdsr()
    before = [v.numpy() for v in model.trainable_variables]
    # A scale of 2**30 overflows float16 gradients (already 2**30 / 3072 outputs at the
    # model's output): the first step is skipped and must leave the weights and the
    # scales s untouched.
    optimizer = keras.optimizers.LossScaleOptimizer(
        WeightNormAdam(learning_rate=1e-2), initial_scale=2.0**30
    )
    model.compile(optimizer=optimizer, loss="mae")
    model.fit(lr, hr, batch_size=4, epochs=1, verbose=0)
    assert int(optimizer.inner_optimizer.iterations) == 0
    assert float(optimizer.dynamic_scale) == 2.0**29
    for w0, variable in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(variable.numpy(), w0)
    scales = _scales(optimizer.inner_optimizer).values()
    assert scales and all(np.array_equal(s, np.ones_like(s)) for s in scales)

    # A small scale: the first step is applied, in the weight-normalised space.
    optimizer = keras.optimizers.LossScaleOptimizer(
        WeightNormAdam(learning_rate=1e-2, epsilon=1e-12), initial_scale=2.0**4
    )
    model.compile(optimizer=optimizer, loss="mae")
    model.fit(lr, hr, batch_size=4, epochs=1, verbose=0)
    assert int(optimizer.inner_optimizer.iterations) == 1
    _assert_weight_norm_first_step(before, model, 1e-2)
    model.fit(lr, hr, batch_size=4, epochs=2, verbose=0)
    assert int(optimizer.inner_optimizer.iterations) == 3
    assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


def test_mirrored_strategy_matches_single_device():
    lr, hr = _data(batch=4)
    reference = _tiny_wdsr()
    initial = reference.get_weights()
    reference.compile(optimizer=WeightNormAdam(learning_rate=1e-2), loss="mae")
    reference.fit(lr, hr, batch_size=4, epochs=2, shuffle=False, verbose=0)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        model = _tiny_wdsr()
        model.set_weights(initial)
        model.compile(optimizer=WeightNormAdam(learning_rate=1e-2), loss="mae")
    model.fit(lr, hr, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2
    for a, b in zip(reference.weights, model.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.path)
    scales = _scales(model.optimizer)
    for name, value in _scales(reference.optimizer).items():
        np.testing.assert_allclose(scales[name], value, rtol=1e-5)
        assert not np.allclose(value, 1.0)


# ---------------------------------------------------------------- data-dependent init

def _pre_activation(model, layer, batch):
    x = keras.Model(model.input, layer.input)(batch)
    y = tf.nn.conv2d(x, layer.kernel, strides=1, padding="SAME") + layer.bias
    return np.asarray(y, np.float64)


def test_data_dependent_init_normalises_every_layer():
    lr, _ = _data(batch=3, size=12)
    model = _tiny_wdsr()
    names = data_dependent_init(model, lr)
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert names == convs  # all of them, in forward order
    for name in names:
        y = _pre_activation(model, model.get_layer(name), lr)
        np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, rtol=1e-3, err_msg=name)


def test_data_dependent_init_only_touches_selected_layers():
    lr, _ = _data(batch=2)
    model = _tiny_wdsr()
    before = {v.path: v.numpy() for v in model.weights}
    assert data_dependent_init(model, lr, weight_norm=["head_conv"]) == ["head_conv"]
    for v in model.weights:
        changed = not np.array_equal(v.numpy(), before[v.path])
        assert changed == v.path.startswith("head_conv/"), v.path


def test_data_dependent_init_sequential_conv_and_dense():
    rng = np.random.default_rng(6)
    batch = rng.normal(size=(16, 5, 5, 2)).astype("float32")
    model = keras.Sequential([
        keras.Input((5, 5, 2)),
        keras.layers.Conv2D(3, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(4, activation="tanh", name="dense"),
    ])
    assert data_dependent_init(model, batch) == ["conv", "dense"]
    dense = model.get_layer("dense")
    x = np.asarray(keras.Model(model.inputs[0], dense.input)(batch), np.float64)
    y = x @ dense.kernel.numpy() + dense.bias.numpy()
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=0), 1.0, rtol=1e-4)


def test_data_dependent_init_needs_a_built_model():
    with pytest.raises(ValueError, match="no symbolic inputs"):
        data_dependent_init(keras.Sequential([keras.layers.Dense(2)]), np.zeros((2, 3)))
