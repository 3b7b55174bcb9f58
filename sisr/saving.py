"""Saving and loading models: atomic writes, and loading that never runs code from a file."""

import json
import os
import zipfile

import keras

from sisr.fileio import atomic_output


def save_model(model, path):
    """Saves `model` to a `.keras` file atomically (a crash leaves any old file intact)."""
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"save_model: path must end with .keras, got {path!r}")
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


def load_model(path, compile=False):
    """Loads a `.keras` model in Keras' safe mode.

    Files that contain a `Lambda` layer (arbitrary code) are refused before Keras reads
    them; sisr's own layers are registered, so no `custom_objects` are needed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a .keras model file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a .keras model file (no valid config.json)") from err
    if "Lambda" in set(_layer_classes(config)):
        raise ValueError(
            f"{path} contains a Lambda layer (Python code); sisr refuses to load it. "
            "Rebuild the model with sisr's registered layers."
        )
    return keras.saving.load_model(path, compile=compile, safe_mode=True)
