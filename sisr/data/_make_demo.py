"""Maintainer script: rebuilds sisr/data/demo/ from scikit-image's bundled photographs.

    python -m sisr.data._make_demo [OUT_DIR]

Needs scikit-image (only the images shipped in its wheel are used, nothing is
downloaded). Every output is cropped to a size divisible by 12 so that x2, x3 and x4 LR
images have exact sizes; the large, smooth JPEG `retina` is first shrunk to 1/3 with the
MATLAB bicubic (less compression noise, more detail per pixel). Writes the PNGs and
manifest.json (source, licence, the operations applied, sha256); README.md is maintained
by hand.
"""

import hashlib
import json
import os
import sys

import numpy as np
from PIL import Image

from sisr.imresize import imresize

_SOURCE = "scikit-image {version}, skimage.data.{function}() (file skimage/data/{file})"

# What each demo image is made from (name, subset, skimage function and file, licence,
# shrink factor, crop size), kept as data beside the images.
SOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo", "sources.json")


def _centre_crop(image, height, width):
    top = (image.shape[0] - height) // 2
    left = (image.shape[1] - width) // 2
    if top < 0 or left < 0:
        raise ValueError(f"image {image.shape} is smaller than the crop {height}x{width}")
    return image[top:top + height, left:left + width], (top, left)


def build(out_dir):
    import skimage
    import skimage.data

    os.makedirs(out_dir, exist_ok=True)
    with open(SOURCES) as f:
        photos = json.load(f)["photos"]
    entries = []
    for photo in photos:
        name, subset, function, file, licence, shrink, height, width = (
            photo[key] for key in ("name", "subset", "function", "file", "licence", "shrink",
                                   "height", "width"))
        image = getattr(skimage.data, function)()
        operations = [f"loaded {image.shape[1]}x{image.shape[0]} ({image.ndim}-D uint8)"]
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
            operations.append("grayscale copied to 3 RGB channels")
        image = image[:, :, :3]
        if shrink:
            image = imresize(image, shrink)
            operations.append(f"MATLAB bicubic x{shrink:.4g} to "
                              f"{image.shape[1]}x{image.shape[0]}")
        image, (top, left) = _centre_crop(image, height, width)
        operations.append(f"centre crop {width}x{height} at (top={top}, left={left})")
        path = os.path.join(out_dir, f"{subset}_{name}.png")
        Image.fromarray(np.ascontiguousarray(image)).save(path, optimize=True)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        entries.append({
            "file": os.path.basename(path), "subset": subset, "name": name,
            "height": height, "width": width,
            "source": _SOURCE.format(version=skimage.__version__, function=function,
                                     file=file),
            "licence": licence, "operations": operations, "sha256": digest,
        })
    manifest = {"description": "sisr demo photographs (see README.md)", "images": entries}
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    build(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "demo"))
