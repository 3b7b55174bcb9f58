"""The built-in demo set: real public-domain / CC0 photographs shipped with sisr.

The photographs come from scikit-image's bundled sample images; sources, licences and
the crops applied are listed in sisr/data/demo/README.md and manifest.json. LR images are
made from the HR images with the MATLAB bicubic and held in memory (the set is small).
"""

import hashlib
import importlib.resources
import json

from sisr.data.dataset import DatasetError, Pair, PairedDataset
from sisr.imageio import read_rgb
from sisr.data.sources import ArraySource, DownscaledSource

SUBSETS = ("train", "valid")


def demo_manifest():
    """The demo set's manifest: a dict with an "images" list (file, subset, licence...)."""
    text = importlib.resources.files("sisr.data").joinpath("demo", "manifest.json").read_text()
    return json.loads(text)


def demo(subset="train", scale=2):
    """Dataset over the demo photographs (8 train, 3 valid; HR sides divisible by 12).

    Args:
        subset: "train" or "valid".
        scale: integer upscaling factor (2, 3, 4 divide every image exactly).
    """
    if subset not in SUBSETS:
        raise DatasetError(f"demo subset must be one of {SUBSETS}, got {subset!r}")
    scale = int(scale)
    if scale < 1:
        raise DatasetError(f"scale must be a positive integer, got {scale}")
    folder = importlib.resources.files("sisr.data").joinpath("demo")
    pairs = []
    for entry in demo_manifest()["images"]:
        if entry["subset"] != subset:
            continue
        resource = folder.joinpath(entry["file"])
        with importlib.resources.as_file(resource) as path:
            with open(path, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() != entry["sha256"]:
                    raise DatasetError(f"{path}: demo image does not match its sha256 in "
                                     "manifest.json; reinstall sisr")
            hr = ArraySource(read_rgb(str(path)), f"demo/{entry['file']}")
        pairs.append(Pair(entry["name"], DownscaledSource(hr, scale), hr))
    return PairedDataset(f"demo-{subset}-x{scale}", scale, pairs)
