"""Reading and writing image files for the CLIs: EXIF orientation, channel layouts, atomic
writes that never overwrite by accident.

Arrays are uint8 in one of four layouts: HxW (grayscale), HxWx2 (grayscale + alpha),
HxWx3 (RGB), HxWx4 (RGBA).
"""

import contextlib
import dataclasses
import os
import secrets

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Extensions picked up when a folder is given; explicit files may have any extension.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
# --format choices -> (Pillow format, file extension).
FORMATS = {"png": ("PNG", ".png"), "jpeg": ("JPEG", ".jpg"), "webp": ("WEBP", ".webp")}
_PIL_TO_FORMAT = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp"}
# Pillow modes -> the mode we convert to (one of L, LA, RGB, RGBA).
_MODES = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "RGB": "RGB", "RGBA": "RGBA",
          "RGBa": "RGBA", "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "PA": "RGBA"}


class ImageError(ValueError):
    """An image file that cannot be read or written; the message names the file."""


@dataclasses.dataclass
class LoadedImage:
    """Pixels of an image file (already turned upright) and what is needed to save alike."""

    array: np.ndarray
    format: str | None  # "png", "jpeg", "webp", or None for other formats
    icc_profile: bytes | None = None


def read_image(path):
    """Reads an image file as a uint8 array, turned upright per its EXIF orientation.

    Palette images become RGB or RGBA (if they have transparency), bilevel become grayscale.
    Raises `ImageError` naming the file if it is missing, corrupt or of an unsupported mode
    (16-bit and float images are refused rather than silently truncated).
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            image.load()  # decode now: truncated files fail here, not later
            pil_format = image.format
            icc = image.info.get("icc_profile")
            image = ImageOps.exif_transpose(image)
            mode = image.mode
            if mode == "P":
                mode = "RGBA" if "transparency" in image.info else "RGB"
                target = mode
            else:
                target = _MODES.get(mode)
            if target is None:
                raise ImageError(
                    f"{path}: unsupported image mode {image.mode!r} (16-bit or float?); "
                    "convert it to 8-bit grayscale, RGB or RGBA first"
                )
            if image.mode != target:
                image = image.convert(target)
            array = np.asarray(image, dtype=np.uint8).copy()
    except ImageError:
        raise
    except FileNotFoundError as err:
        raise ImageError(f"{path}: no such file") from err
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError,
            Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: cannot read image ({err})") from err
    if array.size == 0:
        raise ImageError(f"{path}: image is empty ({array.shape})")
    return LoadedImage(array, _PIL_TO_FORMAT.get(pil_format), icc)


def list_images(inputs):
    """Expands files and folders (not recursive, sorted) into a list of image paths.

    Raises `ImageError` for a path that does not exist or a folder without images.
    """
    paths = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, name) for name in os.listdir(item)
                if name.lower().endswith(IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(item, name))
            )
            if not found:
                raise ImageError(
                    f"{item}: folder contains no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            paths.extend(found)
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise ImageError(f"{item}: no such file or folder")
    return paths


def _to_pil(array, path):
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ImageError(f"{path}: pixels must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (2, 3, 4)):
        return Image.fromarray(array)
    raise ImageError(f"{path}: cannot store an array of shape {array.shape} as an image")


def write_image(path, array, format, quality=95, icc_profile=None, overwrite=False):
    """Writes `array` to `path` atomically (a temporary file, then a rename).

    Without `overwrite`, an existing `path` raises `FileExistsError` and is left intact.
    `format` is "png", "jpeg" or "webp"; JPEG cannot store alpha (`ImageError`).
    """
    path = os.fspath(path)
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    image = _to_pil(array, path)
    if format == "jpeg" and image.mode in ("LA", "RGBA"):
        raise ImageError(
            f"{path}: JPEG cannot store the alpha channel; choose --format png or webp"
        )
    options = {}
    if format in ("jpeg", "webp"):
        options["quality"] = int(quality)
    if icc_profile:
        options["icc_profile"] = icc_profile
    with atomic_output(path, overwrite) as tmp:
        image.save(tmp, format=FORMATS[format][0], **options)


def _new_temp_file(directory, suffix):
    """Creates an empty hidden file in `directory` and returns its path. Unlike mkstemp
    (mode 0600) it gets the permissions of any new file (0666 minus the umask), which
    the final file keeps after the rename."""
    for _ in range(100):
        path = os.path.join(directory, f".tmp-{secrets.token_hex(8)}{suffix}")
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise FileExistsError(f"cannot create a temporary file in {directory}")


@contextlib.contextmanager
def atomic_output(path, overwrite=False):
    """Yields a temporary path beside `path` to write to; when the block succeeds it
    becomes `path`, otherwise it is removed. Without `overwrite`, an existing `path`
    raises `FileExistsError` (before and after writing) and is never replaced."""
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists; not overwriting it (use --force)")
    tmp = _new_temp_file(os.path.dirname(os.path.abspath(path)), os.path.splitext(path)[1])
    try:
        yield tmp
        _publish(tmp, path, overwrite)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _publish(tmp, path, overwrite):
    """Moves a finished temporary file to `path`; without `overwrite`, never replaces one."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic, and fails if `path` appeared meanwhile
    except FileExistsError as err:
        raise FileExistsError(f"{path} exists; not overwriting it (use --force)") from err
    except OSError:  # filesystems without hard links
        if os.path.exists(path):
            raise FileExistsError(f"{path} exists; not overwriting it (use --force)") from None
        os.replace(tmp, path)


def check_writable_dir(path):
    """Creates `path` if needed and checks a file can be written there; raises `OSError`
    with a message naming the folder otherwise."""
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        os.remove(_new_temp_file(path, ".check"))
    except OSError as err:
        raise OSError(f"cannot write to output directory {path}: {err.strerror or err}") from err
