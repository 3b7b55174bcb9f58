"""The interface shared by every sisr dataset: `pairs()`, `train()`, `valid()`."""

import dataclasses
import logging

from sisr.data.sources import ArraySource, FileSource
from sisr.errors import SisrError


class DatasetError(SisrError, ValueError):
    """A dataset that cannot be used as asked (no images, images too small, unknown
    track or subset, ...); the message names it."""


class DatasetNotFoundError(SisrError, FileNotFoundError):
    """A dataset folder or file that does not exist."""

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Pair:
    """One LR/HR image pair: `lr` and `hr` are sources (see sisr.data.sources)."""

    name: str
    lr: object
    hr: object


class PairedDataset:
    """LR/HR image pairs at one integer scale.

    Attributes:
        name: dataset name (e.g. "demo-train", "DIV2K-train-bicubic-x2").
        scale: the integer upscaling factor.
        names: image names, in the stable order of `pairs()` and `valid()`.
    """

    def __init__(self, name, scale, pairs, check=True):
        if not pairs:
            raise DatasetError(f"dataset {name} has no images")
        self.name = name
        self.scale = int(scale)
        self._pairs = list(pairs)
        if check:
            for pair in self._pairs:
                self._check_pair(pair)

    def _check_pair(self, pair):
        """Reads both headers, warns about converted formats, checks LR size = HR / scale."""
        for source in (pair.lr, pair.hr):
            note = source.inspect()
            if note:
                log.warning("%s: %s", source.label, note)
        (lr_h, lr_w), (hr_h, hr_w), s = pair.lr.shape, pair.hr.shape, self.scale
        if not (lr_h * s <= hr_h < (lr_h + 1) * s and lr_w * s <= hr_w < (lr_w + 1) * s):
            raise DatasetError(
                f"{pair.lr.label}: LR image is {lr_w}x{lr_h} but HR image {pair.hr.label} is "
                f"{hr_w}x{hr_h}; at scale {s} the LR image must be {hr_w // s}x{hr_h // s}"
            )

    def __len__(self):
        return len(self._pairs)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}: {len(self)} images, x{self.scale}>"

    @property
    def names(self):
        return [pair.name for pair in self._pairs]

    def pairs(self):
        """Yields `(name, lr, hr)` uint8 HxWx3 numpy arrays, HR cropped to scale * LR size."""
        for pair in self._pairs:
            lr = pair.lr.load()
            height, width = lr.shape[:2]
            yield pair.name, lr, pair.hr.load()[: height * self.scale, : width * self.scale]

    def _in_memory_pairs(self, pairs):
        log.info("%s: loading %d image pairs into memory", self.name, len(pairs))
        loaded = []
        for pair in pairs:
            lr = pair.lr.load()
            height, width = lr.shape[:2]
            hr = pair.hr.load()[: height * self.scale, : width * self.scale]
            loaded.append(Pair(pair.name, ArraySource(lr, pair.lr.label),
                               ArraySource(hr, pair.hr.label)))
        return loaded

    def _too_small(self, lr_side):
        return [p for p in self._pairs if min(p.lr.shape) < lr_side]

    def _size_message(self, small, lr_side, argument):
        listed = ", ".join(p.lr.label for p in small[:5])
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        return (f"{argument}={lr_side} needs LR images of at least {lr_side}x{lr_side} (HR "
                f"{lr_side * self.scale}x{lr_side * self.scale} at x{self.scale}); "
                f"{len(small)} of the {len(self)} images of {self.name} are smaller: "
                f"{listed}{more}")

    def train(self, batch_size=16, lr_patch=48, seed=None, repeat=True, augment=True,
              cache=False, patches_per_image=None, skip_batches=0, degradation=None):
        """Random aligned training patches as a `tf.data.Dataset` of uint8 `(lr, hr)`.

        Args:
            batch_size: patches per batch.
            lr_patch: LR patch side; the HR patch side is `lr_patch * scale`.
            seed: int for a reproducible order, crops and augmentation; None for random.
            repeat: repeat forever (full batches only); False gives one pass over the
                images (`patches_per_image` patches each), the last batch possibly smaller.
            augment: random horizontal flip and rotation by k * 90 degrees.
            cache: decode every image into memory first (fast, but needs the RAM of the
                whole dataset); by default image files and `.npy` caches are read on
                every visit of an image, keeping memory bounded.
            patches_per_image: random patches cut from each image read (they are shuffled
                with other images' patches before batching); default 1 for images in
                memory, 16 for files (reading a 2K image costs far more than a crop).
            skip_batches: start the stream at this batch (with a seed, the batches of the
                whole stream from there on; the images of the batches left out are not
                read), e.g. where a resumed training run continues.
            degradation: a degradation preset (name, .json path or dict, see
                sisr.data.degradations): LR patches are made from the HR patches on the
                fly, per patch (deterministic for a seed), and the HR side is the
                preset's training target; the dataset's LR images are not read.

        Images smaller than the patch are left out with a warning naming them (an error
        if no image is large enough).
        """
        from sisr.data.pipeline import train_dataset

        if int(batch_size) < 1 or int(lr_patch) < 1:
            raise DatasetError(f"batch_size and lr_patch must be >= 1, got {batch_size}, "
                             f"{lr_patch}")
        small = self._too_small(int(lr_patch))
        if len(small) == len(self):
            raise DatasetError(self._size_message(small, int(lr_patch), "lr_patch"))
        if small:
            # Training can go on without them; say which ones are left out.
            log.warning("%s; training without them", self._size_message(small, int(lr_patch),
                                                                         "lr_patch"))
        left_out = {id(p) for p in small}
        usable = [p for p in self._pairs if id(p) not in left_out]
        pairs = self._in_memory_pairs(usable) if cache else usable
        if patches_per_image is None:
            in_memory = all(not isinstance(s, FileSource) for p in pairs for s in (p.lr, p.hr))
            patches_per_image = 1 if in_memory else 16
        if int(patches_per_image) < 1:
            raise DatasetError(f"patches_per_image must be >= 1, got {patches_per_image}")
        if int(skip_batches) < 0:
            raise DatasetError(f"skip_batches must be >= 0, got {skip_batches}")
        degrade = None
        if degradation is not None:
            from sisr.data.degradations import degradation as make_degradation

            degrade = make_degradation(degradation, self.scale)
        return train_dataset(pairs, self.scale, int(batch_size), int(lr_patch), seed,
                             bool(repeat), bool(augment), int(patches_per_image),
                             int(skip_batches), degrade=degrade)

    def valid(self, crop=None):
        """Validation pairs, batch 1, in order: full images, or LR centre crops of `crop`.

        An image smaller than the crop in a dimension keeps its whole extent in that
        dimension (the largest centre crop that fits), with one warning naming them.
        """
        from sisr.data.pipeline import valid_dataset

        small = []
        if crop is not None:
            crop = int(crop)
            if crop < 1:
                raise DatasetError(f"crop must be >= 1 (or None), got {crop}")
            small = self._too_small(crop)
            if small:
                log.warning("%s; validating on the largest centre crops that fit them",
                            self._size_message(small, crop, "crop"))
        return valid_dataset(self._pairs, self.scale, crop, fixed_shape=not small)
