"""sisr.compare (crops side by side, the automatic choice of the crop) and `upscale
--compare`."""

import numpy as np
import pytest
from PIL import Image

import sisr
from sisr import compare
from sisr import upscale as up
from sisr.errors import UsageError
from sisr.model import edsr
from sisr.upscaling import bicubic_upscale

BACKGROUND = (255, 255, 255)


def random_image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def smooth_image(height, width, seed=0):
    """A smooth photograph-like image (bicubic of a tiny random one): bicubic upscaling of
    it is close, so that a planted difference stands out."""
    small = random_image((height // 8 + 1, width // 8 + 1, 3), seed)
    return bicubic_upscale(small, 8)[:height, :width]


def test_best_window_finds_the_largest_sum_on_the_grid():
    score = np.zeros((40, 50))
    score[21:29, 13:21] = 1.0  # an 8x8 block at (21, 13)
    assert compare.best_window(score, 8) == (21, 13)
    # On a grid of 4, the aligned window that holds most of the block.
    assert compare.best_window(score, 8, align=4) == (20, 12)
    assert compare.best_window(score, 40, 50) == (0, 0)
    with pytest.raises(UsageError, match="does not fit"):
        compare.best_window(score, 41)


@pytest.mark.parametrize("with_hr", [True, False])
def test_auto_crop_is_where_the_model_gains_most(with_hr):
    """Synthetic SR: equal to HR in one 16x16 LR window, bicubic elsewhere, so the
    model's gain is there and nowhere else; without HR, the same window is where the SR
    differs from bicubic."""
    scale = 2
    hr = random_image((96, 128, 3), seed=1)
    lr = hr[::scale, ::scale]  # any LR: only the maps of sr, bicubic and hr matter
    bicubic = bicubic_upscale(lr, scale)
    sr = bicubic.copy()
    top, left = 20, 36  # LR pixels
    area = np.s_[top * scale:(top + 16) * scale, left * scale:(left + 16) * scale]
    sr[area] = hr[area]
    crop = compare.choose_crop(lr, sr, scale, hr=hr if with_hr else None, size=16)
    assert crop == compare.Crop(left, top, 16, 16)
    # A window larger than the image is clipped to it.
    assert compare.choose_crop(lr[:10, :12], sr[:20, :24], scale, size=64) == \
        compare.Crop(0, 0, 12, 10)


def test_gain_map_is_the_reduction_of_the_squared_error():
    hr = np.full((4, 4, 3), 100, np.uint8)
    bicubic = np.full((4, 4, 3), 90, np.uint8)
    sr = np.full((4, 4, 3), 96, np.uint8)
    np.testing.assert_array_equal(compare.gain_map(sr, bicubic, hr), np.full((4, 4), 84.0))
    np.testing.assert_array_equal(compare.gain_map(sr, bicubic), np.full((4, 4), 36.0))


def panel(image, box):
    left, top, right, bottom = box
    return np.asarray(image)[top:bottom, left:right]


def assert_labelled(image, boxes):
    """Every panel has dark label pixels in the rows above it."""
    array = np.asarray(image)
    for name, (left, top, right, _) in boxes.items():
        strip = array[:top, left:right]
        assert top > 0 and (strip < 128).all(-1).sum() >= 10, f"panel {name} has no label"


def test_comparison_image_is_full_resolution_crops_with_labels():
    scale = 3
    lr = smooth_image(30, 41, seed=2)
    sr = random_image((90, 123, 3), seed=3)
    hr = random_image((90, 123, 3), seed=4)
    crop = compare.Crop(5, 7, 12, 10)
    image, boxes = compare.comparison_image(lr, sr, scale, crop, hr=hr)
    assert image.mode == "RGB"
    assert list(boxes) == ["input", "lr", "bicubic", "sr", "hr"]
    area = np.s_[21:51, 15:51]
    np.testing.assert_array_equal(panel(image, boxes["sr"]), sr[area])
    np.testing.assert_array_equal(panel(image, boxes["hr"]), hr[area])
    np.testing.assert_array_equal(panel(image, boxes["bicubic"]),
                                  bicubic_upscale(lr, scale)[area])
    lr_panel = panel(image, boxes["lr"])
    np.testing.assert_array_equal(lr_panel[::scale, ::scale], lr[7:17, 5:17])
    assert lr_panel.shape == (30, 36, 3)
    assert_labelled(image, boxes)
    # The image is as tall as one crop and its labels, whatever the size of the input.
    assert image.size[1] == 30 + boxes["sr"][1]
    with pytest.raises(UsageError, match="reaches outside"):
        compare.comparison_image(lr, sr, scale, compare.Crop(35, 0, 12, 10))
    with pytest.raises(UsageError, match="differs in size"):
        compare.comparison_image(lr, sr, scale, crop, hr=hr[:-3])


def test_grayscale_and_alpha_images_compare_as_rgb():
    lr = random_image((12, 10), seed=5)
    sr = random_image((24, 20), seed=6)
    image, boxes = compare.comparison_image(lr, sr, 2, compare.Crop(1, 2, 6, 5))
    got = panel(image, boxes["sr"])
    np.testing.assert_array_equal(got, np.repeat(sr[4:14, 2:14, None], 3, -1))
    rgba = random_image((24, 20, 4), seed=7)
    image, boxes = compare.comparison_image(random_image((12, 10, 4)), rgba, 2,
                                            compare.Crop(0, 0, 10, 12))
    np.testing.assert_array_equal(panel(image, boxes["sr"]), rgba[..., :3])


def test_parse_crop():
    assert compare.parse_crop("120,80,64,48") == compare.Crop(120, 80, 64, 48)
    for text in ("1,2,3", "a,b,c,d", "1,2,3,4,5", "1.5,2,3,4"):
        with pytest.raises(UsageError, match="X,Y,WIDTH,HEIGHT"):
            compare.parse_crop(text)


# ---------------------------------------------------------------------------- CLI


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny-x2.keras"
    sisr.save_model(edsr(2, num_filters=8, num_res_blocks=1), path)
    return str(path)


@pytest.fixture
def photo(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(smooth_image(70, 90, seed=8)).save(folder / "photo.png")
    return folder / "photo.png"


def test_cli_compare_writes_the_chosen_crop_at_full_resolution(photo, model_file, tmp_path,
                                                               caplog):
    out = tmp_path / "out"
    crops = tmp_path / "crops.png"
    assert up.main(["-i", str(photo), "-o", str(out), "--model", model_file, "-q",
                    "--compare", str(crops), "--compare-crop", "10,20,30,16"]) == 0
    sr = np.asarray(Image.open(out / "photo_x2.png"))
    lr = np.asarray(Image.open(photo))
    written = Image.open(crops)
    assert written.format == "PNG" and written.size[1] < 2 * 32 + 40  # one crop high
    _, boxes = compare.comparison_image(lr, sr, 2, compare.Crop(10, 20, 30, 16),
                                        name="SR x2: tiny-x2")
    np.testing.assert_array_equal(panel(written, boxes["sr"]), sr[40:72, 20:80])
    assert_labelled(written, boxes)
    # An existing comparison is not overwritten without --force, and nothing is redone.
    (out / "photo_x2.png").unlink()
    assert up.main(["-i", str(photo), "-o", str(out), "--model", model_file, "-q",
                    "--compare", str(crops)]) == 1  # that input failed
    assert f"{crops} exists; not overwriting it" in caplog.text
    assert not (out / "photo_x2.png").exists()
    np.testing.assert_array_equal(np.asarray(Image.open(crops)), np.asarray(written))
    assert up.main(["-i", str(photo), "-o", str(out), "--model", model_file, "-q"]) == 0
    # Auto: the default file name, and the crop recorded is the one choose_crop picks.
    hr = smooth_image(140, 180, seed=9)
    Image.fromarray(hr).save(tmp_path / "hr.png")
    assert up.main(["-i", str(photo), "-o", str(out), "--model", model_file, "-q",
                    "--compare", "--hr", str(tmp_path / "hr.png"), "--force"]) == 0
    crop = compare.choose_crop(lr, sr, 2, hr=hr)
    written = Image.open(out / "photo_x2_compare.png")
    _, boxes = compare.comparison_image(lr, sr, 2, crop, hr=hr, name="SR x2: tiny-x2")
    area = crop.sr_slice(2)
    np.testing.assert_array_equal(panel(written, boxes["sr"]), sr[area])
    np.testing.assert_array_equal(panel(written, boxes["hr"]), hr[area])


def test_cli_compare_refuses_bad_crops(photo, model_file, tmp_path, capsys, caplog):
    out = tmp_path / "out"
    base = ["-i", str(photo), "-o", str(out), "--model", model_file, "-q", "--compare"]
    with pytest.raises(SystemExit) as info:  # argparse's usage error
        up.main(base + ["--compare-crop", "10,20"])
    assert info.value.code == 2 and "--compare-crop" in capsys.readouterr().err
    assert up.main(base + ["--compare-crop", "80,0,30,30"]) == 1
    assert "crop 80,0,30,30 reaches outside" in caplog.text and "photo.png (90x70)" in \
        caplog.text
    assert not out.exists() or not any(out.iterdir())  # refused before any output
    two = ["-i", str(photo), str(photo), "-o", str(out), "--model", model_file,
           "--compare", str(tmp_path / "c.png")]
    with pytest.raises(SystemExit) as info:
        up.main(two)
    assert info.value.code == 2
    assert "--compare FILE takes one input" in capsys.readouterr().err
