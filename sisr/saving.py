"""Saving and loading models: atomic writes, and loading that never runs code from a file."""

import io
import json
import os
import zipfile

import keras

from sisr._backend import machine_memory
from sisr.errors import SisrError
from sisr.fileio import atomic_output


class ModelError(SisrError, ValueError):
    """A model file that cannot be used (not a model, refused, or not an SR model)."""


def save_model(model, path):
    """Saves `model` to a `.keras` file atomically (a crash leaves any old file intact)."""
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ModelError(f"save_model: path must end with .keras, got {path!r}")
    with atomic_output(path) as tmp:
        model.save(tmp)


def _layer_classes(config):
    """Yields every `class_name` in a serialised Keras config, however deeply nested."""
    if isinstance(config, dict):
        if "class_name" in config:
            yield config["class_name"]
        for value in config.values():
            yield from _layer_classes(value)
    elif isinstance(config, list):
        for value in config:
            yield from _layer_classes(value)


# A `.keras` archive holds config.json, metadata.json and model.weights.h5 (and assets);
# the config of the largest sisr model is ~100 KB. Bounds for files from elsewhere, checked
# on the archive's directory before anything is decompressed.
MAX_ARCHIVE_ENTRIES = 1000
MAX_CONFIG_BYTES = 16 * 2**20
WEIGHTS_FILE = "model.weights.h5"
# What the weights file may hold per weight the config declares: float64 values, and the
# slots of an optimiser saved with the model (Adam: two per weight, plus weight norm's).
MAX_BYTES_PER_WEIGHT = 32
# HDF5's own structure: a fixed part, and groups and attributes per layer (~3 KB measured).
HDF5_BYTES = 2**20
HDF5_BYTES_PER_LAYER = 2**15


def _dim(value, what):
    """A non-negative int from a config (None, an unknown size, counts as 1)."""
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
            or value != int(value):
        raise ModelError(f"{what} is {value!r}, not a size")
    return int(value)


def _product(values, what):
    result = 1
    for value in values if isinstance(values, (list, tuple)) else [values]:
        result *= _dim(value, what)
    return result


def _layer_weights(layer):
    """An upper bound of the weights a serialised layer declares (0 if it has none)."""
    config = layer.get("config")
    if not isinstance(config, dict) or isinstance(config.get("layers"), list):
        return 0  # a nested model: its layers are counted themselves
    name = f"layer {config.get('name')!r} ({layer.get('class_name')})"
    shape = (layer.get("build_config") or {}).get("input_shape") \
        if isinstance(layer.get("build_config"), dict) else None
    if not isinstance(shape, (list, tuple)) or not shape \
            or isinstance(shape[0], (list, tuple, dict)):
        return 0  # no single input shape recorded: no weights to build (Add, Input, ...)
    channels = _dim(shape[-1], f"{name}: input channels")
    if "units" in config:
        units = _dim(config["units"], f"{name}: units")
        return (channels + 1) * units
    if "filters" in config or "depth_multiplier" in config:
        kernel = _product(config.get("kernel_size", 1), f"{name}: kernel_size")
        filters = _dim(config.get("filters", 0), f"{name}: filters")
        multiplier = _dim(config.get("depth_multiplier", 0), f"{name}: depth_multiplier")
        return kernel * channels * (filters + multiplier) + filters + channels * multiplier
    # Per-position or per-channel parameters (batch norm's four, PReLU's slopes).
    return 4 * _product(list(shape[1:]), f"{name}: input shape")


def declared_weights(config):
    """(weights, layers): an upper bound of the weights a `.keras` config declares, and
    the number of its layers; sizes the weights file may have before it is read."""
    total, layers, stack, depth = 0, 0, [config], 0
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if "class_name" in value and isinstance(value.get("config"), dict):
                total += _layer_weights(value)
                layers += 1
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        depth += 1
        if depth > 10**7:
            raise ModelError("config.json is too large to check")
    return total, layers


def _check_weights(path, archive, config):
    """Refuses a weights file larger than the config implies, by its declared sizes:
    the archive member's, and each HDF5 dataset's (compressed data is never read)."""
    import h5py

    weights, layers = declared_weights(config)
    memory = machine_memory() or 2**34  # unknown: assume 16 GiB
    if weights * 4 > memory // 2:
        raise ModelError(f"{path}: refused, its config declares {weights:,} weights "
                         f"({weights * 4 / 2**30:.1f} GiB in float32), more than half of "
                         f"this machine's memory")
    bound = weights * MAX_BYTES_PER_WEIGHT + HDF5_BYTES + layers * HDF5_BYTES_PER_LAYER
    for info in archive.infolist():
        limit = bound if info.filename == WEIGHTS_FILE else MAX_CONFIG_BYTES
        if info.file_size > limit:
            raise ModelError(f"{path}: refused, its {info.filename} unpacks to "
                             f"{info.file_size:,} bytes; its config declares {weights:,} "
                             f"weights, which need at most {limit:,}")
    if WEIGHTS_FILE not in archive.namelist():
        return
    total = 0
    problems = []

    def visit(name, obj):
        nonlocal total
        if isinstance(obj, h5py.Dataset):
            if obj.external or obj.is_virtual:
                problems.append(f"dataset {name} refers to other files")
            total += obj.size * obj.dtype.itemsize

    try:
        # Read whole (its size is bounded above): h5py's seeks on a zip member restart its
        # decompression, which is quadratic in the file's size.
        member = io.BytesIO(archive.read(WEIGHTS_FILE))
        with h5py.File(member, "r") as h5:
            h5.visititems(visit)
            links = []
            h5.visit_links(lambda name: links.append(name) if isinstance(
                h5.get(name, getlink=True), (h5py.ExternalLink, h5py.SoftLink)) else None)
            if links:
                problems.append(f"link {links[0]} points elsewhere")
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise ModelError(f"{path}: its {WEIGHTS_FILE} is not a readable HDF5 file "
                         f"({str(err).splitlines()[0] if str(err) else type(err).__name__})"
                         ) from None
    if problems:
        raise ModelError(f"{path}: refused, its {WEIGHTS_FILE} has a {problems[0]}")
    if total > bound:
        raise ModelError(f"{path}: refused, the datasets of its {WEIGHTS_FILE} hold "
                         f"{total:,} bytes; its config declares {weights:,} weights, which "
                         f"need at most {bound:,}")


def _check_archive(path, archive):
    entries = archive.infolist()
    if len(entries) > MAX_ARCHIVE_ENTRIES:
        raise ModelError(f"{path}: refused, {len(entries)} entries in the archive (a .keras "
                         f"model has a few; at most {MAX_ARCHIVE_ENTRIES} are read)")
    config = archive.getinfo("config.json")
    if config.file_size > MAX_CONFIG_BYTES:
        raise ModelError(f"{path}: refused, its config.json unpacks to {config.file_size:,} "
                         f"bytes (at most {MAX_CONFIG_BYTES:,} are read)")


def load_model(path, compile=False):
    """Loads a `.keras` model in Keras' safe mode.

    Files that contain a `Lambda` layer (arbitrary code) are refused before Keras reads
    them; sisr's own layers are registered here (also when `sisr/__init__` has not run: a
    `sisr` folder in the working directory can shadow the package), so no `custom_objects`
    are needed.
    """
    from sisr import _backend

    _backend.start()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a .keras model file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_archive(path, archive)
            config = json.loads(archive.read("config.json"))
            _check_weights(path, archive, config)
    except (KeyError, json.JSONDecodeError, UnicodeDecodeError, zipfile.BadZipFile,
            RecursionError) as err:
        raise ModelError(f"{path} is not a .keras model file (no valid config.json)") from err
    if "Lambda" in set(_layer_classes(config)):
        raise ModelError(
            f"{path} contains a Lambda layer (Python code); sisr refuses to load it. "
            "Rebuild the model with sisr's registered layers."
        )
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as err:  # Keras raises many types; TypeError for refused classes
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path}: Keras refused to load it in safe mode ({reason})") from err
