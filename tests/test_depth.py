"""16-bit images: `read_image(keep_depth=True)` / `write_image` of uint16 (pypng,
tifffile), `upscale_image` on uint16, and `python -m sisr.upscale --keep-depth`."""

import sys
import zlib

import keras
import numpy as np
import pytest
from PIL import Image

import sisr
from sisr import imageio, upscale_image
from sisr.imresize import imresize
from sisr.layers import BicubicUpsample
from sisr.upscale import main as upscale_main


def bicubic_model(scale=2):
    """A model that is MATLAB bicubic itself: a smooth model whose exact output is known."""
    x = keras.Input((None, None, 3))
    return keras.Model(x, BicubicUpsample(scale, name="bicubic")(x), name="bicubic")


def smooth_16(shape, seed=0):
    """A 16-bit image whose values are mostly not multiples of 257 (not 8-bit widened)."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    ramp = np.linspace(4000, 60000, w)[None, :] + np.linspace(0, 3000, h)[:, None]
    ramp = ramp[..., None] if len(shape) == 3 else ramp
    noise = rng.normal(0, 300, shape)
    return np.clip(np.round(ramp + noise), 0, 65535).astype(np.uint16)


def expected_bicubic_16(image, scale):
    return np.round(np.clip(imresize(image.astype(np.float64), scale=scale), 0, 65535))


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "bicubic-x2.keras"
    sisr.save_model(bicubic_model(2), path)
    return str(path)


def _png_with_exif(path, array, orientation):
    """Writes a 16-bit PNG of `array` with an eXIf chunk saying `orientation`."""
    import png

    imageio.write_image(path, array)
    exif = Image.Exif()
    exif[0x0112] = orientation
    chunks = list(png.Reader(filename=str(path)).chunks())
    chunks.insert(1, (b"eXIf", exif.tobytes()))
    with open(path, "wb") as f:
        png.write_chunks(f, chunks)


# ------------------------------------------------------------------------- files


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 2), (5, 7, 3), (5, 7, 4)],
                         ids=["grey", "grey-alpha", "rgb", "rgba"])
def test_16_bit_png_round_trips_with_its_16_bits(tmp_path, shape):
    array = smooth_16(shape)
    path = tmp_path / "a.png"
    imageio.write_image(path, array, icc_profile=b"not a real profile")
    loaded = imageio.read_image(path, keep_depth=True)
    assert loaded.depth == 16 and loaded.array.dtype == np.uint16
    np.testing.assert_array_equal(loaded.array, array)
    assert loaded.icc_profile == b"not a real profile"
    # Read as today without keep_depth: 8 bits (the high byte), layout as Pillow gives it.
    eight = imageio.read_image(path)
    assert eight.depth == 8 and eight.array.dtype == np.uint8


def test_16_bit_tiff_is_read_with_its_16_bits(tmp_path):
    import tifffile

    array = smooth_16((6, 5, 3))
    tifffile.imwrite(tmp_path / "a.tif", array)
    np.testing.assert_array_equal(
        imageio.read_image(tmp_path / "a.tif", keep_depth=True).array, array)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_16_bit_png_is_turned_upright_like_8_bit(tmp_path, orientation):
    array = smooth_16((4, 6, 3))
    path = tmp_path / "o.png"
    _png_with_exif(path, array, orientation)
    sixteen = imageio.read_image(path, keep_depth=True).array
    eight = imageio.read_image(path).array  # Pillow's exif_transpose, high byte
    np.testing.assert_array_equal(sixteen >> 8, eight)
    assert sixteen.shape[:2] == ((6, 4) if orientation >= 5 else (4, 6))


def test_missing_extra_is_named_in_one_line(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    imageio.write_image(path, smooth_16((4, 4, 3)))
    monkeypatch.setitem(sys.modules, "png", None)
    with pytest.raises(imageio.ImageError, match=r"a\.png: .*pypng|sisr\[depth\]") as err:
        imageio.read_image(path, keep_depth=True)
    assert "sisr[depth]" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(imageio.ImageError, match=r"sisr\[depth\]"):
        imageio.write_image(tmp_path / "b.png", smooth_16((4, 4, 3)))
    assert not (tmp_path / "b.png").exists()


def test_16_bit_pixels_are_not_written_as_jpeg(tmp_path):
    with pytest.raises(imageio.ImageError, match="8 bits"):
        imageio.write_image(tmp_path / "a.jpg", smooth_16((4, 4, 3)))
    assert not (tmp_path / "a.jpg").exists()


def test_corrupt_16_bit_png_names_the_file(tmp_path):
    path = tmp_path / "a.png"
    imageio.write_image(path, smooth_16((16, 16, 3)))
    data = path.read_bytes()
    start = data.index(b"IDAT") + 4
    broken = data[:start] + zlib.compress(b"\x05" * 40)[:10] + data[start + 10:]
    path.write_bytes(broken)
    with pytest.raises(imageio.ImageError, match="a.png"):
        imageio.read_image(path, keep_depth=True)


# --------------------------------------------------------------------- upscaling


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 2), (6, 5, 3), (6, 5, 4)],
                         ids=["grey", "grey-alpha", "rgb", "rgba"])
def test_upscale_image_keeps_16_bits_through_a_smooth_model(shape):
    image = smooth_16(shape)
    sr = upscale_image(bicubic_model(2), image, tile=3)
    assert sr.dtype == np.uint16 and sr.shape[:2] == (12, 10)
    assert sr.shape[2:] == image.shape[2:]
    rgb = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image
    colour = expected_bicubic_16(rgb[..., :3] if rgb.shape[-1] >= 3 else
                                 np.repeat(rgb[..., :1], 3, -1), 2)
    got = sr[..., :3] if sr.ndim == 3 and sr.shape[-1] >= 3 else sr
    if image.ndim == 2 or image.shape[-1] == 2:
        expected = np.round(colour / 257.0 @ sisr.upscaling.LUMA.astype(np.float64) * 257.0)
        got = got[..., 0] if got.ndim == 3 else got
    else:
        expected = colour
    # float32 on the 0..255 scale: at most one 16-bit level off the float64 bicubic
    assert np.abs(got.astype(np.int64) - expected).max() <= 1
    assert np.count_nonzero(sr % 257) > sr.size // 2  # not 8-bit values widened


# --------------------------------------------------------------------------- CLI


def test_cli_keep_depth_writes_16_bit_png(tmp_path, model_file, capsys):
    source = tmp_path / "in" / "photo.png"
    source.parent.mkdir()
    image = smooth_16((8, 9, 3))
    imageio.write_image(source, image)
    out = tmp_path / "out"
    assert upscale_main(["-i", str(source), "-o", str(out), "--model", model_file,
                         "--keep-depth", "-q"]) == 0
    sr = imageio.read_image(out / "photo_x2.png", keep_depth=True).array
    assert sr.dtype == np.uint16 and sr.shape == (16, 18, 3)
    assert np.abs(sr.astype(np.int64) - expected_bicubic_16(image, 2)).max() <= 1
    assert np.count_nonzero(sr % 257) > sr.size // 2

    # Without --keep-depth: 8-bit output, as before.
    assert upscale_main(["-i", str(source), "-o", str(tmp_path / "eight"), "--model",
                         model_file, "-q"]) == 0
    with Image.open(tmp_path / "eight" / "photo_x2.png") as written:
        assert written.mode == "RGB" and not imageio._is_16_bit(written, any_mode=True)
    assert imageio.read_image(tmp_path / "eight" / "photo_x2.png",
                              keep_depth=True).array.dtype == np.uint8


def test_cli_keep_depth_tiff_outscale_and_jpeg(tmp_path, model_file, caplog):
    import tifffile

    source = tmp_path / "in" / "scan.tif"
    source.parent.mkdir()
    tifffile.imwrite(source, smooth_16((8, 6, 4)))
    out = tmp_path / "out"
    assert upscale_main(["-i", str(source), "-o", str(out), "--model", model_file,
                         "--keep-depth", "--outscale", "1.5", "-q"]) == 0
    sr = imageio.read_image(out / "scan_x1.5.png", keep_depth=True).array
    assert sr.dtype == np.uint16 and sr.shape == (12, 9, 4)
    assert np.count_nonzero(sr[..., :3] % 257) > sr[..., :3].size // 2

    assert upscale_main(["-i", str(source), "-o", str(tmp_path / "j"), "--model", model_file,
                         "--keep-depth", "--format", "jpeg", "-q"]) == 1
    assert "writes 16-bit images as PNG" in caplog.text
    assert not (tmp_path / "j" / "scan_x2.jpg").exists()
