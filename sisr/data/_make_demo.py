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

# name, subset, skimage function, file in the wheel, licence note, shrink factor, (h, w)
PHOTOS = [
    ("astronaut", "train", "astronaut", "astronaut.png",
     "Public domain (NASA; 'No known copyright restrictions, released into the public "
     "domain')", None, (504, 504)),
    ("coffee", "train", "coffee", "coffee.png",
     "CC0 by the photographer (Rachel Michetti)", None, (396, 600)),
    ("rocket", "train", "rocket", "rocket.jpg",
     "Public domain (SpaceX launch photo released into the public domain)", None,
     (420, 636)),
    ("hubble", "train", "hubble_deep_field", "hubble_deep_field.jpg",
     "Public domain (NASA, Hubble eXtreme Deep Field)", None, (504, 600)),
    ("retina", "train", "retina", "retina.jpg",
     "CC0 1.0 (Mikael Haggstrom, Wikimedia Commons)", 1 / 3, (312, 312)),
    ("brick", "train", "brick", "brick.png",
     "CC0 (CC0Textures, Bricks25)", None, (504, 504)),
    ("grass", "train", "grass", "grass.png",
     "CC0 (DeviantArt user linolafett, Grass-01)", None, (504, 504)),
    ("text", "train", "text", "text.png",
     "Public domain (Wikimedia Commons, File:Corner.png; 'No known copyright "
     "restrictions, released into the public domain')", None, (168, 444)),
    ("chelsea", "valid", "chelsea", "chelsea.png",
     "CC0 by the photographer (Stefan van der Walt)", None, (300, 444)),
    ("camera", "valid", "camera", "camera.png",
     "CC0 by the photographer (Lav Varshney)", None, (504, 504)),
    ("gravel", "valid", "gravel", "gravel.png",
     "CC0 (CC0Textures, Gravel04)", None, (504, 504)),
]


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
    entries = []
    for name, subset, function, file, licence, shrink, (height, width) in PHOTOS:
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
