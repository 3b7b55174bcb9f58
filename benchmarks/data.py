"""Training-pipeline throughput: numpy cache vs PNG decoding, on a synthetic DIV2K tree.

    python benchmarks/data.py [--images 20] [--rounds 3] [--dir /tmp/sisr-bench-div2k]

Generates a DIV2K-shaped tree (HR 2040x1356 PNGs and their bicubic x2 LR images), converts
it with `python -m sisr.convert numpy`, then measures training patches/s (batch 16, LR
patch 48, x2, augmentation on, default patches per image read) of `DIV2K(...).train()`
from the cache and from the PNGs, interleaving the runs (cache, png, cache, png, ...)
because this machine's speed swings, and prints the medians, their ratio and the growth
of anonymous memory while streaming. Run by hand; nothing here is a test.
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


def main(argv=None):
    parser = file_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-batches", type=int, default=300)
    # At least a few windows of reads: a file dataset's batches come 16 at a time from a
    # window of 16 image reads, so fewer batches would time one window's decoded patches.
    parser.add_argument("--png-batches", type=int, default=48)
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
