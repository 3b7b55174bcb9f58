"""Three GAN training steps of sisr against BasicSR's own: Real-ESRGAN's RealESRGANModel and
ESRGAN's ESRGANModel (`optimize_parameters`), from the same weights on the same batches.

Fixtures: tests/data/gan_steps, made by tests/data/make_gan_step_fixtures.py (see its
docstring for what was isolated). Compared, per step: the pixel, perceptual and
generator-GAN losses and the discriminator's loss (BasicSR's l_d_real + l_d_fake); after
the three steps: the generator's weights, their EMA (the saved model) and the
discriminator's weights (and the U-Net's u and v), as updates from the initial weights.
The USM-sharpened targets sisr computes in the step are also compared with BasicSR's
USMSharp.
"""

import json
import os

import numpy as np
import pytest

from reference_data import DATA
from sisr.model import unet_discriminator_sn, vgg_style_discriminator
from sisr.model import unet_discriminator as unet_module
from sisr.model import vgg_discriminator as vgg_module
from sisr.optimizers import TorchAdam
from sisr.perceptual import PerceptualLoss
from sisr.port import port_checkpoint
from sisr.training.srgan import LogitsGAN, RelativisticGAN, usm_sharpen_batch
from test_gan_parts import fixture_tools
from test_losses import write_legacy_h5

STEPS_DIR = os.path.join(DATA, "gan_steps")
# float32 on both sides, summation orders apart. Losses: within 1e-4 relative (measured
# below 1e-5). Weights are compared as updates from the initial weights: three Adam steps of
# 1e-4 move each weight by up to 3e-4, and Adam's division by sqrt(v) magnifies the
# rounding of a weight's tiny gradients (one whose gradient changes sign between steps),
# so a few elements differ by up to 5e-5 (measured) while 99% of all the differences stay
# within 6e-6; the bounds are one step's learning rate for any element and 6e-6 for 99% of
# them. The EMA takes 1e-3 of each step's weights: its bounds are 1e-3 of the sum of the
# three steps' (3e-7 for any element; 99%: 3e-8, measured below 2e-8).
LOSS_RTOL = 1e-4
TOLERANCES = {"G": (1e-4, 6e-6), "D": (1e-4, 6e-6), "EMA": (3e-7, 3e-8)}  # (max, 99%)


def manifest():
    with open(os.path.join(STEPS_DIR, "manifest.json")) as f:
        return json.load(f)


def load(name):
    with np.load(os.path.join(STEPS_DIR, name)) as z:
        return {k: z[k] for k in z.files}


def prefixed(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def nhwc(x):
    return np.ascontiguousarray(np.asarray(x).transpose(0, 2, 3, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def stand_in_vgg(tmp_path_factory):
    """The fixture's stand-in VGG19 as a Keras VGG19 weights file."""
    seed = int(manifest()["vgg19_stand_in"].split("(")[1].rstrip(")"))
    convs = fixture_tools().stand_in_vgg19(seed)
    path = tmp_path_factory.mktemp("gan_steps_vgg") / "vgg19_stand_in.h5"
    write_legacy_h5(path, {name: [kernel, bias] for name, kernel, bias in convs})
    return str(path)


def generator(state):
    return port_checkpoint(state).model


def discriminator(case, state):
    if case == "realesrgan":
        model = unet_discriminator_sn(num_feat=4)
        unet_module.load_basicsr_state(model, state)
    else:
        model = vgg_style_discriminator(hr_size=128, num_feat=2)
        vgg_module.load_basicsr_state(model, state)
    return model


def adam():
    return TorchAdam(learning_rate=1e-4, beta_1=0.9, beta_2=0.99, epsilon=1e-8)


def build_gan(case, arrays, vgg_path):
    settings = manifest()["files"][f"{case}.npz"]["settings"]
    loss = PerceptualLoss(layer_weights=settings["perceptual_layers"], vgg_weights=vgg_path,
                          use_input_norm=True, range_norm=False, criterion="l1",
                          perceptual_weight=settings["perceptual_weight"])
    model_class = LogitsGAN if case == "realesrgan" else RelativisticGAN
    gan = model_class(generator(prefixed(arrays, "g0/")),
                      discriminator(case, prefixed(arrays, "d0/")), content_loss=loss)
    gan.compile(adam(), adam(), content_weight=1.0,
                adversarial_weight=settings["gan_weight"],
                pixel_weight=settings["pixel_l1_weight"], pixel_loss="l1",
                usm_targets=["pixel", "content"] if case == "realesrgan" else [],
                ema_decay=settings["ema_decay"], jit_compile=False)
    return gan, settings


def assert_same_updates(got, expected, initial, what):
    """The updates `got - initial` equal `expected - initial` to `TOLERANCES[what]`: the
    largest difference, and the 99th percentile of the differences of all the weights."""
    largest, share = TOLERANCES[what]
    assert len(got) == len(expected) == len(initial)
    differences, moved = [], 0.0
    for i, (a, b, w0) in enumerate(zip(got, expected, initial)):
        a, b, w0 = (np.asarray(x, np.float64) for x in (a, b, w0))
        moved = max(moved, float(np.abs(b - w0).max()))
        np.testing.assert_allclose(a - w0, b - w0, rtol=0, atol=largest,
                                   err_msg=f"{what} weight {i}")
        differences.append(np.abs((a - w0) - (b - w0)).ravel())
    assert np.percentile(np.concatenate(differences), 99) <= share, what
    assert moved > 10 * share, f"{what}: nothing moved"


@pytest.mark.parametrize("case", [
    pytest.param("realesrgan", marks=pytest.mark.slow),
    pytest.param("esrgan", marks=pytest.mark.slow)])
def test_three_steps_equal_basicsr(case, stand_in_vgg):
    arrays = load(f"{case}.npz")
    gan, settings = build_gan(case, arrays, stand_in_vgg)
    initial_g = [np.asarray(w) for w in gan.generator.get_weights()]
    initial_d = [np.asarray(w) for w in gan.discriminator.get_weights()]
    for step in range(3):
        lr, hr = nhwc(arrays[f"lq{step}"]), nhwc(arrays[f"gt{step}"])
        if case == "realesrgan":  # sisr's USM in the step against BasicSR's USMSharp
            np.testing.assert_allclose(usm_sharpen_batch(hr).numpy(),
                                       nhwc(arrays[f"gt_usm{step}"]) * 255.0, atol=2e-3)
        gan.reset_metrics()
        logs = {k: float(v) for k, v in gan.train_step((lr, hr)).items()}
        loss = prefixed(arrays, f"loss{step}/")
        expected = {
            "pixel_loss": loss["l_g_pix"] / settings["pixel_l1_weight"],
            "content_loss": loss["l_g_percep"],
            "adversarial_loss": loss["l_g_gan"] / settings["gan_weight"],
            "discriminator_loss": loss["l_d_real"] + loss["l_d_fake"],
        }
        for key, value in expected.items():
            np.testing.assert_allclose(logs[key], value, rtol=LOSS_RTOL,
                                       err_msg=f"step {step + 1} {key}")
    assert_same_updates(gan.generator.get_weights(),
                        generator(prefixed(arrays, "g/")).get_weights(), initial_g, "G")
    assert_same_updates(gan.export_weights(),
                        generator(prefixed(arrays, "ema/")).get_weights(), initial_g, "EMA")
    final_d = discriminator(case, prefixed(arrays, "d/"))
    trainable = [id(w) for w in gan.discriminator.trainable_weights]
    index = [i for i, w in enumerate(gan.discriminator.weights) if id(w) in trainable]
    assert_same_updates([np.asarray(w) for w in gan.discriminator.trainable_weights],
                        [np.asarray(w) for w in final_d.trainable_weights],
                        [initial_d[i] for i in index], "D")
    # The U-Net's u and v (BasicSR iterates three times a step, sisr twice): the same
    # directions, to the accuracy of the power iteration from converged vectors.
    for ours, theirs in zip(gan.discriminator.non_trainable_weights,
                            final_d.non_trainable_weights):
        a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
        if case == "realesrgan":
            cosine = abs(float(a @ b)) / (np.linalg.norm(a) * np.linalg.norm(b))
            assert 1 - cosine < 1e-5, ours.path  # measured: below 7e-7
