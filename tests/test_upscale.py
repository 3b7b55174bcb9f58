"""sisr.upscaling (seamless tiling, channel layouts, self-ensemble) and the sisr.upscale CLI's
file handling."""

import os
import re
import stat

import keras
import numpy as np
import pytest
from PIL import Image

import sisr
from sisr import upscale as up
from sisr import upscaling
from sisr.imresize import imresize
from sisr.model import discriminator, edsr, srresnet, wdsr_b


def tiny_edsr(scale=2):
    return edsr(scale, num_filters=8, num_res_blocks=1)


def random_image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny-x2.keras"
    sisr.save_model(tiny_edsr(2), path)
    return str(path)


# ------------------------------------------------------------------ library


def test_receptive_radius_of_sisr_models():
    # head + 2 block convs + body + upsampling conv at LR + output conv at 2x = 5.5
    assert upscaling.receptive_radius(tiny_edsr(2)) == 6
    assert upscaling.receptive_radius(edsr(4)) == 36  # 34 + 1 + 1/2 + 1/4
    # WDSR-B: only the 3x3 of each block counts; the 5x5 skip (2) is a shorter path.
    assert upscaling.receptive_radius(wdsr_b(2, num_res_blocks=2)) == 4
    pooled = keras.Sequential([keras.Input((None, None, 3)), keras.layers.MaxPooling2D(),
                               keras.layers.UpSampling2D(4)])
    assert upscaling.receptive_radius(pooled) is None


@pytest.mark.parametrize("builder,scale", [
    (tiny_edsr, 2), (tiny_edsr, 3), (lambda s: wdsr_b(s, num_res_blocks=2), 4),
    (lambda s: srresnet(s, num_filters=8, num_res_blocks=1), 4)])  # sisr.rewrite's tail
def test_tiled_output_equals_untiled(builder, scale):
    model = builder(scale)
    image = random_image((29, 42, 3))
    whole = upscaling.upscale_image(model, image)
    np.testing.assert_array_equal(whole, sisr.resolve_single(model, image))
    upscaler = upscaling.Upscaler(model, tile=7)
    assert len(upscaler.tiles(29, 42)) == 5 * 6
    tiled = upscaling.upscale_image(upscaler, image)
    assert tiled.shape == (29 * scale, 42 * scale, 3)
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    # Without context the tile borders show: the margin is what removes the seams.
    seamy = upscaling.upscale_image(model, image, tile=7, overlap=0)
    assert np.abs(seamy.astype(int) - whole).max() > 1


def test_grayscale_comes_back_grayscale():
    model = tiny_edsr()
    gray = random_image((12, 15), seed=1)
    out = upscaling.upscale_image(model, gray)
    assert out.shape == (24, 30) and out.dtype == np.uint8
    rgb = model(np.repeat(gray[None, ..., None], 3, -1).astype(np.float32)).numpy()[0]
    luma = np.round(np.clip(rgb, 0, 255) @ upscaling.LUMA)
    assert np.abs(out - luma).max() <= 1
    assert np.mean(out == luma) > 0.99
    assert upscaling.upscale_image(model, gray[..., None]).shape == (24, 30, 1)


@pytest.mark.parametrize("channels", [2, 4])
def test_alpha_is_upscaled_with_bicubic(channels):
    model = tiny_edsr()
    image = random_image((10, 13, channels), seed=2)
    out = upscaling.upscale_image(model, image, tile=4)
    assert out.shape == (20, 26, channels)
    np.testing.assert_array_equal(out[..., -1], imresize(image[..., -1], scale=2))
    color = upscaling.upscale_image(model, image[..., :-1])
    np.testing.assert_array_equal(out[..., :-1].reshape(color.shape), color)


def test_self_ensemble_averages_eight_variants_in_float():
    model = tiny_edsr()
    image = random_image((9, 11, 3), seed=3)
    total = np.zeros((18, 22, 3))
    for flip in (False, True):
        for k in range(4):
            x = np.rot90(image[:, ::-1] if flip else image, k)
            y = np.rot90(model(x[None].astype(np.float32)).numpy()[0], -k)
            total += y[:, ::-1] if flip else y
    expected = np.clip(np.round(total / 8), 0, 255)
    got = upscaling.upscale_image(model, image, self_ensemble=True)
    assert np.abs(got - expected).max() <= 1
    assert np.mean(got == expected) > 0.99
    plain = upscaling.upscale_image(model, image)
    assert np.abs(got.astype(int) - plain).max() > 1  # it really is a different output
    tiled = upscaling.upscale_image(model, image, self_ensemble=True, tile=4)
    assert np.abs(tiled.astype(int) - got).max() <= 1


def test_tiny_images_work():
    out = upscaling.upscale_image(tiny_edsr(), random_image((1, 1, 3)), tile=4)
    assert out.shape == (2, 2, 3)


def test_models_that_cannot_upscale_are_refused():
    with pytest.raises(upscaling.ModelError,
                       match="a discriminator model, not a super-resolution"):
        upscaling.model_scale(discriminator())
    x = keras.Input((None, None, 3))
    # Keras models without sisr's record: their scale is probed, and size-bound ones refused.
    fixed = keras.Input((96, 96, 3))
    with pytest.raises(upscaling.ModelError, match="only 96x96 inputs"):
        upscaling.model_scale(keras.Model(fixed, keras.layers.Conv2D(3, 3)(fixed)))
    with pytest.raises(upscaling.ModelError, match="not to an upscaled RGB image"):
        upscaling.model_scale(keras.Model(x, keras.layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(ValueError, match="uint8"):
        upscaling.upscale_image(tiny_edsr(), np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3 or HxWx4"):
        upscaling.upscale_image(tiny_edsr(), np.zeros((4, 4, 5), np.uint8))


# ------------------------------------------------------- tiling only what is local


def _conv(filters, kernel, name, **kwargs):
    return keras.layers.Conv2D(filters, kernel, padding="same", name=name, **kwargs)


def toy_attention(scale=2, num_filters=8):
    """A toy SR architecture with an RCAN-style channel-attention block (global average
    pooling -> 1x1 conv -> sigmoid -> multiply): keras built-ins only."""
    from sisr.layers import PixelShuffle
    from sisr.model import SRModel

    x_in = keras.Input((None, None, 3), name="lr")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(x_in)
    x = _conv(num_filters, 3, "head_conv")(x)
    a = keras.layers.GlobalAveragePooling2D(keepdims=True, name="ca_pool")(x)
    a = _conv(num_filters, 1, "ca_conv", activation="sigmoid")(a)
    x = keras.layers.Multiply(name="ca_multiply")([x, a])
    x = _conv(3 * scale * scale, 3, "upsample_conv")(x)
    x = PixelShuffle(scale, name="upsample_shuffle")(x)
    x = keras.layers.Rescaling(127.5, offset=127.5, name="denormalize")(x)
    return SRModel(x_in, x, builder="toy_attention", name="toy_attention",
                   arguments={"scale": scale, "num_filters": num_filters})


def toy_declared(scale=2, num_filters=8):
    """Convolutions only, but registered with local=False: the spec is obeyed."""
    from sisr.layers import PixelShuffle
    from sisr.model import SRModel

    x_in = keras.Input((None, None, 3), name="lr")
    x = _conv(num_filters, 3, "head_conv", activation="relu")(x_in)
    x = PixelShuffle(scale, name="upsample_shuffle")(_conv(3 * scale * scale, 3, "up_conv")(x))
    return SRModel(x_in, x, builder="toy_declared", name="toy_declared",
                   arguments={"scale": scale, "num_filters": num_filters})


@pytest.fixture
def toy_specs():
    """The two toy architectures, registered through `register` alone (the attention one
    claims local=True: the layer reader must catch it), unregistered afterwards."""
    from sisr.model import ModelSpec, get_spec, register, unregister

    specs = [register(ModelSpec("toy_attention", toy_attention, tiny={"num_filters": 4},
                                local=True)),
             register(ModelSpec("toy_declared", toy_declared, tiny={"num_filters": 4},
                                local=False))]
    yield {spec.name: get_spec(spec.name) for spec in specs}
    for spec in specs:
        unregister(spec.name)


def test_global_attention_is_never_tiled(toy_specs):
    model = toy_specs["toy_attention"].build_tiny()
    image = random_image((13, 18, 3), seed=10)
    image[:, 9:] = 255  # a bright right half: the crop's mean is far from the image's
    whole = sisr.resolve_single(model, image)
    # Tiles would be wrong: the attention weights of a crop are not those of the image.
    crop = sisr.resolve_single(model, image[:, :9])
    assert np.abs(crop[:, :12].astype(int) - whole[:, :12]).max() > 1
    radius, reason = upscaling.locality(model)
    assert radius is None and upscaling.receptive_radius(model) is None
    assert "'ca_pool' (GlobalAveragePooling2D) is not known to be local" in reason
    with pytest.raises(upscaling.NotTileableError, match="ca_pool.*GlobalAveragePooling2D"):
        upscaling.Upscaler(model, tile=4)
    with pytest.raises(upscaling.NotTileableError, match="ca_pool"):
        upscaling.upscale_image(model, image, tile=4, overlap=50)
    np.testing.assert_array_equal(upscaling.upscale_image(model, image), whole)
    np.testing.assert_array_equal(upscaling.upscale_image(model, image, tile=0), whole)


def test_a_spec_declared_not_local_is_never_tiled(toy_specs):
    model = toy_specs["toy_declared"].build_tiny()
    assert upscaling.receptive_radius(keras.Model(model.inputs, model.outputs)) == 2
    radius, reason = upscaling.locality(model)
    assert radius is None and "'toy_declared' is registered as not local" in reason
    with pytest.raises(upscaling.NotTileableError, match="toy_declared"):
        upscaling.Upscaler(model, tile=5)
    image = random_image((11, 7, 3), seed=11)
    np.testing.assert_array_equal(upscaling.upscale_image(model, image),
                                  sisr.resolve_single(model, image))


def test_cli_tiles_only_tileable_models(toy_specs, tmp_path, capsys, caplog):
    path = tmp_path / "toy.keras"
    sisr.save_model(toy_specs["toy_attention"].build_tiny(), path)
    model = sisr.load_model(path)  # safe mode; the record names the registered spec
    image = random_image((13, 18, 3), seed=12)
    source = _save(tmp_path / "in.png", image)
    out = tmp_path / "out"
    args = ["-i", source, "-o", str(out), "--model", str(path), "-q"]
    assert up.main(args + ["--tile", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --tile 8: ")
    assert "ca_pool" in err and "use --tile 0" in err
    assert not out.exists() or os.listdir(out) == []
    caplog.set_level("INFO", logger="sisr")
    assert up.main(args) == 0  # the default: tiles where the model allows, else whole
    assert "whole images: model 'toy_attention' cannot be upscaled in tiles" in caplog.text
    np.testing.assert_array_equal(np.asarray(Image.open(out / "in_x2.png")),
                                  sisr.resolve_single(model, image))
    # evaluate: whole images by default; tiles refused for this model.
    from sisr import evaluate

    hr = tmp_path / "hr"
    hr.mkdir()
    _save(hr / "a.png", random_image((40, 44, 3), seed=13))
    report = tmp_path / "report.json"
    args = ["--model", str(path), "--dataset", str(hr), "-q", "-o", str(report)]
    capsys.readouterr()
    assert evaluate.main(args + ["--tile", "8"]) == 2
    err = capsys.readouterr().err
    assert "--tile 8" in err and "ca_pool" in err and "use --tile 0" in err
    assert not report.exists()
    assert evaluate.main(args) == 0


def test_approximate_tiles_only_when_asked_with_an_overlap(toy_specs):
    from sisr.errors import UsageError

    model = toy_specs["toy_attention"].build_tiny()
    image = random_image((13, 18, 3), seed=14)
    image[:, 9:] = 255  # a bright right half: a window's means are far from the image's
    whole = upscaling.upscale_image(model, image)
    with pytest.raises(UsageError, match="approximate tiles of model .* need an overlap"):
        upscaling.Upscaler(model, tile=4, approximate=True)
    # Windows that cover the image see the image's statistics: the untiled result.
    covering = upscaling.Upscaler(model, tile=4, overlap=18, approximate=True)
    assert "ca_pool" in covering.approximation and len(covering.tiles(13, 18)) == 20
    np.testing.assert_array_equal(upscaling.upscale_image(covering, image), whole)
    # Smaller windows: each tile's attention is its own window's, so the result differs.
    tiled = upscaling.upscale_image(model, image, tile=6, overlap=2, approximate=True)
    assert tiled.shape == whole.shape and tiled.dtype == whole.dtype
    assert np.abs(tiled.astype(int) - whole).max() > 1
    # The flag changes nothing for a tileable model: exact tiles, the radius as margin.
    local = edsr(2, num_filters=4, num_res_blocks=1)
    exact = upscaling.Upscaler(local, tile=4, approximate=True)
    assert exact.approximation is None
    assert exact.overlap == upscaling.receptive_radius(local)


def test_cli_approximate_tiles(toy_specs, tmp_path, capsys, caplog):
    path = tmp_path / "toy.keras"
    sisr.save_model(toy_specs["toy_attention"].build_tiny(), path)
    model = sisr.load_model(path)
    image = random_image((13, 18, 3), seed=15)
    source = _save(tmp_path / "in.png", image)
    out = tmp_path / "out"
    args = ["-i", source, "-o", str(out), "--model", str(path), "-q", "--approximate-tiles"]
    with pytest.raises(SystemExit) as exit_info:
        up.main(args + ["--tile", "8"])  # no --overlap
    assert exit_info.value.code == 2
    assert "--approximate-tiles needs --overlap" in capsys.readouterr().err
    assert not out.exists()
    caplog.set_level("WARNING", logger="sisr")
    assert up.main(args + ["--tile", "8", "--overlap", "20"]) == 0
    assert "approximate tiles of 8 + 20 LR pixels: model 'toy_attention' is not local" \
        in caplog.text
    # Windows of 8 + 20 cover this image: the same pixels as the untiled model.
    np.testing.assert_array_equal(np.asarray(Image.open(out / "in_x2.png")),
                                  sisr.resolve_single(model, image))


@pytest.mark.parametrize("layer,match", [
    (lambda: keras.layers.Dense(3, name="dense"), r"'dense' \(Dense\) is not known"),
    (lambda: keras.layers.MaxPooling2D(1, name="pool"), r"'pool' \(MaxPooling2D\)"),
    (lambda: keras.layers.Reshape((-1, 3), name="flat"), r"'flat' \(Reshape\)"),
    (lambda: keras.layers.Conv2D(3, 3, strides=2, padding="same", name="down"),
     r"'down' \(Conv2D\) has strides \(2, 2\)"),
    (lambda: keras.layers.Conv2D(3, 3, name="valid"), r"padding 'valid'"),
    (lambda: keras.layers.BatchNormalization(axis=1, name="bn"), "over axis 1"),
    (lambda: keras.layers.UpSampling2D((2, 1), name="up"), r"size \(2, 1\)"),
    (lambda: keras.Sequential([keras.layers.Conv2D(3, 1)], name="inner"),
     r"'inner' \(Sequential\) is not known"),
])
def test_layers_not_known_to_be_local(layer, match):
    x_in = keras.Input((8, 8, 3))  # fixed, so that every layer builds
    y = _conv(3, 3, "conv")(x_in)
    model = keras.Model(x_in, layer()(y))
    radius, reason = upscaling.locality(model)
    assert radius is None
    assert re.search(match, reason), reason


def test_per_pixel_prelu_slopes_and_unknown_layers_are_not_local():
    x_in = keras.Input((8, 8, 3))
    model = keras.Model(x_in, keras.layers.PReLU(name="prelu")(x_in))
    assert "'prelu' (PReLU) has slopes per pixel" in upscaling.locality(model).reason

    @keras.saving.register_keras_serializable(package="test_upscale")
    class Doubling(keras.layers.Layer):
        def call(self, x):
            return x * 2

    x_in = keras.Input((None, None, 3))
    model = keras.Model(x_in, Doubling(name="doubling")(x_in))
    assert "'doubling' (Doubling) is not known to be local" in upscaling.locality(model).reason

    @keras.saving.register_keras_serializable(package="test_upscale")
    def halving(x):
        return x / 2

    model = keras.Model(x_in, _conv(3, 3, "conv", activation=halving)(x_in))
    assert "'conv' (Conv2D) has a custom activation" in upscaling.locality(model).reason


def test_other_local_layers_tile_exactly():
    """Transposed convs, upsampling, depthwise/separable and dilated convs, shared PReLU,
    batch norm and channel concatenation: tiled output equals the whole-image one."""
    keras.utils.set_random_seed(3)
    x_in = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(x_in)
    a = keras.layers.SeparableConv2D(6, 3, padding="same", dilation_rate=2)(x)
    b = keras.layers.DepthwiseConv2D(5, padding="same", depth_multiplier=2)(x)
    x = keras.layers.Concatenate()([a, b])
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.PReLU(shared_axes=[1, 2])(x)
    x = keras.layers.Conv2DTranspose(8, 5, strides=2, padding="same")(x)
    x = keras.layers.LeakyReLU()(x)
    # (Keras' bilinear/bicubic UpSampling2D cannot be traced for any image size.)
    x = keras.layers.UpSampling2D(2)(x)
    x = keras.layers.Conv2D(3, 3, padding="same")(x)
    model = keras.Model(x_in, keras.layers.Rescaling(255.0, offset=127.5)(x))
    # The longest path: 2 (5x5) + 2 (5x5 transposed, stride 2) + 1/2 (upsampling at x2)
    # + 1/4 (3x3 at x4) = 4.75
    assert upscaling.receptive_radius(model) == 5
    image = random_image((19, 23, 3), seed=13)
    whole = upscaling.upscale_image(model, image)
    assert whole.shape == (76, 92, 3)
    tiled = upscaling.upscale_image(model, image, tile=6)
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    seamy = upscaling.upscale_image(model, image, tile=6, overlap=2)
    assert np.abs(seamy.astype(int) - whole).max() > 1


# ---------------------------------------------------------------------- CLI


def _save(path, array, **kwargs):
    Image.fromarray(array).save(path, **kwargs)
    return str(path)


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _save(folder / "rgb.png", random_image((9, 14, 3), seed=4))
    _save(folder / "gray.jpg", random_image((10, 8), seed=5), quality=95)
    _save(folder / "rgba.webp", random_image((7, 6, 4), seed=6), lossless=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    _save(folder / "rotated.jpg", random_image((6, 11, 3), seed=7), exif=exif)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    (folder / "notes.txt").write_text("not an image, ignored")
    return folder


def test_cli_upscales_a_folder_and_reports_a_corrupt_file(inputs, model_file, tmp_path, capsys,
                                                         caplog):
    out = tmp_path / "out"
    code = up.main(["-i", str(inputs), "-o", str(out), "--model", model_file, "--tile", "4",
                    "-q"])
    assert code == 1  # broken.png failed, the others were written
    assert "broken.png" in caplog.text
    assert "upscaled 4 of 5" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == [
        "gray_x2.jpg", "rgb_x2.png", "rgba_x2.webp", "rotated_x2.jpg"]
    with Image.open(out / "rgb_x2.png") as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (28, 18))
    with Image.open(out / "gray_x2.jpg") as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "L", (16, 20))
    with Image.open(out / "rgba_x2.webp") as im:
        assert (im.format, im.mode, im.size) == ("WEBP", "RGBA", (12, 14))
    with Image.open(out / "rotated_x2.jpg") as im:  # upright: 11 tall, 6 wide
        assert im.size == (12, 22)
    # The PNG holds exactly what the library computes.
    model = sisr.load_model(model_file)
    expected = upscaling.upscale_image(model, np.asarray(Image.open(inputs / "rgb.png")))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "rgb_x2.png")), expected)


def test_cli_names_what_it_cannot_upscale(model_file, tmp_path, capsys, caplog):
    # An animated GIF became its first frame and a dangling x.png link was not counted
    # ("1 of 1", exit 0); a FIFO was "no such file or folder"; errors named the path twice.
    folder = tmp_path / "in"
    folder.mkdir()
    _save(folder / "still.png", random_image((9, 14, 3), seed=4))
    frames = [Image.fromarray(random_image((8, 10, 3), seed=s)) for s in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    os.symlink(tmp_path / "gone.png", folder / "x.png")
    out = tmp_path / "out"
    assert up.main(["-i", str(folder), "-o", str(out), "--model", model_file, "-q"]) == 1
    printed = capsys.readouterr().out
    assert "upscaled 1 of 3" in printed and "anim.gif" in printed and "x.png" in printed
    assert (f"{folder / 'anim.gif'}: an animated image of 3 frames; sisr upscales still "
            "images (--first-frame: its first frame alone)") in caplog.text
    assert (f"{folder / 'x.png'}: a symbolic link to {tmp_path / 'gone.png'}, which does "
            "not exist") in caplog.text
    assert f"{folder / 'x.png'}: {folder / 'x.png'}" not in caplog.text
    assert sorted(os.listdir(out)) == ["still_x2.png"]
    caplog.clear()
    assert up.main(["-i", str(folder / "anim.gif"), "-o", str(out), "--model", model_file,
                    "--first-frame", "-q"]) == 0
    assert "first of 3 frames" in caplog.text
    with Image.open(out / "anim_x2.png") as im:
        assert im.size == (20, 16)
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    assert up.main(["-i", str(fifo), "-o", str(out), "--model", model_file, "-q"]) == 2
    assert f"{fifo}: not a regular file or a folder" in capsys.readouterr().err


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_cli_never_overwrites_without_force(inputs, model_file, tmp_path, umask_022):
    out = tmp_path / "out"
    args = ["-i", str(inputs / "rgb.png"), "-o", str(out), "--model", model_file, "-q"]
    assert up.main(args) == 0
    target = out / "rgb_x2.png"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644  # as any new file, not 0600
    target.write_bytes(b"user's file")
    assert up.main(args) == 1
    assert target.read_bytes() == b"user's file"
    assert up.main(args + ["--force"]) == 0
    with Image.open(target) as im:
        assert im.size == (28, 18)
    assert [n for n in os.listdir(out) if n.startswith(".tmp")] == []


def test_cli_format_choice_and_jpeg_alpha(inputs, model_file, tmp_path, caplog):
    out = tmp_path / "out"
    code = up.main(["-i", str(inputs / "gray.jpg"), str(inputs / "rgba.webp"), "-o", str(out),
                    "--model", model_file, "--format", "jpeg", "-q"])
    assert code == 1
    assert "alpha" in caplog.text and "rgba.webp" in caplog.text
    assert sorted(os.listdir(out)) == ["gray_x2.jpg"]
    code = up.main(["-i", str(inputs / "gray.jpg"), "-o", str(out), "--model", model_file,
                    "--format", "png", "-q"])
    assert code == 0
    with Image.open(out / "gray_x2.png") as im:
        assert (im.format, im.mode) == ("PNG", "L")


def test_cli_compare_figure(inputs, model_file, tmp_path):
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    _save(hr_dir / "rgb.png", random_image((18, 28, 3), seed=8))
    out = tmp_path / "out"
    code = up.main(["-i", str(inputs / "rgb.png"), "-o", str(out), "--model", model_file,
                    "--compare", "--hr", str(hr_dir), "-q"])
    assert code == 0
    with Image.open(out / "rgb_x2_compare.png") as im:
        assert im.format == "PNG" and im.size[0] > 3 * im.size[1]


def test_cli_bad_model_scale_and_outdir(inputs, model_file, tmp_path, capsys):
    image = str(inputs / "rgb.png")
    fake = tmp_path / "fake.keras"
    fake.write_text("not a model")
    assert up.main(["-i", image, "-o", str(tmp_path / "o1"), "--model", str(fake)]) == 2
    assert "fake.keras is not a .keras model file" in capsys.readouterr().err
    assert up.main(["-i", image, "-o", str(tmp_path / "o2"), "--model", model_file,
                    "--scale", "3"]) == 2
    assert "is a x2 model, but scale x3 was asked" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert up.main(["-i", image, "-o", str(blocker / "sub"), "--model", model_file]) == 2
    assert "cannot write to output directory" in capsys.readouterr().err
    assert up.main(["-i", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o3"),
                    "--model", model_file]) == 2
    assert "missing.png: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        up.main(["-i", image, "-o", str(tmp_path / "o4"), "--model", model_file,
                 "--tile", "-1"])


# ------------------------------------------------------------------- images


def test_read_image_modes(tmp_path):
    from sisr.imageio import ImageError, read_image

    palette = Image.fromarray(random_image((5, 6), seed=9)).convert("P")
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p.png", transparency=0)
    assert read_image(tmp_path / "p.png").array.shape == (5, 6, 4)
    Image.fromarray(random_image((5, 6), seed=9) > 128).save(tmp_path / "bw.png")
    loaded = read_image(tmp_path / "bw.png")
    assert loaded.array.shape == (5, 6) and set(np.unique(loaded.array)) <= {0, 255}
    assert loaded.format == "png"
    # 16-bit samples keep their high byte, and the note says so.
    Image.fromarray(np.full((4, 4), 40000, np.uint16)).save(tmp_path / "deep.png")
    deep = read_image(tmp_path / "deep.png")
    assert deep.array.shape == (4, 4) and (deep.array == 40000 >> 8).all()
    assert deep.note == "16-bit grayscale reduced to 8 bits"
    assert read_image(tmp_path / "bw.png").note is None
    with pytest.raises(ImageError, match=r"gone\.png: no such file"):
        read_image(tmp_path / "gone.png")
