"""Saving and loading models: atomic writes, and loading that never runs code from a file."""

import json
import os
import zipfile

import keras

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
    them; sisr's own layers are registered, so no `custom_objects` are needed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a .keras model file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_archive(path, archive)
            config = json.loads(archive.read("config.json"))
    except (KeyError, json.JSONDecodeError, UnicodeDecodeError, zipfile.BadZipFile) as err:
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
