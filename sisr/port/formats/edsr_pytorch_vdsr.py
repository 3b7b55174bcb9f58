"""EDSR-PyTorch's VDSR (sanghyun-son/EDSR-PyTorch, src/model/vdsr.py) state_dicts.

Keys: `sub_mean`/`add_mean` MeanShift 1x1 convs and `body.{i}.0.weight`, i = 0..D-1: D 3x3
convs without bias (`common.BasicBlock`, whose `bias` defaults to False), RGB in and out.
The state_dict does not show the scale (the network runs on a pre-upscaled image): the
port must be given it.
"""

import numpy as np

from sisr.port.formats.edsr_pytorch import MEAN_SHIFT, _check_mean_shift
from sisr.port.plan import ArrayFill, Plan, PortError
from sisr.port.rules import indices, require_contiguous

NAME = "edsr-pytorch-vdsr"
ALIASES = {"vdsr": "vdsr"}
PATTERN = r"body\.(\d+)\.0\.weight$"


def expected_keys(state_dict):
    """The keys of an EDSR-PyTorch VDSR as deep as `state_dict` looks."""
    depth = max(len(indices(state_dict, PATTERN)), 2)
    return {f"body.{i}.0.weight" for i in range(depth)} | set(MEAN_SHIFT)


def detect(state_dict):
    """True if the key set is exactly an EDSR-PyTorch VDSR's."""
    return set(state_dict) == expected_keys(state_dict)


def _kernel(state_dict, key, in_channels, out_channels):
    weight = np.asarray(state_dict[key], np.float64)
    if weight.shape != (out_channels, in_channels, 3, 3):
        raise PortError(f"{key} has shape {weight.shape}, expected "
                        f"{(out_channels, in_channels, 3, 3)} (OIHW)")
    return weight.transpose(2, 3, 1, 0).astype(np.float32)


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
    depth = len(found)
    first = np.shape(state_dict["body.0.0.weight"])
    if len(first) != 4 or first[1] != 3:
        raise PortError(f"body.0.0.weight has shape {tuple(first)}: expected (F, 3, 3, 3), "
                        "sisr models are RGB")
    filters = int(first[0])
    fills = []
    for i in range(depth):
        key = f"body.{i}.0.weight"
        in_ch = 3 if i == 0 else filters
        out_ch = 3 if i == depth - 1 else filters
        # No biases: the network is positively homogeneous, so sisr's input normalised by
        # 127.5 more changes nothing but the scale of the features (rgb_range likewise).
        fills.append(ArrayFill(f"body_conv{i + 1}", (key,),
                               f"{key} has shape {tuple(np.shape(state_dict[key]))} (OIHW)",
                               values=[_kernel(state_dict, key, in_ch, out_ch)]))
    args = {"num_filters": filters, "num_layers": depth}
    evidence = {"num_filters": f"the state_dict has {filters} (body.0.0.weight)",
                "num_layers": f"the state_dict has {depth} (body.0 .. body.{depth - 1})"}
    return Plan(NAME, "vdsr", args, fills, keys=tuple(state_dict), evidence=evidence,
                checked_keys=MEAN_SHIFT)
