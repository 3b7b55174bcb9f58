"""MDSR (Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution",
CVPRW 2017): one network for several scales.

A shared head conv and residual body; per scale, a pre-processing module (two residual
blocks of 5x5 convs) before the body and an upsampler after it; a shared output conv.

    multi = mdsr(None)                 # every branch: outputs [x2, x3, x4]
    multi8 = mdsr(None, branch_scales=[2, 4, 8])   # any of x2, x3, x4, x8, in any order
    net3 = mdsr_at(multi, 3)           # an ordinary x3 SRModel sharing multi's weights
    net2 = mdsr(2)                     # an x2 model (only the x2 branch), as EDSR's builders
"""

import keras

from sisr.initializers import FanInUniform, torch_kernel
from sisr.layers import denormalize, normalize
from sisr.layers import PixelShuffle
from sisr.model.common import UPSAMPLE_STAGES, check_positive_int, check_scale, lr_input, sr_model
from sisr.model.registry import ModelSpec, register

# The scales an MDSR branch can have (EDSR-PyTorch's Upsampler: x2 stages or one x3),
# and the published network's branches.
MDSR_SCALES = (2, 3, 4, 8)
BRANCHES = (2, 3, 4)
# The pre-processing blocks' kernel and count, as published.
PRE_KERNEL = 5
PRE_BLOCKS = 2


def _conv(filters, kernel_size, in_channels, name, activation=None):
    """A Conv2D layer object (shared layers are called once per branch), PyTorch-init."""
    fan_in = in_channels * kernel_size * kernel_size
    return keras.layers.Conv2D(filters, kernel_size, padding="same", activation=activation,
                               name=name, kernel_initializer=torch_kernel(),
                               bias_initializer=FanInUniform(fan_in))


class _Blocks:
    """The shared layers of an MDSR, built once and applied on every branch."""

    def __init__(self, num_filters, num_res_blocks):
        f = num_filters
        self.normalize = normalize()
        self.head = _conv(f, 3, 3, "head_conv")
        self.body = [(_conv(f, 3, f, f"block{i}_conv1", "relu"), _conv(f, 3, f, f"block{i}_conv2"),
                      keras.layers.Add(name=f"block{i}_add"))
                     for i in range(1, num_res_blocks + 1)]
        self.body_conv = _conv(f, 3, f, "body_conv")
        self.body_add = keras.layers.Add(name="body_add")
        self.output_conv = _conv(3, 3, f, "output_conv")


def _res_block(x, convs):
    conv1, conv2, add = convs
    return add([x, conv2(conv1(x))])


def _branch(shared, x, scale, num_filters):
    """Pre-process, body and upsampler of one scale; `x` is the head conv's output."""
    f = num_filters
    for k in range(1, PRE_BLOCKS + 1):
        prefix = f"pre_x{scale}_block{k}"
        x = _res_block(x, (_conv(f, PRE_KERNEL, f, f"{prefix}_conv1", "relu"),
                           _conv(f, PRE_KERNEL, f, f"{prefix}_conv2"),
                           keras.layers.Add(name=f"{prefix}_add")))
    b = x
    for convs in shared.body:
        b = _res_block(b, convs)
    x = shared.body_add([x, shared.body_conv(b)])
    for i, r in enumerate(UPSAMPLE_STAGES[scale], start=1):
        x = _conv(f * r * r, 3, f, f"upsample_x{scale}_conv{i}")(x)
        x = PixelShuffle(r, name=f"upsample_x{scale}_shuffle{i}")(x)
    x = shared.output_conv(x)
    return denormalize(name=f"denormalize_x{scale}")(x)


def _check_branches(branch_scales):
    if not isinstance(branch_scales, (list, tuple)) or not branch_scales:
        raise ValueError(f"mdsr: `branch_scales` must be a non-empty list of scales, "
                         f"got {branch_scales!r}")
    for s in branch_scales:
        check_scale(s, MDSR_SCALES, "mdsr")
    if len(set(branch_scales)) != len(branch_scales):
        raise ValueError(f"mdsr: `branch_scales` repeats a scale: {list(branch_scales)}")


def mdsr(scale, num_filters=64, num_res_blocks=16, branch_scales=None):
    """Builds MDSR: baseline = defaults (3.2 M parameters); MDSR = 80 blocks (8.0 M).

    `scale` None: the multi-scale network, one output per scale of `branch_scales` (in
    that order); `mdsr_at` gives its single-scale models. `scale` s (one of
    `branch_scales`): the single-scale model of branch s, taking RGB of any size on the
    [0, 255] scale and returning RGB on the same scale, s times larger, as every sisr
    generator. Initialised as the official code (PyTorch's default conv init), biases in
    sisr's units ((x - mean) / 127.5, see `sisr.model.edsr.edsr`).

    `branch_scales` None: the published x2, x3 and x4 (a single-scale x8 model: x8 alone).
    """
    if branch_scales is None:
        branch_scales = BRANCHES if scale is None or scale in BRANCHES else (scale,)
    _check_branches(branch_scales)
    if scale is not None and scale not in branch_scales:
        raise ValueError(f"mdsr: `scale` must be None (every branch) or one of "
                         f"`branch_scales` {list(branch_scales)}, got {scale!r}")
    check_positive_int(num_filters, "num_filters", "mdsr")
    check_positive_int(num_res_blocks, "num_res_blocks", "mdsr")
    shared = _Blocks(num_filters, num_res_blocks)
    x_in = lr_input()
    x = shared.head(shared.normalize(x_in))
    built = [scale] if scale is not None else list(branch_scales)
    outputs = [_branch(shared, x, s, num_filters) for s in built]
    return sr_model(x_in, outputs[0] if scale is not None else outputs, "mdsr", scale=scale,
                    num_filters=num_filters, num_res_blocks=num_res_blocks,
                    branch_scales=list(branch_scales))


def is_multi_scale(model):
    """True for an MDSR built with `scale=None` (several outputs)."""
    return getattr(model, "builder", None) == "mdsr" and model.arguments.get("scale") is None


def model_scales(model):
    """The scales of a multi-scale MDSR's outputs, in order."""
    return list(model.arguments["branch_scales"])


def mdsr_at(model, scale):
    """The single-scale SRModel of `model`'s branch `scale`, sharing its weights (a
    functional sub-graph: input -> head -> pre-process -> body -> upsampler -> tail).

    A single-scale MDSR of that scale is returned as it is.
    """
    if getattr(model, "builder", None) != "mdsr":
        raise ValueError(f"mdsr_at: not an MDSR model ({getattr(model, 'name', model)!r})")
    if not is_multi_scale(model):
        if model.arguments.get("scale") != scale:
            raise ValueError(f"mdsr_at: the model is x{model.arguments.get('scale')}, "
                             f"not x{scale}")
        return model
    scales = model_scales(model)
    if scale not in scales:
        raise ValueError(f"mdsr_at: the model has scales {scales}, not {scale!r}")
    arguments = dict(model.arguments, scale=scale)
    return sr_model(model.inputs[0], model.outputs[scales.index(scale)], "mdsr", **arguments)


register(ModelSpec(
    "mdsr", mdsr,
    scales=MDSR_SCALES,
    tiny={"num_filters": 8, "num_res_blocks": 2},
    # As EDSR's (same head, trunk end, upsamplers and tail).
    float32_layers=("normalize", "head_*", "body_*", "upsample_*", "output_*", "denormalize*"),
    layouts=("mdsr-pytorch",),
    at_scale=mdsr_at,
))
