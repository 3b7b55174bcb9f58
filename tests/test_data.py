"""sisr.data: DIV2K (images and numpy cache), ImageFolder, demo set, tf.data pipelines."""

import io
import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

from sisr.convert import convert
from sisr.data import (
    DIV2K,
    DatasetNotFoundError,
    ImageError,
    ImageFolder,
    ManifestError,
    demo,
    open_dataset,
    read_rgb,
)
from sisr.data.demo import demo_manifest
from sisr.imageio import open_npy
from sisr.imresize import imresize

# HR sizes divisible by 24 so that every track (x2, x3, x4, x8) divides them.
HR_SHAPE = (96, 120)


def _noise_image(seed, shape=HR_SHAPE):
    """Smooth-ish random texture: unique everywhere, so a patch has one location."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (shape[0] // 4 + 1, shape[1] // 4 + 1, 3))
    image = np.kron(small, np.ones((4, 4, 1)))[: shape[0], : shape[1]]
    image += rng.normal(0, 20, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def make_div2k(root, train_ids=(1, 2, 3), valid_ids=(801, 802)):
    """A tiny DIV2K tree: HR, bicubic x2/x3/x4/x8, unknown x2, mild x4 (with suffixes)."""
    for subset, ids in (("train", train_ids), ("valid", valid_ids)):
        for image_id in ids:
            hr = _noise_image(image_id)
            _save(os.path.join(root, f"DIV2K_{subset}_HR", f"{image_id:04d}.png"), hr)
            for s in (2, 3, 4):
                _save(os.path.join(root, f"DIV2K_{subset}_LR_bicubic", f"X{s}",
                                   f"{image_id:04d}x{s}.png"), imresize(hr, 1 / s))
            _save(os.path.join(root, f"DIV2K_{subset}_LR_x8", f"{image_id:04d}x8.png"),
                  imresize(hr, 1 / 8))
            unknown = imresize(imresize(hr, 1 / 2, antialias=False), output_shape=(48, 60))
            _save(os.path.join(root, f"DIV2K_{subset}_LR_unknown", "X2",
                               f"{image_id:04d}x2.png"), unknown)
            _save(os.path.join(root, f"DIV2K_{subset}_LR_mild", f"{image_id:04d}x4m.png"),
                  imresize(hr, 1 / 4))
    return root


@pytest.fixture(scope="module")
def div2k(tmp_path_factory):
    base = tmp_path_factory.mktemp("div2k")
    root = make_div2k(str(base / "DIV2K"))
    cache = str(base / "DIV2K_BIN")
    result = convert("numpy", root, cache, progress=False)
    assert result.ok and result.converted > 0
    return root, cache


# --- layout, caches, tracks -------------------------------------------------------------


def test_numpy_cache_mirrors_the_tree_with_equal_pixels(div2k):
    root, cache = div2k
    images = sorted(os.path.relpath(os.path.join(d, f), root)
                    for d, _, files in os.walk(root) for f in files)
    arrays = sorted(os.path.relpath(os.path.join(d, f), cache)
                    for d, _, files in os.walk(cache) for f in files if f.endswith(".npy"))
    assert arrays == [os.path.splitext(p)[0] + ".npy" for p in images]
    for rel in images:
        png = np.asarray(Image.open(os.path.join(root, rel)))
        npy = np.load(os.path.join(cache, os.path.splitext(rel)[0] + ".npy"))
        assert npy.dtype == np.uint8 and npy.shape == png.shape
        np.testing.assert_array_equal(npy, png)


@pytest.mark.parametrize(
    "downgrade, scale",
    [("bicubic", 2), ("bicubic", 3), ("bicubic", 4), ("bicubic", 8), ("unknown", 2),
     ("mild", 4)],
)
def test_div2k_tracks_from_images_and_cache_agree(div2k, downgrade, scale):
    root, cache = div2k
    from_png = DIV2K(root, "train", scale, downgrade)
    from_npy = DIV2K(cache, "train", scale, downgrade)
    assert from_png.ids == from_npy.ids == [1, 2, 3]
    assert from_npy.scale == scale and len(from_npy) == 3
    for (name_a, lr_a, hr_a), (name_b, lr_b, hr_b) in zip(from_png.pairs(), from_npy.pairs()):
        assert name_a == name_b
        assert lr_a.shape == (HR_SHAPE[0] // scale, HR_SHAPE[1] // scale, 3)
        assert hr_a.shape == (lr_a.shape[0] * scale, lr_a.shape[1] * scale, 3)
        np.testing.assert_array_equal(lr_a, lr_b)
        np.testing.assert_array_equal(hr_a, hr_b)


def test_div2k_cache_is_memory_mapped(div2k):
    _, cache = div2k
    path = os.path.join(cache, "DIV2K_train_HR", "0001.npy")
    assert isinstance(open_npy(path), np.memmap)


def test_div2k_image_ranges(div2k):
    root, _ = div2k
    assert DIV2K(root, "train", 2, images="1-2").ids == [1, 2]
    assert DIV2K(root, "train", 2, images=[3, 1]).ids == [1, 3]
    assert DIV2K(root, "valid", 2, images="801-802").ids == [801, 802]
    assert DIV2K(root, "valid", 2).names == ["0801", "0802"]
    with pytest.raises(ValueError, match="not in the DIV2K valid subset"):
        DIV2K(root, "valid", 2, images="1-800")
    with pytest.raises(ValueError, match="id ranges"):
        DIV2K(root, "train", 2, images="1..3")
    with pytest.raises(DatasetNotFoundError, match="0004.png: HR image 4 not found"):
        DIV2K(root, "train", 2, images="1-5")


def test_div2k_user_made_jpeg_track(div2k, tmp_path):
    root, _ = div2k
    tree = str(tmp_path / "DIV2K")
    make_div2k(tree, train_ids=(1, 2), valid_ids=())
    with pytest.raises(DatasetNotFoundError, match=r"bicubic_jpeg_90.*sisr.convert jpeg"):
        DIV2K(tree, "train", 2, "bicubic_jpeg_90")
    convert("jpeg", os.path.join(tree, "DIV2K_train_LR_bicubic"),
            os.path.join(tree, "DIV2K_train_LR_bicubic_jpeg_90"), quality=90, progress=False)
    dataset = DIV2K(tree, "train", 2, "bicubic_jpeg_90")
    clean = DIV2K(tree, "train", 2, "bicubic")
    for (_, lr_jpeg, _), (_, lr, _) in zip(dataset.pairs(), clean.pairs()):
        buffer = io.BytesIO()
        Image.fromarray(lr).save(buffer, format="JPEG", quality=90)
        np.testing.assert_array_equal(lr_jpeg, np.asarray(Image.open(buffer)))
        assert not np.array_equal(lr_jpeg, lr)
    # The training pipeline decodes JPEGs in TensorFlow: the same pixels as Pillow.
    lr_images = [lr for _, lr, _ in dataset.pairs()]
    lr_batch, _ = next(iter(dataset.train(batch_size=6, lr_patch=12, seed=0)))
    for patch in lr_batch.numpy():
        assert any(_locate(patch, image) for image in lr_images)


@pytest.mark.parametrize(
    "downgrade, scale, message",
    [("unknown", 8, "no unknown x8 track"), ("wild", 2, "no wild x2 track"),
     ("blurry", 2, "unknown DIV2K downgrade"), ("bicubic", 5, "no bicubic x5 track")],
)
def test_div2k_unknown_track(div2k, downgrade, scale, message):
    with pytest.raises(ValueError, match=message):
        DIV2K(div2k[0], "train", scale, downgrade)


def test_div2k_missing_folders_are_named_with_a_hint(div2k, tmp_path):
    root, _ = div2k
    with pytest.raises(DatasetNotFoundError, match=r"DIV2K_train_LR_difficult.*Download"):
        DIV2K(root, "train", 4, "difficult")
    (tmp_path / "DIV2K_valid_HR").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"DIV2K_train_HR.*sisr.convert numpy"):
        DIV2K(str(tmp_path), "train", 2)
    (tmp_path / "DIV2K_valid_LR_bicubic" / "X2").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="no DIV2K images"):
        DIV2K(str(tmp_path), "valid", 2)
    with pytest.raises(DatasetNotFoundError, match="not found"):
        DIV2K(str(tmp_path / "nowhere"), "train", 2)


def test_incomplete_or_stale_cache_is_refused(div2k, tmp_path):
    root = make_div2k(str(tmp_path / "DIV2K"), train_ids=(1, 2), valid_ids=())
    cache = str(tmp_path / "BIN")
    convert("numpy", root, cache, progress=False)
    DIV2K(cache, "train", 2)  # complete and current
    # A changed source makes its cache entry stale.
    hr = os.path.join(root, "DIV2K_train_HR", "0002.png")
    _save(hr, _noise_image(99))
    with pytest.raises(ManifestError, match=r"0002.npy.*stale"):
        DIV2K(cache, "train", 2)
    convert("numpy", root, cache, progress=False)
    np.testing.assert_array_equal(DIV2K(cache, "train", 2, images=[2]).pairs().__next__()[2],
                                  _noise_image(99))
    # A truncated cache file.
    path = os.path.join(cache, "DIV2K_train_LR_bicubic", "X2", "0001x2.npy")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 10)
    with pytest.raises((ManifestError, ImageError), match="0001x2.npy"):
        DIV2K(cache, "train", 2)
    # A cache file the converter never recorded (e.g. copied in by hand).
    np.save(os.path.join(cache, "DIV2K_train_HR", "0003.npy"), _noise_image(3))
    np.save(os.path.join(cache, "DIV2K_train_LR_bicubic", "X2", "0003x2.npy"),
            imresize(_noise_image(3), 0.5))
    with pytest.raises(ManifestError, match="not recorded"):
        DIV2K(cache, "train", 2, images=[3])


# --- training pipeline ------------------------------------------------------------------

def _locate(patch, image):
    """(transform index, top, left) with transform(image[top:, left:]) == patch, or None."""
    p = patch.shape[0]
    corners = image[: image.shape[0] - p + 1, : image.shape[1] - p + 1]
    for t in range(8):
        original = _inverse(t, patch)
        # Only windows whose corner pixel matches can match: check those in full.
        for top, left in np.argwhere(np.all(corners == original[0, 0], axis=-1)):
            if np.array_equal(image[top:top + p, left:left + p], original):
                return t, int(top), int(left)
    return None


def _inverse(t, array):
    """Undoes transform t of the 8 flips/rotations: t = 4 * flipped + quarter turns."""
    flip, turns = divmod(t, 4)
    out = np.rot90(array, -turns)
    return out[:, ::-1] if flip else out


def _noise_folder(tmp_path, count=3, shape=HR_SHAPE):
    folder = tmp_path / "hr"
    for i in range(count):
        _save(str(folder / f"img{i}.png"), _noise_image(100 + i, shape))
    return str(folder)


@pytest.mark.parametrize("scale, tree", [(2, "cache"), (3, "cache"), (2, "png")])
def test_train_patches_are_aligned_and_augmented_identically(div2k, scale, tree):
    dataset = DIV2K(div2k[1] if tree == "cache" else div2k[0], "train", scale)
    lr_images = {name: lr for name, lr, _ in dataset.pairs()}
    hr_images = {name: hr for name, _, hr in dataset.pairs()}
    batches = dataset.train(batch_size=8, lr_patch=12, seed=5).take(4)
    transforms = set()
    for lr_batch, hr_batch in batches:
        assert lr_batch.shape == (8, 12, 12, 3) and hr_batch.shape == (8, 12 * scale,
                                                                        12 * scale, 3)
        assert lr_batch.dtype.name == "uint8" and hr_batch.dtype.name == "uint8"
        for lr, hr in zip(lr_batch.numpy(), hr_batch.numpy()):
            hits = [(name, _locate(lr, image)) for name, image in lr_images.items()]
            hits = [(name, hit) for name, hit in hits if hit is not None]
            assert len(hits) == 1, "every LR patch comes from exactly one place"
            name, (t, top, left) = hits[0]
            transforms.add(t)
            # Same transform, HR offset = LR offset * scale: exact equality.
            hr_crop = hr_images[name][top * scale:(top + 12) * scale,
                                      left * scale:(left + 12) * scale]
            np.testing.assert_array_equal(_inverse(t, hr), hr_crop)
            # And the HR patch downscaled with the MATLAB bicubic is the LR patch (the
            # border differs: the full-image resize saw pixels outside the patch).
            down = imresize(_inverse(t, hr), 1 / scale).astype(int)
            inner = slice(2, -2)
            assert np.abs(down[inner, inner] - _inverse(t, lr)[inner, inner]).max() <= 1
    assert len(transforms) >= 4, f"flips/rotations hardly vary: {transforms}"


def test_train_without_augmentation_keeps_orientation(div2k):
    dataset = DIV2K(div2k[1], "train", 2)
    lr_images = [lr for _, lr, _ in dataset.pairs()]
    for lr_batch, _ in dataset.train(batch_size=6, lr_patch=10, augment=False, seed=1).take(2):
        for lr in lr_batch.numpy():
            hits = [_locate(lr, image) for image in lr_images]
            assert [h[0] for h in hits if h is not None] == [0]


def test_train_seed_reproducible_and_epochs_reshuffled(div2k):
    dataset = DIV2K(div2k[1], "train", 2)

    def first(seed):
        lr, hr = next(iter(dataset.train(batch_size=4, lr_patch=16, seed=seed)))
        return lr.numpy(), hr.numpy()

    a, b, c = first(7), first(7), first(8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    # One epoch without repeat: each image once, last batch smaller.
    lr_images = [lr for _, lr, _ in dataset.pairs()]
    batches = list(dataset.train(batch_size=2, lr_patch=16, seed=3, repeat=False,
                                 patches_per_image=1))
    assert [int(lr.shape[0]) for lr, _ in batches] == [2, 1]
    sources = [next(i for i, image in enumerate(lr_images) if _locate(lr, image))
               for lr_batch, _ in batches for lr in lr_batch.numpy()]
    assert sorted(sources) == [0, 1, 2]
    # Several patches per image read: an epoch has that many patches of every image.
    batches = list(dataset.train(batch_size=5, lr_patch=16, seed=3, repeat=False,
                                 patches_per_image=4))
    assert [int(lr.shape[0]) for lr, _ in batches] == [5, 5, 2]
    sources = [next(i for i, image in enumerate(lr_images) if _locate(lr, image))
               for lr_batch, _ in batches for lr in lr_batch.numpy()]
    assert sorted(sources) == [0] * 4 + [1] * 4 + [2] * 4
    # Repeating: every epoch (3 patches) covers all images, in orders that change.
    stream = dataset.train(batch_size=3, lr_patch=16, seed=4, augment=False,
                           patches_per_image=1).take(6)
    orders = []
    for lr_batch, _ in stream:
        order = tuple(next(i for i, image in enumerate(lr_images) if _locate(lr, image))
                      for lr in lr_batch.numpy())
        assert sorted(order) == [0, 1, 2]
        orders.append(order)
    assert len(set(orders)) > 1


def test_train_cache_in_memory_gives_the_same_batches(div2k):
    dataset = DIV2K(div2k[0], "train", 2)
    options = {"batch_size": 4, "lr_patch": 16, "seed": 2, "patches_per_image": 2}
    # 12 batches: 48 patches, 24 image reads, 8 passes over the 3 images (the cache is
    # full after the first).
    files = list(dataset.train(**options).take(12))
    cached = list(dataset.train(cache=True, **options).take(12))
    assert len(files) == len(cached) == 12
    for (lr_a, hr_a), (lr_b, hr_b) in zip(files, cached):
        np.testing.assert_array_equal(lr_a.numpy(), lr_b.numpy())
        np.testing.assert_array_equal(hr_a.numpy(), hr_b.numpy())


@pytest.mark.parametrize("patches_per_image", [1, 3])
def test_train_stream_starts_at_any_batch(div2k, patches_per_image):
    # What a resumed run relies on: skipping batches gives the rest of the same stream.
    dataset = DIV2K(div2k[0], "train", 2)
    options = {"batch_size": 4, "lr_patch": 16, "seed": 6,
               "patches_per_image": patches_per_image}
    whole = [b for pair in dataset.train(**options).take(9) for b in pair]
    for skip in (1, 4, 7):
        rest = [b for pair in dataset.train(skip_batches=skip, **options).take(9 - skip)
                for b in pair]
        assert len(rest) == len(whole[2 * skip:])
        for got, expected in zip(rest, whole[2 * skip:]):
            np.testing.assert_array_equal(got.numpy(), expected.numpy())
    with pytest.raises(ValueError, match="skip_batches"):
        dataset.train(skip_batches=-1, **options)


def test_images_smaller_than_the_patch_are_named(div2k):
    dataset = DIV2K(div2k[1], "train", 4)  # LR 24x30
    with pytest.raises(ValueError, match=r"lr_patch=32.*3 of the 3 images.*0001x4.npy"):
        dataset.train(batch_size=2, lr_patch=32)


def test_training_leaves_out_small_images_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "mixed"
    _save(str(folder / "big.png"), _noise_image(1, (64, 64)))
    _save(str(folder / "small.png"), _noise_image(2, (24, 64)))
    dataset = ImageFolder(str(folder), 2)
    with caplog.at_level(logging.WARNING):
        batches = list(dataset.train(batch_size=4, lr_patch=16, repeat=False, augment=False,
                                     patches_per_image=1))
    assert any("small.png" in r.getMessage() for r in caplog.records)
    _, big_lr, _ = next(dataset.pairs())
    assert sum(int(lr.shape[0]) for lr, _ in batches) == 1
    assert _locate(batches[0][0].numpy()[0], big_lr) is not None
    # Validation scores every image: a crop larger than an image keeps its whole extent
    # in that dimension (LR small.png is 12x32: a 12x16 crop), with one warning.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        crops = [(lr.shape[1:3], hr.shape[1:3]) for lr, hr in dataset.valid(crop=16)]
    assert crops == [((16, 16), (32, 32)), ((12, 16), (24, 32))]
    warnings = [r.getMessage() for r in caplog.records if "crop=16" in r.getMessage()]
    assert len(warnings) == 1 and "small.png" in warnings[0]


def test_valid_full_images_and_centre_crops(div2k):
    dataset = DIV2K(div2k[1], "valid", 3)
    pairs = list(dataset.pairs())
    full = list(dataset.valid())
    assert len(full) == len(pairs) == 2
    for (lr, hr), (_, lr_ref, hr_ref) in zip(full, pairs):
        assert lr.shape == (1,) + lr_ref.shape and hr.shape == (1,) + hr_ref.shape
        np.testing.assert_array_equal(lr[0], lr_ref)
        np.testing.assert_array_equal(hr[0], hr_ref)
    for (lr, hr), (_, lr_ref, hr_ref) in zip(dataset.valid(crop=20), pairs):
        top, left = (32 - 20) // 2, (40 - 20) // 2
        np.testing.assert_array_equal(lr[0], lr_ref[top:top + 20, left:left + 20])
        np.testing.assert_array_equal(hr[0], hr_ref[3 * top:3 * top + 60, 3 * left:3 * left + 60])


# --- ImageFolder ------------------------------------------------------------------------


def test_image_folder_makes_lr_with_matlab_bicubic(tmp_path):
    folder = tmp_path / "Set5"
    odd = _noise_image(7, (50, 61))  # not a multiple of the scale: HR is mod-cropped
    _save(str(folder / "baby.png"), odd)
    _save(str(folder / "bird.png"), _noise_image(8, (48, 48)))
    (folder / "notes.txt").write_text("not an image")
    dataset = ImageFolder(str(folder), 4)
    assert dataset.names == ["baby", "bird"] and dataset.scale == 4
    name, lr, hr = next(dataset.pairs())
    assert hr.shape == (48, 60, 3)
    np.testing.assert_array_equal(hr, odd[:48, :60])
    np.testing.assert_array_equal(lr, imresize(odd[:48, :60], 0.25))
    lr_batch, hr_batch = next(iter(dataset.train(batch_size=3, lr_patch=8, seed=0)))
    assert lr_batch.shape == (3, 8, 8, 3) and hr_batch.shape == (3, 32, 32, 3)


def test_image_folder_with_lr_folder_matches_names(tmp_path):
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR"
    for stem in ("img_001", "img_002"):
        hr = _noise_image(len(stem) + int(stem[-1]), (48, 72))
        _save(str(hr_dir / f"{stem}_SRF_2_HR.png"), hr)
        _save(str(lr_dir / f"{stem}_SRF_2_LR.png"), imresize(hr, 0.5))
    dataset = ImageFolder(str(hr_dir), 2, lr_dir=str(lr_dir))
    assert len(dataset) == 2
    for _, lr, hr in dataset.pairs():
        np.testing.assert_array_equal(lr, imresize(hr, 0.5))
    _save(str(lr_dir / "img_002_SRF_2_LR.png"), np.zeros((20, 36, 3), np.uint8))
    with pytest.raises(ValueError, match=r"img_002_SRF_2_LR.png: LR image is 36x20.*36x24"):
        ImageFolder(str(hr_dir), 2, lr_dir=str(lr_dir))
    os.remove(lr_dir / "img_002_SRF_2_LR.png")
    with pytest.raises(DatasetNotFoundError, match="img_002_SRF_2_HR.png: no matching LR"):
        ImageFolder(str(hr_dir), 2, lr_dir=str(lr_dir))


def test_image_folder_over_a_numpy_cache(tmp_path):
    hr_dir = _noise_folder(tmp_path)
    cache = str(tmp_path / "hr_bin")
    convert("numpy", hr_dir, cache, progress=False)
    from_png, from_npy = ImageFolder(hr_dir, 2), ImageFolder(cache, 2)
    for (_, lr_a, hr_a), (_, lr_b, hr_b) in zip(from_png.pairs(), from_npy.pairs()):
        np.testing.assert_array_equal(lr_a, lr_b)
        np.testing.assert_array_equal(hr_a, hr_b)


def test_empty_folder_and_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images here")
    with pytest.raises(DatasetNotFoundError, match=r"empty.*no images"):
        ImageFolder(str(tmp_path / "empty"), 2)
    with pytest.raises(DatasetNotFoundError, match="missing"):
        ImageFolder(str(tmp_path / "missing"), 2)


# --- bad images -------------------------------------------------------------------------


def test_corrupt_truncated_and_non_image_files_are_named(tmp_path):
    folder = tmp_path / "bad"
    _save(str(folder / "good.png"), _noise_image(1, (32, 32)))
    data = (folder / "good.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut.png: cannot decode"):
        read_rgb(str(folder / "cut.png"))
    # Caught when the dataset is opened, before any training starts.
    with pytest.raises(ImageError, match=r"cut.png: truncated PNG"):
        ImageFolder(str(folder), 2)
    (folder / "cut.png").unlink()
    # A JPEG without its end marker is left to Pillow, which names it when training starts.
    buffer = io.BytesIO()
    Image.fromarray(_noise_image(2, (64, 64))).save(buffer, format="JPEG")
    (folder / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])
    dataset = ImageFolder(str(folder), 2)
    with pytest.raises(ImageError, match=r"cut.jpg: cannot decode"):
        dataset.train(batch_size=2, lr_patch=8)
    (folder / "cut.jpg").unlink()
    (folder / "fake.png").write_text("this is text, not a PNG")
    with pytest.raises(ImageError, match=r"fake.png: not a readable image"):
        ImageFolder(str(folder), 2)


@pytest.mark.parametrize(
    "mode, note",
    [("L", "grayscale"), ("RGBA", "alpha"), ("P", "palette"), ("I;16", "16-bit"),
     ("LA", "alpha")],
)
def test_non_rgb_images_are_converted_with_a_warning(tmp_path, caplog, mode, note):
    rgb = _noise_image(3, (32, 48))
    if mode == "I;16":
        image = Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257)
        expected = np.repeat(rgb[:, :, :1], 3, axis=2)
    else:
        image = Image.fromarray(rgb).convert(mode)
        expected = np.asarray(image.convert("RGB"))
    folder = tmp_path / "modes"
    folder.mkdir()
    image.save(folder / "odd.png")
    with caplog.at_level(logging.WARNING):
        dataset = ImageFolder(str(folder), 2)
    assert any("odd.png" in r.getMessage() and note in r.getMessage() for r in caplog.records)
    _, lr, hr = next(dataset.pairs())
    assert hr.dtype == np.uint8 and hr.shape == (32, 48, 3)
    np.testing.assert_array_equal(hr, expected)
    # The training pipeline (TensorFlow decoders or Pillow) gives the same pixels.
    _, hr_batch = next(iter(dataset.train(batch_size=4, lr_patch=8, augment=False, seed=0)))
    for patch in hr_batch.numpy():
        assert _locate(patch, expected) is not None


# --- demo set and open_dataset ----------------------------------------------------------


def test_demo_set_is_licensed_real_photographs():
    manifest = demo_manifest()["images"]
    train = [e for e in manifest if e["subset"] == "train"]
    valid = [e for e in manifest if e["subset"] == "valid"]
    assert len(train) >= 8 and len(valid) >= 3
    readme = (
        __import__("importlib.resources").resources.files("sisr.data")
        .joinpath("demo", "README.md").read_text()
    )
    for entry in manifest:
        assert "CC0" in entry["licence"] or "ublic domain" in entry["licence"]
        assert "skimage" in entry["source"] and entry["file"] in readme
        assert entry["height"] % 12 == 0 and entry["width"] % 12 == 0
    for subset, count in (("train", len(train)), ("valid", len(valid))):
        dataset = demo(subset, 2)
        assert len(dataset) == count
        for name, lr, hr in dataset.pairs():
            assert min(hr.shape[:2]) >= 144, name  # 48-pixel LR patches fit up to x3
            # Photographs, not flat synthetic patterns: many grey levels and fine detail
            # that a bicubic x2 round trip loses.
            assert len(np.unique(hr.mean(axis=2).round())) > 100, name
            round_trip = imresize(imresize(hr / 255.0, 0.5), 2) * 255
            assert np.abs(round_trip - hr).mean() > 1.0, name
            np.testing.assert_array_equal(lr, imresize(hr, 0.5))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_demo_trains_with_48_pixel_patches(scale, caplog):
    dataset = demo("train", scale)
    assert dataset.scale == scale and dataset.name
    with caplog.at_level(logging.WARNING):
        lr, hr = next(iter(dataset.train(batch_size=16, lr_patch=48, seed=0)))
    # Only the 168-pixel-high `text` photograph is too small, and only at x4.
    left_out = [r.getMessage() for r in caplog.records if "training without" in r.getMessage()]
    assert (len(left_out) == 1 and "train_text.png" in left_out[0]) if scale == 4 else not left_out
    assert lr.shape == (16, 48, 48, 3) and hr.shape == (16, 48 * scale, 48 * scale, 3)
    for lr, hr in demo("valid", scale).valid(crop=48):
        assert lr.shape == (1, 48, 48, 3) and hr.shape == (1, 48 * scale, 48 * scale, 3)


def test_open_dataset_resolves_specs(div2k, tmp_path):
    root, cache = div2k
    assert open_dataset("demo", "valid", 2).names == demo("valid", 2).names
    assert open_dataset(cache, "valid", 4, images="801").ids == [801]
    assert isinstance(open_dataset(root, "train", 2, "unknown"), DIV2K)
    # A folder with train/ and valid/ subfolders, and a plain folder used whole.
    split = tmp_path / "mine"
    _save(str(split / "train" / "a.png"), _noise_image(1, (48, 48)))
    _save(str(split / "valid" / "b.png"), _noise_image(2, (48, 48)))
    assert open_dataset(str(split), "train", 2).names == ["a"]
    assert open_dataset(str(split), "valid", 2).names == ["b"]
    assert open_dataset(str(split / "train"), "valid", 2).names == ["a"]
    with pytest.raises(FileNotFoundError, match=r"nowhere.*'demo'"):
        open_dataset(str(tmp_path / "nowhere"), "train", 2)
    with pytest.raises(ValueError, match="bicubic"):
        open_dataset("demo", "train", 2, downgrade="unknown")
    with pytest.raises(ValueError, match="subset"):
        open_dataset("demo", "test", 2)


def test_demo_manifest_matches_files():
    folder = __import__("importlib.resources").resources.files("sisr.data").joinpath("demo")
    listed = {e["file"] for e in json.loads(folder.joinpath("manifest.json").read_text())["images"]}
    present = {p.name for p in folder.iterdir() if p.name.endswith(".png")}
    assert listed == present


_EXIT_SCRIPT = """
import sys
from sisr.data import DIV2K

def main():
    batches = iter(DIV2K(sys.argv[1], "train", 2).train(batch_size=4, lr_patch=16))
    for _ in range(20):
        next(batches)
    raise RuntimeError("crash with a live iterator")

main()
"""


@pytest.mark.slow
def test_process_exits_when_training_crashes_with_a_live_iterator(div2k, tmp_path):
    # A Python function inside tf.data makes the process hang at exit in this situation
    # (e.g. Ctrl-C during training); the pipelines use TensorFlow ops only.
    import subprocess
    import sys

    script = tmp_path / "crash.py"
    script.write_text(_EXIT_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for root in div2k:
        run = subprocess.run([sys.executable, str(script), root], capture_output=True,
                             text=True, timeout=120, env=env)
        assert run.returncode == 1 and "crash with a live iterator" in run.stderr


# --- cache integrity and bad files when a dataset is opened -------------------------------


def test_a_decompression_bomb_is_named_in_one_line(tmp_path, monkeypatch):
    root = make_div2k(str(tmp_path / "DIV2K"), train_ids=(1,), valid_ids=())
    # Pillow refuses images over twice this many pixels: the HR image (96x120 = 11520)
    # is refused, its x2 LR image (48x60 = 2880) is not.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    for open_it in (lambda: DIV2K(root, "train", 2),
                    lambda: ImageFolder(os.path.join(root, "DIV2K_train_HR"), 2)):
        with pytest.raises(ImageError) as info:
            open_it()
        message = str(info.value)
        assert "0001.png" in message and "decompression-bomb" in message
        assert "\n" not in message


def _alter_last_byte(path):
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_END)
        f.write(bytes([byte ^ 0xFF]))


def test_an_altered_cache_file_is_refused(tmp_path):
    root = make_div2k(str(tmp_path / "DIV2K"), train_ids=(1, 2), valid_ids=())
    cache = str(tmp_path / "BIN")
    convert("numpy", root, cache, progress=False)
    hr_dir = os.path.join(cache, "DIV2K_train_HR")
    DIV2K(cache, "train", 2)
    ImageFolder(hr_dir, 2)
    altered = os.path.join(hr_dir, "0002.npy")
    size = os.path.getsize(altered)
    _alter_last_byte(altered)  # pixels changed, size intact
    assert os.path.getsize(altered) == size
    for open_it in (lambda: DIV2K(cache, "train", 2), lambda: ImageFolder(hr_dir, 2)):
        with pytest.raises(ManifestError, match=r"0002.npy: .*checksum.*sisr.convert numpy"):
            open_it()
    # Following the advice repairs it.
    assert convert("numpy", root, cache, progress=False).converted == 1
    np.testing.assert_array_equal(np.load(altered), _noise_image(2))
    DIV2K(cache, "train", 2)


def test_a_deleted_cache_file_is_noticed(tmp_path):
    # Training listed the files present and ran on 2 of 3 images without a word.
    root = make_div2k(str(tmp_path / "DIV2K"), train_ids=(1, 2, 3), valid_ids=())
    cache = str(tmp_path / "BIN")
    convert("numpy", root, cache, progress=False)
    hr_dir = os.path.join(cache, "DIV2K_train_HR")
    os.remove(os.path.join(hr_dir, "0002.npy"))
    for open_it in (lambda: DIV2K(cache, "train", 2), lambda: ImageFolder(hr_dir, 2)):
        with pytest.raises(ManifestError, match=r"0002.npy: .*missing.*sisr.convert numpy"):
            open_it()
    # Following the advice repairs it.
    assert convert("numpy", root, cache, progress=False).converted == 1
    assert len(DIV2K(cache, "train", 2).ids) == 3
    ImageFolder(hr_dir, 2)


def test_a_cache_from_an_older_sisr_without_checksums_opens(tmp_path):
    hr_dir = _noise_folder(tmp_path)
    cache = str(tmp_path / "hr_bin")
    convert("numpy", hr_dir, cache, progress=False)
    path = os.path.join(cache, "sisr_manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    for entry in manifest["entries"].values():
        del entry["sha256"], entry["mtime_ns"]
    manifest["version"] = 1
    with open(path, "w") as f:
        json.dump(manifest, f)
    assert ImageFolder(cache, 2).names == ["img0", "img1", "img2"]


def test_a_stray_cache_file_gets_advice_that_works(tmp_path):
    root = make_div2k(str(tmp_path / "DIV2K"), train_ids=(1, 2), valid_ids=())
    cache = str(tmp_path / "BIN")
    convert("numpy", root, cache, progress=False)
    stray = os.path.join(cache, "DIV2K_train_HR", "0003.npy")
    np.save(stray, _noise_image(3))  # copied in by hand; DIV2K has no 0003.png here
    np.save(os.path.join(cache, "DIV2K_train_LR_bicubic", "X2", "0003x2.npy"),
            imresize(_noise_image(3), 0.5))
    with pytest.raises(ManifestError) as info:
        DIV2K(cache, "train", 2)
    message = str(info.value)
    # Re-running the conversion does not help (everything else is up to date) and the
    # message does not pretend it does: it says to remove the files, and names them all.
    assert convert("numpy", root, cache, progress=False).converted == 0
    assert "not recorded" in message and "delete it or move it out of" in message
    assert "0003x2.npy" in message and stray in message and "\n" not in message
    os.remove(stray)
    os.remove(os.path.join(cache, "DIV2K_train_LR_bicubic", "X2", "0003x2.npy"))
    assert DIV2K(cache, "train", 2).ids == [1, 2]


def test_cache_contents_are_hashed_only_when_a_file_time_changed(tmp_path, monkeypatch):
    from sisr.data import manifest

    hr_dir = _noise_folder(tmp_path)
    cache = str(tmp_path / "hr_bin")
    convert("numpy", hr_dir, cache, progress=False)
    hashed = []
    real = manifest.sha256_file
    monkeypatch.setattr(manifest, "sha256_file", lambda p: hashed.append(p) or real(p))
    ImageFolder(cache, 2)
    assert hashed == []  # times as recorded: sizes and times only
    # A copy that does not keep times: each file is hashed once per process, and kept.
    copy = str(tmp_path / "copy")
    import shutil

    shutil.copytree(cache, copy, copy_function=shutil.copyfile)
    os.utime(os.path.join(copy, "img1.npy"), ns=(1, 10**18))
    ImageFolder(copy, 2)
    assert len(hashed) == 3
    ImageFolder(copy, 2)
    assert len(hashed) == 3
    # Converting into the copy re-records the times (nothing is converted again).
    assert convert("numpy", hr_dir, copy, progress=False).converted == 0
    with open(os.path.join(copy, "sisr_manifest.json")) as f:
        entries = json.load(f)["entries"]
    assert all(e["mtime_ns"] == os.stat(os.path.join(copy, rel)).st_mtime_ns
               for rel, e in entries.items())
