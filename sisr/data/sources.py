"""Image sources: where one LR or HR image of a dataset comes from.

A source knows its size (from the file header, without decoding) and loads the whole
image as uint8 HxWx3 numpy (for `pairs()`); the tf.data pipelines read file sources with
TensorFlow ops (see sisr.data.pipeline) and in-memory sources from one uint8 tensor.
"""

from sisr.imageio import inspect_image, is_numpy_file, read_rgb
from sisr.imresize import imresize


class FileSource:
    """An image file or a uint8 HxWx3 `.npy` cache file."""

    def __init__(self, path):
        self.path = path
        self.label = path
        self._info = None

    def inspect(self):
        """Reads the header: returns the conversion note (None for 8-bit RGB)."""
        self._info = inspect_image(self.path)
        return self._info.note

    @property
    def info(self):
        """The `sisr.imageio.ImageInfo` of the file header."""
        if self._info is None:
            self.inspect()
        return self._info

    @property
    def shape(self):
        """(height, width)."""
        return self.info.shape

    @property
    def is_numpy(self):
        return is_numpy_file(self.path)

    def load(self):
        return read_rgb(self.path)


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
