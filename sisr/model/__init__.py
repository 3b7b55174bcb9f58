"""Model builders of the papers, and a registry that maps names to them.

    from sisr.model import edsr, wdsr_a, wdsr_b, srresnet, discriminator
    model = wdsr_b(scale=2, num_res_blocks=16)
"""

from sisr.model.discriminator import discriminator
from sisr.model.edsr import edsr
from sisr.model.registry import MODELS, ModelSpec, build, get_spec
from sisr.model.srmodel import SRModel, model_info
from sisr.model.srresnet import srresnet
from sisr.model.wdsr_a import wdsr_a
from sisr.model.wdsr_b import wdsr_b

__all__ = [
    "MODELS", "ModelSpec", "SRModel", "build", "discriminator", "edsr", "get_spec",
    "model_info", "srresnet", "wdsr_a", "wdsr_b",
]
