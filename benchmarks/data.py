"""Training-pipeline throughput: numpy cache vs PNG decoding, on a synthetic DIV2K tree.

    python benchmarks/data.py [--images 20] [--rounds 3] [--dir /tmp/sisr-bench-div2k]

Generates a DIV2K-shaped tree (HR 2040x1356 PNGs and their bicubic x2 LR images), converts
it with `python -m sisr.convert numpy`, then measures training patches/s (batch 16, LR
patch 48, x2, augmentation on, default patches per image read) of `DIV2K(...).train()`
from the cache and from the PNGs, interleaving the runs (cache, png, cache, png, ...)
because this machine's speed swings, and prints the medians, their ratio and the growth
of anonymous memory while streaming. Run by hand; nothing here is a test.

    python benchmarks/data.py --degradations [--images 4] [--degrade-batches 8]

measures instead the on-the-fly degradation presets (simple, bsrgan, realesrgan) at
Real-ESRGAN's crop, HR 256 x4 (LR 64, batch 12), from the numpy HR cache as an image
folder, next to the same folder's bicubic pipeline, and one bfloat16 training step of
the full RRDBNet (batch 12, LR 64) for comparison: the data stage must outrun it.
"""

import os
import statistics
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import file_parser, work_dir  # noqa: E402


def make_tree(root, count, height=1356, width=2040, seed=0):
    """Photo-like HR PNGs (smooth gradients + texture + noise) and bicubic x2 LR PNGs."""
    from sisr.imresize import imresize

    rng = np.random.default_rng(seed)
    hr_dir = os.path.join(root, "DIV2K_train_HR")
    lr_dir = os.path.join(root, "DIV2K_train_LR_bicubic", "X2")
    os.makedirs(hr_dir, exist_ok=True)
    os.makedirs(lr_dir, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(1, count + 1):
        hr_path = os.path.join(hr_dir, f"{i:04d}.png")
        lr_path = os.path.join(lr_dir, f"{i:04d}x2.png")
        if os.path.exists(hr_path) and os.path.exists(lr_path):
            continue
        fx, fy = rng.uniform(0.002, 0.05, size=2)
        base = 128 + 60 * np.sin(xx * fx + i) * np.cos(yy * fy)
        image = base[:, :, None] + rng.normal(0, 12, size=(height, width, 3))
        image = np.clip(image + rng.uniform(-40, 40, size=3), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(hr_path)
        Image.fromarray(imresize(image, 0.5)).save(lr_path)


def anonymous_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def patches_per_second(root, batches, seed):
    from sisr.data import DIV2K

    dataset = DIV2K(root, "train", scale=2).train(batch_size=16, lr_patch=48, seed=seed)
    iterator = iter(dataset)
    for _ in range(3):  # warm-up: tracing, thread pools, prefetch buffer
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        lr, hr = next(iterator)
    elapsed = time.perf_counter() - start
    assert lr.shape == (16, 48, 48, 3) and hr.shape == (16, 96, 96, 3)
    return batches * 16 / elapsed


def degraded_patches_per_second(hr_dir, preset, batches, seed):
    from sisr.data import ImageFolder

    dataset = ImageFolder(hr_dir, scale=4).train(batch_size=12, lr_patch=64, seed=seed,
                                                  degradation=preset)
    iterator = iter(dataset)
    for _ in range(2):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        lr, hr = next(iterator)
    elapsed = time.perf_counter() - start
    assert lr.shape == (12, 64, 64, 3) and hr.shape == (12, 256, 256, 3)
    return batches * 12 / elapsed


def rrdbnet_patches_per_second(steps=2, batch=12):
    """Training patches/s of the full RRDBNet x4 in mixed bfloat16 (L1, Adam)."""
    import keras
    import tensorflow as tf

    from sisr.model import rrdbnet

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = rrdbnet(4)
        model.compile(optimizer=keras.optimizers.Adam(2e-4), loss="mae")
        lr = tf.random.uniform([batch, 64, 64, 3], 0, 255)
        hr = tf.random.uniform([batch, 256, 256, 3], 0, 255)
        model.train_on_batch(lr, hr)  # tracing
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(lr, hr)
        return steps * batch / (time.perf_counter() - start)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def degradations(args, npy_root):
    hr_dir = os.path.join(npy_root, "DIV2K_train_HR")
    rates = {}
    for name in (None, "simple", "bsrgan", "realesrgan"):
        rates[name] = [degraded_patches_per_second(hr_dir, name, args.degrade_batches, r)
                       for r in range(args.rounds)]
        print(f"{name or 'bicubic':10s}: {statistics.median(rates[name]):8.1f} patches/s "
              f"(HR 256 x4, batch 12; rounds {[round(r, 1) for r in rates[name]]})",
              flush=True)
    train = rrdbnet_patches_per_second()
    print(f"RRDBNet x4 bf16 training: {train:.2f} patches/s (batch 12, LR 64)")
    return 0


def main(argv=None):
    parser = file_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-batches", type=int, default=300)
    # At least a few windows of reads: a file dataset's batches come 16 at a time from a
    # window of 16 image reads, so fewer batches would time one window's decoded patches.
    parser.add_argument("--png-batches", type=int, default=48)
    parser.add_argument("--degradations", action="store_true",
                        help="measure the degradation presets at HR 256 x4 instead")
    parser.add_argument("--degrade-batches", type=int, default=8)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from sisr.convert import convert

    with work_dir(args.dir, "sisr-bench-data-") as work:
        png_root, npy_root = os.path.join(work, "DIV2K"), os.path.join(work, "DIV2K_BIN")
        start = time.perf_counter()
        make_tree(png_root, args.images)
        print(f"synthetic tree: {args.images} HR 2040x1356 + LR x2 PNGs "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
        start = time.perf_counter()
        result = convert("numpy", png_root, npy_root, progress=False)
        print(f"convert numpy: {result.converted} converted, {result.up_to_date} up to date "
              f"in {time.perf_counter() - start:.1f} s", flush=True)
        if args.degradations:
            return degradations(args, npy_root)
        rates = {"cache": [], "png": []}
        memory_before = anonymous_rss_mb()
        for round_ in range(args.rounds):
            for name, root, batches in (("cache", npy_root, args.cache_batches),
                                        ("png", png_root, args.png_batches)):
                rate = patches_per_second(root, batches, seed=round_)
                rates[name].append(rate)
                print(f"round {round_ + 1} {name:5s}: {rate:8.1f} patches/s", flush=True)
        cache, png = statistics.median(rates["cache"]), statistics.median(rates["png"])
        print(f"median cache {cache:.0f} patches/s, png {png:.1f} patches/s, "
              f"ratio {cache / png:.1f}x (batch 16, LR 48, x2)")
        print(f"anonymous memory: {memory_before:.0f} MB before the runs, "
              f"{anonymous_rss_mb():.0f} MB after (files are streamed, not held)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
