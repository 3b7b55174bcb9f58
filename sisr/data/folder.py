"""Any folder of HR images (Set5, Set14, B100, Urban100, your own), with or without LR."""

import logging
import os
import re

from sisr.data.dataset import DatasetError, DatasetNotFoundError, Pair, PairedDataset
from sisr.data.manifest import check_cache_files
from sisr.data.sources import DownscaledSource, FileSource
from sisr.fileio import is_temp_name
from sisr.imageio import list_images as list_files

log = logging.getLogger(__name__)


def folder_images(folder):
    """Sorted image and .npy files directly in `folder` (hidden and other files skipped)."""
    if not os.path.isdir(folder):
        raise DatasetNotFoundError(f"{folder}: image folder not found")
    files = list_files(folder, numpy=True)
    others = [n for n in sorted(os.listdir(folder)) if not n.startswith(".")
              and not is_temp_name(n) and os.path.isfile(os.path.join(folder, n))
              and os.path.join(folder, n) not in files]
    if others:
        log.info("%s: ignoring %d non-image file(s): %s", folder, len(others),
                 ", ".join(others[:5]))
    return files


def pair_key(stem, scale):
    """A file stem without the usual LR/HR markers: "baby_x4"/"img_001_SRF_4_LR" -> base."""
    patterns = [rf"[_-]?[xX]{scale}[A-Za-z]?$", rf"[_-]?SRF[_-]?{scale}$", r"[_-]?(?:LR|HR)$",
                r"[_-]?(?:lr|hr)$"]
    previous = None
    while previous != stem:
        previous = stem
        for pattern in patterns:
            stripped = re.sub(pattern, "", stem)
            if stripped:
                stem = stripped
    return stem


class ImageFolder(PairedDataset):
    """HR images from a folder; LR from `lr_dir` or made with the MATLAB bicubic.

    Args:
        hr_dir: folder of HR images (png, jpg, bmp, tif, ...) or of .npy cache files.
        scale: integer upscaling factor.
        lr_dir: optional folder of LR images, matched to HR images by file name (exact
            stem first, then ignoring markers such as "x4", "_LR"/"_HR", "_SRF_4"). When
            None, LR images are made from the HR images (cropped to a multiple of the
            scale) with the MATLAB bicubic on first use and kept in memory; for large
            folders make them once with `python -m sisr.convert downscale`.
    """

    def __init__(self, hr_dir, scale, lr_dir=None):
        scale = int(scale)
        if scale < 1:
            raise DatasetError(f"scale must be a positive integer, got {scale}")
        hr_dir = os.fspath(hr_dir)
        hr_files = folder_images(hr_dir)
        if not hr_files:
            raise DatasetNotFoundError(f"{hr_dir}: empty folder, no images (.png, .jpg, .bmp, "
                                       ".tif, .npy ...) found")
        if lr_dir is None:
            pairs = []
            for path in hr_files:
                hr = FileSource(path)
                pairs.append(Pair(_stem(path), DownscaledSource(hr, scale), hr))
        else:
            pairs = self._match(hr_files, folder_images(os.fspath(lr_dir)), os.fspath(lr_dir),
                                scale)
        check_cache_files([source.path for pair in pairs for source in (pair.lr, pair.hr)
                           if isinstance(source, FileSource) and source.is_numpy])
        self.hr_dir = hr_dir
        self.lr_dir = lr_dir
        super().__init__(os.path.basename(os.path.normpath(hr_dir)) + f"-x{scale}", scale,
                         pairs)

    @staticmethod
    def _match(hr_files, lr_files, lr_dir, scale):
        by_stem = {_stem(p): p for p in lr_files}
        by_key = {}
        for path in lr_files:
            by_key.setdefault(pair_key(_stem(path), scale), []).append(path)
        pairs = []
        for path in hr_files:
            stem = _stem(path)
            lr = by_stem.get(stem)
            if lr is None:
                candidates = by_key.get(pair_key(stem, scale), [])
                if len(candidates) > 1:
                    raise DatasetError(f"{path}: several LR images in {lr_dir} match it: "
                                     f"{', '.join(candidates)}")
                lr = candidates[0] if candidates else None
            if lr is None:
                raise DatasetNotFoundError(f"{path}: no matching LR image in {lr_dir} "
                                           f"(expected e.g. {stem}.png or {stem}x{scale}.png)")
            pairs.append(Pair(stem, FileSource(lr), FileSource(path)))
        return pairs


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]
