"""sisr: single-image super-resolution for Keras 3 / TensorFlow.

    import sisr
    from sisr.model import wdsr_b
    model = wdsr_b(scale=2)
    sr = sisr.resolve_single(model, lr)   # uint8 HxWx3 in, NumPy uint8 (sH)x(sW)x3 out

`import sisr` checks the backend and registers sisr's layers and model class (so that
`keras.saving.load_model` reads sisr's `.keras` files); everything else is imported on
first use. A command (`python -m sisr.upscale`, `sisr-upscale`) does both itself after
parsing its arguments: its `--help` does not load TensorFlow.
"""

import importlib

from sisr import _backend

if not _backend.starting_command():
    _backend.start()

__version__ = "0.1.0"
# Public names -> the module that defines them, imported on first use.
_LAZY = {
    "resolve": "sisr.inference",
    "resolve_single": "sisr.inference",
    "load_model": "sisr.saving",
    "save_model": "sisr.saving",
    "upscale_image": "sisr.upscaling",
    "upscale_video": "sisr.video",  # needs the `video` extra (PyAV) when called
    "SisrError": "sisr.errors",
}
__all__ = ["initializers", "layers", *_LAZY]


def __getattr__(name):
    if name in ("initializers", "layers"):  # when a command has not `start`ed yet
        return importlib.import_module(f"sisr.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sisr' has no attribute {name!r}")
