"""A new architecture is one module plus data: a toy network with global-pooling channel
attention, registered through `sisr.model.register` alone (tests/toy_port/attention.py),
is picked up by the port CLI, tiling, bfloat16 copies and the contract suite."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import sisr
from sisr import upscale
from sisr.model import MODELS, model_info, register, unregister
from sisr.port.cli import main as port_main
from sisr.port.rules import shuffle_permutation
from sisr.precision import keep_float32, mixed_copy
from sisr.upscaling import NotTileableError, upscale_image
from toy_port import attention

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def toy():
    with attention.registered() as spec:
        yield spec


def state_dict_of(model, scale):
    """The toy model's weights in its PyTorch-style layout (OIHW, PyTorch's shuffle order)."""
    state = {}
    for key, layer in (("head", "head_conv"), ("du", "ca_down"), ("up", "ca_up"),
                       ("tail", f"tail_x{scale}_conv")):
        kernel, bias = model.get_layer(layer).get_weights()
        weight = kernel.transpose(3, 2, 0, 1)
        if key == "tail":  # sisr's channel k is PyTorch's perm[k]
            perm = shuffle_permutation(weight.shape[0], scale)
            weight, bias = weight.copy(), bias.copy()
            weight[perm], bias[perm] = kernel.transpose(3, 2, 0, 1), model.get_layer(
                layer).get_weights()[1]
        state[f"{key}.weight"], state[f"{key}.bias"] = weight, bias
    return state


def image(h=20, w=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_the_registry_knows_it_only_while_registered(toy):
    assert MODELS["toy_attention"] is toy
    unregister("toy_attention")
    assert "toy_attention" not in MODELS
    register(toy)


@pytest.mark.parametrize("scale", [2, 3])
def test_the_port_cli_finds_its_layout_from_the_registry(toy, tmp_path, capsys, scale):
    source = toy.build_tiny(scale)
    checkpoint = tmp_path / "toy.npz"
    np.savez(checkpoint, **state_dict_of(source, scale))
    out = tmp_path / "toy.keras"
    assert port_main([str(checkpoint), "-o", str(out)]) == 0  # no --from, no arguments
    assert "toy_attention" in capsys.readouterr().out
    ported = sisr.load_model(out)
    assert model_info(ported) == {"builder": "toy_attention", "scale": scale,
                                  "arguments": {"scale": scale, "num_filters": 4,
                                                "reduction": 4}}
    lr = image()[None]
    np.testing.assert_array_equal(np.asarray(sisr.resolve(ported, lr)),
                                  np.asarray(sisr.resolve(source, lr)))
    unregister("toy_attention")
    try:  # unregistered, its layout is unknown
        assert port_main([str(checkpoint), "-o", str(tmp_path / "again.keras")]) == 2
        assert "match no known layout" in capsys.readouterr().err
    finally:
        register(toy)


def test_global_pooling_is_never_tiled(toy, tmp_path, capsys):
    model = toy.build_tiny(2)
    x = image(40, 44)
    whole = np.asarray(sisr.resolve(model, x[None]))[0]
    with pytest.raises(NotTileableError, match=r"'toy_attention' is registered as not local"):
        upscale_image(model, x, tile=8)
    # Declared local by mistake, the layers still give it away.
    unregister(toy.name)
    try:
        register(dataclasses.replace(toy, local=True))
        with pytest.raises(NotTileableError, match=r"ca_pool.*GlobalAveragePooling2D"):
            upscale_image(model, x, tile=8)
    finally:
        unregister(toy.name)
        register(toy)
    np.testing.assert_array_equal(upscale_image(model, x), whole)  # whole image by default
    # Tiles would differ: the attention of a crop is not that of the image.
    assert not np.array_equal(np.asarray(sisr.resolve(model, x[None, :20]))[0],
                              whole[:40])
    path = tmp_path / "toy.keras"
    sisr.save_model(model, path)
    Image.fromarray(x).save(tmp_path / "x.png")  # the CLI refuses tiles too
    assert upscale.main(["-i", str(tmp_path / "x.png"), "-o", str(tmp_path / "out"),
                         "--model", str(path), "--tile", "8"]) == 2
    assert "toy_attention' is registered as not local" in capsys.readouterr().err


def test_bfloat16_copies_keep_its_declared_layers_float32(toy):
    model = toy.build_tiny(2)
    assert sorted(keep_float32(model)) == ["denormalize", "head_conv", "normalize"]
    copy = mixed_copy(model)
    for layer in copy.layers[1:]:
        expected = "float32" if layer.name in keep_float32(model) else "bfloat16"
        assert layer.compute_dtype == expected, layer.name
    fast = np.asarray(sisr.resolve(model, image()[None], precision="bfloat16")).astype(int)
    exact = np.asarray(sisr.resolve(model, image()[None])).astype(int)
    assert np.abs(fast - exact).max() <= 4


def test_the_contract_suite_runs_on_it():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [HERE, *filter(None, [os.environ.get("PYTHONPATH")])]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "toy_port.plugin", "-k", "toy_attention",
         "-p", "no:cacheprovider", os.path.join(HERE, "test_contract.py")],
        cwd=os.path.dirname(HERE), env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 20 and "skipped" not in summary, summary  # every check, both scales
