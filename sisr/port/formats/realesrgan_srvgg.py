"""Real-ESRGAN's SRVGGNetCompact (xinntao/Real-ESRGAN, realesrgan/archs/srvgg_arch.py)
state_dicts: realesr-general-x4v3, realesr-general-wdn-x4v3, realesr-animevideov3.

Keys: one `nn.ModuleList` `body`: convs at even indices `body.0`, `body.2`, ...,
`body.{2N+2}` (the last one to 3 * scale^2 channels, before the pixel shuffle) and
activations at odd ones, of which only PReLU has weights (`body.{2n+1}.weight`, one slope
per channel). ReLU and LeakyReLU store nothing, so a state_dict without PReLU weights
cannot tell them apart: `act` is then assumed (relu) unless given. The network works on
[0, 1] as sisr's model does inside, so weights are copied unscaled.
"""

import numpy as np

from sisr.port.plan import ArrayFill, Plan, PortError
from sisr.port.rules import ConvFill, conv_key_set, conv_shape, indices, require_contiguous

NAME = "realesrgan-srvgg"
ALIASES = {"srvgg": None}
PARAM_KEYS = ("params_ema", "params")
PATTERN = r"body\.(\d+)\."


def _convs(state_dict):
    """The conv indices of `body` (even), checked to be 0, 2, ..., 2N + 2."""
    found = indices(state_dict, PATTERN)
    convs = [i for i in found if i % 2 == 0]
    require_contiguous([i // 2 for i in convs], "SRVGGNetCompact body", "body.{2n}")
    if len(convs) < 2:
        raise PortError(f"SRVGGNetCompact state_dict with {len(convs)} conv(s) in body.*: "
                        "expected a first conv, the body's convs and a last conv")
    return convs


def _prelus(state_dict, convs):
    return [i + 1 for i in convs[:-1] if f"body.{i + 1}.weight" in state_dict]


def expected_keys(state_dict):
    """The keys of an SRVGGNetCompact as large as `state_dict` looks (PReLU weights if
    it has any)."""
    found = [i for i in indices(state_dict, PATTERN) if i % 2 == 0]
    convs = list(range(0, 2 * max(len(found), 2), 2))
    keys = set().union(*(conv_key_set(state_dict, f"body.{i}") for i in convs))
    if any(i % 2 for i in indices(state_dict, PATTERN)):
        keys |= {f"body.{i + 1}.weight" for i in convs[:-1]}
    return keys


def detect(state_dict):
    """True if the key set is exactly an SRVGGNetCompact's."""
    return bool(indices(state_dict, PATTERN)) and set(state_dict) == expected_keys(state_dict)


def describe(state_dict, **options):
    """The `Plan` of an SRVGGNetCompact state_dict."""
    if not indices(state_dict, PATTERN):
        raise PortError("not an SRVGGNetCompact state_dict: no key body.N.*")
    convs = _convs(state_dict)
    first, last = f"body.{convs[0]}", f"body.{convs[-1]}"
    head = conv_shape(state_dict, first)
    num_feat = head[0]
    if head[1] != 3:
        raise PortError(f"{first}.weight has shape {head}: sisr models are RGB, expected 3 "
                        "input channels")
    tail = conv_shape(state_dict, last)
    scale = int(round((tail[0] / 3) ** 0.5))
    if scale < 1 or 3 * scale * scale != tail[0]:
        raise PortError(f"{last}.weight has shape {tail}: the last conv of an RGB "
                        "SRVGGNetCompact has 3 * scale^2 outputs")
    prelus = _prelus(state_dict, convs)
    fills = [ConvFill.of(state_dict, first, "head_conv")]
    layers = ["head"] + [f"body{n}" for n in range(1, len(convs) - 1)]
    for n, i in enumerate(convs[1:-1], start=1):
        fills.append(ConvFill.of(state_dict, f"body.{i}", f"body{n}_conv"))
    for name, i in zip(layers, convs[:-1]):
        key = f"body.{i + 1}.weight"
        if key not in state_dict:
            continue
        alpha = np.asarray(state_dict[key], np.float32)
        if alpha.shape != (num_feat,):
            raise PortError(f"{key} has shape {alpha.shape}: a PReLU of {num_feat} "
                            f"channels has ({num_feat},) slopes")
        fills.append(ArrayFill(f"{name}_act", (key,), f"{key} has shape {alpha.shape}",
                               values=[alpha.reshape(1, 1, num_feat)]))
    fills.append(ConvFill.of(state_dict, last, f"upsample_x{scale}_conv", shuffle=scale))
    num_conv = len(convs) - 2
    args = {"scale": scale, "num_feat": num_feat, "num_conv": num_conv}
    evidence = {
        "scale": f"the state_dict has {scale} ({last}.weight {tail}: 3 x {scale}^2 outputs)",
        "num_feat": f"the state_dict has {num_feat} ({first}.weight {head})",
        "num_conv": f"the state_dict has {num_conv} (convs body.{convs[1] if num_conv else 2}"
                    f"..body.{convs[-2]})" if num_conv else "the state_dict has 0",
    }
    assumed = {}
    if prelus:
        args["act"] = "prelu"
        evidence["act"] = f"the state_dict has 'prelu' (PReLU weights body.{prelus[0]}.weight...)"
    else:
        why = "the state_dict has no PReLU weights, and ReLU and LeakyReLU store none"
        assumed["act"] = ("relu", why)
    return Plan(NAME, "srvgg_compact", args, fills, keys=tuple(state_dict), evidence=evidence,
                assumed=assumed)
