"""Model builders of the papers, and the registry that declares each architecture once.

    from sisr.model import edsr, wdsr_a, wdsr_b, srresnet, discriminator
    model = wdsr_b(scale=2, num_res_blocks=16)

Importing this package imports every builder module, which registers its `ModelSpec`.
"""

from sisr.model.discriminator import discriminator
from sisr.model.edsr import edsr
from sisr.model.espcn import espcn
from sisr.model.fsrcnn import fsrcnn
from sisr.model.mdsr import mdsr, mdsr_at
from sisr.model.rcan import rcan
from sisr.model.rdn import rdn
from sisr.model.registry import (
    MODELS, ModelSpec, build, generators, get_spec, register, spec_of, unregister,
)
from sisr.model.rrdbnet import rrdbnet
from sisr.model.srmodel import SRModel, model_info
from sisr.model.srcnn import srcnn
from sisr.model.srresnet import srresnet
from sisr.model.srvgg import srvgg_compact
from sisr.model.unet_discriminator import unet_discriminator_sn
from sisr.model.vdsr import vdsr
from sisr.model.vgg_discriminator import vgg_style_discriminator
from sisr.model.wdsr_a import wdsr_a
from sisr.model.wdsr_b import wdsr_b

__all__ = [
    "MODELS", "ModelSpec", "SRModel", "build", "discriminator", "edsr", "espcn", "fsrcnn",
    "generators", "get_spec", "mdsr", "mdsr_at", "model_info", "rcan", "rdn", "register",
    "rrdbnet", "spec_of", "srcnn", "srresnet", "srvgg_compact", "unet_discriminator_sn",
    "unregister", "vdsr", "vgg_style_discriminator", "wdsr_a", "wdsr_b",
]
