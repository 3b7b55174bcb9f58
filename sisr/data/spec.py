"""`open_dataset`: the dataset behind a CLI's `--dataset SPEC`."""

import os

from sisr.data.dataset import DatasetError, DatasetNotFoundError
from sisr.data.demo import demo


def has_subsets(spec):
    """True if the dataset `spec` names has a train and a valid subset (the demo set, a
    DIV2K root, an image folder with train/ or valid/); False for a plain image folder,
    used whole for either."""
    if spec == "demo":
        return True
    path = os.fspath(spec)
    from sisr.data.div2k import is_div2k_root

    return is_div2k_root(path) or any(os.path.isdir(os.path.join(path, name))
                                      for name in ("train", "valid"))


def open_dataset(spec, subset="train", scale=2, downgrade="bicubic", images=None):
    """Opens the dataset named by `spec` (what `--dataset` accepts in the sisr CLIs).

    Args:
        spec: "demo" (the built-in photographs), a DIV2K root (image tree or its numpy
            cache: a folder holding DIV2K_{train,valid}_HR/...), or an image folder of HR
            images (LR made with the MATLAB bicubic). An image folder with `train/` and
            `valid/` subfolders uses the one named by `subset`; a folder without them is
            used whole for either subset.
        subset: "train" or "valid".
        scale: integer upscaling factor.
        downgrade: DIV2K degradation track ("bicubic", "unknown", "mild", "difficult",
            "wild", or a user-made variant like "bicubic_jpeg_90"); image folders and the
            demo set only support "bicubic".
        images: DIV2K image ids ("1-800", "801-900", or ints); None for all.
    """
    if subset not in ("train", "valid"):
        raise DatasetError(f"subset must be 'train' or 'valid', got {subset!r}")
    if spec == "demo":
        if downgrade != "bicubic":
            raise DatasetError(f"the demo dataset only has the 'bicubic' downgrade, got "
                             f"{downgrade!r}")
        if images is not None:
            raise DatasetError("`images` (DIV2K ids) does not apply to the demo dataset")
        return demo(subset, scale)
    path = os.fspath(spec)
    if not os.path.isdir(path):
        raise DatasetNotFoundError(
            f"--dataset {spec!r}: no such folder; use 'demo', a DIV2K root (see "
            "https://data.vision.ee.ethz.ch/cvl/DIV2K/, then python -m sisr.convert numpy "
            "-i DIV2K -o DIV2K_BIN) or a folder of HR images"
        )
    from sisr.data.div2k import DIV2K, is_div2k_root
    from sisr.data.folder import ImageFolder

    if is_div2k_root(path):
        return DIV2K(path, subset=subset, scale=scale, downgrade=downgrade, images=images)
    if downgrade != "bicubic":
        raise DatasetError(f"{path}: image folders only support the 'bicubic' downgrade "
                         f"(LR made with the MATLAB bicubic), got {downgrade!r}")
    if images is not None:
        raise DatasetError(f"{path}: `images` (DIV2K ids) only applies to DIV2K roots")
    sub = os.path.join(path, subset)
    if has_subsets(path):
        if not os.path.isdir(sub):
            raise DatasetNotFoundError(f"{path} has train/ or valid/ subfolders but no {subset}/")
        path = sub
    return ImageFolder(path, scale)
