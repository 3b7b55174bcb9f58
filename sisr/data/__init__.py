"""Datasets of LR/HR image pairs and their tf.data pipelines.

    from sisr.data import open_dataset
    train = open_dataset("demo", "train", scale=2).train(batch_size=16, lr_patch=48)
    valid = open_dataset("demo", "valid", scale=2).valid()

Every dataset (`DIV2K`, `ImageFolder`, `demo`) offers `pairs()`, `train()` and `valid()`
(see `sisr.data.dataset.PairedDataset`). Make numpy caches, JPEG variants and LR images
with `python -m sisr.convert`.
"""

from sisr.data.dataset import DatasetError, DatasetNotFoundError, PairedDataset
from sisr.data.demo import demo
from sisr.data.div2k import DIV2K
from sisr.data.folder import ImageFolder
from sisr.data.manifest import ManifestError
from sisr.data.spec import open_dataset
from sisr.imageio import ImageError, read_rgb

__all__ = [
    "DIV2K",
    "DatasetError",
    "DatasetNotFoundError",
    "ImageError",
    "ImageFolder",
    "ManifestError",
    "PairedDataset",
    "demo",
    "open_dataset",
    "read_rgb",
]
