"""DIV2K (NTIRE 2017/2018) over its image tree or a numpy cache of it.

Layout (docs/reference.md §5), below `root`:
    DIV2K_{subset}_HR/0001.png
    DIV2K_{subset}_LR_{bicubic,unknown}/X{2,3,4}/0001x2.png
    DIV2K_{subset}_LR_x8/0001x8.png                         (bicubic x8)
    DIV2K_{subset}_LR_{mild,difficult,wild}/0001x4m.png     (x4 only)
    DIV2K_{subset}_LR_bicubic_jpeg_90/X2/0001x2.jpg         (user-made variants)
A numpy cache is the same tree with .npy files (python -m sisr.convert numpy). Files are
matched by their 4-digit image id, whatever suffix the release gave them.
"""

import os
import re

from sisr.data.dataset import DatasetError, DatasetNotFoundError, Pair, PairedDataset
from sisr.imageio import IMAGE_EXTENSIONS, NUMPY_EXTENSION
from sisr.data.manifest import check_cache_files
from sisr.data.sources import FileSource

TRACKS = {"bicubic": (2, 3, 4, 8), "unknown": (2, 3, 4), "mild": (4,), "difficult": (4,),
          "wild": (4,)}
SUBSET_IDS = {"train": (1, 800), "valid": (801, 900)}
DOWNLOAD = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
_DOWNGRADE = re.compile(r"^(bicubic|unknown|mild|difficult|wild)((?:_[A-Za-z0-9]+)*)$")
_FILE = re.compile(r"^(\d{4})(?:[xX]\d+[A-Za-z]?)?(\.[A-Za-z]+)$")
_ROOT_FOLDER = re.compile(r"^DIV2K_(train|valid)_(HR|LR_\w+)$")




def is_div2k_root(path):
    """True if `path` holds DIV2K_{train,valid}_{HR,LR_*} folders."""
    try:
        return any(_ROOT_FOLDER.match(name) and os.path.isdir(os.path.join(path, name))
                   for name in os.listdir(path))
    except OSError:
        return False


def parse_ids(images, subset):
    """Image ids from "1-800", "801-900", "1-10,15", an int or an iterable of ints."""
    low, high = SUBSET_IDS[subset]
    if images is None:
        return None
    if isinstance(images, int):
        ids = [images]
    elif isinstance(images, str):
        ids = []
        for part in images.replace(" ", "").split(","):
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not match:
                raise DatasetError(f"images={images!r}: expected id ranges like '1-800' or "
                                 "'801-900,905'")
            first = int(match.group(1))
            last = int(match.group(2) or first)
            if last < first:
                raise DatasetError(f"images={images!r}: empty range {part!r}")
            ids.extend(range(first, last + 1))
    else:
        ids = [int(i) for i in images]
    if not ids:
        raise DatasetError(f"images={images!r} selects no image")
    outside = [i for i in ids if not low <= i <= high]
    if outside:
        raise DatasetError(f"images: ids {outside[:5]} are not in the DIV2K {subset} subset "
                         f"({low}-{high})")
    return sorted(set(ids))


def _check_track(downgrade, scale):
    match = _DOWNGRADE.match(downgrade or "")
    if not match:
        raise DatasetError(
            f"unknown DIV2K downgrade {downgrade!r}: use one of {', '.join(TRACKS)} or a "
            "user-made variant such as 'bicubic_jpeg_90'"
        )
    base, variant = match.groups()
    if scale not in TRACKS[base]:
        tracks = "; ".join(f"{name} x{'/x'.join(map(str, scales))}"
                           for name, scales in TRACKS.items())
        raise DatasetError(f"DIV2K has no {base} x{scale} track (available: {tracks})")
    return base, variant


def lr_folder_candidates(subset, downgrade, scale):
    """Relative folders where the LR images of a track may be, most likely first."""
    base, variant = _check_track(downgrade, scale)
    if scale == 8:
        return [f"DIV2K_{subset}_LR_x8{variant}", f"DIV2K_{subset}_LR_{downgrade}/X8",
                f"DIV2K_{subset}_LR_{downgrade}"]
    return [f"DIV2K_{subset}_LR_{downgrade}/X{scale}", f"DIV2K_{subset}_LR_{downgrade}"]


def _index_folder(folder):
    """{image id: path} of the images or .npy files in `folder` (.npy preferred)."""
    found = {}
    for name in sorted(os.listdir(folder)):
        match = _FILE.match(name)
        if not match:
            continue
        ext = match.group(2).lower()
        if ext != NUMPY_EXTENSION and ext not in IMAGE_EXTENSIONS:
            continue
        image_id = int(match.group(1))
        if image_id in found and not found[image_id].endswith(NUMPY_EXTENSION):
            if ext == NUMPY_EXTENSION:
                found[image_id] = os.path.join(folder, name)
            continue
        found.setdefault(image_id, os.path.join(folder, name))
    return found


def _missing_folder_message(root, relative, what, make_hint):
    return (f"{os.path.join(root, relative)}: folder not found ({what}). {make_hint}")


class DIV2K(PairedDataset):
    """A DIV2K track over the image tree or its numpy cache (auto-detected per folder).

    Args:
        root: folder holding DIV2K_{train,valid}_HR and the LR folders, as images or as
            a numpy cache made by `python -m sisr.convert numpy`.
        subset: "train" (ids 1-800) or "valid" (801-900).
        scale: 2, 3, 4 or 8 (bicubic only); mild/difficult/wild are x4 only.
        downgrade: "bicubic", "unknown", "mild", "difficult", "wild" or a user-made
            variant ("bicubic_jpeg_90": DIV2K_{subset}_LR_bicubic_jpeg_90/X{scale}/).
        images: ids ("1-800", "801-900", ints); None for every id present in the HR folder.
    """

    def __init__(self, root, subset="train", scale=2, downgrade="bicubic", images=None):
        if subset not in SUBSET_IDS:
            raise DatasetError(f"DIV2K subset must be 'train' or 'valid', got {subset!r}")
        scale = int(scale)
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise DatasetNotFoundError(f"{root}: DIV2K root folder not found (download from "
                                       f"{DOWNLOAD})")
        lr_candidates = lr_folder_candidates(subset, downgrade, scale)
        ids = parse_ids(images, subset)
        convert_hint = ("If you converted DIV2K to numpy, point to the cache root; "
                        f"convert with: python -m sisr.convert numpy -i DIV2K -o {root}")
        hr_dir = os.path.join(root, f"DIV2K_{subset}_HR")
        if not os.path.isdir(hr_dir):
            raise DatasetNotFoundError(_missing_folder_message(
                root, f"DIV2K_{subset}_HR", f"DIV2K {subset} HR images",
                f"Download DIV2K_{subset}_HR.zip from {DOWNLOAD} and unzip it into {root}. "
                + convert_hint))
        lr_dir = next((os.path.join(root, c) for c in lr_candidates
                       if os.path.isdir(os.path.join(root, c))), None)
        if lr_dir is None:
            if "_" in downgrade and downgrade.split("_", 1)[0] in TRACKS:
                base_dir = lr_folder_candidates(subset, downgrade.split("_", 1)[0], scale)[0]
                hint = ("Make it from the base track, e.g. python -m sisr.convert jpeg "
                        f"--quality 90 -i {os.path.join(root, base_dir)} -o "
                        f"{os.path.join(root, lr_candidates[0])}")
            else:
                zip_name = lr_candidates[0].split("/")[0]
                hint = f"Download {zip_name}.zip from {DOWNLOAD} and unzip it into {root}."
            raise DatasetNotFoundError(_missing_folder_message(
                root, lr_candidates[0], f"LR images of the {downgrade} x{scale} track",
                hint))

        hr_files, lr_files = _index_folder(hr_dir), _index_folder(lr_dir)
        low, high = SUBSET_IDS[subset]
        if ids is None:
            ids = sorted(i for i in hr_files if low <= i <= high)
            if not ids:
                raise DatasetNotFoundError(f"{hr_dir}: no DIV2K images (0001.png ... or "
                                           ".npy) in this folder")
        pairs = []
        for image_id in ids:
            if image_id not in hr_files:
                raise DatasetNotFoundError(f"{os.path.join(hr_dir, f'{image_id:04d}.png')}: "
                                           f"HR image {image_id} not found")
            if image_id not in lr_files:
                raise DatasetNotFoundError(
                    f"{os.path.join(lr_dir, f'{image_id:04d}x{scale}.png')}: LR image "
                    f"{image_id} of the {downgrade} x{scale} track not found")
            pairs.append(Pair(f"{image_id:04d}", FileSource(lr_files[image_id]),
                              FileSource(hr_files[image_id])))
        self._check_caches(pairs)
        self.root = root
        self.subset = subset
        self.downgrade = downgrade
        self.ids = ids
        super().__init__(f"DIV2K-{subset}-{downgrade}-x{scale}", scale, pairs)

    @staticmethod
    def _check_caches(pairs):
        """Refuses .npy files that are not complete, current conversion outputs."""
        check_cache_files([source.path for pair in pairs for source in (pair.lr, pair.hr)
                           if source.is_numpy])
