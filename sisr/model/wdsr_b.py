"""WDSR-B builder (wide activation, low-rank 1x1 convolutions)."""

from sisr.model.wdsr import res_block_b, wdsr


def wdsr_b(scale, num_filters=32, num_res_blocks=8, res_block_expansion=6,
           res_block_scaling=None):
    """Builds WDSR-B. The paper's baseline: 32 filters, 16 blocks, expansion 6.

    Initialised as the official code (PyTorch's default conv init; see `wdsr.wdsr`).
    """
    return wdsr(scale, num_filters, num_res_blocks, res_block_expansion,
                res_block_scaling, res_block_b, name="wdsr_b")
