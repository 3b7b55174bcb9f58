"""SRCNN, FSRCNN and ESPCN: the papers' and keras-io's parameter counts, the SRCNN
variants' options, FSRCNN's deconvolution alignment. (Shapes, round trips, tiling and
bfloat16 of the tiny configurations: tests/test_contract.py.)"""

import keras
import numpy as np
import pytest

from sisr.model import espcn, fsrcnn, srcnn
from sisr.model.espcn import PAPER
from sisr.receptive_field import locality
from sisr.saving import load_model, save_model


def kernel_count(layer):
    return sum(int(np.prod(w.shape)) for w in layer.weights if "kernel" in w.path)


def weight_count(layer):
    return sum(int(np.prod(w.shape)) for w in layer.weights)


def one_channel(model, first, last, count=kernel_count):
    """The count of the same network on one channel (the papers' Y): the first layer's
    and the last layer's weights scale with the image channels, 3 here."""
    total = sum(count(layer) for layer in model.layers)
    scaled = count(model.get_layer(first)) + count(model.get_layer(last))
    assert scaled % 3 == 0
    return total - scaled * 2 // 3


def test_srcnn_955_has_the_papers_57184_weights():
    # Dong et al. (TPAMI 2016): 9-5-5, n1 = 64, n2 = 32, 57,184 parameters
    # (weights; the paper's count leaves the biases out)
    for scale in (2, 3, 4):
        model = srcnn(scale)
        assert one_channel(model, "conv1", "output_conv") == 57184
        assert model.count_params() == 9 * 9 * 3 * 64 + 64 + 5 * 5 * 64 * 32 + 32 \
            + 5 * 5 * 32 * 3 + 3
    # the 9-1-5 network: 8,032
    assert one_channel(srcnn(2, kernel_sizes=[9, 1, 5]), "conv1", "output_conv") == 8032


def test_fsrcnn_has_the_papers_12464_weights():
    # Dong, Loy and Tang (ECCV 2016): FSRCNN (56, 12, 4), 12,464
    # weights (biases left out); the deconvolution's weights do not depend on the scale
    for scale in (2, 3, 4):
        model = fsrcnn(scale)
        assert one_channel(model, "feature_conv", f"upsample_x{scale}_deconv") == 12464


def test_espcn_has_keras_ios_parameters():
    # keras-io's ESPCN at upscale_factor 3 on Y: 59,657 parameters (model.summary())
    model = espcn(3)
    first = weight_count(model.get_layer("conv1")) - 64  # its bias does not scale
    last = weight_count(model.get_layer("output_x3_conv"))
    assert model.count_params() - (first + last) * 2 // 3 == 59657
    # the paper's network: (5, 64), (3, 32), 3, tanh
    paper = espcn(3, **PAPER)
    assert [layer.name for layer in paper.layers if layer.weights] == \
        ["conv1", "conv2", "output_x3_conv"]
    assert paper.get_layer("conv1").get_config()["activation"] == "tanh"
    assert one_channel(paper, "conv1", "output_x3_conv") == 5 * 5 * 64 + 3 * 3 * 64 * 32 \
        + 3 * 3 * 32 * 9


def test_fsrcnn_deconvolution_is_centred():
    # A 9x9 deconvolution of stride r with Keras' "same" padding: output r * n, and an
    # impulse at LR pixel (i, j) lands with the kernel's centre within half an HR pixel of
    # that pixel's centre, r * i + (r - 1) / 2 (PyTorch ports padding 4 are (r-1)/2 off).
    for scale in (2, 3, 4):
        model = fsrcnn(scale, d=4, s=2, m=1)
        layer = model.get_layer(f"upsample_x{scale}_deconv")
        kernel = np.zeros((9, 9, 3, 4), np.float32)
        kernel[4, 4] = 1.0  # only the centre tap
        layer.set_weights([kernel, np.zeros(3, np.float32)])
        x = np.zeros((1, 7, 7, 4), np.float32)
        x[0, 3, 3] = 1.0
        y = np.asarray(keras.ops.convert_to_tensor(layer(x)))
        assert y.shape == (1, 7 * scale, 7 * scale, 3)
        hit = np.argwhere(y[0, :, :, 0] != 0)
        assert len(hit) == 1
        centre = 3 * scale + (scale - 1) / 2
        assert abs(hit[0][0] - centre) <= 0.5 and abs(hit[0][1] - centre) <= 0.5


@pytest.mark.parametrize("options", [
    {"num_layers": 8},
    {"upsampler": "subpixel", "global_residual": True},
    {"batch_norm": True, "activation": "leaky_relu"},
    {"activation": "prelu", "upsampler": "subpixel"},
    {"channel_attention_reduction": 2},
    {"num_layers": 8, "residual_blocks": True, "batch_norm": True},
])
def test_srcnn_variants_build_run_and_round_trip(tmp_path, options):
    model = srcnn(3, num_filters=8, **options)
    x = np.random.default_rng(0).uniform(0, 255, (1, 9, 11, 3)).astype(np.float32)
    y = np.asarray(model(x))
    assert y.shape == (1, 27, 33, 3)
    path = str(tmp_path / "m.keras")
    save_model(model, path)
    again = load_model(path)
    assert again.arguments == model.arguments
    np.testing.assert_allclose(np.asarray(again(x)), y, atol=1e-4)
    tileable = locality(model).radius is not None
    assert tileable == ("channel_attention_reduction" not in options)


def test_srcnn_layouts():
    deep = srcnn(2, num_layers=8)
    assert [deep.get_layer(f"conv{i}").get_config()["kernel_size"][0] for i in range(1, 8)] \
        == [9, 5, 3, 3, 3, 3, 3]
    assert deep.get_layer("output_conv").get_config()["kernel_size"] == (5, 5)
    assert deep.get_layer("conv7").get_config()["filters"] == 32
    # the end upsampler runs the convs at LR resolution and carries the scale in its name
    end = srcnn(4, upsampler="subpixel")
    assert end.get_layer("output_x4_conv").get_config()["filters"] == 3 * 16
    assert "bicubic" not in {layer.name for layer in end.layers}
    # the global residual: with zero output weights the model is the bicubic upscale
    residual = srcnn(2, global_residual=True, num_filters=4, kernel_sizes=[3, 3, 3])
    layer = residual.get_layer("output_conv")
    layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    x = np.random.default_rng(1).uniform(0, 255, (1, 5, 6, 3)).astype(np.float32)
    from sisr.imresize import imresize
    np.testing.assert_allclose(np.asarray(residual(x))[0], imresize(x[0].astype(float), 2),
                               atol=1e-3)


def test_srcnn_residual_blocks_wrap_each_equal_width_hidden_conv():
    model = srcnn(2, num_layers=8, num_filters=4, residual_blocks=True)
    names = {layer.name for layer in model.layers}
    # conv1 widens 3 -> 4 and conv7 narrows 4 -> 2: only conv2..conv6 have shortcuts
    assert {n for n in names if n.endswith("_residual")} == {
        f"conv{i}_residual" for i in range(2, 7)}
    assert not any(n.endswith("_residual") for n in {
        layer.name for layer in srcnn(2, residual_blocks=True).layers})
    # a block whose conv outputs zeros (ReLU(0) = 0) passes its input through unchanged
    probe = keras.Model(model.input, [model.get_layer("conv2_residual").input[0],
                                      model.get_layer("conv2_residual").output])
    conv = model.get_layer("conv2")
    conv.set_weights([np.zeros_like(w) for w in conv.get_weights()])
    x = np.random.default_rng(2).uniform(0, 255, (1, 5, 6, 3)).astype(np.float32)
    before, after = (np.asarray(t) for t in probe(x))
    np.testing.assert_array_equal(before, after)
    plain = srcnn(2, num_layers=8, num_filters=4)
    assert plain.count_params() == model.count_params()


@pytest.mark.parametrize("builder,bad,match", [
    (srcnn, {"activation": "gelu"}, "activation"),
    (srcnn, {"kernel_sizes": [9, 5]}, "kernel_sizes"),
    (srcnn, {"upsampler": "deconv"}, "upsampler"),
    (srcnn, {"num_layers": 1}, "num_layers"),
    (srcnn, {"residual_blocks": 1}, "residual_blocks"),
    (fsrcnn, {"d": 0}, "`d`"),
    (espcn, {"kernel_sizes": [5, 3]}, "kernel_sizes"),
    (espcn, {"activation": "prelu"}, "activation"),
])
def test_bad_arguments_fail_with_one_line(builder, bad, match):
    with pytest.raises(ValueError, match=match):
        builder(2, **bad)
