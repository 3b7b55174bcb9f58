"""EDSR-PyTorch (sanghyun-son/EDSR-PyTorch, src/model/edsr.py and common.py) state_dicts.

Keys: `sub_mean`/`add_mean` MeanShift 1x1 convs, `head.0`, `body.{i}.body.{0,2}`,
`body.{N}`, upsampler `tail.0.{0,2,4}` (one conv per x2 stage, or a single x3 one) and
`tail.1`. The network works on `x - mean` without sisr's /127.5, hence rescaled biases.
"""

import numpy as np

from sisr.layers import DIV2K_RGB_MEAN
from sisr.port.plan import Plan, PortError
from sisr.port.rules import EdsrLayout, describe_edsr, edsr_keys, full_edsr_scaling

NAME = "edsr-pytorch"
ALIASES = {"edsr": None}  # other spellings of --from, and the model each one requests
LAYOUT = EdsrLayout("EDSR-PyTorch", "head.0", "body.{i}.body.{conv}", ("0", "2"),
                    r"body\.(\d+)\.body\.", "body.{n}", "tail.0", "tail.1")
MEAN_SHIFT = ("sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias")


def expected_keys(state_dict):
    """The keys of an EDSR-PyTorch EDSR as large as `state_dict` looks."""
    return edsr_keys(state_dict, LAYOUT) | set(MEAN_SHIFT)


def detect(state_dict):
    """True if the key set is exactly an EDSR-PyTorch EDSR's (RCAN's, with the same
    MeanShift, head and tail, has other body keys)."""
    return set(state_dict) == expected_keys(state_dict)


def _check_mean_shift(state_dict, sign):
    """Checks a MeanShift against the DIV2K mean; returns its rgb_range."""
    prefix = "sub_mean" if sign < 0 else "add_mean"
    weight_key, bias_key = f"{prefix}.weight", f"{prefix}.bias"
    for key, shape in ((weight_key, (3, 3, 1, 1)), (bias_key, (3,))):
        if key not in state_dict:
            raise PortError(f"missing key: {key} (EDSR-PyTorch's MeanShift)")
        if tuple(np.shape(state_dict[key])) != shape:
            raise PortError(f"{key} has shape {tuple(np.shape(state_dict[key]))}, "
                            f"expected {shape}")
    weight = np.asarray(state_dict[weight_key], np.float64).reshape(3, 3)
    if not np.allclose(weight, np.eye(3), rtol=0, atol=1e-6):
        raise PortError(f"{weight_key} is not the identity: the checkpoint uses rgb_std != 1, "
                        f"sisr normalises with std 1 (got diagonal {np.diag(weight).tolist()})")
    bias = np.asarray(state_dict[bias_key], np.float64)
    mean01 = np.asarray(DIV2K_RGB_MEAN) / 255.0
    for rgb_range in (255.0, 1.0):
        if np.allclose(bias, sign * rgb_range * mean01, rtol=1e-5, atol=1e-6):
            return rgb_range
    raise PortError(
        f"{bias_key} = {np.round(bias, 5).tolist()} is not {'-' if sign < 0 else '+'}rgb_range"
        f" x the DIV2K mean {tuple(np.round(mean01, 4))} (rgb_range 255 or 1): the "
        "checkpoint was trained with another mean, which sisr's models do not support"
    )


def describe(state_dict, **options):
    """The `Plan` of an EDSR-PyTorch EDSR state_dict."""
    rgb_range = _check_mean_shift(state_dict, -1)
    if _check_mean_shift(state_dict, +1) != rgb_range:
        raise PortError("sub_mean.bias and add_mean.bias use different rgb_range values")
    # EDSR-PyTorch's network (convs, ReLUs, adds: positively homogeneous) sees
    # u = (x - 255 mean) * rgb_range/255, sisr's sees (x - 255 mean)/127.5 = c*u
    # with c = 2/rgb_range, and both outputs are rescaled alike: the same kernels
    # with every bias multiplied by c give exactly c times the PyTorch features.
    args, fills, evidence = describe_edsr(state_dict, LAYOUT, bias_scale=2.0 / rgb_range)
    return Plan(NAME, "edsr", args, fills, keys=tuple(state_dict), evidence=evidence,
                checked_keys=MEAN_SHIFT, assumed=full_edsr_scaling(args))
