"""What checking a numpy cache's checksums costs: opening a dataset, `convert verify`.

    python benchmarks/cache_checksum.py [--images 20] [--repeats 5] [--dir /tmp/sisr-bench-sum]

Makes a cache of DIV2K-sized HR images (2040x1356x3 uint8 .npy, 8.3 MB each) with
`python -m sisr.convert numpy`, then times, interleaved, with the files in the page cache:
- open: `ImageFolder(cache)` with the files' times as recorded (the default check: sizes
  and times, no reading);
- open, times changed: the same after every file's mtime changed (a copy that did not keep
  times), so every file is hashed once per process;
- verify: `python -m sisr.convert verify`, which hashes every file;
- sha256: hashing the files alone.
Prints the medians and MB/s. Cold reads from disk add the disk's read time. Run by hand.
"""

import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import file_parser, format_table, interleave, median, work_dir


def main(argv=None):
    parser = file_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from sisr.convert import convert, verify
    from sisr.data import ImageFolder, manifest

    with work_dir(args.dir, "sisr-bench-sum-") as work:
        source, cache = os.path.join(work, "src"), os.path.join(work, "cache")
        changed = os.path.join(work, "cache_copied")
        os.makedirs(source, exist_ok=True)
        rng = np.random.default_rng(0)
        for i in range(args.images):
            path = os.path.join(source, f"{i:04d}.npy")
            if not os.path.exists(path):
                np.save(path, rng.integers(0, 256, (1356, 2040, 3), dtype=np.uint8))
        convert("numpy", source, cache, progress=False)
        if not os.path.exists(changed):
            shutil.copytree(cache, changed, copy_function=shutil.copyfile)  # new mtimes
        files = [os.path.join(cache, f) for f in sorted(os.listdir(cache)) if f.endswith(".npy")]
        megabytes = sum(os.path.getsize(f) for f in files) / 1e6

        def open_changed():
            manifest._checked.clear()  # a new process
            ImageFolder(changed, 2)

        cases = {
            "open": lambda: ImageFolder(cache, 2),
            "open, times changed": open_changed,
            "verify": lambda: verify(cache),
            "sha256": lambda: [manifest.sha256_file(f) for f in files],
        }
        times = interleave(cases, repeats=args.repeats)
        rows = [[name, f"{1e3 * median(v):.1f}", f"{megabytes / median(v):.0f}"]
                for name, v in times.items()]
        print(f"{len(files)} files, {megabytes:.0f} MB, {os.cpu_count()} CPUs")
        print(format_table(["case", "median ms", "MB/s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
