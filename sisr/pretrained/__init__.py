"""Named pretrained models: a registry (data), a verified download cache, conversion once.

    import sisr.pretrained
    model = sisr.pretrained.load("edsr-baseline-x4")      # a normal sisr keras.Model

    python -m sisr.pretrained list
    python -m sisr.pretrained fetch srresnet-x4 --file ~/Downloads/pre_generator.h5
    model = sisr.pretrained.denoise_model("realesr-general-x4v3", 0.5)   # Real-ESRGAN's -dn

Every weights file is checked against the sha256 in `registry.json` before use and
converted once into `$SISR_HOME/models/NAME.keras` (default `~/.keras/sisr`); later loads
read that file and need no network. `SISR_OFFLINE=1` never downloads. The model CLIs take
a registry name wherever they take a model path (`resolve_model`; an existing path wins).
"""

from sisr.pretrained.cache import fetch, is_cached, load, model_path, resolve_model, sisr_home
from sisr.pretrained.denoise import denoise_model
from sisr.pretrained.registry import Entry, PretrainedError, get_entry, load_registry

__all__ = ["Entry", "PretrainedError", "denoise_model", "fetch", "get_entry", "is_cached", "load",
           "load_registry", "model_path", "resolve_model", "sisr_home"]
