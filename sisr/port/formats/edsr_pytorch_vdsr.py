"""EDSR-PyTorch's VDSR (sanghyun-son/EDSR-PyTorch, src/model/vdsr.py) state_dicts.

Keys: `sub_mean`/`add_mean` MeanShift 1x1 convs and `body.{i}.0.weight` / `.bias`,
i = 0..D-1: D 3x3 convs with biases (`common.BasicBlock(..., bias=True)`, as `vdsr.py` has
built them since its "fix vdsr bugs" commit d99e575, 2018; the 3 days older ab6b0ad built
them without biases), RGB in and out. The state_dict does not show the scale (the network
runs on a pre-upscaled image): the port must be given it.
"""

import numpy as np

from sisr.port.formats.edsr_pytorch import MEAN_SHIFT, _check_mean_shift
from sisr.port.plan import Plan, PortError
from sisr.port.rules import ConvFill, conv_shape, indices, require_contiguous

NAME = "edsr-pytorch-vdsr"
ALIASES = {"vdsr": "vdsr"}
PATTERN = r"body\.(\d+)\.0\.weight$"


def expected_keys(state_dict):
    """The keys of an EDSR-PyTorch VDSR as deep as `state_dict` looks."""
    depth = max(len(indices(state_dict, PATTERN)), 2)
    return {f"body.{i}.0.{p}" for i in range(depth) for p in ("weight", "bias")} | \
        set(MEAN_SHIFT)


def detect(state_dict):
    """True if the key set is exactly an EDSR-PyTorch VDSR's."""
    return set(state_dict) == expected_keys(state_dict)


def describe(state_dict, **options):
    """The `Plan` of an EDSR-PyTorch VDSR state_dict."""
    rgb_range = _check_mean_shift(state_dict, -1)
    if _check_mean_shift(state_dict, +1) != rgb_range:
        raise PortError("sub_mean.bias and add_mean.bias use different rgb_range values")
    found = indices(state_dict, PATTERN)
    if len(found) < 2:
        raise PortError("not an EDSR-PyTorch VDSR state_dict: expected body.0.0.weight ... "
                        "body.{D-1}.0.weight, D >= 2")
    require_contiguous(found, "EDSR-PyTorch VDSR", "body.N.0.weight")
    if "body.0.0.bias" not in state_dict:
        raise PortError("missing key: body.0.0.bias; a VDSR without biases (EDSR-PyTorch's "
                        "vdsr.py before its 'fix vdsr bugs' commit d99e575) is not supported")
    depth = len(found)
    first = np.shape(state_dict["body.0.0.weight"])
    if len(first) != 4 or first[1] != 3:
        raise PortError(f"body.0.0.weight has shape {tuple(first)}: expected (F, 3, 3, 3), "
                        "sisr models are RGB")
    filters = int(first[0])
    fills = []
    for i in range(depth):
        key = f"body.{i}.0"
        in_ch, out_ch = (3 if i == 0 else filters), (3 if i == depth - 1 else filters)
        shape = conv_shape(state_dict, key)
        if shape != (out_ch, in_ch, 3, 3):
            raise PortError(f"{key}.weight has shape {shape}, expected "
                            f"{(out_ch, in_ch, 3, 3)} (OIHW)")
        # EDSR-PyTorch's VDSR sees (x - 255 mean) * rgb_range / 255; sisr's, x - 255 mean.
        fills.append(ConvFill.of(state_dict, key, f"body_conv{i + 1}",
                                 bias_scale=255.0 / rgb_range))
    args = {"num_filters": filters, "num_layers": depth}
    evidence = {"num_filters": f"the state_dict has {filters} (body.0.0.weight)",
                "num_layers": f"the state_dict has {depth} (body.0 .. body.{depth - 1})"}
    return Plan(NAME, "vdsr", args, fills, keys=tuple(state_dict), evidence=evidence,
                checked_keys=MEAN_SHIFT)
