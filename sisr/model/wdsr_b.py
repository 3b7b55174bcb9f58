"""WDSR-B builder (wide activation, low-rank 1x1 convolutions)."""

from sisr.model.registry import ModelSpec, register
from sisr.model.wdsr import FLOAT32_LAYERS, res_block_b, wdsr


def wdsr_b(scale, num_filters=32, num_res_blocks=8, res_block_expansion=6,
           res_block_scaling=None, upsample_init="default", normalization="weight"):
    """Builds WDSR-B. The paper's baseline: 32 filters, 16 blocks, expansion 6.

    Initialised as the official code (PyTorch's default conv init; see `wdsr.wdsr`);
    `upsample_init="icnr"` starts the upsampling convs with ICNR instead;
    `normalization`: "weight" (trained with `weight_norm_adam`), "none" or "batch" (see
    `wdsr.wdsr`).
    """
    return wdsr(scale, num_filters, num_res_blocks, res_block_expansion,
                res_block_scaling, res_block_b, name="wdsr_b",
                upsample_init=upsample_init, normalization=normalization)


register(ModelSpec("wdsr_b", wdsr_b,
                   tiny={"num_filters": 8, "num_res_blocks": 2, "res_block_expansion": 3},
                   float32_layers=FLOAT32_LAYERS, layouts=("wdsr", "krasserm")))
