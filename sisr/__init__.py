"""sisr: single-image super-resolution for Keras 3 / TensorFlow.

    import sisr
    from sisr.model import wdsr_b
    model = wdsr_b(scale=2)
    sr = sisr.resolve_single(model, lr)   # uint8 HxWx3 in, uint8 (sH)x(sW)x3 out
"""

from sisr._backend import require_tensorflow

require_tensorflow()

# Registers sisr's layers and initializers, which saved models name, for loading.
from sisr import initializers, layers  # noqa: E402
from sisr.inference import resolve, resolve_single  # noqa: E402
from sisr.saving import load_model, save_model  # noqa: E402
from sisr.upscale import upscale_image  # noqa: E402

__version__ = "0.1.0"
__all__ = ["initializers", "layers", "load_model", "resolve", "resolve_single", "save_model", "upscale_image"]
