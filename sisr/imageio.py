"""Reading and writing image files and numpy image caches, for every part of sisr.

Images are turned upright by their EXIF orientation and decoded to 8 bits: 16-bit samples
keep their high byte (as libpng's strip_16), and the note returned with the pixels says so;
`read_image(..., keep_depth=True)` reads 16-bit PNG and TIFF files as uint16 instead, and
`write_image` writes uint16 arrays as 16-bit PNG (with pypng and tifffile, the optional
`depth` extra).
`read_image` keeps the channel layout (HxW gray, HxWx2 gray + alpha, HxWx3 RGB, HxWx4 RGBA),
for upscaling people's photos; `read_rgb` gives the uint8 HxWx3 RGB that models are trained
and evaluated on, from an image or a `.npy` cache file. `inspect_image` reads only the
header. Writes are atomic (`sisr.fileio`). Every failure raises `ImageError` naming the file.
"""

import dataclasses
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sisr.errors import SisrError
from sisr.fileio import atomic_output, is_temp_name

# Files taken from a folder; a file named explicitly may have any extension.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif")
NUMPY_EXTENSION = ".npy"
# How an alpha channel is upscaled: by bicubic interpolation or by the model (as grey).
ALPHA_MODES = ("bicubic", "model")
DEPTH_16 = 257.0  # 65535 / 255: a 16-bit sample's step on the model's 0..255 scale
# Formats that can be written -> (Pillow format, file extension).
FORMATS = {"png": ("PNG", ".png"), "jpeg": ("JPEG", ".jpg"), "webp": ("WEBP", ".webp")}
_EXTENSION_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
_PIL_TO_FORMAT = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp"}
# Pillow modes -> the 8-bit layout they are decoded to (L, LA, RGB or RGBA).
_MODES = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "RGB": "RGB", "RGBA": "RGBA",
          "RGBa": "RGBA", "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB",
          "HSV": "RGB", "PA": "RGBA"}
_NOTES = {
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
_EXIF_ORIENTATION = 0x0112
# Formats and modes that TensorFlow decodes to the same RGB pixels as `read_rgb` (8-bit
# PNG; JPEG with the ISLOW DCT, as Pillow); other files are decoded with Pillow.
_TF_MODES = {"PNG": {"RGB", "L", "P", "RGBA", "LA"}, "JPEG": {"RGB", "L"}}
# The last bytes a complete file of the format contains (its end marker), looked for in
# the file's tail so that truncated downloads are caught before training starts.
_END_MARKERS = {"PNG": b"IEND", "JPEG": b"\xff\xd9"}
_TAIL_BYTES = 4096
# Pillow's exceptions for files it cannot decode; a decompression bomb is one more.
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError,
                  Image.DecompressionBombError)


class ImageError(SisrError, ValueError):
    """An image or cache file that cannot be used; the message names the file."""


def is_image_file(path):
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)


def is_numpy_file(path):
    return os.fspath(path).lower().endswith(NUMPY_EXTENSION)


def list_images(folder, numpy=False):
    """Sorted image files (and `.npy` files with `numpy`) directly in `folder`; hidden and
    temporary files are skipped."""
    folder = os.fspath(folder)
    try:
        names = sorted(os.listdir(folder))
    except OSError as err:
        raise ImageError(f"{folder}: cannot list the folder ({err.strerror or err})") from err
    return [os.path.join(folder, name) for name in names
            if not name.startswith(".") and not is_temp_name(name)
            and (is_image_file(name) or (numpy and is_numpy_file(name)))
            and _file_or_dangling(os.path.join(folder, name))]


def _file_or_dangling(path):
    """A file, or a symbolic link to nothing: listed, so that reading it fails by name
    rather than the image going missing without a word."""
    return os.path.isfile(path) or (os.path.islink(path) and not os.path.exists(path))


# ---------------------------------------------------------------------------- reading


@dataclasses.dataclass
class LoadedImage:
    """Pixels of an image file (upright) and what is needed to save alike."""

    array: np.ndarray
    format: str | None  # "png", "jpeg", "webp", or None for other formats
    icc_profile: bytes | None = None
    note: str | None = None  # what decoding to 8 bits changed, if anything

    @property
    def depth(self):
        """Bits per sample of `array`: 8 (uint8) or 16 (uint16, `keep_depth`)."""
        return 16 if self.array.dtype == np.uint16 else 8


# What --keep-depth needs, and the extra that installs it.
DEPTH_EXTRA = "pip install 'sisr[depth]'"


def _optional(module, what):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImageError(f"{what} needs {module}, an optional extra: {DEPTH_EXTRA}") from None


def _is_16_bit(image, any_mode=False):
    """Whether an opened (not yet loaded) image has 16-bit samples; `any_mode`: in any
    layout (Pillow reads 16-bit RGB, RGBA and grey + alpha PNGs as 8-bit RGB/RGBA)."""
    if image.mode.startswith("I;16") or image.mode == "I":
        return True
    if (any_mode or image.mode == "RGB") and image.tile:
        tile = image.tile[0]
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args if isinstance(args, str) else (args[0] if args else "")
        return ";16" in str(rawmode)  # Pillow reads 48-bit PNGs keeping the high byte
    return False


def _conversion_note(image):
    """What reading `image` as 8-bit RGB changes, or None when it is 8-bit RGB already."""
    if _is_16_bit(image):
        return ("16-bit RGB reduced to 8 bits" if image.mode == "RGB" else
                "16-bit grayscale reduced to 8 bits and converted to RGB")
    if image.mode == "RGB":
        return None
    if image.mode in _NOTES:
        return _NOTES[image.mode]
    raise ImageError(f"unsupported image mode {image.mode!r} (expected 8- or 16-bit "
                     "gray/RGB)")


def _decode(image):
    """The upright pixels of an opened image as uint8 L/LA/RGB/RGBA, and a note on what
    decoding to 8 bits changed."""
    note = None
    if _is_16_bit(image):  # before load(), which drops the tile that tells
        note = ("16-bit RGB reduced to 8 bits" if image.mode == "RGB"
                else "16-bit grayscale reduced to 8 bits")
    image.load()  # decode now: truncated files fail here, not later
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image).astype(np.int64)
        return np.clip(values >> 8, 0, 255).astype(np.uint8), note
    if image.mode == "P":
        target = "RGBA" if "transparency" in image.info else "RGB"
    else:
        target = _MODES.get(image.mode)
    if target is None:
        raise ImageError(f"unsupported image mode {image.mode!r}; convert it to grayscale, "
                         "RGB or RGBA first")
    if image.mode != target:
        image = image.convert(target)
    return np.asarray(image, dtype=np.uint8).copy(), note


def _read(path, handle, failure="cannot decode image, corrupt or truncated?"):
    """Opens `path` with Pillow and returns `handle(image)`; errors name the file."""
    try:
        with Image.open(path) as image:
            return handle(image)
    except ImageError as err:
        message = str(err)
        raise ImageError(message if message.startswith(path) else f"{path}: {message}") \
            from None
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageError(f"{path}: a symbolic link to {os.readlink(path)}, which does "
                             "not exist") from None
        raise ImageError(f"{path}: no such file") from None
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path}: refused, too many pixels for Pillow's decompression-bomb "
                         f"limit ({err})") from None
    except _DECODE_ERRORS as err:
        raise ImageError(f"{path}: {failure} ({err})") from None


# EXIF orientation -> the NumPy steps that turn the stored pixels upright (as
# PIL.ImageOps.exif_transpose).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _read_png_16(path):
    png = _optional("png", "reading a 16-bit PNG with its 16 bits")
    try:
        width, height, rows, info = png.Reader(filename=path).asDirect()
        array = np.vstack([np.asarray(row, np.uint16) for row in rows])
    except (png.Error, OSError, ValueError) as err:
        raise ImageError(f"{path}: cannot decode 16-bit PNG, corrupt or truncated? "
                         f"({err})") from None
    return array.reshape(height, width, info["planes"])


def _read_tiff_16(path):
    tifffile = _optional("tifffile", "reading a 16-bit TIFF with its 16 bits")
    try:
        array = tifffile.imread(path, key=0)
    except Exception as err:  # tifffile raises many kinds for bad files
        raise ImageError(f"{path}: cannot decode 16-bit TIFF ({err})") from None
    if array.dtype != np.uint16 or not (array.ndim == 2 or (
            array.ndim == 3 and array.shape[-1] in (1, 2, 3, 4))):
        raise ImageError(f"{path}: expected a 16-bit grey, grey + alpha, RGB or RGBA TIFF, "
                         f"got {array.dtype} {array.shape}")
    return array


def _decode_16(path, image):
    """The upright uint16 pixels (HxW, HxWx2, HxWx3 or HxWx4) of a 16-bit PNG or TIFF."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:
        orientation = 1
    if image.format == "PNG":
        array = _read_png_16(path)
    elif image.format == "TIFF":
        array = _read_tiff_16(path)
    else:
        raise ImageError(f"{path}: 16 bits are kept for PNG and TIFF files only, not "
                         f"{image.format}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return np.ascontiguousarray(_ORIENT.get(orientation, lambda a: a)(array))


def read_image(path, first_frame=False, keep_depth=False):
    """Reads an image file as a `LoadedImage` (upright, channel layout kept): 8-bit, or
    with `keep_depth` a 16-bit PNG or TIFF as uint16 (pypng / tifffile, the `depth`
    extra; other files stay 8-bit).

    An animated image (several frames) is refused, unless `first_frame`: then its first
    frame is read, and the note says so."""
    path = os.fspath(path)

    def handle(image):
        frames = getattr(image, "n_frames", 1)
        if frames > 1 and not first_frame:
            raise ImageError(f"{path}: an animated image of {frames} frames; sisr upscales "
                             "still images (--first-frame: its first frame alone)")
        if keep_depth and frames == 1 and _is_16_bit(image, any_mode=True):
            return LoadedImage(_decode_16(path, image), _PIL_TO_FORMAT.get(image.format),
                               image.info.get("icc_profile"))
        array, note = _decode(image)
        if frames > 1:
            note = "; ".join(filter(None, [f"first of {frames} frames", note]))
        return LoadedImage(array, _PIL_TO_FORMAT.get(image.format),
                           image.info.get("icc_profile"), note)

    loaded = _read(path, handle)
    if loaded.array.size == 0:
        raise ImageError(f"{path}: image is empty ({loaded.array.shape})")
    return loaded


def to_rgb(array):
    """An 8-bit gray, gray + alpha, RGB or RGBA array as HxWx3 RGB (alpha dropped)."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] in (2, 4):
        array = array[..., :-1]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


def read_rgb(path):
    """Reads an image file or a `.npy` cache file as a uint8 HxWx3 RGB array."""
    path = os.fspath(path)
    if is_numpy_file(path):
        return np.array(open_npy(path))
    array = to_rgb(read_image(path).array)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"{path}: decoded to shape {array.shape}, expected HxWx3")
    return array


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the header of an image or .npy file says.

    `shape`: (height, width), upright. `note`: what reading it as 8-bit RGB changes.
    `tf_decodable`: TensorFlow's decoders give the same pixels as `read_rgb`.
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
    path = os.fspath(path)
    if is_numpy_file(path):
        shape, offset = read_npy_header(path)
        return ImageInfo(tuple(int(n) for n in shape[:2]), data_offset=offset)

    def handle(image):
        width, height = image.size
        note = _conversion_note(image)
        try:
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        except _DECODE_ERRORS:  # e.g. a truncated PNG, reported below by its end marker
            orientation = 1
        if orientation in (5, 6, 7, 8):  # turned by 90 degrees
            width, height = height, width
        # TensorFlow's decoders ignore EXIF orientation: such files are read with Pillow.
        tf_decodable = (image.mode in _TF_MODES.get(image.format, ()) and orientation == 1
                        and not _is_16_bit(image))
        return ImageInfo((height, width), note, tf_decodable), image.format

    info, image_format = _read(path, handle, failure="not a readable image")
    if not _has_end_marker(path, image_format):
        if image_format == "PNG":
            raise ImageError(f"{path}: truncated PNG file (no IEND chunk); download or "
                             "copy it again")
        # Some cameras append data after a JPEG's end marker: let Pillow judge it.
        info = dataclasses.replace(info, tf_decodable=False)
    return info


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
        if os.path.islink(path):
            raise ImageError(f"{path}: a symbolic link to {os.readlink(path)}, which does "
                             "not exist") from None
        raise ImageError(f"{path}: no such file") from None
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


# ---------------------------------------------------------------------------- writing


def save_npy(path, array, overwrite=True):
    """Writes a uint8 HxWx3 array as a `.npy` cache file, atomically."""
    with atomic_output(path, overwrite) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def _to_pil(array, path):
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ImageError(f"{path}: pixels must be uint8, got {array.dtype}")
    _check_layout(array, path)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(np.ascontiguousarray(array))


def _check_layout(array, path):
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 2, 3, 4))):
        raise ImageError(f"{path}: cannot store an array of shape {array.shape} as an image")


def _write_png_16(tmp, array, icc_profile):
    png = _optional("png", "writing a 16-bit PNG")
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    planes = 1 if array.ndim == 2 else array.shape[-1]
    height, width = array.shape[:2]
    writer = png.Writer(width, height, greyscale=planes <= 2, alpha=planes in (2, 4),
                        bitdepth=16)
    rows = np.ascontiguousarray(array).reshape(height, width * planes)
    with open(tmp, "wb") as f:
        writer.write(f, rows)
    if icc_profile:  # pypng's writer takes no ICC profile: an iCCP chunk after IHDR
        import zlib

        chunks = list(png.Reader(filename=tmp).chunks())
        chunks.insert(1, (b"iCCP", b"ICC\x00\x00" + zlib.compress(icc_profile)))
        with open(tmp, "wb") as f:
            png.write_chunks(f, chunks)


def write_image(path, array, format=None, quality=95, subsampling=None, icc_profile=None,
                overwrite=True):
    """Writes a uint8 image array to `path` atomically; a uint16 array as a 16-bit PNG
    (pypng, the `depth` extra).

    Args:
        format: "png", "jpeg" or "webp"; None picks it from the file's extension.
        quality: JPEG/WebP quality. subsampling: Pillow's JPEG chroma subsampling
            ("4:2:0", "4:4:4"); None keeps Pillow's default.
        overwrite: if false, an existing `path` raises `FileExistsError` and is kept.
    """
    path = os.fspath(path)
    if format is None:
        format = _EXTENSION_FORMATS.get(os.path.splitext(path)[1].lower())
        if format is None:
            raise ImageError(f"{path}: can only write .png, .jpg or .webp files")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if np.asarray(array).dtype == np.uint16:
        if format != "png":
            raise ImageError(f"{path}: {format.upper()} stores 8 bits; write 16-bit pixels "
                             "as PNG")
        _check_layout(np.asarray(array), path)
        with atomic_output(path, overwrite) as tmp:
            _write_png_16(tmp, array, icc_profile)
        return
    image = _to_pil(array, path)
    if format == "jpeg" and image.mode in ("LA", "RGBA"):
        raise ImageError(f"{path}: JPEG cannot store the alpha channel; choose png or webp")
    options = {}
    if format in ("jpeg", "webp"):
        options["quality"] = int(quality)
    if format == "jpeg" and subsampling is not None:
        options["subsampling"] = subsampling
    if icc_profile:
        options["icc_profile"] = icc_profile
    with atomic_output(path, overwrite) as tmp:
        image.save(tmp, format=FORMATS[format][0], **options)
