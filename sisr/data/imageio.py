"""Reading images and numpy caches as uint8 RGB, header-only size checks, atomic writes.

Every failure raises `ImageError` naming the file and what is wrong. Images that are not
8-bit RGB (grayscale, alpha, palette, 16-bit, CMYK, ...) are converted to 8-bit RGB (16-bit
samples keep their high byte); `inspect_image` describes the conversion so that datasets
can warn once per file.
"""

import contextlib
import dataclasses
import logging
import os
import tempfile

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif")
NUMPY_EXTENSION = ".npy"


class ImageError(ValueError):
    """An image or cache file cannot be used (unreadable, corrupt, wrong shape or dtype)."""


def is_image_file(path):
    return path.lower().endswith(IMAGE_EXTENSIONS)


def is_numpy_file(path):
    return path.lower().endswith(NUMPY_EXTENSION)


def _conversion_note(image):
    """What reading `image` as 8-bit RGB changes, or None when it is 8-bit RGB already."""
    mode = image.mode
    rawmode = ""
    if image.tile:
        args = image.tile[0].args if hasattr(image.tile[0], "args") else image.tile[0][3]
        rawmode = args if isinstance(args, str) else (args[0] if args else "")
    if mode == "RGB":
        # Pillow reads 48-bit PNGs as RGB keeping the high byte of each sample.
        return "16-bit RGB reduced to 8 bits" if ";16" in str(rawmode) else None
    notes = {
        "L": "grayscale converted to RGB",
        "1": "1-bit image converted to RGB",
        "LA": "grayscale+alpha converted to RGB (alpha dropped)",
        "La": "grayscale+alpha converted to RGB (alpha dropped)",
        "P": "palette image converted to RGB",
        "PA": "palette image converted to RGB (alpha dropped)",
        "RGBA": "alpha channel dropped",
        "RGBa": "alpha channel dropped",
        "RGBX": "padding channel dropped",
        "CMYK": "CMYK converted to RGB",
        "YCbCr": "YCbCr converted to RGB",
        "LAB": "Lab converted to RGB",
        "HSV": "HSV converted to RGB",
    }
    if mode in notes:
        return notes[mode]
    if mode.startswith("I;16") or mode == "I":
        return "16-bit grayscale reduced to 8 bits and converted to RGB"
    raise ImageError(f"unsupported image mode {mode!r} (expected 8- or 16-bit gray/RGB)")


def _to_rgb8(image):
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode.startswith("I;16") or mode == "I":
        # Keep the high byte, as Pillow does for 16-bit RGB and libpng's strip_16.
        values = np.asarray(image).astype(np.int64)
        gray = np.clip(values >> 8, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(image)[:, :, :3]
    return np.asarray(image.convert("RGB"))


# Formats and modes that TensorFlow decodes to the same RGB pixels as `read_image` (8-bit
# PNG; JPEG with the ISLOW DCT, as Pillow); other files are decoded with Pillow.
_TF_MODES = {"PNG": {"RGB", "L", "P", "RGBA", "LA"}, "JPEG": {"RGB", "L"}}
# The last bytes a complete file of the format contains (its end marker), looked for in
# the file's tail so that truncated downloads are caught before training starts.
_END_MARKERS = {"PNG": b"IEND", "JPEG": b"\xff\xd9"}
_TAIL_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the header of an image or .npy file says.

    `tf_decodable`: TensorFlow's decoders give the same pixels as `read_image`.
    `data_offset`: where the pixels of a .npy file start (None for images).
    """

    shape: tuple
    note: object = None
    tf_decodable: bool = False
    data_offset: object = None


def _has_end_marker(path, image_format):
    marker = _END_MARKERS.get(image_format)
    if marker is None:
        return True
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - _TAIL_BYTES))
        return marker in f.read()


def inspect_image(path):
    """Reads the header of an image or .npy file (no decoding): an `ImageInfo`."""
    if is_numpy_file(path):
        shape, offset = read_npy_header(path)
        return ImageInfo(tuple(int(n) for n in shape[:2]), data_offset=offset)
    try:
        with Image.open(path) as image:
            width, height = image.size
            note = _conversion_note(image)
            tf_decodable = (image.mode in _TF_MODES.get(image.format, ())
                            and (note is None or "16-bit" not in note))
            image_format = image.format
        if not _has_end_marker(path, image_format):
            if image_format == "PNG":
                raise ImageError(f"{path}: truncated PNG file (no IEND chunk); download or "
                                 "copy it again")
            # Some cameras append data after a JPEG's end marker: let Pillow judge it.
            tf_decodable = False
        return ImageInfo((height, width), note, tf_decodable)
    except ImageError as err:
        message = str(err)
        raise ImageError(message if message.startswith(path) else f"{path}: {message}") from None
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: not a readable image ({err})") from None


def read_npy_header(path):
    """(shape, data offset) of a .npy file; checks it is a complete uint8 HxWx3 array."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except (OSError, ValueError) as err:
        raise ImageError(f"{path}: not a valid .npy file ({err})") from None
    if dtype != np.uint8 or len(shape) != 3 or shape[2] != 3 or fortran:
        raise ImageError(f"{path}: expected a C-order uint8 HxWx3 array, got dtype {dtype} "
                         f"shape {shape}")
    if size != offset + int(np.prod(shape)):
        raise ImageError(f"{path}: truncated or corrupt .npy file ({size} bytes, expected "
                         f"{offset + int(np.prod(shape))} for shape {shape}); rebuild the cache")
    return shape, offset


def open_npy(path):
    """Memory-maps a uint8 HxWx3 .npy file (validated first)."""
    read_npy_header(path)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ImageError(f"{path}: cannot memory-map .npy file ({err})") from None


def read_image(path):
    """Reads an image file or a .npy cache file as a uint8 HxWx3 numpy array."""
    if is_numpy_file(path):
        return np.array(open_npy(path))
    try:
        with Image.open(path) as image:
            _conversion_note(image)
            image.load()
            array = _to_rgb8(image)
    except ImageError as err:
        raise ImageError(f"{path}: {err}") from None
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: cannot decode image, corrupt or truncated? ({err})") from None
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ImageError(f"{path}: decoded to shape {array.shape} dtype {array.dtype}, "
                         "expected uint8 HxWx3")
    return np.ascontiguousarray(array)


@contextlib.contextmanager
def atomic_output(path):
    """Yields a temporary path beside `path`; renames it onto `path` only on success.

    The temporary name starts with '.' and ends with '.tmp', never a data extension, so a
    crash leaves a file that no reader takes for data (`remove_stale_temps` deletes them).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                dir=directory)
    os.close(fd)
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise


def is_temp_file(name):
    return name.startswith(".") and name.endswith(".tmp")


def save_npy(path, array):
    with atomic_output(path) as temp:
        with open(temp, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())


def save_image(path, array, quality=None, subsampling=None):
    """Writes a uint8 HxWx3 array as PNG, or JPEG with `quality` (format from the name).

    `subsampling` is Pillow's JPEG chroma subsampling (e.g. "4:2:0", "4:4:4"); None keeps
    Pillow's default (4:2:0).
    """
    ext = os.path.splitext(path)[1].lower()
    image = Image.fromarray(np.ascontiguousarray(array))
    with atomic_output(path) as temp:
        if ext in (".jpg", ".jpeg"):
            options = {} if subsampling is None else {"subsampling": subsampling}
            image.save(temp, format="JPEG", quality=int(quality or 95), **options)
        elif ext == ".png":
            image.save(temp, format="PNG")
        else:
            raise ImageError(f"{path}: can only write .png or .jpg files")
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
