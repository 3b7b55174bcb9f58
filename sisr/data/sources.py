"""Image sources: where one LR or HR image of a dataset comes from.

A source knows its size (read from the file header, without decoding) and can return
the whole image or a crop of it as uint8 HxWx3. `.npy` caches are memory-mapped so that
a crop reads only the pages it touches; image files are decoded in full.
"""

import numpy as np

from sisr.data.imageio import inspect_image, is_numpy_file, open_npy, read_image
from sisr.imresize import imresize


class FileSource:
    """An image file or a uint8 HxWx3 `.npy` cache file."""

    def __init__(self, path):
        self.path = path
        self.label = path
        self._shape = None
        self._mmap = None

    def inspect(self):
        """Reads the header: returns the conversion note (None for 8-bit RGB)."""
        shape, note = inspect_image(self.path)
        self._shape = tuple(int(n) for n in shape)
        return note

    @property
    def shape(self):
        """(height, width)."""
        if self._shape is None:
            self.inspect()
        return self._shape

    @property
    def is_numpy(self):
        return is_numpy_file(self.path)

    def load(self):
        return read_image(self.path)

    def crop(self, top, left, height, width):
        if self.is_numpy:
            if self._mmap is None:
                self._mmap = open_npy(self.path)
            return np.array(self._mmap[top:top + height, left:left + width])
        return self.load()[top:top + height, left:left + width]


class ArraySource:
    """An image held in memory."""

    def __init__(self, array, label):
        self.array = array
        self.label = label

    def inspect(self):
        return None

    @property
    def shape(self):
        return tuple(self.array.shape[:2])

    def load(self):
        return self.array

    def crop(self, top, left, height, width):
        return self.array[top:top + height, left:left + width].copy()


class DownscaledSource:
    """The LR image made from an HR source with the MATLAB bicubic, computed once on use.

    The HR image is first cropped to a multiple of the scale (the usual "modcrop"), so the
    LR image is exactly (H // scale) x (W // scale).
    """

    def __init__(self, hr_source, scale):
        self.hr = hr_source
        self.scale = scale
        self.label = f"{hr_source.label} (bicubic x1/{scale})"
        self._array = None

    def inspect(self):
        return None

    @property
    def shape(self):
        height, width = self.hr.shape
        return height // self.scale, width // self.scale

    def load(self):
        if self._array is None:
            height, width = self.shape
            hr = self.hr.load()[: height * self.scale, : width * self.scale]
            self._array = imresize(hr, output_shape=(height, width))
        return self._array

    def crop(self, top, left, height, width):
        return self.load()[top:top + height, left:left + width].copy()
